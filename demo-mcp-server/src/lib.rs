//! Demo MCP server for the mcp-auth-proxy demo and end-to-end tests.
//!
//! Streamable HTTP at `/mcp` (rmcp), plus `GET /debug/seen-authorization`, which reports whether
//! any request ever arrived with an `Authorization` header (the filter must never pass the
//! client's token through). Envoy routes only `/mcp` here, so the debug endpoint is reachable
//! on the loopback port alone.

pub mod identity;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::identity::{ADMIN_SCOPE, ForwardedIdentity};

/// Counts of requests seen on every route, shared by the HTTP layer and the tools.
#[derive(Debug, Default)]
pub struct RequestLedger {
    requests: AtomicU64,
    with_authorization: AtomicU64,
    tool_calls: AtomicU64,
}

/// What `GET /debug/seen-authorization` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationReport {
    /// Requests received on any path, including this endpoint.
    pub requests: u64,
    /// Requests that carried an `Authorization` header.
    pub requests_with_authorization: u64,
    /// Tool calls that reached a tool, whichever tool and whatever its result.
    pub tool_calls: u64,
}

impl RequestLedger {
    fn record(&self, has_authorization: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if has_authorization {
            self.with_authorization.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_tool_call(&self) {
        self.tool_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> AuthorizationReport {
        AuthorizationReport {
            requests: self.requests.load(Ordering::Relaxed),
            requests_with_authorization: self.with_authorization.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddRequest {
    #[schemars(description = "first addend")]
    pub a: i64,
    #[schemars(description = "second addend")]
    pub b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoRequest {
    #[schemars(description = "text to send back")]
    pub text: String,
}

/// The MCP tools. One instance per MCP session; the ledger is shared.
#[derive(Clone)]
pub struct DemoServer {
    ledger: Arc<RequestLedger>,
    started: Instant,
    tool_router: ToolRouter<Self>,
}

fn structured(value: serde_json::Value) -> CallToolResult {
    CallToolResult::structured(value)
}

#[tool_router]
impl DemoServer {
    pub fn new(ledger: Arc<RequestLedger>, started: Instant) -> Self {
        Self {
            ledger,
            started,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Who am I? Returns the identity the OAuth filter verified and forwarded: subject, client id and granted scopes."
    )]
    async fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> CallToolResult {
        self.ledger.record_tool_call();
        let identity = ForwardedIdentity::from_headers(&parts.headers);
        if identity.is_authenticated() {
            structured(json!(identity))
        } else {
            CallToolResult::error(vec![ContentBlock::text(
                "no verified identity was forwarded: this server must be reached through Envoy and the filter",
            )])
        }
    }

    #[tool(description = "Add two integers.")]
    async fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> CallToolResult {
        self.ledger.record_tool_call();
        match a.checked_add(b) {
            Some(sum) => structured(json!({ "sum": sum })),
            None => CallToolResult::error(vec![ContentBlock::text(format!(
                "{a} + {b} does not fit in a 64-bit integer"
            ))]),
        }
    }

    #[tool(description = "Send the given text back unchanged.")]
    async fn echo(&self, Parameters(EchoRequest { text }): Parameters<EchoRequest>) -> String {
        self.ledger.record_tool_call();
        text
    }

    #[tool(
        description = "Server statistics for administrators. Needs the mcp:admin scope (the filter answers 403 insufficient_scope without it; sign in again to step up)."
    )]
    async fn admin_report(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> CallToolResult {
        self.ledger.record_tool_call();
        let identity = ForwardedIdentity::from_headers(&parts.headers);
        // The filter enforces the scope; checking again here keeps a misconfigured proxy from
        // silently exposing the report.
        if !identity.has_scope(ADMIN_SCOPE) {
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "admin_report needs the {ADMIN_SCOPE} scope; the forwarded scopes are {:?}",
                identity.scopes
            ))]);
        }
        let report = self.ledger.report();
        structured(json!({
            "requested_by": identity.subject,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "requests": report.requests,
            "requests_with_authorization": report.requests_with_authorization,
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Demo MCP server behind Envoy and the mcp-auth filter. Try whoami, add, echo and admin_report.",
        )
    }
}

async fn record_request(
    State(ledger): State<Arc<RequestLedger>>,
    request: Request,
    next: Next,
) -> Response {
    ledger.record(request.headers().contains_key(http::header::AUTHORIZATION));
    next.run(request).await
}

async fn seen_authorization(State(ledger): State<Arc<RequestLedger>>) -> Json<AuthorizationReport> {
    Json(ledger.report())
}

/// The whole HTTP application: `/mcp` (MCP streamable HTTP) and the debug endpoint, with every
/// request recorded in `ledger`.
///
/// `allowed_hosts` is rmcp's `Host` header allow-list (DNS rebinding protection); behind Envoy the
/// `Host` is the public one the client used, e.g. `localhost`.
pub fn app(ledger: Arc<RequestLedger>, allowed_hosts: Vec<String>) -> Router {
    let started = Instant::now();
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts);
    let service_ledger = ledger.clone();
    let mcp: StreamableHttpService<DemoServer, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(DemoServer::new(service_ledger.clone(), started)),
        Default::default(),
        config,
    );
    Router::new()
        .nest_service("/mcp", mcp)
        .route("/debug/seen-authorization", get(seen_authorization))
        .layer(middleware::from_fn_with_state(
            ledger.clone(),
            record_request,
        ))
        .with_state(ledger)
}
