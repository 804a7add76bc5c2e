//! `cargo xtask demo`: build everything, start the authorization server, the demo MCP server and
//! Envoy with the filter on 127.0.0.1, and keep them running until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use crate::supervise::{Supervisor, stop_flag, stopped, wait_ready};
use crate::{
    Wasm, build_servers, build_wasm, oidc_provider, postgres, render, venv, workspace_root,
};

/// Port of the local OpenID provider of `demo --upstream-idp` (its issuer is
/// `http://localhost:9100`, as `auth-server/demo-upstream-idp.toml` says).
pub const UPSTREAM_IDP_PORT: u16 = 9100;
/// The authorization server's configuration for `demo --upstream-idp`.
const UPSTREAM_IDP_CONFIG: &str = "auth-server/demo-upstream-idp.toml";
/// The client the demo's authorization server is at the local provider. Both sides get the
/// secret from here: the provider on its command line, the server in the environment variable
/// its configuration names.
const UPSTREAM_IDP_CLIENT_ID: &str = "mcp-auth-server-demo";
const UPSTREAM_IDP_CLIENT_SECRET: &str = "demo-upstream-idp-secret";
const UPSTREAM_IDP_SECRET_ENV: &str = "DEMO_UPSTREAM_IDP_CLIENT_SECRET";

/// `demo --ha`: this many authorization-server replicas share one PostgreSQL database.
pub const HA_REPLICAS: usize = 3;
/// The database the replicas of `demo --ha` share, in a throwaway cluster.
const HA_DATABASE: &str = "mcp_auth_demo";
/// Names of the replicas' processes, for the supervisor's messages.
const REPLICA_NAMES: [&str; HA_REPLICAS] = [
    "mcp-auth-server-1",
    "mcp-auth-server-2",
    "mcp-auth-server-3",
];

/// Where the replicas of `demo --ha` listen: each its own port after the issuer's (which Envoy's
/// front listener takes) and its own metrics port from the demo's on.
pub fn replica_ports(ports: &Ports) -> [(u16, u16); HA_REPLICAS] {
    let mut out = [(0, 0); HA_REPLICAS];
    for (offset, slot) in (1u16..).zip(out.iter_mut()) {
        *slot = (
            ports.auth_server + offset,
            ports.auth_server_metrics + offset - 1,
        );
    }
    out
}

/// The replicas' configuration: `demo_config` (a TOML document) with the database of `url`
/// instead of its SQLite file. Plain TCP: the cluster listens on loopback only.
pub fn replica_config(demo_config: &str, url: &str) -> Result<String, String> {
    let mut config: toml::Table = demo_config
        .parse()
        .map_err(|e| format!("the demo configuration is not TOML: {e}"))?;
    config.remove("storage_path");
    let mut postgres = toml::Table::new();
    postgres.insert("url".into(), url.into());
    postgres.insert("tls".into(), "disable".into());
    config.insert("postgres".into(), postgres.into());
    toml::to_string(&config).map_err(|e| format!("cannot write the replicas' configuration: {e}"))
}

/// The ports of one topology (the demo's are fixed by the README; the tests pick free ones).
pub struct Ports {
    pub listener: u16,
    pub admin: u16,
    pub auth_server: u16,
    /// The authorization server's metrics listener (`admin_listen` in `auth-server/demo.toml`).
    pub auth_server_metrics: u16,
    pub upstream: u16,
}

impl Ports {
    pub const DEMO: Ports = Ports {
        listener: 10000,
        admin: 9901,
        auth_server: 9000,
        auth_server_metrics: 9464,
        upstream: 8080,
    };
}

/// Values for `envoy/envoy.yaml.tmpl` on this machine.
pub fn envoy_values(
    ports: &Ports,
    wasm_path: &str,
    access_log_path: &str,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("listen_address", "127.0.0.1".to_owned()),
        ("listener_port", ports.listener.to_string()),
        ("admin_address", "127.0.0.1".to_owned()),
        ("admin_port", ports.admin.to_string()),
        (
            "public_base_url",
            format!("http://localhost:{}", ports.listener),
        ),
        ("issuer", format!("http://localhost:{}", ports.auth_server)),
        ("auth_server_host", "127.0.0.1".to_owned()),
        ("auth_server_port", ports.auth_server.to_string()),
        ("upstream_host", "127.0.0.1".to_owned()),
        ("upstream_port", ports.upstream.to_string()),
        ("wasm_path", wasm_path.to_owned()),
        ("cors_origin", "http://localhost:6274".to_owned()),
        ("access_log_path", access_log_path.to_owned()),
        ("auth_server_more_endpoints", String::new()),
        ("auth_server_front_listener", String::new()),
    ])
}

/// `values` changed for several authorization-server replicas on 127.0.0.1 (`replica_ports`,
/// at least one) behind Envoy's front listener on `front_port`, where the issuer's clients
/// connect: the auth_server cluster lists every replica. `front_template` is
/// `envoy/auth-server-front.yaml.tmpl`. tests/e2e/envoy_template.py does the same.
pub fn replica_values(
    mut values: BTreeMap<&'static str, String>,
    front_template: &str,
    front_port: u16,
    replica_ports: &[u16],
) -> Result<BTreeMap<&'static str, String>, String> {
    let (first, more) = replica_ports
        .split_first()
        .ok_or("no authorization-server replica to send requests to")?;
    let front = render::render(
        front_template,
        &BTreeMap::from([
            ("front_address", "127.0.0.1".to_owned()),
            ("front_port", front_port.to_string()),
        ]),
    )
    .map_err(|e| format!("envoy/auth-server-front.yaml.tmpl: {e}"))?;
    let more_endpoints: String = more
        .iter()
        .map(|port| {
            format!(
                "\n              - endpoint:\
                 \n                  address:\
                 \n                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}"
            )
        })
        .collect();
    values.insert("auth_server_host", "127.0.0.1".to_owned());
    values.insert("auth_server_port", first.to_string());
    values.insert("auth_server_more_endpoints", more_endpoints);
    values.insert(
        "auth_server_front_listener",
        format!("\n{}", front.trim_end_matches('\n')),
    );
    Ok(values)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn ensure_free(ports: &Ports, ha: bool) -> Result<(), String> {
    let mut wanted = vec![
        ("Envoy listener", ports.listener),
        ("Envoy admin", ports.admin),
        ("authorization server", ports.auth_server),
        ("authorization server metrics", ports.auth_server_metrics),
        ("demo MCP server", ports.upstream),
    ];
    if ha {
        for (listen, metrics) in replica_ports(ports) {
            wanted.push(("authorization-server replica", listen));
            wanted.push(("authorization-server replica's metrics", metrics));
        }
    }
    for (what, port) in wanted {
        TcpListener::bind(loopback(port)).map_err(|e| {
            format!(
                "port {port} for the {what} is not free on 127.0.0.1 ({e}); stop whatever uses it"
            )
        })?;
    }
    Ok(())
}

/// Builds the filter and the servers and sets up the virtualenv, side by side: they do not
/// depend on each other, and on a first run each leaves a core idle for long stretches (the
/// filter's single-threaded link-time optimization, the servers' longest dependency chain, pip's
/// downloads). Cargo locks the release wasm and the debug host build directories separately.
fn prepare(root: &Path) -> Result<(PathBuf, PathBuf, venv::Venv), String> {
    std::thread::scope(|scope| {
        let wasm = scope.spawn(|| build_wasm(Wasm::FilterOnly));
        let venv = scope.spawn(|| venv::ensure(root));
        let servers = build_servers();
        let joined = |name: &str| format!("{name} stopped unexpectedly");
        let wasm = wasm.join().map_err(|_| joined("the filter build"))?;
        let venv = venv.join().map_err(|_| joined("the virtualenv setup"))?;
        Ok((wasm?, servers?, venv?))
    })
}

pub fn demo(upstream_idp: bool, ha: bool) -> Result<(), String> {
    let root = workspace_root();
    let ports = Ports::DEMO;
    ensure_free(&ports, ha)?;
    if upstream_idp {
        TcpListener::bind(loopback(UPSTREAM_IDP_PORT)).map_err(|e| {
            format!("port {UPSTREAM_IDP_PORT} for the OpenID provider is not free on 127.0.0.1 ({e}); stop whatever uses it")
        })?;
    }
    let (wasm, binaries, venv) = prepare(&root)?;
    let provider_script = if upstream_idp {
        Some(oidc_provider::ensure(&root)?)
    } else {
        None
    };
    // Before the database starts: from here on Ctrl-C ends the demo through the code below, which
    // stops every process and then removes the throwaway cluster.
    let stop = stop_flag()?;
    let database = if ha {
        let bin = postgres::ensure_bin_dir()?;
        Some(postgres::ThrowawayPostgres::start(&bin, HA_DATABASE)?)
    } else {
        None
    };

    let state = root.join(".demo");
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let template = std::fs::read_to_string(root.join("envoy/envoy.yaml.tmpl"))
        .map_err(|e| format!("cannot read envoy/envoy.yaml.tmpl: {e}"))?;
    let envoy_yaml = state.join("envoy.yaml");
    let mut values = envoy_values(
        &ports,
        &wasm.display().to_string(),
        &logs.join("access.log").display().to_string(),
    );
    if ha {
        let front = std::fs::read_to_string(root.join("envoy/auth-server-front.yaml.tmpl"))
            .map_err(|e| format!("cannot read envoy/auth-server-front.yaml.tmpl: {e}"))?;
        let listens: Vec<u16> = replica_ports(&ports).iter().map(|(l, _)| *l).collect();
        values = replica_values(values, &front, ports.auth_server, &listens)?;
    }
    let rendered =
        render::render(&template, &values).map_err(|e| format!("envoy/envoy.yaml.tmpl: {e}"))?;
    std::fs::write(&envoy_yaml, rendered)
        .map_err(|e| format!("cannot write {}: {e}", envoy_yaml.display()))?;

    // Declared after `database`, so dropped (every process stopped) before the database goes.
    let mut services = Supervisor::default();
    let mut auth_server = Command::new(binaries.join("mcp-auth-server"));
    if let Some(script) = &provider_script {
        services.start(
            "oidc-provider",
            Command::new("node")
                .arg(script)
                .env("PORT", UPSTREAM_IDP_PORT.to_string())
                .env("CLIENT_ID", UPSTREAM_IDP_CLIENT_ID)
                .env("CLIENT_SECRET", UPSTREAM_IDP_CLIENT_SECRET)
                .env(
                    "REDIRECT_URIS",
                    format!(
                        "http://localhost:{}/upstream/demo-idp/callback",
                        ports.auth_server
                    ),
                ),
            &logs.join("oidc-provider.log"),
        )?;
        wait_ready(
            &mut services,
            &stop,
            "the OpenID provider",
            loopback(UPSTREAM_IDP_PORT),
            &format!("localhost:{UPSTREAM_IDP_PORT}"),
            "/.well-known/openid-configuration",
            Duration::from_secs(30),
        )?;
        auth_server
            .arg("--config")
            .arg(root.join(UPSTREAM_IDP_CONFIG))
            .env(UPSTREAM_IDP_SECRET_ENV, UPSTREAM_IDP_CLIENT_SECRET);
    } else {
        auth_server
            .arg("--config")
            .arg(root.join("auth-server/demo.toml"));
    }
    if database.is_none() {
        // Each demo its own SQLite file: the people of the two demos are different subjects.
        let file = if upstream_idp {
            "auth-server-upstream-idp.sqlite"
        } else {
            "auth-server.sqlite"
        };
        auth_server.env("MCP_AUTH_SERVER__STORAGE_PATH", state.join(file));
    }
    let mut replicas = Vec::new();
    if let Some(database) = &database {
        replicas = start_replicas(
            &mut services,
            &stop,
            &auth_server,
            &database.url(),
            &ports,
            &state,
        )?;
    } else {
        services.start(
            "mcp-auth-server",
            &mut auth_server,
            &logs.join("auth-server.log"),
        )?;
    }
    services.start(
        "demo-mcp-server",
        Command::new(binaries.join("demo-mcp-server"))
            .arg("--bind")
            .arg(loopback(ports.upstream).to_string()),
        &logs.join("demo-mcp-server.log"),
    )?;
    let ready = Duration::from_secs(30);
    let auth_server_ready = |services: &mut Supervisor| {
        wait_ready(
            services,
            &stop,
            "the authorization server",
            loopback(ports.auth_server),
            &format!("localhost:{}", ports.auth_server),
            "/.well-known/oauth-authorization-server",
            ready,
        )
    };
    // The replicas were each waited for; their address for clients is Envoy's, started below.
    if database.is_none() {
        auth_server_ready(&mut services)?;
    }
    wait_ready(
        &mut services,
        &stop,
        "the demo MCP server",
        loopback(ports.upstream),
        "localhost",
        "/debug/seen-authorization",
        ready,
    )?;
    services.start(
        "envoy",
        Command::new(venv.envoy()).arg("-c").arg(&envoy_yaml).args([
            "--disable-hot-restart",
            "--log-level",
            "info",
            // The access log is written out every second instead of every ten.
            "--file-flush-interval-msec",
            "1000",
        ]),
        &logs.join("envoy.log"),
    )?;
    wait_ready(
        &mut services,
        &stop,
        "Envoy",
        loopback(ports.admin),
        "localhost",
        "/ready",
        ready,
    )?;
    wait_ready(
        &mut services,
        &stop,
        "the filter's resource metadata",
        loopback(ports.listener),
        &format!("localhost:{}", ports.listener),
        "/.well-known/oauth-protected-resource/mcp",
        ready,
    )?;
    if database.is_some() {
        auth_server_ready(&mut services)?;
    }

    print_banner(&ports, &logs, upstream_idp);
    if let Some(database) = &database {
        print_replicas(&ports, &database.url(), &logs);
    }
    loop {
        if stopped(&stop) {
            eprintln!("\nxtask: stopping the demo");
            services.stop_all();
            return Ok(());
        }
        if let Some((name, status)) = services.exited() {
            // A replica that dies is what --ha is there to show: the others carry on, and it
            // is started again, as an orchestrator would.
            if let Some((_, command)) = REPLICA_NAMES
                .iter()
                .zip(replicas.iter_mut())
                .find(|(replica, _)| **replica == name)
            {
                eprintln!(
                    "xtask: {name} exited ({status}); the other replicas carry on, starting it again"
                );
                services.restart(name, command, &logs.join(format!("{name}.log")))?;
                continue;
            }
            services.stop_all();
            return Err(format!("{name} exited ({status}); see {}", logs.display()));
        }
        sleep(Duration::from_millis(200));
    }
}

/// Starts [`HA_REPLICAS`] copies of `auth_server` (its program, configuration and environment)
/// on the database of `url`, each on its own ports, and waits until each answers. They all start
/// at once: the schema migrations they apply at startup take a lock in the database.
fn start_replicas(
    services: &mut Supervisor,
    stop: &std::sync::atomic::AtomicBool,
    auth_server: &Command,
    url: &str,
    ports: &Ports,
    state: &Path,
) -> Result<Vec<Command>, String> {
    let mut args = auth_server.get_args();
    let config_path = match (args.next(), args.next()) {
        (Some(flag), Some(path)) if flag == "--config" => PathBuf::from(path),
        _ => {
            return Err(
                "the authorization server has no --config to derive the replicas' from".into(),
            );
        }
    };
    let demo_config = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config = state.join("auth-server-ha.toml");
    std::fs::write(&config, replica_config(&demo_config, url)?)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let logs = state.join("logs");
    let mut replicas = Vec::new();
    for (name, (listen, metrics)) in REPLICA_NAMES.iter().zip(replica_ports(ports)) {
        let mut replica = Command::new(auth_server.get_program());
        for (key, value) in auth_server.get_envs() {
            if let Some(value) = value {
                replica.env(key, value);
            }
        }
        replica
            .arg("--config")
            .arg(&config)
            .env("MCP_AUTH_SERVER__LISTEN", loopback(listen).to_string())
            .env(
                "MCP_AUTH_SERVER__ADMIN_LISTEN",
                loopback(metrics).to_string(),
            );
        services.start(name, &mut replica, &logs.join(format!("{name}.log")))?;
        replicas.push(replica);
    }
    for (name, (listen, _)) in REPLICA_NAMES.iter().zip(replica_ports(ports)) {
        wait_ready(
            services,
            stop,
            name,
            loopback(listen),
            &format!("localhost:{}", ports.auth_server),
            "/.well-known/oauth-authorization-server",
            Duration::from_secs(60),
        )?;
    }
    Ok(replicas)
}

fn print_replicas(ports: &Ports, url: &str, logs: &Path) {
    println!(
        "  High availability: Envoy answers http://localhost:{front} and passes each request to the\n  \
         next healthy one of {HA_REPLICAS} authorization-server replicas, which share one database:\n",
        front = ports.auth_server
    );
    for (name, (listen, metrics)) in REPLICA_NAMES.iter().zip(replica_ports(ports)) {
        println!(
            "  {name:<26} http://127.0.0.1:{listen}  (metrics: http://127.0.0.1:{metrics}/metrics)"
        );
    }
    println!(
        "  {:<26} {url}  (throwaway: removed when the demo stops)\n  \
         {:<26} {}/mcp-auth-server-N.log\n\n  \
         Try: kill -9 one replica (pgrep -f auth-server-ha.toml lists them) and go on signing in\n  \
         and calling tools: Envoy's health check stops sending it requests within 2 s, and xtask\n  \
         starts it again.\n",
        "PostgreSQL",
        "replica logs",
        logs.display()
    );
}

fn print_banner(ports: &Ports, logs: &Path, upstream_idp: bool) {
    let mcp = format!("http://localhost:{}/mcp", ports.listener);
    let sign_in = if upstream_idp {
        format!(
            "Sign in at the OpenID provider (http://localhost:{UPSTREAM_IDP_PORT}) as \"demo\", password \"demo\"\n  \
             (or \"outsider\" / \"outsider\": not in mcp-admins, so never granted mcp:admin)."
        )
    } else {
        "Sign in as user \"demo\", password \"demo\".".to_string()
    };
    println!(
        r#"
The demo is running (Ctrl-C stops everything).

  MCP endpoint (protected)   {mcp}
  resource metadata          http://localhost:{listener}/.well-known/oauth-protected-resource/mcp
  authorization server       http://localhost:{auth}  (metadata: /.well-known/oauth-authorization-server)
  Envoy admin                http://127.0.0.1:{admin}  (Prometheus: /stats/prometheus)
  auth server metrics        http://127.0.0.1:{metrics}/metrics
  logs                       {logs}  (access.log: who called which tool)

  {sign_in}
  Tools: whoami, add, echo, admin_report (needs the extra scope mcp:admin: the client is asked to
  sign in again and consent to it).

Connect a client:

  Claude Code     claude mcp add --transport http demo {mcp}
                  then /mcp in Claude Code to sign in

  VS Code         .vscode/mcp.json:
                  {{ "servers": {{ "demo": {{ "type": "http", "url": "{mcp}" }} }} }}

  MCP Inspector   npx @modelcontextprotocol/inspector
                  transport "Streamable HTTP", URL {mcp}, then "Open Auth Settings" / Connect

  curl            curl -i {mcp}      (401 with the WWW-Authenticate challenge)
"#,
        listener = ports.listener,
        auth = ports.auth_server,
        admin = ports.admin,
        metrics = ports.auth_server_metrics,
        logs = logs.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_listen_after_the_issuers_port_with_metrics_from_the_demos_on() {
        assert_eq!(
            replica_ports(&Ports::DEMO),
            [(9001, 9464), (9002, 9465), (9003, 9466)]
        );
    }

    #[test]
    fn the_replicas_use_the_database_instead_of_the_sqlite_file_and_keep_the_rest() {
        let config = replica_config(
            include_str!("../../auth-server/demo.toml"),
            "postgres://postgres@127.0.0.1:5432/mcp_auth_demo",
        );
        let config: toml::Table = config
            .and_then(|text| text.parse().map_err(|e| format!("{e}")))
            .unwrap_or_default();
        assert!(!config.contains_key("storage_path"));
        assert_eq!(
            config["postgres"]["url"].as_str(),
            Some("postgres://postgres@127.0.0.1:5432/mcp_auth_demo")
        );
        assert_eq!(config["postgres"]["tls"].as_str(), Some("disable"));
        // Same issuer, users and resources as the single-server demo: same URLs, same login.
        assert_eq!(config["issuer"].as_str(), Some("http://localhost:9000"));
        assert_eq!(config["users"][0]["username"].as_str(), Some("demo"));
        assert_eq!(
            config["resources"][0]["url"].as_str(),
            Some("http://localhost:10000/mcp")
        );
    }
}
