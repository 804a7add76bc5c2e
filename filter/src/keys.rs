//! Per-issuer key state machine: which keys are loaded, when to fetch.
//!
//! Pure: times are milliseconds since the Unix epoch passed in by the caller (host time).

use std::rc::Rc;

use crate::config::{JwksSource, RemoteJwks};
use crate::jwks::KeySet;

/// Retry delay after a failed fetch while no key was ever loaded.
pub const FIRST_KEYS_RETRY_MS: u64 = 1_000;
/// Retry delay after a failed refresh while old keys are kept.
pub const REFRESH_RETRY_MS: u64 = 10_000;
/// A fetch with no answer this long after its timeout is abandoned (defensive; hosts answer
/// timed-out calls themselves).
pub const STALE_FETCH_GRACE_MS: u64 = 5_000;

/// Whether keys are available.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// No key yet (remote JWKS before its first successful fetch): requests wait, then 503.
    AwaitingKeys,
    /// The last good key set.
    Ready(Rc<KeySet>),
}

/// Whether a fetch is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchState {
    /// No fetch running; the next one is due at `next_at_ms`.
    Idle {
        /// When the next periodic fetch is due.
        next_at_ms: u64,
    },
    /// A fetch is running (host call `token`).
    InFlight {
        /// Host call id.
        token: u32,
        /// When it was dispatched.
        started_ms: u64,
    },
}

/// The keys of one issuer and the fetch schedule.
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    remote: Option<RemoteJwks>,
    /// Current keys.
    pub keys: KeyState,
    /// Current fetch.
    pub fetch: FetchState,
    last_kid_refetch_ms: Option<u64>,
}

impl IssuerKeys {
    /// Initial state for a configured source: inline keys are ready at once.
    pub fn new(source: &JwksSource) -> Self {
        match source {
            JwksSource::Inline(keys) => IssuerKeys {
                remote: None,
                keys: KeyState::Ready(Rc::new(keys.clone())),
                fetch: FetchState::Idle {
                    next_at_ms: u64::MAX,
                },
                last_kid_refetch_ms: None,
            },
            JwksSource::Remote(remote) => IssuerKeys {
                remote: Some(remote.clone()),
                keys: KeyState::AwaitingKeys,
                fetch: FetchState::Idle { next_at_ms: 0 },
                last_kid_refetch_ms: None,
            },
        }
    }

    /// The remote source, if keys are fetched.
    pub fn remote(&self) -> Option<&RemoteJwks> {
        self.remote.as_ref()
    }

    /// The loaded keys, if any.
    pub fn key_set(&self) -> Option<&KeySet> {
        match &self.keys {
            KeyState::Ready(k) => Some(k),
            KeyState::AwaitingKeys => None,
        }
    }

    /// Should a fetch start now? (Scheduled, requested for an unknown `kid`, or the running one
    /// is stale.)
    pub fn fetch_due(&self, now_ms: u64) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        match self.fetch {
            FetchState::Idle { next_at_ms } => now_ms >= next_at_ms,
            FetchState::InFlight { started_ms, .. } => {
                let limit = u64::try_from(remote.fetch_timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_add(STALE_FETCH_GRACE_MS);
                now_ms.saturating_sub(started_ms) >= limit
            }
        }
    }

    /// May an unknown `kid` wait for a refetch now (rate limit)? A running or already requested
    /// fetch counts as one.
    pub fn kid_refetch_allowed(&self, now_ms: u64) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        if self.is_fetching() || self.fetch_due(now_ms) {
            return true;
        }
        let min = u64::try_from(remote.min_refetch_interval.as_millis()).unwrap_or(u64::MAX);
        self.last_kid_refetch_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= min)
    }

    /// An unknown `kid` asks for a refetch: it becomes due now (the root context dispatches it
    /// on its next tick, so the response reaches the root context).
    pub fn request_kid_refetch(&mut self, now_ms: u64) {
        if let FetchState::Idle { next_at_ms } = &mut self.fetch
            && *next_at_ms > now_ms
        {
            *next_at_ms = now_ms;
            self.last_kid_refetch_ms = Some(now_ms);
        }
    }

    /// Records that a fetch started.
    pub fn fetch_started(&mut self, token: u32, now_ms: u64) {
        self.fetch = FetchState::InFlight {
            token,
            started_ms: now_ms,
        };
    }

    /// Records a fetch that could not even be dispatched.
    pub fn dispatch_failed(&mut self, now_ms: u64) {
        self.fetch_failed(now_ms);
    }

    /// New keys arrived: `Ready`, next refresh scheduled.
    pub fn fetch_succeeded(&mut self, keys: KeySet, now_ms: u64) {
        let interval = self.remote.as_ref().map_or(u64::MAX, |r| {
            u64::try_from(r.refresh_interval.as_millis()).unwrap_or(u64::MAX)
        });
        self.keys = KeyState::Ready(Rc::new(keys));
        self.fetch = FetchState::Idle {
            next_at_ms: now_ms.saturating_add(interval),
        };
    }

    /// The fetch failed: keep the last good keys, retry soon.
    pub fn fetch_failed(&mut self, now_ms: u64) {
        let delay = match self.keys {
            KeyState::AwaitingKeys => FIRST_KEYS_RETRY_MS,
            KeyState::Ready(_) => REFRESH_RETRY_MS,
        };
        self.fetch = FetchState::Idle {
            next_at_ms: now_ms.saturating_add(delay),
        };
    }

    /// Is a fetch running?
    pub fn is_fetching(&self) -> bool {
        matches!(self.fetch, FetchState::InFlight { .. })
    }

    /// Is `token` the running fetch?
    pub fn is_fetch(&self, token: u32) -> bool {
        matches!(self.fetch, FetchState::InFlight { token: t, .. } if t == token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_auth_test_support::ed_key;
    use serde_json::json;
    use std::time::Duration;

    fn remote() -> JwksSource {
        JwksSource::Remote(RemoteJwks {
            cluster: "c".into(),
            authority: "a".into(),
            path: "/j".into(),
            refresh_interval: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(30),
        })
    }

    fn keyset() -> KeySet {
        KeySet::from_value(&json!({"keys": [ed_key("k").public_jwk()]}))
            .expect("keys")
            .keys
    }

    #[test]
    fn remote_keys_start_awaiting_and_fetch_at_once() {
        let k = IssuerKeys::new(&remote());
        assert!(matches!(k.keys, KeyState::AwaitingKeys));
        assert!(k.fetch_due(0));
        assert!(k.key_set().is_none());
    }

    #[test]
    fn inline_keys_are_ready_and_never_fetched() {
        let k = IssuerKeys::new(&JwksSource::Inline(keyset()));
        assert!(k.key_set().is_some());
        assert!(!k.fetch_due(u64::MAX - 1));
        assert!(!k.kid_refetch_allowed(0));
    }

    #[test]
    fn success_makes_ready_and_schedules_refresh() {
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(7, 1_000);
        assert!(k.is_fetch(7));
        assert!(!k.fetch_due(1_000));
        k.fetch_succeeded(keyset(), 2_000);
        assert_eq!(k.key_set().map(KeySet::len), Some(1));
        assert!(!k.fetch_due(2_000 + 299_999));
        assert!(k.fetch_due(2_000 + 300_000));
    }

    #[test]
    fn failures_keep_last_good_keys_and_retry() {
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        k.fetch_failed(0);
        assert!(k.key_set().is_none());
        assert!(k.fetch_due(FIRST_KEYS_RETRY_MS));
        k.fetch_started(2, 0);
        k.fetch_succeeded(keyset(), 0);
        k.fetch_started(3, 300_000);
        k.fetch_failed(300_000);
        assert!(k.key_set().is_some(), "last good keys kept");
        assert!(!k.fetch_due(300_000 + REFRESH_RETRY_MS - 1));
        assert!(k.fetch_due(300_000 + REFRESH_RETRY_MS));
    }

    #[test]
    fn unknown_kid_refetches_are_rate_limited() {
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        k.fetch_succeeded(keyset(), 0);
        assert!(k.kid_refetch_allowed(1_000));
        assert!(!k.fetch_due(1_000));
        k.request_kid_refetch(1_000);
        assert!(
            k.fetch_due(1_000),
            "due at once, dispatched on the next tick"
        );
        assert!(k.kid_refetch_allowed(1_000), "joins the requested fetch");
        k.fetch_started(2, 1_400);
        assert!(k.kid_refetch_allowed(1_401), "joins the running fetch");
        k.fetch_succeeded(keyset(), 1_500);
        assert!(!k.kid_refetch_allowed(30_999));
        assert!(k.kid_refetch_allowed(31_000));
    }

    #[test]
    fn a_fetch_that_never_answers_is_abandoned() {
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        assert!(!k.fetch_due(5_000 + STALE_FETCH_GRACE_MS - 1));
        assert!(k.fetch_due(5_000 + STALE_FETCH_GRACE_MS));
        k.fetch_started(2, 10_000);
        assert!(!k.is_fetch(1));
        assert!(k.is_fetch(2));
    }
}
