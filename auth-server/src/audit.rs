//! Audit events: one structured log event for each security-relevant action. They all have the
//! log target `mcp_auth_server::audit` (select them with `RUST_LOG=mcp_auth_server::audit=info`)
//! and a field `event` naming them; the README lists each event and its fields. They name
//! users, clients, resources, scopes and token ids (`jti`), never a password, secret, code or
//! token.

use std::net::IpAddr;

/// Why a sign-in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    WrongPassword,
    UnknownUser,
    /// The address had used up its failed sign-ins for the minute; no password was checked.
    RateLimited,
}

impl SignInFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInFailure::WrongPassword => "wrong_password",
            SignInFailure::UnknownUser => "unknown_user",
            SignInFailure::RateLimited => "rate_limited",
        }
    }
}

pub fn sign_in_succeeded(username: &str, client_id: &str, address: IpAddr) {
    tracing::info!(
        event = "sign_in.succeeded",
        username,
        client_id,
        %address,
        "sign-in succeeded"
    );
}

/// A person signed in at an upstream identity provider (the MCP client is known only once the
/// authorization request resumes).
pub fn upstream_sign_in(provider: &str, subject: &str) {
    tracing::info!(
        event = "sign_in.upstream_succeeded",
        provider = %provider,
        username = %subject,
        "signed in at an identity provider"
    );
}

pub fn sign_in_failed(username: &str, client_id: &str, address: IpAddr, reason: SignInFailure) {
    match reason {
        SignInFailure::RateLimited => tracing::warn!(
            event = "sign_in.failed",
            reason = reason.as_str(),
            username,
            client_id,
            %address,
            "login refused: too many failed attempts"
        ),
        _ => tracing::info!(
            event = "sign_in.failed",
            reason = reason.as_str(),
            username,
            client_id,
            %address,
            "failed login attempt"
        ),
    }
}

/// The user's decision on the consent page.
pub fn consent(approved: bool, username: &str, client_id: &str, scope: &str, resource: &str) {
    let event = if approved {
        "consent.given"
    } else {
        "consent.denied"
    };
    tracing::info!(
        event,
        username,
        client_id,
        scope,
        resource,
        "consent decision"
    );
}

/// An access token (and, when `refresh_token_issued`, a refresh token) was issued.
pub fn token_issued(
    grant_type: &str,
    client_id: &str,
    username: &str,
    resource: &str,
    scope: &str,
    jti: &str,
    refresh_token_issued: bool,
) {
    tracing::info!(
        event = "token.issued",
        grant_type,
        client_id,
        username,
        resource,
        scope,
        jti,
        refresh_token_issued,
        "token issued"
    );
}

/// Security event: a redeemed authorization code came back; its token family is revoked.
pub fn authorization_code_replayed(client_id: &str) {
    tracing::warn!(
        event = "authorization_code.replay_detected",
        client_id,
        "authorization code replayed; its refresh tokens are revoked"
    );
}

/// Security event: a used refresh token came back; its whole family is revoked.
pub fn refresh_token_reused(client_id: &str, username: &str, resource: &str) {
    tracing::warn!(
        event = "refresh_token.reuse_detected",
        client_id,
        username,
        resource,
        "refresh token reused; the token family is revoked"
    );
}

/// A person withdrew a client's access on the connected-apps page.
pub fn client_access_revoked(client_id: &str, username: &str) {
    tracing::info!(
        event = "client.access_revoked",
        client_id,
        username,
        "a person revoked an application's access"
    );
}

/// A client revoked a refresh token, and with it the token's family.
pub fn refresh_family_revoked(client_id: &str, username: &str, resource: &str) {
    tracing::info!(
        event = "token.revoked",
        client_id,
        username,
        resource,
        "refresh token family revoked"
    );
}

pub fn client_registered(
    client_id: &str,
    token_endpoint_auth_method: &str,
    grant_types: &str,
    application_type: &str,
    redirect_uris: &str,
    address: IpAddr,
) {
    tracing::info!(
        event = "client.registered",
        client_id,
        token_endpoint_auth_method,
        grant_types,
        application_type,
        redirect_uris,
        %address,
        "client registered"
    );
}

/// A Client ID Metadata Document could not be used; `reason` says why (it holds no URL query
/// and no response body).
pub fn client_metadata_fetch_failed(client_id: &str, reason: &str) {
    tracing::warn!(
        event = "client_metadata.fetch_failed",
        client_id,
        reason,
        "client metadata document rejected"
    );
}
