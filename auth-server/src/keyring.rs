//! The running server's view of the signing keys. Keys live in the database, so a rotation done
//! by `mcp-auth-server keys rotate` (another process) is picked up on the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::db::{Conn, Sql};

use crate::config::{Config, SigningAlgorithm};
use crate::keys::{self, KeyPair, RETENTION_MARGIN_SECS};
use crate::store::{self, Store, StoreError};

fn retention_secs(config: &Config) -> i64 {
    config.access_token_lifetime.as_secs() as i64 + RETENTION_MARGIN_SECS
}

/// The stored keys with their schedule at `now`.
fn scheduled(
    conn: &dyn Sql,
    now: i64,
    retention: i64,
) -> Result<(Vec<store::KeyRow>, keys::Schedule), StoreError> {
    let rows = store::list_keys(conn)?;
    let metas: Vec<_> = rows.iter().map(|r| r.meta.clone()).collect();
    let schedule = keys::schedule(&metas, now, retention);
    Ok((rows, schedule))
}

/// Parsed private keys by kid (parsing DER on every token would be wasteful).
#[derive(Clone, Default)]
pub struct KeyCache {
    parsed: Arc<Mutex<HashMap<String, Arc<KeyPair>>>>,
}

impl KeyCache {
    fn get(
        &self,
        conn: &dyn Sql,
        kid: &str,
        alg: SigningAlgorithm,
    ) -> Result<Arc<KeyPair>, StoreError> {
        if let Some(k) = self.parsed.lock().ok().and_then(|m| m.get(kid).cloned()) {
            return Ok(k);
        }
        let der = store::key_der(conn, kid)?
            .ok_or_else(|| StoreError::Corrupt(format!("key {kid} vanished")))?;
        let pair = Arc::new(
            KeyPair::from_der(alg, &der, kid)
                .map_err(|e| StoreError::Corrupt(format!("key {kid}: {e}")))?,
        );
        if let Ok(mut m) = self.parsed.lock() {
            m.insert(kid.to_string(), pair.clone());
        }
        Ok(pair)
    }
}

/// Generates a key and stores it with the given activation time; returns its kid.
pub fn add_key(
    conn: &dyn Sql,
    alg: SigningAlgorithm,
    now: i64,
    active_from: i64,
) -> Result<String, StoreError> {
    let pair =
        KeyPair::generate(alg).map_err(|e| StoreError::Corrupt(format!("key generation: {e}")))?;
    let kid = pair.thumbprint();
    let der = pair
        .private_der()
        .map_err(|e| StoreError::Corrupt(format!("key encoding: {e}")))?;
    store::insert_key(conn, &kid, alg, &der, now, active_from)?;
    Ok(kid)
}

/// On startup: make sure a signing key exists (the very first key is active at once).
/// Replicas starting at the same moment make one key between them: the check and the insert
/// run under the key lock.
pub fn ensure_signing_key(
    conn: &mut dyn Conn,
    config: &Config,
    now: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    store::lock_keys(&*tx)?;
    let (rows, sched) = scheduled(&*tx, now, retention_secs(config))?;
    match sched.signing.and_then(|i| rows.get(i)) {
        Some(current) => {
            if current.alg != config.signing_algorithm {
                tracing::warn!(
                    current = current.alg.jwa_name(),
                    configured = config.signing_algorithm.jwa_name(),
                    "the signing key's algorithm differs from signing_algorithm; run `mcp-auth-server keys rotate` to switch"
                );
            }
        }
        None => {
            let kid = add_key(&*tx, config.signing_algorithm, now, now)?;
            tracing::info!(%kid, alg = config.signing_algorithm.jwa_name(), "generated the first signing key");
        }
    }
    tx.commit()
}

/// Outcome of `keys rotate`.
pub struct Rotated {
    pub kid: String,
    pub active_from: i64,
    pub pruned: Vec<String>,
}

/// Adds a key that starts signing after `publish_delay_secs` and prunes keys no longer
/// published. Every replica reads the keys from the shared database on each request, so the
/// new key is in every replica's JWKS from the commit on, `publish_delay_secs` before any
/// replica signs with it.
pub fn rotate(
    conn: &mut dyn Conn,
    config: &Config,
    now: i64,
    publish_delay_secs: i64,
) -> Result<Rotated, StoreError> {
    let tx = conn.transaction()?;
    store::lock_keys(&*tx)?;
    let active_from = now + publish_delay_secs;
    let kid = add_key(&*tx, config.signing_algorithm, now, active_from)?;
    let (rows, sched) = scheduled(&*tx, now, retention_secs(config))?;
    let mut pruned = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if !sched.published.contains(&i) {
            store::delete_key(&*tx, &row.meta.kid)?;
            pruned.push(row.meta.kid.clone());
        }
    }
    tx.commit()?;
    Ok(Rotated {
        kid,
        active_from,
        pruned,
    })
}

/// One stored key as `keys list` shows it.
pub struct KeyListing {
    pub kid: String,
    pub alg: &'static str,
    pub active_from: i64,
    /// signing, pending, retiring or expired, with what that means.
    pub state: &'static str,
}

/// The stored keys and their state at `now`, for `keys list`.
pub fn describe(conn: &dyn Sql, config: &Config, now: i64) -> Result<Vec<KeyListing>, StoreError> {
    let (rows, sched) = scheduled(conn, now, retention_secs(config))?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let state = if Some(i) == sched.signing {
                "signing"
            } else if r.meta.active_from > now {
                "pending (published, not yet signing)"
            } else if sched.published.contains(&i) {
                "retiring (published for verification)"
            } else {
                "expired (pruned on next rotate)"
            };
            KeyListing {
                kid: r.meta.kid.clone(),
                alg: r.alg.jwa_name(),
                active_from: r.meta.active_from,
                state,
            }
        })
        .collect())
}

#[derive(Clone)]
pub struct KeyRing {
    store: Store,
    cache: KeyCache,
    retention_secs: i64,
}

impl KeyRing {
    pub fn new(store: Store, config: &Config) -> Self {
        KeyRing {
            store,
            cache: KeyCache::default(),
            retention_secs: retention_secs(config),
        }
    }

    /// The current signing key (it carries its `kid`).
    pub async fn signing_key(&self, now: i64) -> Result<Arc<KeyPair>, StoreError> {
        let cache = self.cache.clone();
        let retention = self.retention_secs;
        self.store
            .run(move |conn| {
                let (rows, sched) = scheduled(conn, now, retention)?;
                let row = sched
                    .signing
                    .and_then(|i| rows.get(i))
                    .ok_or_else(|| StoreError::Corrupt("no active signing key".into()))?;
                cache.get(conn, &row.meta.kid, row.alg)
            })
            .await
    }

    /// Published keys, as (kid, key pair).
    pub async fn published(&self, now: i64) -> Result<Vec<(String, Arc<KeyPair>)>, StoreError> {
        let cache = self.cache.clone();
        let retention = self.retention_secs;
        self.store
            .run(move |conn| {
                let (rows, sched) = scheduled(conn, now, retention)?;
                let mut out = Vec::new();
                for i in sched.published {
                    if let Some(row) = rows.get(i) {
                        out.push((
                            row.meta.kid.clone(),
                            cache.get(conn, &row.meta.kid, row.alg)?,
                        ));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// The JWKS document.
    pub async fn jwks(&self, now: i64) -> Result<serde_json::Value, StoreError> {
        let keys = self.published(now).await?;
        let mut jwks = Vec::new();
        for (kid, pair) in keys {
            jwks.push(
                pair.public_jwk(&kid)
                    .map_err(|e| StoreError::Corrupt(format!("jwk of {kid}: {e}")))?,
            );
        }
        Ok(serde_json::json!({ "keys": jwks }))
    }
}
