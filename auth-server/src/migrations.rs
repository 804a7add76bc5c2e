//! Versioned schema migrations for both backends, applied at startup (`serve`) or by
//! `mcp-auth-server migrate`, checked by `migrate --check`. Each runs once, in order, in one
//! transaction with the row recording it. Several replicas starting at the same moment are
//! safe: on PostgreSQL the transaction first takes an advisory lock, so one replica migrates
//! while the others wait and then find nothing left to do; on SQLite the transaction is
//! `IMMEDIATE` (one writer per file).
//!
//! Migrations only add (tables, columns, indexes): during a rolling update, replicas of the
//! previous version keep working on the migrated schema.

use crate::args;
use crate::db::{Backend, Conn, Sql};
use crate::store::StoreError;

/// The advisory lock held while migrating (an arbitrary constant of this application).
const MIGRATION_LOCK: i64 = 0x6d63_705f_6175_7468;

/// One schema change.
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    apply: fn(&dyn Sql) -> Result<(), StoreError>,
}

/// Every migration, in order. Never edit one that was released: add the next.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "tables of clients, codes, refresh tokens, sessions, consents, keys and upstream sign-ins",
    apply: base_schema,
}];

/// The base schema in SQLite's dialect; [`dialect`] turns it into PostgreSQL's.
pub const SCHEMA: &str = r#"
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

/// A schema statement in the connection's dialect: PostgreSQL's integers are `BIGINT` (every
/// integer here is an `i64`: times, counts, 0/1 flags) and its bytes `BYTEA`.
fn dialect(sql: &dyn Sql, schema: &str) -> String {
    match sql.backend() {
        Backend::Sqlite => schema.to_string(),
        Backend::Postgres => schema.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA"),
    }
}

fn base_schema(sql: &dyn Sql) -> Result<(), StoreError> {
    sql.batch(&dialect(sql, SCHEMA))?;
    sql.batch(&dialect(sql, crate::upstream_store::SCHEMA))?;
    if sql.backend() == Backend::Sqlite {
        add_missing_columns(sql)?;
    }
    Ok(())
}

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

/// Brings an SQLite file made before migrations were versioned up to the first version's
/// schema. Clients from before `last_used_at` was kept count as used when the column is added,
/// so that none is purged as unused before it had the chance to be seen.
fn add_missing_columns(sql: &dyn Sql) -> Result<(), StoreError> {
    let columns: Vec<String> = sql
        .query("SELECT name FROM pragma_table_info('clients')", &[])?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    for (column, definition) in ADDED_CLIENT_COLUMNS {
        if !columns.iter().any(|c| c == column) {
            sql.batch(&format!(
                "ALTER TABLE clients ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    sql.execute(
        "UPDATE clients SET last_used_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE last_used_at IS NULL",
        &[],
    )?;
    Ok(())
}

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

fn has_migrations_table(sql: &dyn Sql) -> Result<bool, StoreError> {
    let query = match sql.backend() {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        }
    };
    Ok(sql
        .query_opt(query, &[])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0)
        > 0)
}

fn applied_versions(sql: &dyn Sql) -> Result<Vec<i64>, StoreError> {
    if !has_migrations_table(sql)? {
        return Ok(Vec::new());
    }
    sql.query(
        "SELECT version FROM schema_migrations ORDER BY version",
        &[],
    )?
    .iter()
    .map(|r| r.int(0))
    .collect()
}

/// The migrations this database still needs, without changing anything.
pub fn pending(sql: &dyn Sql) -> Result<Vec<&'static Migration>, StoreError> {
    let applied = applied_versions(sql)?;
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

/// Applies the pending migrations; returns the versions applied (none when up to date).
pub fn apply(conn: &mut dyn Conn) -> Result<Vec<i64>, StoreError> {
    let tx = conn.transaction()?;
    if tx.backend() == Backend::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK])?;
    }
    if !has_migrations_table(&*tx)? {
        tx.batch(CREATE_MIGRATIONS_TABLE)?;
    }
    let applied = applied_versions(&*tx)?;
    if let Some(newer) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|m| m.version == **v))
    {
        // A newer release migrated this database: its migrations only add, so this one keeps
        // working (a rolling update), but say so.
        tracing::warn!(
            version = newer,
            "the database has a schema migration this release does not know"
        );
    }
    let now = crate::time::now();
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        (m.apply)(&*tx)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            args![m.version, m.description, now],
        )?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "applied schema migration"
        );
        done.push(m.version);
    }
    tx.commit()?;
    Ok(done)
}
