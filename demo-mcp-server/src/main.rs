//! `demo-mcp-server`: the MCP server behind Envoy in the demo. See README.md.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use demo_mcp_server::{RequestLedger, app};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Demo MCP server (streamable HTTP at /mcp) for the mcp-auth-proxy demo"
)]
struct Args {
    /// Address to listen on. Keep it on loopback: the server trusts the identity headers set by
    /// Envoy, so nothing but Envoy may reach it.
    #[arg(long, env = "DEMO_MCP_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Accepted `Host` header values (DNS rebinding protection), comma separated. A name
    /// without a port accepts any port.
    #[arg(
        long,
        env = "DEMO_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    allowed_hosts: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.bind).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("demo-mcp-server: cannot listen on {}: {error}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    let router = app(Arc::new(RequestLedger::default()), args.allowed_hosts);
    eprintln!(
        "demo-mcp-server: MCP streamable HTTP on http://{}/mcp",
        args.bind
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let shutdown = async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return shutdown.await,
            };
        tokio::select! {
            () = shutdown => {}
            _ = terminate.recv() => {}
        }
    };
    match axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo-mcp-server: server error: {error}");
            ExitCode::FAILURE
        }
    }
}
