//! Test harness: runs the real server on a loopback port with a temporary SQLite file and
//! drives it over HTTP like a browser and an OAuth client would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;
use mcp_auth_server::keys::AccessClaims;
use mcp_auth_server::server::Listeners;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use sha2::Digest;
use tokio::sync::oneshot;

pub const RESOURCE: &str = "http://localhost:10000/mcp";
pub const PUBLIC_CLIENT: &str = "static-public";
pub const PUBLIC_REDIRECT: &str = "http://127.0.0.1:7777/callback";
/// argon2id of "demo"
pub const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$0LQGysyfTNAzlfElyTi+Mw$qvctgKZegMuatVJN1MxPZ2YIGSkWphTF2OCxnO1ojss";

/// The base configuration's storage: an SQLite file in the server's temporary directory.
const SQLITE_STORAGE: &str = "storage_path = \"state/as.sqlite\"";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The admin (metrics) listener, when the server has one.
    pub admin_addr: Option<SocketAddr>,
    pub issuer: String,
    pub config_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server whose config is the base config plus `extra` TOML (top-level fields
    /// must come before the tables, so `extra_top` is inserted first).
    pub async fn start_with(extra_top: &str, extra_tables: &str) -> TestServer {
        Self::launch(SQLITE_STORAGE, extra_top, extra_tables, false).await
    }

    /// Starts the base server storing everything in the PostgreSQL database `database_url`.
    pub async fn start_on_postgres(database_url: &str, extra_top: &str) -> TestServer {
        let postgres = format!("[postgres]\nurl = \"{database_url}\"\ntls = \"disable\"\n");
        Self::launch("", extra_top, &postgres, false).await
    }

    /// Starts the base server with an admin (metrics) listener on another loopback port.
    pub async fn start_with_admin() -> TestServer {
        Self::launch(SQLITE_STORAGE, "", "", true).await
    }

    async fn launch(
        storage: &str,
        extra_top: &str,
        extra_tables: &str,
        with_admin: bool,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://127.0.0.1:{}", addr.port());
        let config_path = dir.path().join("config.toml");
        let text = format!(
            r#"issuer = "{issuer}"
listen = "{addr}"
{storage}
{extra_top}

[[resources]]
url = "{RESOURCE}"
scopes = ["mcp:tools", "mcp:admin"]
default_scopes = ["mcp:tools"]

[[users]]
username = "demo"
password_hash = "{DEMO_HASH}"

[[clients]]
client_id = "{PUBLIC_CLIENT}"
client_name = "Static Test Client"
redirect_uris = ["{PUBLIC_REDIRECT}", "https://app.example.com/callback"]

{extra_tables}
"#
        );
        std::fs::write(&config_path, text).unwrap();
        let admin = if with_admin {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let mut server = TestServer {
            dir,
            addr,
            admin_addr: admin.as_ref().map(|l| l.local_addr().unwrap()),
            issuer,
            config_path,
            shutdown: None,
            task: None,
        };
        server.run(Listeners {
            public: listener,
            admin,
        });
        server
    }

    pub async fn start() -> TestServer {
        Self::start_with("", "").await
    }

    fn run(&mut self, listeners: Listeners) {
        let config = mcp_auth_server::config::load(&self.config_path, Vec::new()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            mcp_auth_server::server::serve(config, listeners, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
    }

    /// Stops the server (closing the database) and starts a new one on the same port and file.
    pub async fn restart(&mut self) {
        self.stop().await;
        let public = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let admin = match self.admin_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.unwrap()),
            None => None,
        };
        self.run(Listeners { public, admin });
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Serves a variant of this server's configuration (`edit` rewrites the TOML text) on a
    /// fresh loopback port with its own database; returns the base URL to send requests to.
    pub async fn variant(&self, edit: impl Fn(String) -> String) -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("variant.toml");
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
        let config = mcp_auth_server::config::load(&path, Vec::new()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(mcp_auth_server::server::serve(
            config,
            listener,
            std::future::pending(),
        ));
        (base, dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("state/as.sqlite")
    }
}

/// A browser: keeps cookies, never follows redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = mcp_auth_server::secrets::random_token().unwrap();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

/// Builds an /authorize URL from parameters.
pub fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    server.url(&format!("/authorize?{q}"))
}

/// Standard parameters for the static public client.
pub fn standard_params<'a>(pkce: &'a Pkce, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", PUBLIC_REDIRECT),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("resource", RESOURCE),
    ]
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The named inputs of the page's form (hidden fields included), as a browser would submit.
pub fn form_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        rest = &rest[i..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..end];
        if let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value")) {
            out.push((name, value));
        }
        rest = &rest[end..];
    }
    out
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(LOCATION)
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).unwrap();
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// POSTs a form taken from a page, with `overrides` appended/replacing fields.
pub async fn submit(
    browser: &reqwest::Client,
    server: &TestServer,
    fields: &[(String, String)],
    overrides: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    for (k, v) in overrides {
        fields.push((k.to_string(), v.to_string()));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    browser
        .post(server.url("/authorize"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The sign-in form values of the demo user with the right password.
pub const DEMO_SIGN_IN: [(&str, &str); 3] = [
    ("username", "demo"),
    ("password", "demo"),
    ("action", "login"),
];

/// GETs `url` in the browser and returns the page's HTML (whatever the status).
pub async fn page(browser: &reqwest::Client, url: &str) -> String {
    browser.get(url).send().await.unwrap().text().await.unwrap()
}

/// Submits the login form `login_fields` (taken from a login page) as the demo user.
pub async fn sign_in(
    browser: &reqwest::Client,
    server: &TestServer,
    login_fields: &[(String, String)],
) -> reqwest::Response {
    submit(browser, server, login_fields, &DEMO_SIGN_IN).await
}

/// Follows the server-relative redirect `resp` carries (e.g. the 303 after sign-in).
pub async fn follow(
    browser: &reqwest::Client,
    server: &TestServer,
    resp: &reqwest::Response,
) -> reqwest::Response {
    browser
        .get(server.url(&location(resp)))
        .send()
        .await
        .unwrap()
}

/// Opens `url` (an /authorize URL), signs in as the demo user and returns the consent page's HTML.
pub async fn consent_page_after_sign_in(
    browser: &reqwest::Client,
    server: &TestServer,
    url: &str,
) -> String {
    let login = page(browser, url).await;
    let resp = sign_in(browser, server, &form_fields(&login)).await;
    follow(browser, server, &resp).await.text().await.unwrap()
}

/// Runs the browser part (login if needed, consent if needed) and returns the final redirect.
/// Opens the sign-in page of `url`, submits `wrong_password` for the demo user (which must be
/// refused), then signs in and consents; returns the redirect to the client.
pub async fn authorize_after_a_wrong_password(
    browser: &reqwest::Client,
    server: &TestServer,
    url: &str,
    wrong_password: &str,
) -> String {
    let login = page(browser, url).await;
    let resp = submit(
        browser,
        server,
        &form_fields(&login),
        &[
            ("username", "demo"),
            ("password", wrong_password),
            ("action", "login"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    authorize(browser, server, url).await
}

pub async fn authorize(browser: &reqwest::Client, server: &TestServer, url: &str) -> String {
    let mut resp = browser.get(url).send().await.unwrap();
    for _ in 0..6 {
        if resp.status() == StatusCode::SEE_OTHER {
            let loc = location(&resp);
            if loc.starts_with('/') {
                resp = browser.get(server.url(&loc)).send().await.unwrap();
                continue;
            }
            return loc;
        }
        assert_eq!(resp.status(), StatusCode::OK, "authorize page");
        let html = resp.text().await.unwrap();
        let fields = form_fields(&html);
        resp = if html.contains("name=\"password\"") {
            sign_in(browser, server, &fields).await
        } else {
            submit(browser, server, &fields, &[("action", "approve")]).await
        };
    }
    panic!("authorization did not finish");
}

pub async fn get_code(browser: &reqwest::Client, server: &TestServer, pkce: &Pkce) -> String {
    let url = authorize_url(server, &standard_params(pkce, "st"));
    let redirect = authorize(browser, server, &url).await;
    assert!(redirect.starts_with(PUBLIC_REDIRECT), "{redirect}");
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&redirect, "iss").as_deref(),
        Some(server.issuer.as_str())
    );
    query_param(&redirect, "code").expect("code")
}

pub async fn post_form(url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    reqwest::Client::new()
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub async fn redeem(server: &TestServer, code: &str, verifier: &str) -> reqwest::Response {
    post_form(
        &server.url("/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", PUBLIC_REDIRECT),
            ("code_verifier", verifier),
            ("client_id", PUBLIC_CLIENT),
            ("resource", RESOURCE),
        ],
    )
    .await
}

/// Exchanges `code` at the token endpoint `token_url` for `client_id` with the exact
/// `redirect_uri` the authorization request used and no `resource` parameter; `extra` adds
/// fields (a secret, a resource).
pub async fn redeem_code(
    token_url: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ];
    fields.extend_from_slice(extra);
    json(post_form(token_url, &fields).await).await
}

/// A refresh request from `client_id` that presents no client secret (and a made-up token).
pub async fn refresh_without_secret(
    server: &TestServer,
    client_id: &str,
) -> (StatusCode, serde_json::Value) {
    json(
        post_form(
            &server.url("/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", client_id),
            ],
        )
        .await,
    )
    .await
}

/// Registers a client with `metadata` (RFC 7591) and returns the registration response.
pub async fn register_client(
    server: &TestServer,
    metadata: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(server.url("/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The server's published JWKS.
pub async fn jwks(server: &TestServer) -> serde_json::Value {
    reqwest::get(server.url("/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn refresh(
    server: &TestServer,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", PUBLIC_CLIENT),
    ];
    fields.extend_from_slice(extra);
    post_form(&server.url("/token"), &fields).await
}

pub async fn json(resp: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Asserts an OAuth error reply: the HTTP `status` and the `error` code of the JSON body.
#[track_caller]
pub fn assert_oauth_error(
    status: StatusCode,
    body: &serde_json::Value,
    expected_status: StatusCode,
    error: &str,
) {
    assert_eq!(
        (status, body["error"].as_str()),
        (expected_status, Some(error)),
        "{body}"
    );
}

/// Full login + consent + code redemption; returns the token response.
pub async fn tokens(server: &TestServer) -> serde_json::Value {
    let b = browser();
    let p = pkce();
    let code = get_code(&b, server, &p).await;
    let (status, body) = json(redeem(server, &code, &p.verifier).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Verifies an access token the way a resource server would: key from the JWKS by `kid`.
pub async fn verify_with_jwks(
    server: &TestServer,
    token: &str,
) -> Result<JWTClaims<AccessClaims>, String> {
    let jwks = jwks(server).await;
    let meta = Token::decode_metadata(token).map_err(|e| e.to_string())?;
    let kid = meta.key_id().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?
        .to_string();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[&server.issuer])),
        allowed_audiences: Some(HashSet::from_strings(&[RESOURCE])),
        required_signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let result = match meta.algorithm() {
        "EdDSA" => Ed25519PublicKey::from_jwk(&jwk)
            .and_then(|k| k.verify_token::<AccessClaims>(token, Some(options))),
        "ES256" => ES256PublicKey::from_jwk(&jwk)
            .and_then(|k| k.verify_token::<AccessClaims>(token, Some(options))),
        "RS256" => RS256PublicKey::from_jwk(&jwk)
            .and_then(|k| k.verify_token::<AccessClaims>(token, Some(options))),
        other => return Err(format!("unexpected alg {other}")),
    };
    result.map_err(|e| e.to_string())
}

/// The JWT payload as JSON (to check claim shapes such as `aud` being a string).
pub fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn header(token: &str) -> serde_json::Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
