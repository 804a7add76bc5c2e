//! Rows of upstream sign-ins: the pending flows (so a restart of this server between the
//! redirect to the provider and its callback loses nothing) and the latest claims of each
//! federated person (read by the scope policy and copied into access tokens).

use crate::args;
use crate::db::Sql;

use crate::identity::UpstreamIdentity;
use crate::store::StoreError;

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS upstream_flows (
    state_hash TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    request TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS federated_identities (
    subject TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

/// A sign-in sent to a provider and not yet back. The PKCE verifier and the nonce are secrets
/// of this server; the `state` sent upstream is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub provider_id: String,
    /// Hash of the CSRF cookie of the browser that started the flow.
    pub browser_hash: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// The MCP client's authorization request, as a query string.
    pub request: String,
    pub expires_at: i64,
}

pub fn insert_flow(
    conn: &dyn Sql,
    state_hash: &str,
    flow: &Flow,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM upstream_flows WHERE expires_at <= ?1",
        args![now],
    )?;
    conn.execute(
        "INSERT INTO upstream_flows (state_hash, provider_id, browser_hash, pkce_verifier, nonce, request, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![state_hash, &flow.provider_id, &flow.browser_hash, &flow.pkce_verifier, &flow.nonce, &flow.request, flow.expires_at],
    )?;
    Ok(())
}

/// Removes and returns the flow of `state_hash`: a flow is used once, whatever its outcome
/// (two callbacks with the same `state` at two replicas: one gets it). Expired flows are
/// returned too (the caller says so); they are never usable.
pub fn take_flow(conn: &dyn Sql, state_hash: &str) -> Result<Option<Flow>, StoreError> {
    conn.query_opt(
        "DELETE FROM upstream_flows WHERE state_hash = ?1
         RETURNING provider_id, browser_hash, pkce_verifier, nonce, request, expires_at",
        args![state_hash],
    )?
    .map(|r| {
        Ok(Flow {
            provider_id: r.text(0)?,
            browser_hash: r.text(1)?,
            pkce_verifier: r.text(2)?,
            nonce: r.text(3)?,
            request: r.text(4)?,
            expires_at: r.int(5)?,
        })
    })
    .transpose()
}

pub fn save_identity(
    conn: &dyn Sql,
    identity: &UpstreamIdentity,
    now: i64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(identity).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO federated_identities (subject, provider_id, identity, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subject) DO UPDATE SET provider_id = excluded.provider_id,
             identity = excluded.identity, updated_at = excluded.updated_at",
        args![
            identity.subject().as_str(),
            &identity.provider_id,
            &json,
            now
        ],
    )?;
    Ok(())
}

pub fn identity(conn: &dyn Sql, subject: &str) -> Result<Option<UpstreamIdentity>, StoreError> {
    conn.query_opt(
        "SELECT identity FROM federated_identities WHERE subject = ?1",
        args![subject],
    )?
    .map(|r| serde_json::from_str(&r.text(0)?).map_err(|e| StoreError::Corrupt(e.to_string())))
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn flow(expires_at: i64) -> Flow {
        Flow {
            provider_id: "corp".into(),
            browser_hash: "b".into(),
            pkce_verifier: "v".into(),
            nonce: "n".into(),
            request: "client_id=c".into(),
            expires_at,
        }
    }

    #[test]
    fn a_flow_is_taken_once() {
        let conn = db();
        insert_flow(&conn, "s", &flow(200), 100).unwrap();
        assert_eq!(take_flow(&conn, "s").unwrap(), Some(flow(200)));
        assert_eq!(take_flow(&conn, "s").unwrap(), None);
    }

    #[test]
    fn starting_a_flow_purges_expired_ones() {
        let conn = db();
        insert_flow(&conn, "old", &flow(150), 100).unwrap();
        insert_flow(&conn, "new", &flow(400), 200).unwrap();
        assert_eq!(take_flow(&conn, "old").unwrap(), None);
        assert!(take_flow(&conn, "new").unwrap().is_some());
    }
}
