//! Durable storage: an SQLite file (WAL mode, the default) or a PostgreSQL database shared by
//! several replicas, both through [`crate::db`]. Every multi-step change runs in one
//! transaction. Only hashes of codes, refresh tokens, session ids and client secrets are stored.

use std::path::Path;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use rusqlite::Connection;

use crate::args;
use crate::db::{Conn, Sql};

use crate::config::SigningAlgorithm;
use crate::keys::KeyMeta;
use crate::oauth::{ApplicationType, AuthMethod};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_error_text(.0))]
    Postgres(#[from] postgres::Error),
    #[error("no database connection: {0}")]
    Pool(String),
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
            StoreError::File { .. } | StoreError::Pool(_) => true,
            StoreError::Postgres(e) => postgres_unavailable(e),
            _ => false,
        }
    }
}

/// A PostgreSQL error that is about the database's state rather than the statement: the
/// connection is gone or was never made, the server is shutting down, starting, out of
/// resources or read-only, or a concurrent transaction won a conflict. Retrying later is right.
fn postgres_unavailable(e: &postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        // An I/O error, a closed connection or a timeout: not an answer of the server's.
        return true;
    };
    let code = db.code().code();
    // 08: connection exception, 53: insufficient resources, 57: operator intervention
    // (shutdown, cannot connect now), 40: transaction rollback (serialization, deadlock),
    // 25006: read-only transaction (a standby answering after a failover).
    ["08", "53", "57", "40"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "25006"
}

/// The server's message and its SQLSTATE, or the driver's own description with its causes
/// (the driver's "error performing TLS handshake" says why only in its source).
pub fn postgres_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}

/// Where the data lives, chosen in the configuration.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(Box<crate::postgres::PostgresConfig>),
}

impl Location {
    pub fn of(config: &crate::config::Config) -> Self {
        match &config.postgres {
            Some(pg) => Location::Postgres(Box::new(pg.clone())),
            None => Location::Sqlite(config.storage_path.clone()),
        }
    }
}

/// Opens (creating if needed, with mode 0600) the SQLite file and brings its schema up to date.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = open_sqlite(path)?;
    crate::migrations::apply(&mut conn)?;
    Ok(conn)
}

/// Opens the SQLite file with the settings every connection needs, without touching the schema.
fn open_sqlite(path: &Path) -> Result<Connection, StoreError> {
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
    Ok(conn)
}

#[derive(Clone)]
enum Backend {
    /// One connection: SQLite runs one writer at a time anyway.
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<crate::postgres::Pool>),
}

/// The database shared by request handlers; work runs on the blocking pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Incremented on every failed operation (a metric).
    errors: Counter,
}

impl Store {
    /// Opens the SQLite file at `path` (the schema brought up to date).
    pub fn open(path: &Path, errors: Counter) -> Result<Self, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(Arc::new(Mutex::new(open_connection(path)?))),
            errors,
        })
    }

    /// Opens the configured database. PostgreSQL connections are made as requests need them
    /// (up to the pool size); the first is made here, so a wrong URL or password fails at
    /// startup. With `migrate`, pending schema migrations are applied first.
    pub fn connect(
        location: &Location,
        errors: Counter,
        migrate: bool,
    ) -> Result<Self, StoreError> {
        let store = match location {
            Location::Sqlite(path) => {
                let mut conn = open_sqlite(path)?;
                if migrate {
                    crate::migrations::apply(&mut conn)?;
                }
                Store {
                    backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
                    errors,
                }
            }
            Location::Postgres(pg) => {
                let pool = crate::postgres::pool(pg)?;
                if migrate {
                    let mut client = pool.get()?;
                    crate::migrations::apply(&mut crate::db::Postgres::new(&mut client))?;
                }
                Store {
                    backend: Backend::Postgres(Arc::new(pool)),
                    errors,
                }
            }
        };
        Ok(store)
    }

    /// Runs `f` with a connection, on the blocking pool (both drivers block).
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<R, StoreError> + Send + 'static,
    {
        let backend = self.backend.clone();
        let result = match tokio::task::spawn_blocking(move || Self::with_conn(&backend, f)).await {
            Ok(done) => done,
            Err(e) => Err(StoreError::Worker(e.to_string())),
        };
        if let Err(e) = &result {
            self.errors.inc();
            if e.is_unavailable() {
                tracing::warn!(error = %e, "the database is unavailable");
            }
        }
        result
    }

    /// Runs `f` with a connection on the calling thread (for the command-line tools).
    pub fn run_blocking<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        Self::with_conn(&self.backend, f)
    }

    fn with_conn<R>(
        backend: &Backend,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match backend {
            Backend::Sqlite(conn) => {
                let mut guard = conn
                    .lock()
                    .map_err(|_| StoreError::Worker("connection mutex poisoned".into()))?;
                f(&mut *guard)
            }
            Backend::Postgres(pool) => {
                let mut client = pool.get()?;
                f(&mut crate::db::Postgres::new(&mut client))
            }
        }
    }
}

// ---------------------------------------------------------------- keys

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub meta: KeyMeta,
    pub alg: SigningAlgorithm,
}

/// All keys, oldest `active_from` first.
pub fn list_keys(conn: &dyn Sql) -> Result<Vec<KeyRow>, StoreError> {
    let rows = conn.query(
        "SELECT kid, alg, active_from FROM signing_keys ORDER BY active_from, created_at, kid",
        &[],
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (kid, alg, active_from) = (row.text(0)?, row.text(1)?, row.int(2)?);
        let alg = SigningAlgorithm::from_jwa_name(&alg)
            .ok_or_else(|| StoreError::Corrupt(format!("key {kid} has unknown algorithm {alg}")))?;
        out.push(KeyRow {
            meta: KeyMeta { kid, active_from },
            alg,
        });
    }
    Ok(out)
}

pub fn key_der(conn: &dyn Sql, kid: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_opt(
        "SELECT private_der FROM signing_keys WHERE kid = ?1",
        args![kid],
    )?
    .map(|r| r.blob(0))
    .transpose()
}

pub fn insert_key(
    conn: &dyn Sql,
    kid: &str,
    alg: SigningAlgorithm,
    der: &[u8],
    now: i64,
    active_from: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, private_der, created_at, active_from) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![kid, alg.jwa_name(), der, now, active_from],
    )?;
    Ok(())
}

pub fn delete_key(conn: &dyn Sql, kid: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM signing_keys WHERE kid = ?1", args![kid])?;
    Ok(())
}

/// Serializes changes to the set of signing keys across replicas (the first key made at
/// startup, a rotation) for the rest of the transaction: on PostgreSQL an advisory lock, on
/// SQLite the transaction's own write lock.
pub fn lock_keys(tx: &dyn Sql) -> Result<(), StoreError> {
    /// An arbitrary constant of this application.
    const KEYS_LOCK: i64 = 0x6d63_705f_6b65_7973;
    if tx.backend() == crate::db::Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(?1)", args![KEYS_LOCK])?;
    }
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

pub fn insert_client(conn: &dyn Sql, c: &RegisteredClient, now: i64) -> Result<(), StoreError> {
    let uris =
        serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO clients (client_id, client_name, redirect_uris, secret_hash, auth_method, allows_refresh, created_at, allows_authorization_code, application_type, scope, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?7)",
        args![&c.client_id, &c.client_name, &uris, &c.secret_hash, c.auth_method.as_str(), c.allows_refresh, now, c.allows_authorization_code, c.application_type.as_str(), &c.scope],
    )?;
    Ok(())
}

pub fn get_client(conn: &dyn Sql, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
    let Some(r) = conn.query_opt(
        "SELECT client_name, redirect_uris, secret_hash, auth_method, allows_refresh, allows_authorization_code, application_type, scope FROM clients WHERE client_id = ?1",
        args![client_id],
    )?
    else {
        return Ok(None);
    };
    let uris = r.text(1)?;
    let method = r.text(3)?;
    let application_type = r.text(6)?;
    let redirect_uris: Vec<String> =
        serde_json::from_str(&uris).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let auth_method = AuthMethod::parse(&method)
        .ok_or_else(|| StoreError::Corrupt(format!("client auth method {method}")))?;
    let application_type = ApplicationType::parse(&application_type).ok_or_else(|| {
        StoreError::Corrupt(format!("client application type {application_type}"))
    })?;
    Ok(Some(RegisteredClient {
        client_id: client_id.to_string(),
        client_name: r.opt_text(0)?,
        redirect_uris,
        secret_hash: r.opt_text(2)?,
        auth_method,
        allows_authorization_code: r.bool(5)?,
        allows_refresh: r.bool(4)?,
        application_type,
        scope: r.opt_text(7)?,
    }))
}

/// How stale a registered client's `last_used_at` may get before a use records the time again,
/// so that busy clients do not write on every request.
pub const CLIENT_USE_GRANULARITY_SECS: i64 = 60;

/// A registered client looked up for an authorization or token request, which counts as a
/// use: its `last_used_at` is brought up to `now`. Recording the use is best effort (a full
/// disk must not turn a lookup into a failure); at worst the client looks a little older.
/// Not for use inside a transaction: on PostgreSQL a failed statement ends the transaction.
pub fn use_client(
    conn: &dyn Sql,
    client_id: &str,
    now: i64,
) -> Result<Option<RegisteredClient>, StoreError> {
    let client = get_client(conn, client_id)?;
    if client.is_some()
        && let Err(e) = conn.execute(
            "UPDATE clients SET last_used_at = ?1 WHERE client_id = ?2 AND (last_used_at IS NULL OR last_used_at <= ?3)",
            args![now, client_id, now - CLIENT_USE_GRANULARITY_SECS],
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
    conn: &mut dyn Conn,
    now: i64,
    max_idle_secs: i64,
) -> Result<u64, StoreError> {
    if max_idle_secs <= 0 {
        return Ok(0);
    }
    let cutoff = now - max_idle_secs;
    let unused = "SELECT client_id FROM clients WHERE COALESCE(last_used_at, created_at) < ?1";
    let tx = conn.transaction()?;
    for table in ["refresh_families", "authorization_codes", "consents"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE client_id IN ({unused})"),
            args![cutoff],
        )?;
    }
    let deleted = tx.execute(
        "DELETE FROM clients WHERE COALESCE(last_used_at, created_at) < ?1",
        args![cutoff],
    )?;
    tx.commit()?;
    Ok(deleted)
}

// ---------------------------------------------------------------- sessions and consents

pub fn insert_session(
    conn: &dyn Sql,
    id_hash: &str,
    username: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sessions (id_hash, username, expires_at) VALUES (?1, ?2, ?3)",
        args![id_hash, username, expires_at],
    )?;
    Ok(())
}

pub fn session_user(conn: &dyn Sql, id_hash: &str, now: i64) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT username FROM sessions WHERE id_hash = ?1 AND expires_at > ?2",
        args![id_hash, now],
    )?
    .map(|r| r.text(0))
    .transpose()
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

pub fn has_consent(conn: &dyn Sql, k: &ConsentKey) -> Result<bool, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT granted_at FROM consents WHERE username=?1 AND client_id=?2 AND redirect_uri=?3 AND scope=?4 AND resource=?5",
            args![&k.username, &k.client_id, &k.redirect_uri, &k.scope, &k.resource],
        )?
        .is_some())
}

pub fn insert_consent(conn: &dyn Sql, k: &ConsentKey, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO consents (username, client_id, redirect_uri, scope, resource, granted_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (username, client_id, redirect_uri, scope, resource)
         DO UPDATE SET granted_at = excluded.granted_at",
        args![
            &k.username,
            &k.client_id,
            &k.redirect_uri,
            &k.scope,
            &k.resource,
            now
        ],
    )?;
    Ok(())
}

/// Ends a login session (sign-out).
pub fn delete_session(conn: &dyn Sql, id_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE id_hash = ?1", args![id_hash])?;
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
pub fn grants_of(conn: &dyn Sql, username: &str, now: i64) -> Result<Vec<GrantRow>, StoreError> {
    conn.query(
        "SELECT client_id, scope, resource, granted_at FROM consents WHERE username = ?1
         UNION ALL
         SELECT client_id, scope, resource, created_at FROM refresh_families
         WHERE username = ?1 AND revoked_at IS NULL AND expires_at > ?2",
        args![username, now],
    )?
    .iter()
    .map(|r| {
        Ok(GrantRow {
            client_id: r.text(0)?,
            scope: r.text(1)?,
            resource: r.text(2)?,
            at: r.int(3)?,
        })
    })
    .collect()
}

/// Withdraws everything `username` gave `client_id`: remembered consents are forgotten,
/// refresh-token families revoked, and codes not yet redeemed deleted. Returns how many things
/// were withdrawn.
pub fn revoke_client_grants(
    conn: &mut dyn Conn,
    username: &str,
    client_id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let mut changed = tx.execute(
        "DELETE FROM consents WHERE username = ?1 AND client_id = ?2",
        args![username, client_id],
    )?;
    changed += tx.execute(
        "UPDATE refresh_families SET revoked_at = ?3
         WHERE username = ?1 AND client_id = ?2 AND revoked_at IS NULL",
        args![username, client_id, now],
    )?;
    changed += tx.execute(
        "DELETE FROM authorization_codes WHERE username = ?1 AND client_id = ?2 AND redeemed_at IS NULL",
        args![username, client_id],
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
    conn: &dyn Sql,
    code_hash: &str,
    g: &CodeGrant,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, scope, resource, username, allows_refresh, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![code_hash, &g.client_id, &g.redirect_uri, &g.code_challenge, &g.scope, &g.resource, &g.username, g.allows_refresh, expires_at],
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
/// a replay. The code's row is read with a lock: when two replicas redeem the same code at
/// once, the second waits for the first to commit and then sees a replay.
#[allow(clippy::too_many_arguments)]
pub fn redeem_code<T, E>(
    conn: &mut dyn Conn,
    code_hash: &str,
    family_id: &str,
    refresh_hash: &str,
    now: i64,
    family_expires_at: i64,
    check: impl FnOnce(&CodeGrant) -> Result<(), E>,
    sign: impl FnOnce(&dyn Sql, &CodeGrant) -> Result<T, E>,
) -> Result<Redemption<T, E>, StoreError> {
    let tx = conn.transaction()?;
    let Some(r) = tx.query_locking(
        "SELECT client_id, redirect_uri, code_challenge, scope, resource, username, allows_refresh, expires_at, redeemed_at, family_id
         FROM authorization_codes WHERE code_hash = ?1",
        args![code_hash],
    )?
    else {
        return Ok(Redemption::Unknown);
    };
    let grant = CodeGrant {
        client_id: r.text(0)?,
        redirect_uri: r.text(1)?,
        code_challenge: r.text(2)?,
        scope: r.text(3)?,
        resource: r.text(4)?,
        username: r.text(5)?,
        allows_refresh: r.bool(6)?,
    };
    let (expires_at, redeemed_at, previous_family) = (r.int(7)?, r.opt_int(8)?, r.opt_text(9)?);
    if redeemed_at.is_some() {
        if let Some(previous) = previous_family {
            revoke_family_in(&*tx, &previous, now)?;
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
        args![now, family_id, code_hash],
    )?;
    if changed != 1 {
        return Ok(Redemption::Replayed);
    }
    tx.execute(
        "INSERT INTO refresh_families (family_id, client_id, username, scope, resource, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![family_id, &grant.client_id, &grant.username, &grant.scope, &grant.resource, now, family_expires_at],
    )?;
    if grant.allows_refresh {
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES (?1, ?2, ?3)",
            args![refresh_hash, family_id, now],
        )?;
    }
    let signed = match sign(&*tx, &grant) {
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

fn revoke_family_in(conn: &dyn Sql, family_id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refresh_families SET revoked_at = ?1 WHERE family_id = ?2 AND revoked_at IS NULL",
        args![now, family_id],
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

const FIND_REFRESH: &str = "SELECT f.family_id, f.client_id, f.username, f.scope, f.resource, f.expires_at, f.revoked_at, t.used_at
     FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
     WHERE t.token_hash = ?1";

fn refresh_row(r: &crate::db::Row) -> Result<RefreshRow, StoreError> {
    Ok((
        Family {
            family_id: r.text(0)?,
            client_id: r.text(1)?,
            username: r.text(2)?,
            scope: r.text(3)?,
            resource: r.text(4)?,
            expires_at: r.int(5)?,
        },
        r.opt_int(6)?,
        r.opt_int(7)?,
    ))
}

fn find_refresh(conn: &dyn Sql, token_hash: &str) -> Result<Option<RefreshRow>, StoreError> {
    conn.query_opt(FIND_REFRESH, args![token_hash])?
        .as_ref()
        .map(refresh_row)
        .transpose()
}

/// Rotates a refresh token atomically: the presented token is marked used and `new_hash`
/// becomes the family's current token. Presenting a used token revokes the family. `sign` runs
/// before the commit; when it fails nothing changes, so the presented token stays usable
/// rather than turning into a reused one. The token's row is read with a lock, so the same
/// token presented at two replicas at once rotates once and is reuse the second time.
pub fn rotate_refresh<T, E>(
    conn: &mut dyn Conn,
    token_hash: &str,
    new_hash: &str,
    now: i64,
    check: impl FnOnce(&Family) -> Result<(), E>,
    sign: impl FnOnce(&dyn Sql, &Family) -> Result<T, E>,
) -> Result<Rotation<T, E>, StoreError> {
    let tx = conn.transaction()?;
    let Some(row) = tx.query_locking(FIND_REFRESH, args![token_hash])? else {
        return Ok(Rotation::Unknown);
    };
    let (family, revoked_at, used_at) = refresh_row(&row)?;
    if revoked_at.is_some() {
        return Ok(Rotation::Revoked);
    }
    if used_at.is_some() {
        revoke_family_in(&*tx, &family.family_id, now)?;
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
        args![now, token_hash],
    )?;
    if changed != 1 {
        return Ok(Rotation::Reused(family));
    }
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES (?1, ?2, ?3)",
        args![new_hash, &family.family_id, now],
    )?;
    let signed = match sign(&*tx, &family) {
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
    conn: &dyn Sql,
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

// ---------------------------------------------------------------- shared rate limits

/// Counts one attempt of `key` against the limit `name` (at most `per_window` per window of
/// `window_secs` from the key's first attempt), before the attempt is made: one atomic
/// statement, so parallel attempts at any number of replicas get no more than the limit.
/// Returns the window's start (for [`refund_attempt`]), or `None` when the allowance is used
/// up; a refused attempt is not counted.
pub fn count_attempt(
    conn: &dyn Sql,
    name: &str,
    key: &str,
    per_window: i64,
    window_secs: i64,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    conn.query_opt(
        "INSERT INTO rate_limits (name, key, window_start, count) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (name, key) DO UPDATE SET
             window_start = CASE WHEN rate_limits.window_start <= ?4 THEN excluded.window_start ELSE rate_limits.window_start END,
             count = CASE WHEN rate_limits.window_start <= ?4 THEN 1 ELSE rate_limits.count + 1 END
         WHERE rate_limits.window_start <= ?4 OR rate_limits.count < ?5
         RETURNING window_start",
        args![name, key, now, now - window_secs, per_window],
    )?
    .map(|r| r.int(0))
    .transpose()
}

/// Gives back an attempt counted by [`count_attempt`] that turned out not to count (a
/// successful sign-in); nothing when its window has ended since.
pub fn refund_attempt(
    conn: &dyn Sql,
    name: &str,
    key: &str,
    window_start: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rate_limits SET count = count - 1
         WHERE name = ?1 AND key = ?2 AND window_start = ?3 AND count > 0",
        args![name, key, window_start],
    )?;
    Ok(())
}

/// Counts one request of `key` against the limit `name`, refused ones included (a client
/// that keeps trying while refused keeps being refused); whether it is within the limit.
pub fn count_request(
    conn: &dyn Sql,
    name: &str,
    key: &str,
    per_window: i64,
    window_secs: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let count = conn
        .query_opt(
            "INSERT INTO rate_limits (name, key, window_start, count) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (name, key) DO UPDATE SET
                 window_start = CASE WHEN rate_limits.window_start <= ?4 THEN excluded.window_start ELSE rate_limits.window_start END,
                 count = CASE WHEN rate_limits.window_start <= ?4 THEN 1 ELSE rate_limits.count + 1 END
             RETURNING count",
            args![name, key, now, now - window_secs],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(i64::MAX);
    Ok(count <= per_window)
}

// ---------------------------------------------------------------- client assertions

/// Records the `jti` of a verified client assertion until `expires_at`; `false` when the
/// client already used it (a replay). Rows whose time has passed no longer count, whether or
/// not the purge has removed them yet.
pub fn use_assertion_jti(
    conn: &dyn Sql,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM used_client_assertions WHERE client_id = ?1 AND jti = ?2 AND expires_at < ?3",
        args![client_id, jti, now],
    )?;
    let inserted = conn.execute(
        "INSERT INTO used_client_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        args![client_id, jti, expires_at],
    )?;
    Ok(inserted == 1)
}

/// Deletes expired codes, sessions, families and used assertion ids; run periodically.
pub fn purge_expired(conn: &dyn Sql, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM authorization_codes WHERE expires_at < ?1",
        args![now - 86_400],
    )?;
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", args![now])?;
    conn.execute(
        "DELETE FROM refresh_families WHERE expires_at < ?1",
        args![now],
    )?;
    conn.execute(
        "DELETE FROM used_client_assertions WHERE expires_at < ?1",
        args![now],
    )?;
    conn.execute(
        "DELETE FROM rate_limits WHERE window_start < ?1",
        args![now - RATE_LIMIT_RETENTION_SECS],
    )?;
    Ok(())
}

/// Rate-limit windows older than this are ended whatever their length, and purged.
const RATE_LIMIT_RETENTION_SECS: i64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on a fresh SQLite file and, when a PostgreSQL test server is configured
    /// (always under `cargo xtask test`), on a fresh PostgreSQL database.
    fn on_each_backend(test: impl Fn(&mut dyn Conn)) {
        let dir = tempfile::tempdir().unwrap();
        let mut sqlite = open_connection(&dir.path().join("test.sqlite")).unwrap();
        test(&mut sqlite);
        if let Some(store) = crate::postgres::testing::fresh_store() {
            store
                .run_blocking(|conn| {
                    test(conn);
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn attempts_count_before_they_are_made_and_a_refund_gives_one_back() {
        on_each_backend(|conn| {
            let attempt = |now| count_attempt(conn, "login", "192.0.2.1", 2, 60, now).unwrap();
            let first = attempt(100).unwrap();
            assert_eq!(first, 100);
            assert!(attempt(101).is_some());
            // Used up: refused, and the refusal is not counted.
            assert_eq!(attempt(102), None);
            refund_attempt(conn, "login", "192.0.2.1", first).unwrap();
            assert!(attempt(103).is_some());
            assert_eq!(attempt(104), None);
            // Another key and another limit have their own allowance.
            assert!(
                count_attempt(conn, "login", "192.0.2.2", 2, 60, 104)
                    .unwrap()
                    .is_some()
            );
            assert!(
                count_attempt(conn, "other", "192.0.2.1", 2, 60, 104)
                    .unwrap()
                    .is_some()
            );
            // The window ends a minute after the key's first attempt.
            assert_eq!(attempt(160), Some(160));
            // A refund from an ended window changes nothing.
            refund_attempt(conn, "login", "192.0.2.1", first).unwrap();
            assert!(attempt(161).is_some());
            assert_eq!(attempt(162), None);
        });
    }

    #[test]
    fn requests_are_counted_refused_ones_included() {
        on_each_backend(|conn| {
            let request = |now| count_request(conn, "register", "192.0.2.1", 2, 60, now).unwrap();
            assert_eq!((request(0), request(1), request(2)), (true, true, false));
            assert!(!request(59), "refused requests count too");
            assert!(request(60));
        });
    }

    #[test]
    fn replicas_on_one_database_share_the_allowance() {
        for (a, b) in store_pairs() {
            let attempt = |store: &Store| {
                store
                    .run_blocking(|conn| count_attempt(conn, "login", "192.0.2.9", 3, 60, 100))
                    .unwrap()
            };
            assert!(attempt(&a).is_some());
            assert!(attempt(&b).is_some());
            assert!(attempt(&a).is_some());
            assert_eq!(
                attempt(&b),
                None,
                "the third attempt at either replica was the last"
            );
        }
    }

    #[test]
    fn an_assertion_id_is_used_once_per_client_until_it_expires() {
        on_each_backend(|conn| {
            assert!(use_assertion_jti(conn, "c", "j", 200, 100).unwrap());
            assert!(!use_assertion_jti(conn, "c", "j", 200, 150).unwrap());
            // Another client's jti space is its own.
            assert!(use_assertion_jti(conn, "d", "j", 200, 150).unwrap());
            // The purge forgets ids whose assertions can no longer be accepted.
            purge_expired(conn, 201).unwrap();
            assert_eq!(
                count(conn, "SELECT COUNT(*) FROM used_client_assertions"),
                0
            );
        });
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

    fn fail_to_sign<T>(_: &dyn Sql, _: &T) -> Result<String, String> {
        Err("signing failed".into())
    }

    fn sign<T>(_: &dyn Sql, _: &T) -> Result<String, String> {
        Ok("signed".into())
    }

    #[test]
    fn a_code_whose_token_could_not_be_signed_stays_usable() {
        on_each_backend(|conn| {
            insert_code(conn, "code", &grant(), 1000).unwrap();
            let failed =
                redeem_code(conn, "code", "f1", "r1", 100, 2000, accept, fail_to_sign).unwrap();
            assert!(matches!(failed, Redemption::Rejected(e) if e == "signing failed"));
            // Nothing was kept: no family, no refresh token, and the retry is not a replay.
            assert_eq!(count(conn, "SELECT COUNT(*) FROM refresh_families"), 0);
            let retried = redeem_code(conn, "code", "f2", "r2", 101, 2000, accept, sign).unwrap();
            assert!(matches!(retried, Redemption::Issued { signed, .. } if signed == "signed"));
            assert!(find_refresh(conn, "r1").unwrap().is_none());
            let (family, revoked, used) = find_refresh(conn, "r2").unwrap().unwrap();
            assert_eq!(
                (family.family_id.as_str(), revoked, used),
                ("f2", None, None)
            );
        });
    }

    #[test]
    fn a_refresh_token_whose_access_token_could_not_be_signed_stays_usable() {
        on_each_backend(|conn| {
            insert_code(conn, "code", &grant(), 1000).unwrap();
            redeem_code(conn, "code", "f", "r1", 100, 2000, accept, sign).unwrap();
            let failed = rotate_refresh(conn, "r1", "r2", 101, accept, fail_to_sign).unwrap();
            assert!(matches!(failed, Rotation::Rejected(e) if e == "signing failed"));
            assert!(find_refresh(conn, "r2").unwrap().is_none());
            // The retry rotates: it is not taken for reuse, and the family is not revoked.
            let retried = rotate_refresh(conn, "r1", "r3", 102, accept, sign).unwrap();
            assert!(matches!(retried, Rotation::Rotated(_, signed) if signed == "signed"));
            let (_, revoked, used) = find_refresh(conn, "r3").unwrap().unwrap();
            assert_eq!((revoked, used), (None, None));
        });
    }

    #[test]
    fn a_replayed_code_revokes_what_its_first_use_issued() {
        on_each_backend(|conn| {
            insert_code(conn, "code", &grant(), 1000).unwrap();
            let first = redeem_code(conn, "code", "f1", "r1", 100, 2000, accept, sign).unwrap();
            assert!(matches!(first, Redemption::Issued { .. }));
            let second = redeem_code(conn, "code", "f2", "r2", 101, 2000, accept, sign).unwrap();
            assert!(matches!(second, Redemption::Replayed));
            let (_, revoked, _) = find_refresh(conn, "r1").unwrap().unwrap();
            assert_eq!(revoked, Some(101));
            assert!(find_refresh(conn, "r2").unwrap().is_none());
        });
    }

    #[test]
    fn a_reused_refresh_token_revokes_its_family() {
        on_each_backend(|conn| {
            insert_code(conn, "code", &grant(), 1000).unwrap();
            redeem_code(conn, "code", "f", "r1", 100, 2000, accept, sign).unwrap();
            let rotated = rotate_refresh(conn, "r1", "r2", 101, accept, sign).unwrap();
            assert!(matches!(rotated, Rotation::Rotated(..)));
            let reused = rotate_refresh(conn, "r1", "r3", 102, accept, sign).unwrap();
            assert!(matches!(reused, Rotation::Reused(_)));
            // The token the first rotation issued dies with its family.
            let after = rotate_refresh(conn, "r2", "r4", 103, accept, sign).unwrap();
            assert!(matches!(after, Rotation::Revoked));
        });
    }

    /// The stores a concurrency test runs on: an SQLite file opened twice (two processes on one
    /// file) and, when configured, one PostgreSQL database through two pools (two replicas).
    fn store_pairs() -> Vec<(Store, Store)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.keep().join("shared.sqlite");
        let mut pairs = vec![(
            Store::open(&path, Counter::default()).unwrap(),
            Store::open(&path, Counter::default()).unwrap(),
        )];
        if let Some(store) = crate::postgres::testing::fresh_store() {
            pairs.push((store.clone(), store));
        }
        pairs
    }

    #[test]
    fn a_code_redeemed_at_two_replicas_at_once_is_issued_once_and_the_replay_revokes_it() {
        for (a, b) in store_pairs() {
            a.run_blocking(|conn| insert_code(conn, "code", &grant(), i64::MAX))
                .unwrap();
            let redeem = |store: Store, family: &'static str, refresh: &'static str| {
                std::thread::spawn(move || {
                    store
                        .run_blocking(|conn| {
                            // Whichever transaction reads the code first takes its time, so
                            // the other one reads while it is still open.
                            let check = |_: &CodeGrant| {
                                std::thread::sleep(std::time::Duration::from_millis(300));
                                Ok::<_, String>(())
                            };
                            redeem_code(conn, "code", family, refresh, 100, 2000, check, sign)
                        })
                        .map(|r| match r {
                            Redemption::Issued { .. } => "issued",
                            Redemption::Replayed => "replayed",
                            _ => "other",
                        })
                })
            };
            let first = redeem(a.clone(), "f1", "r1");
            let second = redeem(b.clone(), "f2", "r2");
            let mut outcomes = vec![
                first.join().unwrap().unwrap(),
                second.join().unwrap().unwrap(),
            ];
            outcomes.sort();
            assert_eq!(outcomes, ["issued", "replayed"]);
            let revoked = a
                .run_blocking(|conn| {
                    Ok(count(
                        conn,
                        "SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NOT NULL",
                    ))
                })
                .unwrap();
            assert_eq!(
                revoked, 1,
                "the replay revokes the family the first use created"
            );
        }
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

    fn count(conn: &dyn Sql, sql: &str) -> i64 {
        conn.query_opt(sql, &[]).unwrap().unwrap().int(0).unwrap()
    }

    #[test]
    fn clients_unused_for_too_long_are_purged_with_their_grants() {
        on_each_backend(purge_unused_clients_case);
    }

    fn purge_unused_clients_case(conn: &mut dyn Conn) {
        const DAY: i64 = 86_400;
        insert_client(conn, &registered("idle"), 0).unwrap();
        insert_client(conn, &registered("used"), 0).unwrap();
        insert_client(conn, &registered("new"), 80 * DAY).unwrap();
        // "used" is seen at /authorize or /token on day 50; "idle" never again.
        assert!(use_client(conn, "used", 50 * DAY).unwrap().is_some());
        for client in ["idle", "used"] {
            let mut g = grant();
            g.client_id = client.into();
            let code = format!("code-{client}");
            insert_code(conn, &code, &g, 200 * DAY).unwrap();
            let (family, refresh) = (format!("f-{client}"), format!("r-{client}"));
            redeem_code(conn, &code, &family, &refresh, 1, 300 * DAY, accept, sign).unwrap();
            insert_consent(
                conn,
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
        assert_eq!(purge_unused_clients(conn, 100 * DAY, 0).unwrap(), 0);
        assert_eq!(purge_unused_clients(conn, 100 * DAY, 90 * DAY).unwrap(), 1);
        assert!(get_client(conn, "idle").unwrap().is_none());
        assert!(get_client(conn, "used").unwrap().is_some());
        assert!(get_client(conn, "new").unwrap().is_some());
        assert!(find_refresh(conn, "r-idle").unwrap().is_none());
        assert!(find_refresh(conn, "r-used").unwrap().is_some());
        for table in ["refresh_families", "authorization_codes", "consents"] {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE client_id = 'idle'");
            assert_eq!(count(conn, &sql), 0, "{table}");
        }
        assert_eq!(count(conn, "SELECT COUNT(*) FROM refresh_tokens"), 1);
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
