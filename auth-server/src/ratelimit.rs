//! Per-address fixed-window rate limit (dynamic client registration, failed logins).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;

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
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_window
    }

    /// Has `ip` used up its allowance in the current window? Counts nothing.
    pub fn exhausted(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(windows) = self.windows.lock() else {
            return true;
        };
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
