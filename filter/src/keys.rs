//! Per-issuer key state machine: which keys are loaded, when to fetch.
//!
//! Pure: times are milliseconds since the Unix epoch passed in by the caller (host time).
//!
//! Fetched keys stay in use until a fetch replaces them, but for at most the issuer's
//! `max_stale` after the fetch that loaded them: an issuer whose JWKS stays unreachable or
//! unreadable that long is failed closed (503) rather than trusted with keys it may have
//! withdrawn since. A fetched document with no usable key is a revocation (an empty key set),
//! not a failure.

use std::rc::Rc;

use crate::issuer::{JwksSource, RemoteJwks};
use crate::jwks::{KeySet, ParsedJwks};

/// Retry delay after a failed fetch while no key was ever loaded.
pub const FIRST_KEYS_RETRY_MS: u64 = 1_000;
/// Retry delay after a failed refresh while old keys are kept.
pub const REFRESH_RETRY_MS: u64 = 10_000;
/// A fetch with no answer this long after its timeout is abandoned (defensive; hosts answer
/// timed-out calls themselves).
pub const STALE_FETCH_GRACE_MS: u64 = 5_000;

/// What one answered JWKS fetch did to an issuer's keys, for the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReport {
    /// The document's usable keys replaced the previous ones (none: the issuer revoked every
    /// key the filter could use, and its tokens now fail).
    Loaded {
        /// How many keys are now current.
        keys: usize,
        /// Why each unusable entry was ignored.
        skipped: Vec<String>,
    },
    /// The fetch failed; the last good keys (if any) stay.
    Failed(String),
}

/// Reads a JWKS fetch's answer: the key set of a `200` response, else why it failed. `status`
/// is the response's `:status`, absent when the host got no response (timeout, connection
/// failure, unknown cluster).
pub fn read_fetch_response(status: Option<&[u8]>, body: &[u8]) -> Result<ParsedJwks, String> {
    match status {
        Some(b"200") => KeySet::parse(body).map_err(|e| e.to_string()),
        Some(s) => Err(format!("status {}", String::from_utf8_lossy(s))),
        None => Err("no response (timeout or connection failure)".to_string()),
    }
}

/// Whether keys are available.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// No key yet (remote JWKS before its first successful fetch): requests wait, then 503.
    AwaitingKeys,
    /// The last good key set, loaded at `loaded_ms` (inline keys: 0, and they never go stale).
    Ready {
        /// The keys (possibly none: revoked).
        keys: Rc<KeySet>,
        /// When the fetch that loaded them was answered.
        loaded_ms: u64,
    },
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
                keys: KeyState::Ready {
                    keys: Rc::new(keys.clone()),
                    loaded_ms: 0,
                },
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

    /// The fetch to dispatch now, if one is due (see [`IssuerKeys::fetch_due`]).
    pub fn fetch_to_start(&self, now_ms: u64) -> Option<&RemoteJwks> {
        self.remote.as_ref().filter(|_| self.fetch_due(now_ms))
    }

    /// The keys to verify with at `now_ms`: none before the first successful fetch, nor once
    /// the last successful fetch is more than `max_stale` old (requests then wait for a fetch,
    /// then get 503, like before the first keys).
    pub fn key_set(&self, now_ms: u64) -> Option<&KeySet> {
        match &self.keys {
            KeyState::Ready { keys, loaded_ms } => {
                let fresh = self.remote.as_ref().is_none_or(|r| {
                    let max_stale = u64::try_from(r.max_stale.as_millis()).unwrap_or(u64::MAX);
                    now_ms.saturating_sub(*loaded_ms) <= max_stale
                });
                fresh.then_some(&**keys)
            }
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
        self.keys = KeyState::Ready {
            keys: Rc::new(keys),
            loaded_ms: now_ms,
        };
        self.fetch = FetchState::Idle {
            next_at_ms: now_ms.saturating_add(interval),
        };
    }

    /// The running fetch was answered (see [`read_fetch_response`]): new keys, or a failure that
    /// keeps the last good ones.
    pub fn fetch_answered(
        &mut self,
        status: Option<&[u8]>,
        body: &[u8],
        now_ms: u64,
    ) -> FetchReport {
        match read_fetch_response(status, body) {
            Ok(parsed) => {
                let keys = parsed.keys.len();
                self.fetch_succeeded(parsed.keys, now_ms);
                FetchReport::Loaded {
                    keys,
                    skipped: parsed.skipped,
                }
            }
            Err(why) => {
                self.fetch_failed(now_ms);
                FetchReport::Failed(why)
            }
        }
    }

    /// The fetch failed: keep the last good keys (until they are `max_stale`), retry soon, and
    /// sooner while no usable keys are left.
    pub fn fetch_failed(&mut self, now_ms: u64) {
        let delay = if self.key_set(now_ms).is_some() {
            REFRESH_RETRY_MS
        } else {
            FIRST_KEYS_RETRY_MS
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

    const MAX_STALE_SECONDS: u64 = 3_600;

    fn remote() -> JwksSource {
        JwksSource::Remote(RemoteJwks {
            cluster: "c".into(),
            authority: "a".into(),
            path: "/j".into(),
            refresh_interval: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(MAX_STALE_SECONDS),
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
        assert!(k.key_set(0).is_none());
    }

    #[test]
    fn inline_keys_are_ready_and_never_fetched() {
        let k = IssuerKeys::new(&JwksSource::Inline(keyset()));
        assert!(k.key_set(u64::MAX).is_some());
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
        assert_eq!(k.key_set(2_000).map(KeySet::len), Some(1));
        assert!(!k.fetch_due(2_000 + 299_999));
        assert!(k.fetch_due(2_000 + 300_000));
    }

    #[test]
    fn failures_keep_last_good_keys_and_retry() {
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        k.fetch_failed(0);
        assert!(k.key_set(0).is_none());
        assert!(k.fetch_due(FIRST_KEYS_RETRY_MS));
        k.fetch_started(2, 0);
        k.fetch_succeeded(keyset(), 0);
        k.fetch_started(3, 300_000);
        k.fetch_failed(300_000);
        assert!(k.key_set(300_000).is_some(), "last good keys kept");
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
    fn a_fetch_answer_is_read_by_status_and_body() {
        let jwks =
            json!({"keys": [ed_key("k").public_jwk(), {"kty": "oct", "kid": "h"}]}).to_string();
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        assert!(matches!(
            k.fetch_answered(Some(b"200"), jwks.as_bytes(), 0),
            FetchReport::Loaded { keys: 1, skipped } if skipped.len() == 1
        ));
        assert!(k.key_set(0).is_some());
        type Answer<'a> = (Option<&'a [u8]>, &'a [u8], &'a str);
        let failures: [Answer<'_>; 4] = [
            (Some(b"503"), jwks.as_bytes(), "status 503"),
            (None, b"", "no response (timeout or connection failure)"),
            (
                Some(b"200"),
                b"<html>",
                "not a JWKS document (a JSON object with a keys array)",
            ),
            (
                Some(b"200"),
                br#"{"keys": {}}"#,
                "not a JWKS document (a JSON object with a keys array)",
            ),
        ];
        for (status, body, why) in failures {
            k.fetch_started(2, 1_000);
            assert_eq!(
                k.fetch_answered(status, body, 1_000),
                FetchReport::Failed(why.into()),
                "{why}"
            );
            assert_eq!(
                k.key_set(1_000).map(KeySet::len),
                Some(1),
                "{why}: the last good keys stay"
            );
            assert!(k.fetch_due(1_000 + REFRESH_RETRY_MS));
        }
    }

    #[test]
    fn the_fetch_to_start_is_the_remote_source_when_due() {
        let mut k = IssuerKeys::new(&remote());
        assert_eq!(k.fetch_to_start(0).map(|r| r.path.as_str()), Some("/j"));
        k.fetch_started(1, 0);
        assert_eq!(k.fetch_to_start(1), None, "one fetch at a time");
        assert_eq!(
            IssuerKeys::new(&JwksSource::Inline(keyset())).fetch_to_start(0),
            None
        );
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

    #[test]
    fn a_document_without_a_usable_key_revokes_every_key() {
        let only_unusable = json!({"keys": [{"kty": "oct", "kid": "h"}]}).to_string();
        let revocations: [(&[u8], usize); 2] =
            [(br#"{"keys": []}"#, 0), (only_unusable.as_bytes(), 1)];
        for (body, skipped_entries) in revocations {
            let mut k = IssuerKeys::new(&remote());
            k.fetch_started(1, 0);
            k.fetch_succeeded(keyset(), 0);
            k.fetch_started(2, 1_000);
            assert!(matches!(
                k.fetch_answered(Some(b"200"), body, 1_000),
                FetchReport::Loaded { keys: 0, skipped } if skipped.len() == skipped_entries
            ));
            assert_eq!(
                k.key_set(1_000).map(KeySet::len),
                Some(0),
                "the old key is gone, and there is no wait for first keys"
            );
            assert!(
                !k.fetch_due(1_000 + 299_999),
                "a revocation is a successful fetch: the regular refresh follows"
            );
            k.fetch_started(3, 301_000);
            k.fetch_succeeded(keyset(), 301_000);
            assert_eq!(
                k.key_set(301_000).map(KeySet::len),
                Some(1),
                "published again"
            );
        }
    }

    #[test]
    fn keys_are_not_used_past_max_stale_while_every_refresh_fails() {
        let max_stale_ms = MAX_STALE_SECONDS * 1_000;
        let mut k = IssuerKeys::new(&remote());
        k.fetch_started(1, 0);
        k.fetch_succeeded(keyset(), 5_000);
        let mut now = 5_000;
        while now <= 5_000 + max_stale_ms {
            now += REFRESH_RETRY_MS;
            k.fetch_started(2, now);
            assert!(matches!(
                k.fetch_answered(Some(b"503"), b"", now),
                FetchReport::Failed(_)
            ));
        }
        assert!(k.key_set(5_000 + max_stale_ms).is_some(), "up to max_stale");
        assert!(
            k.key_set(5_000 + max_stale_ms + 1).is_none(),
            "past max_stale the keys are not used"
        );
        assert!(
            k.fetch_due(now + FIRST_KEYS_RETRY_MS),
            "retried as if no key was ever loaded"
        );
        k.fetch_started(3, now + FIRST_KEYS_RETRY_MS);
        k.fetch_succeeded(keyset(), now + FIRST_KEYS_RETRY_MS);
        let reloaded = now + FIRST_KEYS_RETRY_MS;
        assert!(
            k.key_set(reloaded).is_some(),
            "a successful fetch restores them"
        );
        assert!(
            k.key_set(reloaded + max_stale_ms).is_some(),
            "and restarts the clock"
        );
        let inline = IssuerKeys::new(&JwksSource::Inline(keyset()));
        assert!(
            inline.key_set(u64::MAX).is_some(),
            "inline keys never go stale"
        );
    }
}
