//! The demo server over its HTTP interface (in process, through the axum router).

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

use std::sync::Arc;

use axum::body::Body;
use demo_mcp_server::{AuthorizationReport, RequestLedger, app};
use http::{Request, StatusCode};
use tower::ServiceExt;

const ACCEPT: &str = "application/json, text/event-stream";

fn router() -> axum::Router {
    app(Arc::new(RequestLedger::default()), vec!["localhost".into()])
}

async fn send(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn mcp_post(session: Option<&str>) -> http::request::Builder {
    let builder = Request::post("/mcp")
        .header("host", "localhost:10000")
        .header("content-type", "application/json")
        .header("accept", ACCEPT);
    match session {
        Some(id) => builder.header("mcp-session-id", id),
        None => builder,
    }
}

async fn initialize(router: &axum::Router) -> String {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;
    let (status, headers, _) = send(router, mcp_post(None).body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = send(
        router,
        mcp_post(Some(&session))
            .body(Body::from(initialized))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    session
}

async fn seen(router: &axum::Router) -> AuthorizationReport {
    let (status, _, body) = send(
        router,
        Request::get("/debug/seen-authorization")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn whoami_reports_the_forwarded_identity() {
    let router = router();
    let session = initialize(&router).await;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
    let (status, _, body) = send(
        &router,
        mcp_post(Some(&session))
            .header("x-mcp-subject", "demo")
            .header("x-mcp-client-id", "client-abc")
            .header("x-mcp-scope", "mcp:tools")
            .body(Body::from(call))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#""structuredContent":{"client_id":"client-abc","scopes":["mcp:tools"],"subject":"demo"}"#),
        "{body}"
    );
    assert!(body.contains("client-abc"), "{body}");
    assert_eq!(seen(&router).await.tool_calls, 1);
}

#[tokio::test]
async fn admin_report_refuses_without_the_admin_scope_even_if_the_proxy_let_it_through() {
    let router = router();
    let session = initialize(&router).await;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_report","arguments":{}}}"#;
    let (_, _, body) = send(
        &router,
        mcp_post(Some(&session))
            .header("x-mcp-subject", "demo")
            .header("x-mcp-scope", "mcp:tools")
            .body(Body::from(call))
            .unwrap(),
    )
    .await;
    assert!(body.contains(r#""isError":true"#), "{body}");
    assert!(body.contains("needs the mcp:admin scope"), "{body}");
}

#[tokio::test]
async fn debug_endpoint_counts_requests_that_carried_authorization() {
    let router = router();
    assert_eq!(seen(&router).await.requests_with_authorization, 0);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let _ = send(
        &router,
        mcp_post(None)
            .header("authorization", "Bearer leaked")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    let report = seen(&router).await;
    assert_eq!(report.requests_with_authorization, 1);
    assert_eq!(report.requests, 3);
}
