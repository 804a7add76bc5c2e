//! SQLite storage (WAL mode). Every multi-step change runs in one transaction. Only hashes of
//! codes, refresh tokens, session ids and client secrets are stored.

use std::path::Path;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::config::SigningAlgorithm;
use crate::keys::KeyMeta;
use crate::oauth::{ApplicationType, AuthMethod};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot prepare database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("database worker failed: {0}")]
    Worker(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The database cannot take the request right now, for a reason outside this request: the
    /// disk is full, the file is locked, read-only or unreachable. Such a request is answered
    /// 503 with `Retry-After` (the transaction was rolled back, so nothing half-written stays);
    /// any other store error is a bug and answered 500.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
                failure.code,
                ErrorCode::DiskFull
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
                    | ErrorCode::FileLockingProtocolFailed
            ),
            StoreError::File { .. } => true,
            _ => false,
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_der BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    active_from INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    client_name TEXT,
    redirect_uris TEXT NOT NULL,
    secret_hash TEXT,
    auth_method TEXT NOT NULL,
    allows_refresh INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    allows_authorization_code INTEGER NOT NULL DEFAULT 1,
    application_type TEXT NOT NULL DEFAULT 'native',
    scope TEXT,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    username TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (username, client_id, redirect_uri, scope, resource)
);
CREATE TABLE IF NOT EXISTS authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    username TEXT NOT NULL,
    allows_refresh INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    redeemed_at INTEGER,
    family_id TEXT
);
CREATE TABLE IF NOT EXISTS refresh_families (
    family_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families(family_id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS used_client_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
"#;

/// Columns of `clients` added after its first version, with the value rows made before them
/// get: clients registered before `allows_authorization_code` was stored keep the only grant
/// they could use then; before `application_type` was stored, only https and loopback redirect
/// URIs could be registered, and those clients are treated as the native apps that register
/// loopback URIs (the type is only reported back, never used to refuse).
const ADDED_CLIENT_COLUMNS: &[(&str, &str)] = &[
    ("allows_authorization_code", "INTEGER NOT NULL DEFAULT 1"),
    ("application_type", "TEXT NOT NULL DEFAULT 'native'"),
    ("scope", "TEXT"),
    ("last_used_at", "INTEGER"),
];

/// Brings a database made by an earlier version up to the current schema. Clients from before
/// `last_used_at` was kept count as used when the column is added, so that none is purged as
/// unused before it had the chance to be seen.
fn add_missing_columns(conn: &Connection) -> Result<(), StoreError> {
    let has_column = |conn: &Connection, column: &str| -> Result<bool, StoreError> {
        let mut columns = conn.prepare("SELECT name FROM pragma_table_info('clients')")?;
        let names = columns.query_map([], |r| r.get::<_, String>(0))?;
        for name in names {
            if name? == column {
                return Ok(true);
            }
        }
        Ok(false)
    };
    for (column, definition) in ADDED_CLIENT_COLUMNS {
        if has_column(conn, column)? {
            continue;
        }
        let added = conn.execute_batch(&format!(
            "ALTER TABLE clients ADD COLUMN {column} {definition}"
        ));
        // Another process opening the same file may have added it in between.
        if let Err(e) = added
            && !has_column(conn, column)?
        {
            return Err(e.into());
        }
    }
    conn.execute(
        "UPDATE clients SET last_used_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE last_used_at IS NULL",
        [],
    )?;
    Ok(())
}

/// Opens (creating if needed, with mode 0600) the database and applies the schema.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let file_err = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(file_err)?;
    }
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(file_err)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(crate::upstream_store::SCHEMA)?;
    add_missing_columns(&conn)?;
    Ok(conn)
}

/// The connection shared by request handlers; work runs on the blocking pool.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Incremented on every failed operation (a metric).
    errors: Counter,
}

impl Store {
    pub fn open(path: &Path, errors: Counter) -> Result<Self, StoreError> {
        Ok(Store {
            conn: Arc::new(Mutex::new(open_connection(path)?)),
            errors,
        })
    }

    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let result = match tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Worker("connection mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => Err(StoreError::Worker(e.to_string())),
        };
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

// ---------------------------------------------------------------- keys

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub meta: KeyMeta,
    pub alg: SigningAlgorithm,
}

/// All keys, oldest `active_from` first.
pub fn list_keys(conn: &Connection) -> Result<Vec<KeyRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT kid, alg, active_from FROM signing_keys ORDER BY active_from, created_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kid, alg, active_from) = row?;
        let alg = SigningAlgorithm::from_jwa_name(&alg)
            .ok_or_else(|| StoreError::Corrupt(format!("key {kid} has unknown algorithm {alg}")))?;
        out.push(KeyRow {
            meta: KeyMeta { kid, active_from },
            alg,
        });
    }
    Ok(out)
}

pub fn key_der(conn: &Connection, kid: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT private_der FROM signing_keys WHERE kid = ?1",
            [kid],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn insert_key(
    conn: &Connection,
    kid: &str,
    alg: SigningAlgorithm,
    der: &[u8],
    now: i64,
    active_from: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_der, created_at, active_from) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kid, alg.jwa_name(), der, now, active_from],
    )?;
    Ok(())
}

pub fn delete_key(conn: &Connection, kid: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM signing_keys WHERE kid = ?1", [kid])?;
    Ok(())
}

// ---------------------------------------------------------------- clients

#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub secret_hash: Option<String>,
    pub auth_method: AuthMethod,
    pub allows_authorization_code: bool,
    pub allows_refresh: bool,
    pub application_type: ApplicationType,
    /// The registered `scope` (known scopes only), reported back; not a limit.
    pub scope: Option<String>,
}

pub fn insert_client(conn: &Connection, c: &RegisteredClient, now: i64) -> Result<(), StoreError> {
    let uris =
        serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO clients (client_id, client_name, redirect_uris, secret_hash, auth_method, allows_refresh, created_at, allows_authorization_code, application_type, scope, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?7)",
        params![c.client_id, c.client_name, uris, c.secret_hash, c.auth_method.as_str(), c.allows_refresh, now, c.allows_authorization_code, c.application_type.as_str(), c.scope],
    )?;
    Ok(())
}

pub fn get_client(
    conn: &Connection,
    client_id: &str,
) -> Result<Option<RegisteredClient>, StoreError> {
    let row = conn
        .query_row(
            "SELECT client_name, redirect_uris, secret_hash, auth_method, allows_refresh, allows_authorization_code, application_type, scope FROM clients WHERE client_id = ?1",
            [client_id],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((
        client_name,
        uris,
        secret_hash,
        method,
        allows_refresh,
        allows_authorization_code,
        application_type,
        scope,
    )) = row
    else {
        return Ok(None);
    };
    let redirect_uris: Vec<String> =
        serde_json::from_str(&uris).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let auth_method = AuthMethod::parse(&method)
        .ok_or_else(|| StoreError::Corrupt(format!("client auth method {method}")))?;
    let application_type = ApplicationType::parse(&application_type).ok_or_else(|| {
        StoreError::Corrupt(format!("client application type {application_type}"))
    })?;
    Ok(Some(RegisteredClient {
        client_id: client_id.to_string(),
        client_name,
        redirect_uris,
        secret_hash,
        auth_method,
        allows_authorization_code,
        allows_refresh,
        application_type,
        scope,
    }))
}

/// How stale a registered client's `last_used_at` may get before a use records the time again,
/// so that busy clients do not write on every request.
pub const CLIENT_USE_GRANULARITY_SECS: i64 = 60;

/// A registered client looked up for an authorization or token request, which counts as a
/// use: its `last_used_at` is brought up to `now`. Recording the use is best effort (a full
/// disk must not turn a lookup into a failure); at worst the client looks a little older.
pub fn use_client(
    conn: &Connection,
    client_id: &str,
    now: i64,
) -> Result<Option<RegisteredClient>, StoreError> {
    let client = get_client(conn, client_id)?;
    if client.is_some()
        && let Err(e) = conn.execute(
            "UPDATE clients SET last_used_at = ?1 WHERE client_id = ?2 AND (last_used_at IS NULL OR last_used_at <= ?1 - ?3)",
            params![now, client_id, CLIENT_USE_GRANULARITY_SECS],
        )
    {
        tracing::warn!(error = %e, "recording a client's use failed");
    }
    Ok(client)
}

/// Deletes registered clients unused (no authorization or token request) for longer than
/// `max_idle_secs`, with everything issued to them: refresh families (and their tokens),
/// codes and remembered consents. `0` keeps every client. Returns how many were deleted.
pub fn purge_unused_clients(
    conn: &mut Connection,
    now: i64,
    max_idle_secs: i64,
) -> Result<usize, StoreError> {
    if max_idle_secs <= 0 {
        return Ok(0);
    }
    let cutoff = now - max_idle_secs;
    let unused = "SELECT client_id FROM clients WHERE COALESCE(last_used_at, created_at) < ?1";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for table in ["refresh_families", "authorization_codes", "consents"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE client_id IN ({unused})"),
            [cutoff],
        )?;
    }
    let deleted = tx.execute(
        "DELETE FROM clients WHERE COALESCE(last_used_at, created_at) < ?1",
        [cutoff],
    )?;
    tx.commit()?;
    Ok(deleted)
}

// ---------------------------------------------------------------- sessions and consents

pub fn insert_session(
    conn: &Connection,
    id_hash: &str,
    username: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, username, expires_at) VALUES (?1, ?2, ?3)",
        params![id_hash, username, expires_at],
    )?;
    Ok(())
}

pub fn session_user(
    conn: &Connection,
    id_hash: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT username FROM sessions WHERE id_hash = ?1 AND expires_at > ?2",
            params![id_hash, now],
            |r| r.get(0),
        )
        .optional()?)
}

/// The key of a remembered consent.
#[derive(Debug, Clone)]
pub struct ConsentKey {
    pub username: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub resource: String,
}

pub fn has_consent(conn: &Connection, k: &ConsentKey) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM consents WHERE username=?1 AND client_id=?2 AND redirect_uri=?3 AND scope=?4 AND resource=?5",
            params![k.username, k.client_id, k.redirect_uri, k.scope, k.resource],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub fn insert_consent(conn: &Connection, k: &ConsentKey, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO consents (username, client_id, redirect_uri, scope, resource, granted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![k.username, k.client_id, k.redirect_uri, k.scope, k.resource, now],
    )?;
    Ok(())
}

/// Ends a login session (sign-out).
pub fn delete_session(conn: &Connection, id_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}

/// One thing a person gave a client: a remembered consent or a live refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    /// When it was given (unix seconds).
    pub at: i64,
}

/// What `username` has given clients: remembered consents, and refresh-token families that are
/// neither revoked nor expired.
pub fn grants_of(conn: &Connection, username: &str, now: i64) -> Result<Vec<GrantRow>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT client_id, scope, resource, granted_at FROM consents WHERE username = ?1
         UNION ALL
         SELECT client_id, scope, resource, created_at FROM refresh_families
         WHERE username = ?1 AND revoked_at IS NULL AND expires_at > ?2",
    )?;
    let rows = statement.query_map(params![username, now], |r| {
        Ok(GrantRow {
            client_id: r.get(0)?,
            scope: r.get(1)?,
            resource: r.get(2)?,
            at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Withdraws everything `username` gave `client_id`: remembered consents are forgotten,
/// refresh-token families revoked, and codes not yet redeemed deleted. Returns how many things
/// were withdrawn.
pub fn revoke_client_grants(
    conn: &mut Connection,
    username: &str,
    client_id: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut changed = tx.execute(
        "DELETE FROM consents WHERE username = ?1 AND client_id = ?2",
        params![username, client_id],
    )?;
    changed += tx.execute(
        "UPDATE refresh_families SET revoked_at = ?3
         WHERE username = ?1 AND client_id = ?2 AND revoked_at IS NULL",
        params![username, client_id, now],
    )?;
    changed += tx.execute(
        "DELETE FROM authorization_codes WHERE username = ?1 AND client_id = ?2 AND redeemed_at IS NULL",
        params![username, client_id],
    )?;
    tx.commit()?;
    Ok(changed)
}

// ---------------------------------------------------------------- authorization codes

/// What an authorization code is bound to.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub username: String,
    pub allows_refresh: bool,
}

pub fn insert_code(
    conn: &Connection,
    code_hash: &str,
    g: &CodeGrant,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, scope, resource, username, allows_refresh, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![code_hash, g.client_id, g.redirect_uri, g.code_challenge, g.scope, g.resource, g.username, g.allows_refresh, expires_at],
    )?;
    Ok(())
}

/// A refresh-token family: every refresh token descending from one authorization code.
#[derive(Debug, Clone)]
pub struct Family {
    pub family_id: String,
    pub client_id: String,
    pub username: String,
    pub scope: String,
    pub resource: String,
    pub expires_at: i64,
}

#[derive(Debug)]
pub enum Redemption<T, E> {
    /// The code was consumed; `refresh_token_issued` tells whether a refresh token was stored,
    /// `signed` is what `sign` made before the commit.
    Issued {
        grant: CodeGrant,
        refresh_token_issued: bool,
        signed: T,
    },
    /// The binding check failed; the code was left unused.
    Rejected(E),
    /// Second use: the family the first use created is now revoked.
    Replayed,
    Expired,
    Unknown,
}

/// Consumes an authorization code atomically. `check` validates the binding (client, redirect
/// URI, PKCE) before anything changes. On success a refresh family is created and, when the
/// grant allows refresh, `refresh_hash` is stored as its first token, in the same transaction.
/// `sign` (the access token) runs inside that transaction, before the commit: when it fails,
/// everything is rolled back and the code stays unused, so the client's retry is not taken for
/// a replay.
#[allow(clippy::too_many_arguments)]
pub fn redeem_code<T, E>(
    conn: &mut Connection,
    code_hash: &str,
    family_id: &str,
    refresh_hash: &str,
    now: i64,
    family_expires_at: i64,
    check: impl FnOnce(&CodeGrant) -> Result<(), E>,
    sign: impl FnOnce(&Connection, &CodeGrant) -> Result<T, E>,
) -> Result<Redemption<T, E>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = tx
        .query_row(
            "SELECT client_id, redirect_uri, code_challenge, scope, resource, username, allows_refresh, expires_at, redeemed_at, family_id
             FROM authorization_codes WHERE code_hash = ?1",
            [code_hash],
            |r| {
                Ok((
                    CodeGrant {
                        client_id: r.get(0)?,
                        redirect_uri: r.get(1)?,
                        code_challenge: r.get(2)?,
                        scope: r.get(3)?,
                        resource: r.get(4)?,
                        username: r.get(5)?,
                        allows_refresh: r.get(6)?,
                    },
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        )
        .optional()?;
    let Some((grant, expires_at, redeemed_at, previous_family)) = row else {
        return Ok(Redemption::Unknown);
    };
    if redeemed_at.is_some() {
        if let Some(previous) = previous_family {
            revoke_family_in(&tx, &previous, now)?;
        }
        tx.commit()?;
        return Ok(Redemption::Replayed);
    }
    if expires_at <= now {
        return Ok(Redemption::Expired);
    }
    if let Err(e) = check(&grant) {
        return Ok(Redemption::Rejected(e));
    }
    let changed = tx.execute(
        "UPDATE authorization_codes SET redeemed_at = ?1, family_id = ?2 WHERE code_hash = ?3 AND redeemed_at IS NULL",
        params![now, family_id, code_hash],
    )?;
    if changed != 1 {
        return Ok(Redemption::Replayed);
    }
    tx.execute(
        "INSERT INTO refresh_families (family_id, client_id, username, scope, resource, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![family_id, grant.client_id, grant.username, grant.scope, grant.resource, now, family_expires_at],
    )?;
    if grant.allows_refresh {
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES (?1, ?2, ?3)",
            params![refresh_hash, family_id, now],
        )?;
    }
    let signed = match sign(&tx, &grant) {
        Ok(signed) => signed,
        // Dropping the transaction rolls it back.
        Err(e) => return Ok(Redemption::Rejected(e)),
    };
    tx.commit()?;
    let refresh_token_issued = grant.allows_refresh;
    Ok(Redemption::Issued {
        grant,
        refresh_token_issued,
        signed,
    })
}

fn revoke_family_in(conn: &Connection, family_id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_families SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL",
        params![now, family_id],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- refresh tokens

#[derive(Debug)]
pub enum Rotation<T, E> {
    /// Rotated, with what `sign` made before the commit.
    Rotated(Family, T),
    /// The request was refused by `check` or `sign` failed; nothing changed.
    Rejected(E),
    /// An already rotated token came back: the family is now revoked.
    Reused(Family),
    Revoked,
    Expired,
    Unknown,
}

/// A refresh token with its family, the family's `revoked_at` and the token's `used_at`.
type RefreshRow = (Family, Option<i64>, Option<i64>);

fn find_refresh(conn: &Connection, token_hash: &str) -> Result<Option<RefreshRow>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT f.family_id, f.client_id, f.username, f.scope, f.resource, f.expires_at, f.revoked_at, t.used_at
             FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
             WHERE t.token_hash = ?1",
            [token_hash],
            |r| {
                Ok((
                    Family {
                        family_id: r.get(0)?,
                        client_id: r.get(1)?,
                        username: r.get(2)?,
                        scope: r.get(3)?,
                        resource: r.get(4)?,
                        expires_at: r.get(5)?,
                    },
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .optional()?)
}

/// Rotates a refresh token atomically: the presented token is marked used and `new_hash`
/// becomes the family's current token. Presenting a used token revokes the family. `sign` runs
/// before the commit; when it fails nothing changes, so the presented token stays usable
/// rather than turning into a reused one.
pub fn rotate_refresh<T, E>(
    conn: &mut Connection,
    token_hash: &str,
    new_hash: &str,
    now: i64,
    check: impl FnOnce(&Family) -> Result<(), E>,
    sign: impl FnOnce(&Connection, &Family) -> Result<T, E>,
) -> Result<Rotation<T, E>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some((family, revoked_at, used_at)) = find_refresh(&tx, token_hash)? else {
        return Ok(Rotation::Unknown);
    };
    if revoked_at.is_some() {
        return Ok(Rotation::Revoked);
    }
    if used_at.is_some() {
        revoke_family_in(&tx, &family.family_id, now)?;
        tx.commit()?;
        return Ok(Rotation::Reused(family));
    }
    if let Err(e) = check(&family) {
        return Ok(Rotation::Rejected(e));
    }
    if family.expires_at <= now {
        return Ok(Rotation::Expired);
    }
    let changed = tx.execute(
        "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL",
        params![now, token_hash],
    )?;
    if changed != 1 {
        return Ok(Rotation::Reused(family));
    }
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES (?1, ?2, ?3)",
        params![new_hash, family.family_id, now],
    )?;
    let signed = match sign(&tx, &family) {
        Ok(signed) => signed,
        Err(e) => return Ok(Rotation::Rejected(e)),
    };
    tx.commit()?;
    Ok(Rotation::Rotated(family, signed))
}

#[derive(Debug)]
pub enum RevokeOutcome {
    /// The token's family is revoked (it may have been already).
    Revoked(Family),
    OtherClient,
    NotFound,
}

/// Revokes the family of a refresh token presented by `client_id`.
pub fn revoke_refresh(
    conn: &Connection,
    token_hash: &str,
    client_id: &str,
    now: i64,
) -> Result<RevokeOutcome, StoreError> {
    let Some((family, _, _)) = find_refresh(conn, token_hash)? else {
        return Ok(RevokeOutcome::NotFound);
    };
    if family.client_id != client_id {
        return Ok(RevokeOutcome::OtherClient);
    }
    revoke_family_in(conn, &family.family_id, now)?;
    Ok(RevokeOutcome::Revoked(family))
}

// ---------------------------------------------------------------- client assertions

/// Records the `jti` of a verified client assertion until `expires_at`; `false` when the
/// client already used it (a replay). Rows whose time has passed no longer count, whether or
/// not the purge has removed them yet.
pub fn use_assertion_jti(
    conn: &Connection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM used_client_assertions WHERE client_id = ?1 AND jti = ?2 AND expires_at < ?3",
        params![client_id, jti, now],
    )?;
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO used_client_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3)",
        params![client_id, jti, expires_at],
    )?;
    Ok(inserted == 1)
}

/// Deletes expired codes, sessions, families and used assertion ids; run periodically.
pub fn purge_expired(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM authorization_codes WHERE expires_at < ?1 - 86400",
        [now],
    )?;
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
    conn.execute("DELETE FROM refresh_families WHERE expires_at < ?1", [now])?;
    conn.execute(
        "DELETE FROM used_client_assertions WHERE expires_at < ?1",
        [now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_id_is_used_once_per_client_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("jti.sqlite")).unwrap();
        assert!(use_assertion_jti(&conn, "c", "j", 200, 100).unwrap());
        assert!(!use_assertion_jti(&conn, "c", "j", 200, 150).unwrap());
        // Another client's jti space is its own.
        assert!(use_assertion_jti(&conn, "d", "j", 200, 150).unwrap());
        // The purge forgets ids whose assertions can no longer be accepted.
        purge_expired(&conn, 201).unwrap();
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM used_client_assertions", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(left, 0);
    }

    fn grant() -> CodeGrant {
        CodeGrant {
            client_id: "c".into(),
            redirect_uri: "https://a.example/cb".into(),
            code_challenge: "x".into(),
            scope: "mcp:tools".into(),
            resource: "https://r.example/mcp".into(),
            username: "demo".into(),
            allows_refresh: true,
        }
    }

    fn accept<T>(_: &T) -> Result<(), String> {
        Ok(())
    }

    fn fail_to_sign<T>(_: &Connection, _: &T) -> Result<String, String> {
        Err("signing failed".into())
    }

    fn sign<T>(_: &Connection, _: &T) -> Result<String, String> {
        Ok("signed".into())
    }

    #[test]
    fn a_code_whose_token_could_not_be_signed_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("sign.sqlite")).unwrap();
        insert_code(&conn, "code", &grant(), 1000).unwrap();
        let failed = redeem_code(
            &mut conn,
            "code",
            "f1",
            "r1",
            100,
            2000,
            accept,
            fail_to_sign,
        )
        .unwrap();
        assert!(matches!(failed, Redemption::Rejected(e) if e == "signing failed"));
        // Nothing was kept: no family, no refresh token, and the retry is not a replay.
        let families: i64 = conn
            .query_row("SELECT COUNT(*) FROM refresh_families", [], |r| r.get(0))
            .unwrap();
        assert_eq!(families, 0);
        let retried = redeem_code(&mut conn, "code", "f2", "r2", 101, 2000, accept, sign).unwrap();
        assert!(matches!(retried, Redemption::Issued { signed, .. } if signed == "signed"));
        assert!(find_refresh(&conn, "r1").unwrap().is_none());
        let (family, revoked, used) = find_refresh(&conn, "r2").unwrap().unwrap();
        assert_eq!(
            (family.family_id.as_str(), revoked, used),
            ("f2", None, None)
        );
    }

    #[test]
    fn a_refresh_token_whose_access_token_could_not_be_signed_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("rotate.sqlite")).unwrap();
        insert_code(&conn, "code", &grant(), 1000).unwrap();
        redeem_code(&mut conn, "code", "f", "r1", 100, 2000, accept, sign).unwrap();
        let failed = rotate_refresh(&mut conn, "r1", "r2", 101, accept, fail_to_sign).unwrap();
        assert!(matches!(failed, Rotation::Rejected(e) if e == "signing failed"));
        assert!(find_refresh(&conn, "r2").unwrap().is_none());
        // The retry rotates: it is not taken for reuse, and the family is not revoked.
        let retried = rotate_refresh(&mut conn, "r1", "r3", 102, accept, sign).unwrap();
        assert!(matches!(retried, Rotation::Rotated(_, signed) if signed == "signed"));
        let (_, revoked, used) = find_refresh(&conn, "r3").unwrap().unwrap();
        assert_eq!((revoked, used), (None, None));
    }

    fn registered(id: &str) -> RegisteredClient {
        RegisteredClient {
            client_id: id.into(),
            client_name: None,
            redirect_uris: vec!["https://a.example/cb".into()],
            secret_hash: None,
            auth_method: AuthMethod::None,
            allows_authorization_code: true,
            allows_refresh: true,
            application_type: ApplicationType::Web,
            scope: None,
        }
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn clients_unused_for_too_long_are_purged_with_their_grants() {
        const DAY: i64 = 86_400;
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("idle.sqlite")).unwrap();
        insert_client(&conn, &registered("idle"), 0).unwrap();
        insert_client(&conn, &registered("used"), 0).unwrap();
        insert_client(&conn, &registered("new"), 80 * DAY).unwrap();
        // "used" is seen at /authorize or /token on day 50; "idle" never again.
        assert!(use_client(&conn, "used", 50 * DAY).unwrap().is_some());
        for client in ["idle", "used"] {
            let mut g = grant();
            g.client_id = client.into();
            let code = format!("code-{client}");
            insert_code(&conn, &code, &g, 200 * DAY).unwrap();
            let (family, refresh) = (format!("f-{client}"), format!("r-{client}"));
            redeem_code(
                &mut conn,
                &code,
                &family,
                &refresh,
                1,
                300 * DAY,
                accept,
                sign,
            )
            .unwrap();
            insert_consent(
                &conn,
                &ConsentKey {
                    username: "demo".into(),
                    client_id: client.into(),
                    redirect_uri: "https://a.example/cb".into(),
                    scope: "mcp:tools".into(),
                    resource: "https://r.example/mcp".into(),
                },
                1,
            )
            .unwrap();
        }
        assert_eq!(purge_unused_clients(&mut conn, 100 * DAY, 0).unwrap(), 0);
        assert_eq!(
            purge_unused_clients(&mut conn, 100 * DAY, 90 * DAY).unwrap(),
            1
        );
        assert!(get_client(&conn, "idle").unwrap().is_none());
        assert!(get_client(&conn, "used").unwrap().is_some());
        assert!(get_client(&conn, "new").unwrap().is_some());
        assert!(find_refresh(&conn, "r-idle").unwrap().is_none());
        assert!(find_refresh(&conn, "r-used").unwrap().is_some());
        for table in ["refresh_families", "authorization_codes", "consents"] {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE client_id = 'idle'");
            assert_eq!(count(&conn, &sql), 0, "{table}");
        }
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM refresh_tokens"), 1);
    }

    #[test]
    fn clients_registered_before_the_code_grant_was_stored_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE clients (client_id TEXT PRIMARY KEY, client_name TEXT,
                redirect_uris TEXT NOT NULL, secret_hash TEXT, auth_method TEXT NOT NULL,
                allows_refresh INTEGER NOT NULL, created_at INTEGER NOT NULL);
             INSERT INTO clients VALUES ('old', NULL, '[\"https://a.example/cb\"]', NULL, 'none', 0, 0);",
        )
        .unwrap();
        drop(old);
        let conn = open_connection(&path).unwrap();
        let client = get_client(&conn, "old").unwrap().unwrap();
        assert!(client.allows_authorization_code);
        assert!(!client.allows_refresh);
        assert_eq!(client.application_type, ApplicationType::Native);
        assert_eq!(client.scope, None);
        // Opening again finds the column in place.
        drop(conn);
        let conn = open_connection(&path).unwrap();
        // Counted as used when the column was added, so not purged as unused at once.
        let last_used: i64 = conn
            .query_row(
                "SELECT last_used_at FROM clients WHERE client_id = 'old'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(last_used > 1_700_000_000, "{last_used}");
    }
}
