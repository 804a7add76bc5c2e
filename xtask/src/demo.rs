//! `cargo xtask demo`: build everything, start the authorization server, the demo MCP server and
//! Envoy with the filter on 127.0.0.1, and keep them running until Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use crate::supervise::{Supervisor, stop_flag, stopped, wait_ready};
use crate::{Wasm, build_servers, build_wasm, oidc_provider, render, venv, workspace_root};

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

fn ensure_free(ports: &Ports) -> Result<(), String> {
    for (what, port) in [
        ("Envoy listener", ports.listener),
        ("Envoy admin", ports.admin),
        ("authorization server", ports.auth_server),
        ("authorization server metrics", ports.auth_server_metrics),
        ("demo MCP server", ports.upstream),
    ] {
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

pub fn demo(upstream_idp: bool) -> Result<(), String> {
    let root = workspace_root();
    let ports = Ports::DEMO;
    ensure_free(&ports)?;
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

    let state = root.join(".demo");
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let template = std::fs::read_to_string(root.join("envoy/envoy.yaml.tmpl"))
        .map_err(|e| format!("cannot read envoy/envoy.yaml.tmpl: {e}"))?;
    let envoy_yaml = state.join("envoy.yaml");
    let rendered = render::render(
        &template,
        &envoy_values(
            &ports,
            &wasm.display().to_string(),
            &logs.join("access.log").display().to_string(),
        ),
    )
    .map_err(|e| format!("envoy/envoy.yaml.tmpl: {e}"))?;
    std::fs::write(&envoy_yaml, rendered)
        .map_err(|e| format!("cannot write {}: {e}", envoy_yaml.display()))?;

    let stop = stop_flag()?;
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
            .env(UPSTREAM_IDP_SECRET_ENV, UPSTREAM_IDP_CLIENT_SECRET)
            // Its own database: the people of the two demos are different subjects.
            .env(
                "MCP_AUTH_SERVER__STORAGE_PATH",
                state.join("auth-server-upstream-idp.sqlite"),
            );
    } else {
        auth_server
            .arg("--config")
            .arg(root.join("auth-server/demo.toml"))
            .env(
                "MCP_AUTH_SERVER__STORAGE_PATH",
                state.join("auth-server.sqlite"),
            );
    }
    services.start(
        "mcp-auth-server",
        &mut auth_server,
        &logs.join("auth-server.log"),
    )?;
    services.start(
        "demo-mcp-server",
        Command::new(binaries.join("demo-mcp-server"))
            .arg("--bind")
            .arg(loopback(ports.upstream).to_string()),
        &logs.join("demo-mcp-server.log"),
    )?;
    let ready = Duration::from_secs(30);
    wait_ready(
        &mut services,
        &stop,
        "the authorization server",
        loopback(ports.auth_server),
        &format!("localhost:{}", ports.auth_server),
        "/.well-known/oauth-authorization-server",
        ready,
    )?;
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

    print_banner(&ports, &logs, upstream_idp);
    loop {
        if stopped(&stop) {
            eprintln!("\nxtask: stopping the demo");
            services.stop_all();
            return Ok(());
        }
        if let Some((name, status)) = services.exited() {
            services.stop_all();
            return Err(format!("{name} exited ({status}); see {}", logs.display()));
        }
        sleep(Duration::from_millis(200));
    }
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
