//! The errors handlers return, each rendered in one place: [`OAuthError`] as RFC 6749 JSON
//! (token, revocation, registration, JWKS) and [`AuthorizeError`] as an error page or a redirect
//! back to the client (the authorization endpoint).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::pages;
use crate::redirect_uri::ClientRedirect;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    UnsupportedResponseType,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidRedirectUri,
    InvalidClientMetadata,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error response: `{error, error_description}` with the code's status, never cached.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Answer `invalid_client` with `WWW-Authenticate: Basic` (the client used HTTP Basic).
    basic_challenge: bool,
    /// Seconds the client should wait before trying again (`Retry-After`).
    retry_after_secs: Option<u64>,
    /// The status when it is not the code's usual one (503 for an unavailable database).
    status: Option<StatusCode>,
}

/// How long a client should wait after a 503 for an unavailable database.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 5;

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after_secs: None,
            status: None,
        }
    }

    /// Challenges for HTTP Basic when the answer is `invalid_client` and `via_basic` holds.
    pub fn with_basic_challenge(mut self, via_basic: bool) -> Self {
        self.basic_challenge = via_basic;
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    /// Internal failure: logged with its cause, answered without details.
    pub fn server_error(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::ServerError, "internal error")
    }
    /// The database cannot take the request now (disk full, locked, unreachable): logged with
    /// its cause, answered 503 `temporarily_unavailable` with `Retry-After`.
    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "storage unavailable");
        let mut error = Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the server cannot store this request right now; try again shortly",
        )
        .with_retry_after(STORAGE_RETRY_AFTER_SECS);
        error.status = Some(StatusCode::SERVICE_UNAVAILABLE);
        error
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        });
        let status = self.status.unwrap_or(self.code.status());
        let mut response = (status, axum::Json(body)).into_response();
        // For the metrics: which OAuth error this response carries.
        response.extensions_mut().insert(self.code);
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidClient && self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcp-auth-server\""),
            );
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            OAuthError::storage_unavailable(e)
        } else {
            OAuthError::server_error(e)
        }
    }
}

impl From<getrandom::Error> for OAuthError {
    fn from(e: getrandom::Error) -> Self {
        OAuthError::server_error(e)
    }
}

/// Why the authorization endpoint refuses a request, and how the refusal reaches the user.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown on an error page and never sent to the client: the client or its redirect URI is
    /// not verified, the form is forged, or the server failed.
    Page { status: StatusCode, message: String },
    /// Sent to the verified redirect URI as `error` and `error_description`, with `state` and
    /// `iss`.
    Redirect {
        to: ClientRedirect,
        error: ErrorCode,
        description: String,
    },
}

impl AuthorizeError {
    pub fn page(status: StatusCode, message: impl Into<String>) -> Self {
        AuthorizeError::Page {
            status,
            message: message.into(),
        }
    }

    /// Internal failure: logged with its cause, shown without details.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "authorization endpoint failure");
        Self::page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; please try again.",
        )
    }
}

impl IntoResponse for AuthorizeError {
    fn into_response(self) -> Response {
        match self {
            AuthorizeError::Page { status, message } => {
                pages::respond(status, pages::error("Authorization failed", &message), &[])
            }
            AuthorizeError::Redirect {
                to,
                error,
                description,
            } => {
                let mut response = pages::see_other(
                    &to.location(&[
                        ("error", error.as_str()),
                        ("error_description", &description),
                    ]),
                    &[],
                );
                response.extensions_mut().insert(error);
                response
            }
        }
    }
}

impl From<StoreError> for AuthorizeError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "storage unavailable");
            AuthorizeError::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is briefly unavailable; please try again in a moment.",
            )
        } else {
            AuthorizeError::internal(e)
        }
    }
}

impl From<getrandom::Error> for AuthorizeError {
    fn from(e: getrandom::Error) -> Self {
        AuthorizeError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_failure(code: i32) -> StoreError {
        StoreError::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn a_full_disk_or_locked_database_is_a_503_with_retry_after() {
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_IOERR,
        ] {
            let response = OAuthError::from(sqlite_failure(code)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
            let page = AuthorizeError::from(sqlite_failure(code)).into_response();
            assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        }
    }

    #[test]
    fn other_store_errors_stay_internal_errors() {
        for error in [
            sqlite_failure(rusqlite::ffi::SQLITE_CONSTRAINT),
            StoreError::Corrupt("bad row".into()),
        ] {
            let response = OAuthError::from(error).into_response();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!response.headers().contains_key(header::RETRY_AFTER));
        }
    }
}
