//! Prometheus metrics, served in the OpenMetrics text format on the admin listener only (never on
//! the public port). Each server owns its registry, so servers in one process (the tests) count
//! separately.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric name starts with this.
const PREFIX: &str = "mcp_auth_server";
/// Upper bounds of the latency buckets: 1 ms doubling to about 16 s.
const LATENCY_BUCKETS: (f64, f64, u16) = (0.001, 2.0, 15);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    endpoint: &'static str,
    status: u16,
    /// The OAuth error code, or `none` (an error page, a 404, a 413...).
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: &'static str,
}

fn latency_histogram() -> Histogram {
    let (start, factor, count) = LATENCY_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, count))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<EndpointLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    request_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    sign_ins: Family<OutcomeLabels, Counter>,
    tokens_issued: Family<GrantLabels, Counter>,
    refresh_token_reuse: Counter,
    authorization_code_replays: Counter,
    client_metadata_fetches: Family<OutcomeLabels, Counter>,
    database_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::default();
        registry.register(
            "http_requests",
            "Requests answered, by endpoint",
            Family::clone(&requests),
        );
        let failures = Family::default();
        registry.register(
            "http_failures",
            "Requests answered with an error (status 400 and above, or an error redirect), by endpoint, status and OAuth error code",
            Family::clone(&failures),
        );
        let request_duration =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to answering it, by endpoint",
            Family::clone(&request_duration),
        );
        let sign_ins = Family::default();
        registry.register(
            "sign_ins",
            "Sign-in attempts, by outcome (success, wrong_password, unknown_user, rate_limited)",
            Family::clone(&sign_ins),
        );
        let tokens_issued = Family::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued, by grant type",
            Family::clone(&tokens_issued),
        );
        let refresh_token_reuse = Counter::default();
        registry.register(
            "refresh_token_reuse",
            "Used refresh tokens presented again (each revokes its token family)",
            refresh_token_reuse.clone(),
        );
        let authorization_code_replays = Counter::default();
        registry.register(
            "authorization_code_replays",
            "Redeemed authorization codes presented again (each revokes its token family)",
            authorization_code_replays.clone(),
        );
        let client_metadata_fetches = Family::default();
        registry.register(
            "client_metadata_fetches",
            "Client ID Metadata Document lookups (cache hits included), by outcome (success, failure)",
            Family::clone(&client_metadata_fetches),
        );
        let database_errors = Counter::default();
        registry.register(
            "database_errors",
            "Storage operations that failed",
            database_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            failures,
            request_duration,
            sign_ins,
            tokens_issued,
            refresh_token_reuse,
            authorization_code_replays,
            client_metadata_fetches,
            database_errors,
        }
    }

    /// Counts one answered request; `error` is its OAuth error code, if it carries one.
    pub fn request(
        &self,
        endpoint: &'static str,
        status: u16,
        error: Option<&'static str>,
        took: Duration,
    ) {
        let labels = EndpointLabels { endpoint };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if status >= 400 || error.is_some() {
            self.failures
                .get_or_create(&FailureLabels {
                    endpoint,
                    status,
                    error: error.unwrap_or("none"),
                })
                .inc();
        }
    }

    pub fn sign_in(&self, outcome: &'static str) {
        self.sign_ins
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn token_issued(&self, grant_type: &'static str) {
        self.tokens_issued
            .get_or_create(&GrantLabels { grant_type })
            .inc();
    }

    pub fn refresh_token_reused(&self) {
        self.refresh_token_reuse.inc();
    }

    pub fn authorization_code_replayed(&self) {
        self.authorization_code_replays.inc();
    }

    pub fn client_metadata_fetch(&self, succeeded: bool) {
        let outcome = if succeeded { "success" } else { "failure" };
        self.client_metadata_fetches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The counter the store increments on every failed operation.
    pub fn database_errors(&self) -> Counter {
        self.database_errors.clone()
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The admin listener's only endpoint: `GET /metrics`.
pub fn admin_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_requests_and_failures_appear_with_their_labels() {
        let m = Metrics::new();
        m.request("token", 200, None, Duration::from_millis(3));
        m.request(
            "token",
            400,
            Some("invalid_grant"),
            Duration::from_millis(2),
        );
        m.request(
            "authorize",
            303,
            Some("access_denied"),
            Duration::from_millis(1),
        );
        m.sign_in("wrong_password");
        let text = m.encode().unwrap();
        for line in [
            "mcp_auth_server_http_requests_total{endpoint=\"token\"} 2",
            "mcp_auth_server_http_failures_total{endpoint=\"token\",status=\"400\",error=\"invalid_grant\"} 1",
            "mcp_auth_server_http_failures_total{endpoint=\"authorize\",status=\"303\",error=\"access_denied\"} 1",
            "mcp_auth_server_http_request_duration_seconds_count{endpoint=\"token\"} 2",
            "mcp_auth_server_sign_ins_total{outcome=\"wrong_password\"} 1",
            "mcp_auth_server_database_errors_total 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("status=\"200\""), "{text}");
    }
}
