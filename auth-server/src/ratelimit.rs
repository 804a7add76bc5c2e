//! Per-address fixed-window rate limit (dynamic client registration, failed logins).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The span each address's allowance covers; refusals tell clients to retry after it.
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;

/// Bounded memory: when the table is full of live windows, an address not in it cannot be
/// tracked, and is treated as over its limit (fail closed) until windows end.
fn no_room_for(windows: &mut HashMap<IpAddr, (Instant, u32)>, ip: IpAddr, now: Instant) -> bool {
    if windows.len() < MAX_TRACKED || windows.contains_key(&ip) {
        return false;
    }
    windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
    windows.len() >= MAX_TRACKED
}

/// An attempt counted against an address's allowance before its outcome is known; giving it
/// back (`RateLimiter::refund`) uncounts it when the attempt turns out not to count.
pub struct CountedAttempt {
    ip: IpAddr,
    window_start: Instant,
}

pub struct RateLimiter {
    per_window: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_window: per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip`; false when it exceeds the limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        if no_room_for(&mut windows, ip, now) {
            return false;
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_window
    }

    /// Counts an attempt from `ip` before it is made, so that parallel attempts cannot all pass
    /// the check while none has been counted yet; `None` when the allowance is used up (the
    /// refused attempt is not counted).
    pub fn count_attempt(&self, ip: IpAddr, now: Instant) -> Option<CountedAttempt> {
        let mut windows = self.windows.lock().ok()?;
        if no_room_for(&mut windows, ip, now) {
            return None;
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            return None;
        }
        entry.1 += 1;
        Some(CountedAttempt {
            ip,
            window_start: entry.0,
        })
    }

    /// Uncounts an attempt that turned out not to count (a successful sign-in). An address
    /// left with no counted attempt is forgotten, so its next window starts with its next
    /// attempt; an attempt from a window that has since ended changes nothing.
    pub fn refund(&self, attempt: CountedAttempt) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let Some(entry) = windows.get_mut(&attempt.ip) else {
            return;
        };
        if entry.0 != attempt.window_start {
            return;
        }
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 {
            windows.remove(&attempt.ip);
        }
    }

    /// Has `ip` used up its allowance in the current window? Counts nothing.
    #[cfg(test)]
    pub fn exhausted(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else {
            return true;
        };
        if no_room_for(&mut windows, ip, now) {
            return true;
        }
        windows.get(&ip).is_some_and(|(start, count)| {
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
    fn a_full_table_refuses_new_addresses_until_windows_end() {
        let rl = RateLimiter::new(5);
        let t = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            assert!(rl.allow(IpAddr::from(std::net::Ipv4Addr::from(i)), t));
        }
        let known = IpAddr::from(std::net::Ipv4Addr::from(7u32));
        let new: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(rl.allow(known, t));
        assert!(rl.exhausted(new, t));
        assert!(!rl.allow(new, t));
        assert!(!rl.exhausted(new, t + WINDOW));
        assert!(rl.allow(new, t + WINDOW));
        assert!(rl.windows.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn counted_attempts_stop_at_the_limit_and_refunds_give_them_back() {
        let rl = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        let first = rl.count_attempt(a, t).unwrap();
        let _second = rl.count_attempt(a, t).unwrap();
        assert!(rl.count_attempt(a, t).is_none());
        assert!(rl.exhausted(a, t));
        rl.refund(first);
        assert!(!rl.exhausted(a, t));
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
        assert!(rl.exhausted(a, t + WINDOW));
    }

    #[test]
    fn exhausted_only_looks_and_ends_with_the_window() {
        let rl = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!(!rl.exhausted(a, t));
        rl.allow(a, t);
        assert!(!rl.exhausted(a, t));
        assert!(!rl.exhausted(a, t));
        rl.allow(a, t);
        assert!(rl.exhausted(a, t));
        assert!(!rl.exhausted(a, t + WINDOW));
    }
}
