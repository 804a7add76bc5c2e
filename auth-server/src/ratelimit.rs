//! Fixed-window rate limits keyed by client address (dynamic client registration, failed
//! logins, failed client authentications) or by client id.
//!
//! Sign-ins and registrations are counted in the database ([`SharedLimit`]), so replicas on one
//! PostgreSQL database share each address's allowance: a guesser cannot multiply it by the
//! number of replicas behind the load balancer. Failed client authentications are counted in
//! each replica's memory ([`RateLimiter`]): every token request is counted before its secret is
//! checked, and a database write per token request would cost more than the limit is worth;
//! behind N replicas the allowance is at most N times the setting.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The span each key's allowance covers; refusals tell clients to retry after it.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Keys each limiter tracks at most (bounded memory).
pub const MAX_TRACKED: usize = 10_000;

/// A limit counted in the database (see the module documentation), by client address.
#[derive(Clone)]
pub struct SharedLimit {
    /// The limit's name in the database.
    name: &'static str,
    per_window: u32,
    store: crate::store::Store,
}

/// An attempt counted by [`SharedLimit::count_attempt`].
pub struct SharedAttempt {
    key: String,
    window_start: i64,
}

impl SharedLimit {
    pub fn new(name: &'static str, per_minute: u32, store: crate::store::Store) -> Self {
        SharedLimit {
            name,
            per_window: per_minute,
            store,
        }
    }

    fn window_secs() -> i64 {
        i64::try_from(WINDOW.as_secs()).unwrap_or(i64::MAX)
    }

    /// Counts an attempt from `address` before it is made; `None` when the address has used
    /// up its allowance (the refused attempt is not counted).
    pub async fn count_attempt(
        &self,
        address: IpAddr,
    ) -> Result<Option<SharedAttempt>, crate::store::StoreError> {
        let (name, per_window, key) = (self.name, i64::from(self.per_window), address.to_string());
        let now = crate::time::now();
        self.store
            .run(move |conn| {
                let started = crate::store::count_attempt(
                    conn,
                    name,
                    &key,
                    per_window,
                    Self::window_secs(),
                    now,
                )?;
                Ok(started.map(|window_start| SharedAttempt { key, window_start }))
            })
            .await
    }

    /// Gives back an attempt that turned out not to count (a successful sign-in).
    pub async fn refund(&self, attempt: SharedAttempt) -> Result<(), crate::store::StoreError> {
        let name = self.name;
        self.store
            .run(move |conn| {
                crate::store::refund_attempt(conn, name, &attempt.key, attempt.window_start)
            })
            .await
    }

    /// Counts a request from `address`; whether it is within the limit.
    pub async fn allow(&self, address: IpAddr) -> Result<bool, crate::store::StoreError> {
        let (name, per_window, key) = (self.name, i64::from(self.per_window), address.to_string());
        let now = crate::time::now();
        self.store
            .run(move |conn| {
                crate::store::count_request(conn, name, &key, per_window, Self::window_secs(), now)
            })
            .await
    }
}

/// Bounded memory: before a key not yet in a full table is added, ended windows are dropped;
/// when every window is still live, the one that started first is evicted. A full table never
/// refuses a newcomer (behind a busy proxy or under a flood from many addresses, that would
/// refuse everyone new); the evicted key merely starts over with a fresh allowance.
fn make_room<K: Hash + Eq + Clone>(
    windows: &mut HashMap<K, (Instant, u32)>,
    key: &K,
    now: Instant,
    capacity: usize,
) {
    if windows.len() < capacity || windows.contains_key(key) {
        return;
    }
    windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
    while windows.len() >= capacity.max(1) {
        let Some(oldest) = windows
            .iter()
            .min_by_key(|(_, (start, _))| *start)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        windows.remove(&oldest);
    }
}

/// An attempt counted against a key's allowance before its outcome is known; giving it back
/// (`RateLimiter::refund`) uncounts it when the attempt turns out not to count.
pub struct CountedAttempt<K = IpAddr> {
    key: K,
    window_start: Instant,
}

pub struct RateLimiter<K = IpAddr> {
    per_window: u32,
    capacity: usize,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED)
    }

    fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        RateLimiter {
            per_window: per_minute,
            capacity,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The live window of `key`, added (making room) if needed.
    fn window<'a>(
        &self,
        windows: &'a mut HashMap<K, (Instant, u32)>,
        key: &K,
        now: Instant,
    ) -> &'a mut (Instant, u32) {
        make_room(windows, key, now, self.capacity);
        let entry = windows.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry
    }

    /// Counts one request for `key`; false when it exceeds the limit.
    #[cfg(test)]
    pub fn allow(&self, key: K, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let entry = self.window(&mut windows, &key, now);
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_window
    }

    /// Counts an attempt for `key` before it is made, so that parallel attempts cannot all pass
    /// the check while none has been counted yet; `None` when the allowance is used up (the
    /// refused attempt is not counted).
    pub fn count_attempt(&self, key: K, now: Instant) -> Option<CountedAttempt<K>> {
        let mut windows = self.windows.lock().ok()?;
        let entry = self.window(&mut windows, &key, now);
        if entry.1 >= self.per_window {
            return None;
        }
        entry.1 += 1;
        let window_start = entry.0;
        Some(CountedAttempt { key, window_start })
    }

    /// Uncounts an attempt that turned out not to count (a successful sign-in). A key left
    /// with no counted attempt is forgotten, so its next window starts with its next attempt;
    /// an attempt from a window that has since ended changes nothing.
    pub fn refund(&self, attempt: CountedAttempt<K>) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let Some(entry) = windows.get_mut(&attempt.key) else {
            return;
        };
        if entry.0 != attempt.window_start {
            return;
        }
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 {
            windows.remove(&attempt.key);
        }
    }

    /// Has `key` used up its allowance in the current window? Counts nothing.
    #[cfg(test)]
    pub fn exhausted(&self, key: &K, now: Instant) -> bool {
        let Ok(windows) = self.windows.lock() else {
            return true;
        };
        windows.get(key).is_some_and(|(start, count)| {
            now.duration_since(*start) < WINDOW && *count >= self.per_window
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_per_address_and_per_window() {
        let rl = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t = Instant::now();
        assert!(rl.allow(a, t));
        assert!(rl.allow(a, t));
        assert!(!rl.allow(a, t));
        assert!(rl.allow(b, t));
        assert!(rl.allow(a, t + WINDOW));
    }

    #[test]
    fn a_full_table_evicts_the_oldest_window_instead_of_refusing_newcomers() {
        let rl = RateLimiter::with_capacity(1, 3);
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(i));
        let t = Instant::now();
        let second = Duration::from_secs(1);
        for i in 0..3 {
            assert!(rl.allow(ip(i), t + second * i));
            assert!(rl.exhausted(&ip(i), t + second * i));
        }
        // A newcomer is counted (and allowed), and the window that started first makes room.
        assert!(rl.allow(ip(9), t + second * 3));
        assert!(!rl.allow(ip(9), t + second * 3));
        assert!(!rl.exhausted(&ip(0), t + second * 3));
        assert!(rl.exhausted(&ip(1), t + second * 3));
        assert!(rl.exhausted(&ip(2), t + second * 3));
        assert!(rl.windows.lock().unwrap().len() <= 3);
        // Ended windows go first, before any live one is evicted.
        let later = t + WINDOW + second;
        assert!(rl.allow(ip(10), later));
        assert!(rl.exhausted(&ip(2), later));
        assert!(rl.exhausted(&ip(9), later));
    }

    #[test]
    fn the_default_table_holds_max_tracked_keys_and_never_refuses_a_newcomer() {
        let rl = RateLimiter::new(5);
        let t = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            assert!(rl.allow(IpAddr::from(std::net::Ipv4Addr::from(i)), t));
        }
        let new: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(rl.allow(new, t));
        assert_eq!(rl.windows.lock().unwrap().len(), MAX_TRACKED);
    }

    #[test]
    fn keys_can_be_client_ids() {
        let rl: RateLimiter<String> = RateLimiter::new(1);
        let t = Instant::now();
        assert!(rl.count_attempt("a".to_string(), t).is_some());
        assert!(rl.count_attempt("a".to_string(), t).is_none());
        assert!(rl.count_attempt("b".to_string(), t).is_some());
    }

    #[test]
    fn counted_attempts_stop_at_the_limit_and_refunds_give_them_back() {
        let rl = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        let first = rl.count_attempt(a, t).unwrap();
        let _second = rl.count_attempt(a, t).unwrap();
        assert!(rl.count_attempt(a, t).is_none());
        assert!(rl.exhausted(&a, t));
        rl.refund(first);
        assert!(!rl.exhausted(&a, t));
        assert!(rl.count_attempt(a, t).is_some());
        assert!(rl.count_attempt(a, t).is_none());
        assert!(rl.count_attempt(a, t + WINDOW).is_some());
    }

    #[test]
    fn a_refund_from_an_ended_window_changes_nothing() {
        let rl = RateLimiter::new(1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        let old = rl.count_attempt(a, t).unwrap();
        let _new = rl.count_attempt(a, t + WINDOW).unwrap();
        rl.refund(old);
        assert!(rl.exhausted(&a, t + WINDOW));
    }

    #[test]
    fn exhausted_only_looks_and_ends_with_the_window() {
        let rl = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!(!rl.exhausted(&a, t));
        rl.allow(a, t);
        assert!(!rl.exhausted(&a, t));
        assert!(!rl.exhausted(&a, t));
        rl.allow(a, t);
        assert!(rl.exhausted(&a, t));
        assert!(!rl.exhausted(&a, t + WINDOW));
    }
}
