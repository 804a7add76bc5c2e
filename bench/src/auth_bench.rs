//! Part 3: the authorization server's token endpoint, on its durable SQLite store and on
//! PostgreSQL with one and with three server processes.
//!
//! Starts the real `mcp-auth-server` release binary (one process per replica, all sharing one
//! database) with one static public client, logs in and approves once through the HTML forms
//! (as `auth-server/README.md` documents), then per round: obtains `codes` authorization codes
//! (remembered consent answers `/authorize` with a code at once), redeems them all at the token
//! endpoint, and rotates the resulting refresh tokens for `refresh_seconds`. Closed loop with
//! `auth_concurrency` clients; with several replicas the client itself spreads the requests
//! round robin, so a request lands on a different process than the one before it (as behind a
//! load balancer) and no proxy's cost is measured.
//!
//! PostgreSQL comes from `MCP_AUTH_TEST_DATABASE_URL` (`cargo xtask bench` provides a throwaway
//! cluster, as `cargo xtask test` does); each configuration gets a fresh database on it. Without
//! the variable the PostgreSQL rows are skipped and the table says why.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_auth_test_support::postgres::DATABASE_URL_ENV;
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::report::median;
use crate::{Plan, Prereqs, http};

const CLIENT_ID: &str = "bench-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const RESOURCE: &str = "http://localhost:10000/mcp";
/// The demo user's password hash (password `demo`), from `auth-server/demo.toml`.
const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$0LQGysyfTNAzlfElyTi+Mw$qvctgKZegMuatVJN1MxPZ2YIGSkWphTF2OCxnO1ojss";

/// One operation measured in one round.
#[derive(Clone, Copy, Debug)]
pub struct OpSample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
}

/// Samples per operation, in round order.
pub type OpSamples = Vec<(&'static str, Vec<OpSample>)>;

/// Where the servers keep their state.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// A SQLite file in the `--auth-db-dir` (or a temp dir).
    Sqlite,
    /// A database on the PostgreSQL server of `MCP_AUTH_TEST_DATABASE_URL`, plain TCP on loopback.
    Postgres { url: String },
}

impl Storage {
    fn name(&self) -> &'static str {
        match self {
            Storage::Sqlite => "SQLite",
            Storage::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// How a configuration is named in the table: its storage and how many servers share it.
pub fn setup_label(storage: &str, replicas: usize) -> String {
    let servers = if replicas == 1 { "server" } else { "servers" };
    format!("{storage}, {replicas} {servers}")
}

/// What became of one configuration.
pub enum Outcome {
    Measured(OpSamples),
    /// Not run, and why (printed in the table).
    Skipped(String),
}

/// Every configuration, in the order run.
pub struct AuthResults {
    pub setups: Vec<(String, Outcome)>,
}

/// The PostgreSQL configurations: one server process, and three sharing the database.
pub const POSTGRES_REPLICAS: [usize; 2] = [1, 3];

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One replica's configuration: every replica has the same issuer (the first one's address, as
/// if they were behind one load balancer) and its own listener.
fn config(issuer_port: u16, port: u16, storage: &str) -> String {
    format!(
        r#"issuer = "http://127.0.0.1:{issuer_port}"
listen = "127.0.0.1:{port}"
authorization_code_lifetime_secs = 600
{storage}
[registration]
enabled = false

[[resources]]
url = "{RESOURCE}"
scopes = ["mcp:tools"]
default_scopes = ["mcp:tools"]

[[users]]
username = "demo"
password_hash = "{DEMO_HASH}"

[[clients]]
client_id = "{CLIENT_ID}"
client_name = "Benchmark client"
redirect_uris = ["{REDIRECT_URI}"]
"#
    )
}

/// The storage lines of the configuration.
fn storage_config(storage: &Storage, sqlite_file: &Path) -> String {
    match storage {
        Storage::Sqlite => format!("storage_path = {:?}\n", sqlite_file.display().to_string()),
        // Loopback only, so no TLS; the pool is the default size.
        Storage::Postgres { url } => format!("\n[postgres]\nurl = {url:?}\ntls = \"disable\"\n"),
    }
}

/// `<input type="hidden" name="…" value="…">` pairs of a page, HTML entities decoded.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<input type=\"hidden\"") {
        let tag_rest = &rest[start..];
        let end = tag_rest.find('>').unwrap_or(tag_rest.len());
        let tag = &tag_rest[..end];
        let attr = |name: &str| {
            let key = format!(" {name}=\"");
            let from = tag.find(&key)? + key.len();
            let len = tag[from..].find('"')?;
            Some(unescape(&tag[from..from + len]))
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
        rest = &tag_rest[end..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn location(resp: &reqwest::Response) -> Result<String, String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| format!("expected a redirect, got {}", resp.status()))
}

fn code_from(location: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(location).map_err(|e| format!("redirect {location:?}: {e}"))?;
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            format!(
                "no code in the redirect (error: {:?})",
                url.query_pairs().find(|(k, _)| k == "error")
            )
        })
}

struct Client {
    http: reqwest::Client,
    /// The issuer's base URL (the first replica's).
    issuer: String,
    /// Each replica's base URL.
    bases: Vec<String>,
    /// Requests sent so far, which picks the next replica (round robin).
    sent: AtomicUsize,
}

impl Client {
    /// The replica for the next request.
    fn next_base(&self) -> &str {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        self.bases
            .get(n % self.bases.len().max(1))
            .unwrap_or(&self.issuer)
    }

    fn authorize_query(&self, challenge: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT_ID.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", "mcp:tools".into()),
            ("state", "bench".into()),
            ("code_challenge", challenge.into()),
            ("code_challenge_method", "S256".into()),
            ("resource", RESOURCE.into()),
        ]
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        req.send()
            .await
            .map_err(|e| format!("request to the auth server: {e}"))
    }

    /// Logs in and approves once; later `/authorize` requests get a code directly.
    async fn login_and_consent(&self) -> Result<(), String> {
        let (_, challenge) = pkce();
        // Through the issuer's own address: the forms' origin check compares with it.
        let base = &self.issuer;
        let url = format!("{base}/authorize");
        let login = self
            .send(self.http.get(&url).query(&self.authorize_query(&challenge)))
            .await?;
        let page = login.text().await.map_err(|e| e.to_string())?;
        let mut form = hidden_inputs(&page);
        form.extend([
            ("username".into(), "demo".into()),
            ("password".into(), "demo".into()),
        ]);
        form.push(("action".into(), "login".into()));
        let after_login = self.send(self.http.post(&url).form(&form)).await?;
        let consent_url = format!("{base}{}", location(&after_login)?);
        let consent = self.send(self.http.get(&consent_url)).await?;
        let page = consent.text().await.map_err(|e| e.to_string())?;
        let mut form = hidden_inputs(&page);
        if form.is_empty() {
            return Err(format!(
                "no consent form after login: {}",
                &page[..page.len().min(300)]
            ));
        }
        form.push(("action".into(), "approve".into()));
        let approved = self.send(self.http.post(&url).form(&form)).await?;
        code_from(&location(&approved)?).map(|_| ())
    }

    /// `/authorize` with remembered consent: 303 with a code. Returns (code, verifier).
    async fn code(&self) -> Result<(String, String), String> {
        let (verifier, challenge) = pkce();
        let resp = self
            .send(
                self.http
                    .get(format!("{}/authorize", self.next_base()))
                    .query(&self.authorize_query(&challenge)),
            )
            .await?;
        Ok((code_from(&location(&resp)?)?, verifier))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<String, String> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/token", self.next_base()))
                    .form(form),
            )
            .await?;
        let status = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.map_err(|e| e.to_string())?)
            .map_err(|e| format!("token response is not JSON: {e}"))?;
        if status != 200 {
            return Err(format!("token endpoint answered {status}: {body}"));
        }
        body.get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no refresh_token in {body}"))
    }

    async fn redeem(&self, code: &str, verifier: &str) -> Result<String, String> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
            ("client_id", CLIENT_ID),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<String, String> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ])
        .await
    }
}

/// Runs `op` on `concurrency` workers over `items` (each worker takes the next item) until the
/// items run out or `deadline` passes. `requeue` turns a result into a follow-up item (refresh
/// rotation: the new refresh token goes back into the queue).
async fn closed_loop<T, U, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    deadline: Option<Instant>,
    op: F,
    requeue: fn(&U) -> Option<T>,
) -> Result<(OpSample, Vec<U>), String>
where
    T: 'static,
    U: 'static,
    F: Fn(T) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Result<U, String>> + 'static,
{
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(items)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, op) = (queue.clone(), op.clone());
        tasks.spawn_local(async move {
            let mut latencies = Vec::new();
            let mut done = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let Some(item) = queue.lock().map_err(|e| e.to_string())?.pop_front() else {
                    break;
                };
                let t = Instant::now();
                let result = op(item).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                if let Some(next) = requeue(&result) {
                    queue.lock().map_err(|e| e.to_string())?.push_back(next);
                }
                done.push(result);
            }
            Ok::<_, String>((latencies, done))
        });
    }
    let mut latencies = Vec::new();
    let mut outputs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (l, d) = joined.map_err(|e| e.to_string())??;
        latencies.extend(l);
        outputs.extend(d);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied();
    Ok((
        OpSample {
            rps: latencies.len() as f64 / elapsed,
            p50_ms: median(&latencies).unwrap_or(f64::NAN),
            p99_ms: p99.unwrap_or(f64::NAN),
            requests: latencies.len(),
        },
        outputs,
    ))
}

/// Runs part 3: SQLite with one server, then PostgreSQL with one and with three (or the reason
/// they are skipped).
pub fn run(p: &Prereqs, plan: &Plan) -> Result<AuthResults, String> {
    let mut setups = vec![(
        setup_label(Storage::Sqlite.name(), 1),
        Outcome::Measured(run_setup(p, plan, &Storage::Sqlite, 1)?),
    )];
    for replicas in POSTGRES_REPLICAS {
        // A fresh database per configuration, so each starts from an empty schema as SQLite
        // does; `None` when the run names no PostgreSQL server.
        let outcome = match mcp_auth_test_support::postgres::fresh_database() {
            Some(url) => {
                let storage = Storage::Postgres { url };
                Outcome::Measured(run_setup(p, plan, &storage, replicas)?)
            }
            None => Outcome::Skipped(format!(
                "skipped: {DATABASE_URL_ENV} is not set (`cargo xtask bench` sets it when it \
                 provides a PostgreSQL; or name a server: postgres://user@127.0.0.1:port/db)"
            )),
        };
        setups.push((setup_label("PostgreSQL", replicas), outcome));
    }
    Ok(AuthResults { setups })
}

/// Starts `replicas` servers on `storage` (all pinned like Envoy in part 1) and waits until each
/// answers.
fn start_servers(
    p: &Prereqs,
    dir: &Path,
    storage: &Storage,
    sqlite_file: &Path,
    replicas: usize,
) -> Result<(Vec<Server>, Vec<u16>), String> {
    let mut ports = Vec::new();
    for _ in 0..replicas {
        ports.push(
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("finding a free port: {e}"))?
                .port(),
        );
    }
    let storage_lines = storage_config(storage, sqlite_file);
    let issuer_port = *ports.first().ok_or("no replicas")?;
    let mut servers = Vec::new();
    // Started together: on PostgreSQL they race for the migration lock, as replicas do.
    for (i, port) in ports.iter().enumerate() {
        let config_path = dir.join(format!("auth-server-{i}.toml"));
        std::fs::write(&config_path, config(issuer_port, *port, &storage_lines))
            .map_err(|e| e.to_string())?;
        let mut cmd = match p.envoy_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(&p.auth_server);
                c
            }
            None => Command::new(&p.auth_server),
        };
        let log = std::fs::File::create(dir.join(format!("auth-server-{i}.log")))
            .map_err(|e| e.to_string())?;
        let child = cmd
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", p.auth_server.display()))?;
        servers.push(Server { child });
    }
    for (i, port) in ports.iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], *port));
        let start = Instant::now();
        while !matches!(
            http::get(addr, "/.well-known/oauth-authorization-server", &[]),
            Ok((200, _))
        ) {
            if start.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(dir.join(format!("auth-server-{i}.log")))
                    .unwrap_or_default();
                return Err(format!("auth server {i} did not start; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok((servers, ports))
}

/// Measures one configuration: `replicas` servers on `storage`, the load spread round robin.
fn run_setup(
    p: &Prereqs,
    plan: &Plan,
    storage: &Storage,
    replicas: usize,
) -> Result<OpSamples, String> {
    let label = setup_label(storage.name(), replicas);
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
    let db_dir = tempfile::tempdir_in(plan.auth_db_dir.as_deref().unwrap_or(dir.path()))
        .map_err(|e| format!("creating the database directory: {e}"))?;
    let (_servers, ports) = start_servers(
        p,
        dir.path(),
        storage,
        &db_dir.path().join("as.sqlite"),
        replicas,
    )?;
    let issuer_port = *ports.first().ok_or("no replicas")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .map_err(|e| e.to_string())?;
        let client = Arc::new(Client {
            http,
            issuer: format!("http://127.0.0.1:{issuer_port}"),
            bases: ports
                .iter()
                .map(|port| format!("http://127.0.0.1:{port}"))
                .collect(),
            sent: AtomicUsize::new(0),
        });
        client.login_and_consent().await?;
        let mut authorize = Vec::new();
        let mut redeem = Vec::new();
        let mut refresh = Vec::new();
        for round in 1..=plan.rounds {
            eprintln!("bench: auth server ({label}) round {round}/{}", plan.rounds);
            let c = client.clone();
            let (sample, codes) = closed_loop(
                vec![(); plan.codes],
                plan.auth_concurrency,
                None,
                move |()| {
                    let c = c.clone();
                    async move { c.code().await }
                },
                |_| None,
            )
            .await?;
            authorize.push(sample);
            let c = client.clone();
            let (sample, refresh_tokens) = closed_loop(
                codes,
                plan.auth_concurrency,
                None,
                move |(code, verifier): (String, String)| {
                    let c = c.clone();
                    async move { c.redeem(&code, &verifier).await }
                },
                |_| None,
            )
            .await?;
            redeem.push(sample);
            let c = client.clone();
            let deadline = Instant::now() + Duration::from_secs(u64::from(plan.refresh_seconds));
            let (sample, _) = closed_loop(
                refresh_tokens,
                plan.auth_concurrency,
                Some(deadline),
                move |rt: String| {
                    let c = c.clone();
                    async move { c.refresh(&rt).await }
                },
                |rt: &String| Some(rt.clone()),
            )
            .await?;
            refresh.push(sample);
        }
        let [authorize_name, redeem_name, refresh_name] = OPERATIONS;
        Ok::<_, String>(vec![
            (authorize_name, authorize),
            (redeem_name, redeem),
            (refresh_name, refresh),
        ])
    })
}

/// The operations measured, in the order run.
const OPERATIONS: [&str; 3] = [
    "authorize with remembered consent (issues a code)",
    "token: authorization_code redemption",
    "token: refresh_token rotation",
];

/// The Markdown table of medians over rounds, one block of rows per configuration.
pub fn table(r: &AuthResults) -> String {
    let mut s = String::from(
        "| storage | operation | req/s | p50 ms | p99 ms | requests per round |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (label, outcome) in &r.setups {
        match outcome {
            Outcome::Measured(ops) => {
                for (name, samples) in ops {
                    let med = |f: fn(&OpSample) -> f64| {
                        median(&samples.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
                    };
                    s.push_str(&format!(
                        "| {label} | {name} | {:.0} | {:.2} | {:.2} | {:.0} |\n",
                        med(|x| x.rps),
                        med(|x| x.p50_ms),
                        med(|x| x.p99_ms),
                        med(|x| x.requests as f64),
                    ));
                }
            }
            Outcome::Skipped(why) => s.push_str(&format!("| {label} | {why} | – | – | – | – |\n")),
        }
    }
    s
}

pub fn to_json(r: &AuthResults) -> Value {
    json!(
        r.setups
            .iter()
            .map(|(label, outcome)| match outcome {
                Outcome::Measured(ops) => json!({
                    "setup": label,
                    "operations": ops.iter().map(|(name, samples)| json!({
                        "operation": name,
                        "samples": samples.iter().map(|s| json!({
                            "rps": s.rps, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "requests": s.requests,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }),
                Outcome::Skipped(why) => json!({ "setup": label, "skipped": why }),
            })
            .collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_inputs_are_read_with_entities_decoded() {
        let html = r#"<form><input type="hidden" name="redirect_uri" value="http://a/cb?x=1&amp;y=&quot;2&quot;">
            <input type="text" name="username"><input type="hidden" name="csrf_token" value="abc"></form>"#;
        assert_eq!(
            hidden_inputs(html),
            vec![
                (
                    "redirect_uri".to_string(),
                    "http://a/cb?x=1&y=\"2\"".to_string()
                ),
                ("csrf_token".to_string(), "abc".to_string()),
            ]
        );
    }

    #[test]
    fn the_code_is_taken_from_the_redirect_and_an_error_redirect_is_reported() {
        assert_eq!(
            code_from("http://127.0.0.1:9/callback?code=xyz&state=bench&iss=a").unwrap(),
            "xyz"
        );
        assert!(
            code_from("http://127.0.0.1:9/callback?error=access_denied")
                .unwrap_err()
                .contains("access_denied")
        );
    }

    #[test]
    fn replicas_get_the_requests_in_turn() {
        let client = Client {
            http: reqwest::Client::new(),
            issuer: "http://a".into(),
            bases: vec!["http://a".into(), "http://b".into(), "http://c".into()],
            sent: AtomicUsize::new(0),
        };
        let order: Vec<String> = (0..7).map(|_| client.next_base().to_string()).collect();
        assert_eq!(
            order,
            [
                "http://a", "http://b", "http://c", "http://a", "http://b", "http://c", "http://a"
            ]
        );
    }

    #[test]
    fn each_storage_is_configured_as_the_server_documents() {
        let sqlite = storage_config(&Storage::Sqlite, Path::new("/tmp/x/as.sqlite"));
        assert_eq!(sqlite, "storage_path = \"/tmp/x/as.sqlite\"\n");
        let postgres = storage_config(
            &Storage::Postgres {
                url: "postgres://bench@127.0.0.1:5433/bench_1".into(),
            },
            Path::new("/unused"),
        );
        assert!(!postgres.contains("storage_path"), "{postgres}");
        assert!(
            postgres.contains(
                "[postgres]\nurl = \"postgres://bench@127.0.0.1:5433/bench_1\"\ntls = \"disable\"\n"
            ),
            "{postgres}"
        );
    }

    #[test]
    fn a_skipped_configuration_is_a_row_that_says_why() {
        let sample = OpSample {
            rps: 100.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            requests: 10,
        };
        let results = AuthResults {
            setups: vec![
                (
                    setup_label("SQLite", 1),
                    Outcome::Measured(OPERATIONS.iter().map(|op| (*op, vec![sample])).collect()),
                ),
                (
                    setup_label("PostgreSQL", 3),
                    Outcome::Skipped("skipped: no server".into()),
                ),
            ],
        };
        let table = table(&results);
        assert!(
            table.contains(
                "| SQLite, 1 server | token: refresh_token rotation | 100 | 1.00 | 2.00 | 10 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| PostgreSQL, 3 servers | skipped: no server | – | – | – | – |"),
            "{table}"
        );
        let json = to_json(&results);
        assert_eq!(json[1]["skipped"], "skipped: no server");
        assert_eq!(json[0]["operations"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn pkce_challenge_is_the_s256_of_the_verifier() {
        let (v, c) = pkce();
        assert_eq!(v.len(), 43);
        assert_eq!(c, URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
    }
}
