//! Client ID Metadata Documents served by a local plain-HTTP fixture, reachable only through
//! the `allow_insecure_localhost_client_metadata` development switch. The https path's
//! address filter is unit-tested in `src/ssrf.rs`; literal private addresses are checked here.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use common::*;
use reqwest::StatusCode;

/// Document name -> (body, Cache-Control).
type Docs = HashMap<String, (String, Option<&'static str>)>;

#[derive(Clone, Default)]
struct Fixture {
    docs: Arc<Mutex<Docs>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fixture {
    fn serve(&self, name: &str, body: String, cache_control: Option<&'static str>) {
        self.docs
            .lock()
            .unwrap()
            .insert(name.to_string(), (body, cache_control));
    }
    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn serve_doc(State(f): State<Fixture>, Path(name): Path<String>) -> Response {
    *f.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    if name == "redirect" {
        let mut r = AxumStatus::FOUND.into_response();
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/docs/good"));
        return r;
    }
    match f.docs.lock().unwrap().get(&name).cloned() {
        Some((body, cc)) => {
            let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(cc) = cc {
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
            }
            r
        }
        None => AxumStatus::NOT_FOUND.into_response(),
    }
}

async fn start_fixture() -> (Fixture, String) {
    let fixture = Fixture::default();
    let app = axum::Router::new()
        .route("/docs/{name}", axum::routing::get(serve_doc))
        .with_state(fixture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fixture, base)
}

fn doc(client_id: &str, extra: serde_json::Value) -> String {
    let mut d = serde_json::json!({
        "client_id": client_id,
        "client_name": "Fixture <b>App</b>",
        "redirect_uris": [PUBLIC_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    });
    if let (Some(obj), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    d.to_string()
}

fn params_for<'a>(client_id: &'a str, p: &'a Pkce) -> Vec<(&'a str, &'a str)> {
    let mut params = standard_params(p, "st");
    params.retain(|(k, _)| *k != "client_id");
    params.push(("client_id", client_id));
    params
}

/// What the page says about every document that could not be resolved, fetched or validated.
const UNUSABLE_DOCUMENT: &str = "its metadata document could not be fetched or was not accepted";

/// The audit log of every server in this test binary, as JSON lines.
#[derive(Clone, Default)]
struct AuditLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for AuditLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing audit events (once for the whole binary; tests tell theirs apart by
/// `client_id`, which holds each test's own fixture port).
fn audit_log() -> &'static AuditLog {
    static LOG: OnceLock<AuditLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = AuditLog::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "mcp_auth_server::audit=info",
            ))
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

/// The logged reasons why the metadata document of `client_id` was refused.
fn logged_fetch_failures(client_id: &str) -> Vec<String> {
    let bytes = audit_log().0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["event"] == "client_metadata.fetch_failed" && e["client_id"] == client_id)
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The page refusing `client_id` says only that its document was unusable; the reason, which
/// contains `detail`, is in the log.
#[track_caller]
fn assert_refused_with_the_reason_logged(client_id: &str, html: &str, detail: &str) {
    assert!(html.contains(UNUSABLE_DOCUMENT), "{client_id}: {html}");
    assert!(!html.contains(detail), "{client_id}: {html}");
    let reasons = logged_fetch_failures(client_id);
    assert!(
        reasons.iter().any(|r| r.contains(detail)),
        "{client_id}: {reasons:?}"
    );
}

async fn dev_server() -> TestServer {
    TestServer::start_with("allow_insecure_localhost_client_metadata = true", "").await
}

#[tokio::test]
async fn metadata_document_client_completes_the_flow_and_is_marked_unverified() {
    let server = dev_server().await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{base}/docs/good");
    fixture.serve(
        "good",
        doc(&client_id, serde_json::json!({})),
        Some("max-age=300"),
    );
    let b = browser();
    let p = pkce();
    let page = b
        .get(authorize_url(&server, &params_for(&client_id, &p)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("class=\"unverified\""), "{html}");
    assert!(html.contains("Fixture &lt;b&gt;App&lt;/b&gt;"));
    let loc = authorize(
        &b,
        &server,
        &authorize_url(&server, &params_for(&client_id, &p)),
    )
    .await;
    let code = query_param(&loc, "code").unwrap();
    let (status, body) = redeem_code(
        &server.url("/token"),
        &client_id,
        PUBLIC_REDIRECT,
        &code,
        &p.verifier,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["client_id"],
        client_id.as_str()
    );
    assert!(body["refresh_token"].as_str().is_some());
    // Cache-Control max-age was honoured: the document was fetched once for three requests.
    assert_eq!(fixture.hits("good"), 1);
}

#[tokio::test]
async fn bad_documents_are_rejected_on_an_error_page_with_the_reason_in_the_log() {
    audit_log();
    let server = dev_server().await;
    let (fixture, base) = start_fixture().await;
    let id = |name: &str| format!("{base}/docs/{name}");
    fixture.serve(
        "mismatch",
        doc(&format!("{base}/docs/other"), serde_json::json!({})),
        None,
    );
    fixture.serve(
        "unlisted",
        doc(
            &id("unlisted"),
            serde_json::json!({"redirect_uris": ["http://127.0.0.1:7777/elsewhere"]}),
        ),
        None,
    );
    fixture.serve(
        "large",
        doc(
            &id("large"),
            serde_json::json!({"padding": "x".repeat(6 * 1024)}),
        ),
        None,
    );
    fixture.serve(
        "secret",
        doc(
            &id("secret"),
            serde_json::json!({"client_secret": "s3cret"}),
        ),
        None,
    );
    fixture.serve(
        "basic",
        doc(
            &id("basic"),
            serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}),
        ),
        None,
    );
    fixture.serve(
        "keyless",
        doc(
            &id("keyless"),
            serde_json::json!({"token_endpoint_auth_method": "private_key_jwt"}),
        ),
        None,
    );
    fixture.serve("notjson", "<html>".to_string(), None);
    let p = pkce();
    for (name, expected) in [
        ("mismatch", "does not equal its URL"),
        ("large", "larger than 5120 bytes"),
        ("secret", "must not contain a client secret"),
        ("basic", "shared-secret"),
        (
            "keyless",
            "declares private_key_jwt but has neither jwks_uri nor jwks",
        ),
        ("notjson", "not valid JSON"),
        ("missing", "HTTP 404"),
        ("redirect", "HTTP 302"),
    ] {
        let client_id = id(name);
        let resp = browser()
            .get(authorize_url(&server, &params_for(&client_id, &p)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(resp.headers().get("location").is_none(), "{name}");
        let html = resp.text().await.unwrap();
        assert_refused_with_the_reason_logged(&client_id, &html, expected);
    }
    assert_eq!(fixture.hits("good"), 0, "redirects are not followed");
    // A valid document that does not list the redirect_uri: the request, not the document, is
    // at fault, and the page says so.
    let html = browser()
        .get(authorize_url(&server, &params_for(&id("unlisted"), &p)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("not registered"), "{html}");
}

#[tokio::test]
async fn failures_are_remembered_only_briefly() {
    let server = TestServer::start_with(
        "allow_insecure_localhost_client_metadata = true\nclient_metadata_failure_cache_secs = 1",
        "",
    )
    .await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{base}/docs/flaky");
    fixture.serve(
        "flaky",
        doc(&client_id, serde_json::json!({"client_secret": "oops"})),
        Some("max-age=3600"),
    );
    let p = pkce();
    let url = authorize_url(&server, &params_for(&client_id, &p));
    assert_eq!(
        browser().get(&url).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    fixture.serve("flaky", doc(&client_id, serde_json::json!({})), None);
    // Within the window the failure is answered again without a fetch.
    assert_eq!(
        browser().get(&url).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(fixture.hits("flaky"), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        browser().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(fixture.hits("flaky"), 2);
    // Without Cache-Control the document is fetched again each time.
    assert_eq!(
        browser().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(fixture.hits("flaky"), 3);
}

#[tokio::test]
async fn client_id_urls_are_validated_and_private_addresses_refused() {
    audit_log();
    // Development switch off: the http fixture is not reachable at all.
    let server = TestServer::start().await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{base}/docs/good");
    fixture.serve("good", doc(&client_id, serde_json::json!({})), None);
    let p = pkce();
    let refuse = |client_id: String| {
        let url = authorize_url(&server, &params_for(&client_id, &p));
        async move {
            let resp = browser().get(url).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{client_id}");
            assert!(resp.headers().get("location").is_none());
            resp.text().await.unwrap()
        }
    };
    // A URL that breaks the rules is explained: that follows from the client_id alone.
    let url_rules = [
        (client_id.clone(), "https"),
        ("https://app.example.com".to_string(), "must have a path"),
        (
            "https://app.example.com/client.json#frag".to_string(),
            "fragment",
        ),
        ("http://app.example.com/client.json".to_string(), "https"),
    ];
    for (client_id, expected) in url_rules {
        let html = refuse(client_id.clone()).await;
        assert!(html.contains(expected), "{client_id}: {html}");
    }
    // Where a host points is not told to whoever asks, only logged.
    let private_addresses = [
        ("https://127.0.0.1:1/client.json", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.1/client.json", "private"),
        ("https://[::1]/client.json", "loopback"),
        ("https://[::ffff:a00:1]/client.json", "private"),
        ("https://[fd00::1]/client.json", "unique-local"),
        ("https://localhost/client.json", "loopback"),
    ];
    for (client_id, expected) in private_addresses {
        let html = refuse(client_id.to_string()).await;
        assert_refused_with_the_reason_logged(client_id, &html, expected);
    }
    assert_eq!(fixture.hits("good"), 0);
}

#[tokio::test]
async fn localhost_document_urls_resolve_to_loopback_in_development_mode() {
    let server = dev_server().await;
    let (fixture, base) = start_fixture().await;
    let client_id = format!("{}/docs/local", base.replace("127.0.0.1", "localhost"));
    fixture.serve("local", doc(&client_id, serde_json::json!({})), None);
    let p = pkce();
    let resp = browser()
        .get(authorize_url(&server, &params_for(&client_id, &p)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(fixture.hits("local"), 1);
}
