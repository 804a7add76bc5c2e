use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use mcp_auth_server::{config, keyring, migrations, secrets, server, store, time};

/// OAuth 2.1 authorization server for MCP clients.
#[derive(Parser)]
#[command(name = "mcp-auth-server", version)]
struct Cli {
    /// Configuration file (TOML); `MCP_AUTH_SERVER__*` environment variables override fields.
    #[arg(long, global = true, env = "MCP_AUTH_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines as human-readable text or as one JSON object each.
    #[arg(
        long,
        global = true,
        env = "MCP_AUTH_SERVER_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to standard error, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        // Event fields at the top level of each object, so `event` and its fields are easy to
        // select in a log pipeline.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Signing key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read a password from standard input and print its argon2id hash for the config file.
    HashPassword,
    /// Apply the pending schema migrations (`serve` also does at startup).
    Migrate {
        /// Change nothing: exit with status 1, listing them, when migrations are pending.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key: published at once, signing after the publish delay.
    Rotate {
        /// Seconds until the new key signs (default: the `key_publish_delay_secs` setting).
        #[arg(long)]
        publish_delay_secs: Option<u64>,
    },
    /// List the stored keys and their state.
    List,
}

/// The configured database, for the command-line tools; `migrate` applies pending migrations.
fn open_store(config: &config::Config, migrate: bool) -> anyhow::Result<store::Store> {
    let location = store::Location::of(config);
    Ok(store::Store::connect(
        &location,
        Default::default(),
        migrate,
    )?)
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<config::Config> {
    let path = path.context("--config FILE is required")?;
    Ok(config::load(&path, std::env::vars())?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = load_config(cli.config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listeners = server::Listeners::bind(&config).await?;
                server::serve(config, listeners, shutdown_signal()).await
            })
        }
        Command::Keys { command } => {
            let config = load_config(cli.config)?;
            let store = open_store(&config, true)?;
            let now = time::now();
            match command {
                KeysCommand::Rotate { publish_delay_secs } => {
                    let delay = publish_delay_secs.unwrap_or(config.key_publish_delay.as_secs());
                    let delay = i64::try_from(delay)?;
                    let r =
                        store.run_blocking(|conn| keyring::rotate(conn, &config, now, delay))?;
                    println!(
                        "new key {} ({}) is published now and signs from unix time {} (in {} s)",
                        r.kid,
                        config.signing_algorithm.jwa_name(),
                        r.active_from,
                        delay
                    );
                    for kid in r.pruned {
                        println!("pruned expired key {kid}");
                    }
                }
                KeysCommand::List => {
                    let keys = store.run_blocking(|conn| keyring::describe(conn, &config, now))?;
                    for key in keys {
                        println!(
                            "{}\t{}\tactive_from={}\t{}",
                            key.kid, key.alg, key.active_from, key.state
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Migrate { check } => {
            let config = load_config(cli.config)?;
            let store = open_store(&config, false)?;
            if check {
                let pending = store.run_blocking(|conn| {
                    Ok(migrations::pending(conn)?
                        .iter()
                        .map(|m| format!("{} {}", m.version, m.description))
                        .collect::<Vec<_>>())
                })?;
                if pending.is_empty() {
                    println!("the database schema is up to date");
                    return Ok(());
                }
                for migration in &pending {
                    println!("pending: {migration}");
                }
                std::process::exit(1);
            }
            let applied = store.run_blocking(migrations::apply)?;
            if applied.is_empty() {
                println!("the database schema was already up to date");
            }
            for version in applied {
                println!("applied migration {version}");
            }
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.strip_suffix('\n').unwrap_or(&password);
            let password = password.strip_suffix('\r').unwrap_or(password);
            if password.is_empty() {
                anyhow::bail!("empty password on standard input");
            }
            println!(
                "{}",
                secrets::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?
            );
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
