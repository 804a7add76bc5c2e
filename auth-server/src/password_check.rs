//! Argon2 verifications are memory-hard (19 MiB each with the default parameters) and slow by
//! design. They run on the blocking pool, at most a fixed number at once, so a flood of login
//! or client-secret attempts queues instead of exhausting memory and blocking threads.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::secrets;

/// Argon2 verifications allowed to run at the same time.
pub const MAX_CONCURRENT_CHECKS: usize = 4;

#[derive(Clone)]
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
}

impl PasswordChecker {
    pub fn new(max_concurrent: usize) -> Self {
        PasswordChecker {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// Does `password` match the argon2 PHC `hash`? Waits for a free slot first.
    pub async fn verify(&self, hash: String, password: String) -> bool {
        self.run(move || secrets::verify_password(&hash, &password))
            .await
    }

    /// Runs `check` on the blocking pool while holding a slot. The slot moves into the blocking
    /// task, so it stays taken until the work ends even if the request is dropped (timeout).
    async fn run(&self, check: impl FnOnce() -> bool + Send + 'static) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            check()
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_the_allowed_checks_run_at_once() {
        let checker = PasswordChecker::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (checker, running, peak) = (checker.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                checker
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(40));
                        running.fetch_sub(1, Ordering::SeqCst);
                        true
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        // Unbounded, the eight would overlap; bounded, at most two ever run together.
        assert!((1..=2).contains(&peak.load(Ordering::SeqCst)));
    }

    #[tokio::test]
    async fn verifies_argon2_hashes() {
        let hash = secrets::hash_password("demo").unwrap();
        let checker = PasswordChecker::new(MAX_CONCURRENT_CHECKS);
        assert!(checker.verify(hash.clone(), "demo".into()).await);
        assert!(!checker.verify(hash, "Demo".into()).await);
    }
}
