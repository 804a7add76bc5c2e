//! A trusted token issuer and where its signing keys come from.
//!
//! Built by [`crate::config`], read by the key state ([`crate::keys`]) and token verification.
//! It depends only on the parsed key set, so none of them needs a path back to `config`.

use std::time::Duration;

use crate::jwks::KeySet;

/// A trusted issuer.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Exact `iss`.
    pub issuer: String,
    /// Where its keys come from.
    pub jwks: JwksSource,
}

/// Inline keys or a remote JWKS.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// Keys given in the configuration.
    Inline(KeySet),
    /// Keys fetched through an Envoy cluster.
    Remote(RemoteJwks),
}

/// Remote JWKS location and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Envoy cluster.
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Periodic refresh.
    pub refresh_interval: Duration,
    /// One fetch's timeout.
    pub fetch_timeout: Duration,
    /// Minimum time between unknown-`kid` refetches.
    pub min_refetch_interval: Duration,
    /// How long loaded keys stay in use without a successful fetch.
    pub max_stale: Duration,
}

impl RemoteJwks {
    /// The request headers of a fetch.
    pub fn request_headers(&self) -> [(&str, &str); 4] {
        [
            (":method", "GET"),
            (":path", &self.path),
            (":authority", &self.authority),
            ("accept", "application/json"),
        ]
    }
}
