//! Argon2 verifications are memory-hard (19 MiB each with the default parameters) and slow by
//! design. They run on the blocking pool, at most a fixed number at once, so a flood of login
//! or client-secret attempts queues instead of exhausting memory and blocking threads.
//!
//! Client-secret checks (`/token`, `/revoke`) may hold only part of the slots: a flood of bad
//! client secrets queues behind its own smaller bound, and a person signing in waits at most
//! for that many client checks, never for the whole flood.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::secrets;

/// Argon2 verifications allowed to run at the same time.
pub const MAX_CONCURRENT_CHECKS: usize = 4;
/// Of those, how many may be client-secret checks at once; the rest stay free for sign-ins.
pub const MAX_CONCURRENT_CLIENT_SECRET_CHECKS: usize = 2;

#[derive(Clone)]
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
    /// Taken by a client-secret check before it queues for one of `permits`.
    client_permits: Arc<Semaphore>,
}

impl PasswordChecker {
    pub fn new(max_concurrent: usize, max_client_secret: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        PasswordChecker {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            client_permits: Arc::new(Semaphore::new(max_client_secret.clamp(1, max_concurrent))),
        }
    }

    /// Does the sign-in `password` match the argon2 PHC `hash`? Waits for a free slot first.
    pub async fn verify(&self, hash: String, password: String) -> bool {
        self.run(None, move || secrets::verify_password(&hash, &password))
            .await
    }

    /// Does a client `secret` match the argon2 PHC `hash`? Waits for one of the client-secret
    /// slots, then for a free slot.
    pub async fn verify_client_secret(&self, hash: String, secret: String) -> bool {
        let Ok(client_slot) = self.client_permits.clone().acquire_owned().await else {
            return false;
        };
        self.run(Some(client_slot), move || {
            secrets::verify_password(&hash, &secret)
        })
        .await
    }

    /// Runs `check` on the blocking pool while holding a slot (and `client_slot`, if any). The
    /// slots move into the blocking task, so they stay taken until the work ends even if the
    /// request is dropped (timeout).
    async fn run(
        &self,
        client_slot: Option<OwnedSemaphorePermit>,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            let _slots = (permit, client_slot);
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
        let checker = PasswordChecker::new(2, 2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (checker, running, peak) = (checker.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                checker
                    .run(None, move || {
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

    /// A flood of client-secret checks that do not finish until released, then a sign-in: the
    /// sign-in is checked while the flood still holds every slot it may take.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_sign_in_is_checked_while_a_flood_of_client_secret_checks_waits() {
        let checker = PasswordChecker::new(4, 2);
        let (release, released) = tokio::sync::watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let mut flood = Vec::new();
        for _ in 0..16 {
            let (checker, started, mut released) =
                (checker.clone(), started.clone(), released.clone());
            flood.push(tokio::spawn(async move {
                let client_slot = checker
                    .client_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .unwrap();
                checker
                    .run(Some(client_slot), move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        // Hold the slot until the test lets go (on the blocking thread).
                        tokio::runtime::Handle::current()
                            .block_on(released.wait_for(|r| *r))
                            .is_ok()
                    })
                    .await
            }));
        }
        while started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let signed_in = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            checker.run(None, || true),
        )
        .await;
        // Order, not time: the sign-in finished while no client check had been let go, and
        // never more than two client checks ran.
        assert_eq!(signed_in, Ok(true), "the sign-in waited for the flood");
        assert_eq!(started.load(Ordering::SeqCst), 2);
        release.send(true).unwrap();
        for f in flood {
            assert!(f.await.unwrap());
        }
        assert_eq!(started.load(Ordering::SeqCst), 16);
    }

    #[tokio::test]
    async fn verifies_argon2_hashes() {
        let hash = secrets::hash_password("demo").unwrap();
        let checker =
            PasswordChecker::new(MAX_CONCURRENT_CHECKS, MAX_CONCURRENT_CLIENT_SECRET_CHECKS);
        assert!(checker.verify(hash.clone(), "demo".into()).await);
        assert!(!checker.verify(hash.clone(), "Demo".into()).await);
        assert!(
            checker
                .verify_client_secret(hash.clone(), "demo".into())
                .await
        );
        assert!(!checker.verify_client_secret(hash, "Demo".into()).await);
    }
}
