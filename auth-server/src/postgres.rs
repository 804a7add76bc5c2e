//! The `[postgres]` configuration table and the connection pool made from it.
//!
//! The driver is the synchronous `postgres` crate (the blocking face of `tokio-postgres`) in an
//! `r2d2` pool: the storage code runs each transaction on the blocking thread pool, with the
//! access token signed inside the transaction that consumes the code, exactly as for SQLite,
//! so one synchronous code path serves both backends. TLS is rustls (already used for every
//! other outgoing connection of this server) through `tokio-postgres-rustls`.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::store::StoreError;

/// `pool_size` when the file does not set it: connections per replica.
pub const DEFAULT_POOL_SIZE: u32 = 16;
/// Largest `pool_size`.
pub const MAX_POOL_SIZE: u32 = 1000;
/// `connect_timeout_secs` when the file does not set it.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Largest `connect_timeout_secs`.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 120;

/// `[postgres]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    url: Option<String>,
    password_file: Option<String>,
    pool_size: Option<u32>,
    tls: Option<String>,
    ca_file: Option<String>,
    connect_timeout_secs: Option<u64>,
}

/// How the connection to the database is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS, the certificate chain checked against the trusted roots and the host name against
    /// the certificate.
    VerifyFull,
    /// Plain TCP: only for a database on loopback or a network nobody else can reach.
    Disable,
}

/// A validated `[postgres]` table.
#[derive(Clone)]
pub struct PostgresConfig {
    /// The connection settings from `url` (with the password from `password_file`).
    connection: postgres::Config,
    pub pool_size: u32,
    pub tls: Tls,
    /// PEM file of the roots that may sign the server's certificate; the system's when `None`.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    // The connection settings hold the password: print where, never how.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("hosts", &self.connection.get_hosts())
            .field("dbname", &self.connection.get_dbname())
            .field("user", &self.connection.get_user())
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Checks `[postgres]`; errors name the field. `None` when the table is absent.
pub fn validate(
    raw: Option<RawPostgres>,
    base_dir: &Path,
) -> Result<Option<PostgresConfig>, (String, String)> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let err = |field: &str, message: String| (format!("postgres.{field}"), message);
    let url = raw
        .url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| err("url", "is required: the database's connection URL".into()))?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(err(
            "url",
            "must be a postgres:// or postgresql:// URL".into(),
        ));
    }
    let mut connection = postgres::Config::from_str(&url)
        .map_err(|e| err("url", format!("is not a PostgreSQL connection URL: {e}")))?;
    if url.contains("sslmode=") {
        return Err(err(
            "url",
            "must not set sslmode: set postgres.tls (verify-full or disable) instead".into(),
        ));
    }
    if connection.get_hosts().is_empty() {
        return Err(err("url", "names no host".into()));
    }
    if connection.get_dbname().is_none() {
        return Err(err(
            "url",
            "names no database (postgres://user@host/DATABASE)".into(),
        ));
    }
    if connection.get_user().is_none() {
        return Err(err(
            "url",
            "names no user (postgres://USER@host/database)".into(),
        ));
    }
    if let Some(file) = raw.password_file {
        if connection.get_password().is_some() {
            return Err(err(
                "password_file",
                "the url already carries a password: give it in one place".into(),
            ));
        }
        let path = base_dir.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            err(
                "password_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(err("password_file", format!("{} is empty", path.display())));
        }
        connection.password(password);
    }
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
        return Err(err(
            "pool_size",
            format!("must be between 1 and {MAX_POOL_SIZE}"),
        ));
    }
    let tls = match raw.tls.as_deref() {
        None | Some("verify-full") => Tls::VerifyFull,
        Some("disable") => Tls::Disable,
        Some(other) => {
            return Err(err(
                "tls",
                format!("`{other}` is not one of verify-full, disable"),
            ));
        }
    };
    let ca_file = match raw.ca_file {
        None => None,
        Some(_) if tls == Tls::Disable => {
            return Err(err(
                "ca_file",
                "is for tls = \"verify-full\"; with tls = \"disable\" nothing is verified".into(),
            ));
        }
        Some(file) => {
            let path = base_dir.join(file);
            let roots = read_roots(&path).map_err(|e| err("ca_file", e))?;
            if roots.is_empty() {
                return Err(err(
                    "ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(path)
        }
    };
    let connect_timeout_secs = raw
        .connect_timeout_secs
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);
    if !(1..=MAX_CONNECT_TIMEOUT_SECS).contains(&connect_timeout_secs) {
        return Err(err(
            "connect_timeout_secs",
            format!("must be between 1 and {MAX_CONNECT_TIMEOUT_SECS}"),
        ));
    }
    let connect_timeout = Duration::from_secs(connect_timeout_secs);
    connection.connect_timeout(connect_timeout);
    connection.application_name("mcp-auth-server");
    connection.ssl_mode(match tls {
        Tls::VerifyFull => postgres::config::SslMode::Require,
        Tls::Disable => postgres::config::SslMode::Disable,
    });
    Ok(Some(PostgresConfig {
        connection,
        pool_size,
        tls,
        ca_file,
        connect_timeout,
    }))
}

fn read_roots(path: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))
}

/// The trusted roots: the configured file, else the system's.
fn root_store(config: &PostgresConfig) -> Result<rustls::RootCertStore, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let certificates = match &config.ca_file {
        Some(path) => read_roots(path).map_err(StoreError::Pool)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(StoreError::Pool(format!(
                    "no system root certificates to verify the database with ({:?}); set postgres.ca_file",
                    found.errors
                )));
            }
            found.certs
        }
    };
    let (_, unusable) = roots.add_parsable_certificates(certificates);
    if roots.is_empty() {
        return Err(StoreError::Pool(format!(
            "none of the {unusable} root certificates is usable"
        )));
    }
    Ok(roots)
}

fn tls_connector(
    config: &PostgresConfig,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Pool(format!("TLS setup: {e}")))?;
    let client_config = match config.tls {
        Tls::VerifyFull => builder
            .with_root_certificates(root_store(config)?)
            .with_no_client_auth(),
        // Never used to connect (the connection settings say "no TLS"), but the pool's type
        // is the same for both settings.
        Tls::Disable => builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client_config))
}

pub type Manager =
    r2d2_postgres::PostgresConnectionManager<tokio_postgres_rustls::MakeRustlsConnect>;

/// A pool of connections to the configured database. Building it makes one connection, so a
/// wrong address, password or certificate is reported at startup; the others are made as
/// requests need them. Connections are checked before each use, so after a database restart
/// the broken ones are replaced instead of failing requests.
pub fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let manager = Manager::new(config.connection.clone(), tls_connector(config)?);
    let errors = LogErrors::default();
    let pool = r2d2::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(1))
        .connection_timeout(config.connect_timeout)
        .error_handler(Box::new(errors.clone()))
        .build(manager)
        .map_err(|e| {
            let cause = errors.last().unwrap_or_else(|| e.to_string());
            StoreError::Pool(format!("cannot connect to PostgreSQL: {cause}"))
        })?;
    Ok(Pool(Some(pool)))
}

/// r2d2 reports failed connection attempts here (they also fail the request that waited); the
/// last one, with its causes, names what went wrong when the pool cannot be built at startup.
#[derive(Debug, Clone, Default)]
struct LogErrors(Arc<std::sync::Mutex<Option<String>>>);

impl LogErrors {
    fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

impl r2d2::HandleError<postgres::Error> for LogErrors {
    fn handle_error(&self, error: postgres::Error) {
        let error = crate::store::postgres_error_text(&error);
        tracing::warn!(%error, "cannot connect to PostgreSQL");
        if let Ok(mut last) = self.0.lock() {
            *last = Some(error);
        }
    }
}

/// The pool. The driver runs its own small runtime per connection, which must not be dropped
/// on a thread of the server's async runtime: dropping the pool there moves it to a thread of
/// its own.
pub struct Pool(Option<r2d2::Pool<Manager>>);

impl Pool {
    pub fn get(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let pool = self
            .0
            .as_ref()
            .ok_or_else(|| StoreError::Pool("the pool is closed".into()))?;
        pool.get()
            .map_err(|e| StoreError::Pool(format!("no PostgreSQL connection: {e}")))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(pool));
        }
    }
}

/// Stores on fresh test databases (see `mcp_auth_test_support::postgres`).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A store on a new, empty database of the test server; `None` when there is no test
    /// server and none is required (then only the SQLite half of a storage test runs).
    pub fn fresh_store() -> Option<crate::store::Store> {
        let url = mcp_auth_test_support::postgres::fresh_database()?;
        let raw = RawPostgres {
            url: Some(url),
            tls: Some("disable".into()),
            pool_size: Some(4),
            ..RawPostgres::default()
        };
        let config = match validate(Some(raw), Path::new("/")) {
            Ok(Some(config)) => config,
            other => panic!("the test database URL is not usable: {other:?}"),
        };
        let location = crate::store::Location::Postgres(Box::new(config));
        match crate::store::Store::connect(&location, Default::default(), true) {
            Ok(store) => Some(store),
            Err(e) => panic!("cannot open the test database: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawPostgres {
        RawPostgres {
            url: Some(url.into()),
            ..RawPostgres::default()
        }
    }

    fn field_of(result: Result<Option<PostgresConfig>, (String, String)>) -> String {
        result.unwrap_err().0
    }

    #[test]
    fn a_url_with_user_host_and_database_is_accepted_with_safe_defaults() {
        let c = validate(
            Some(raw("postgres://mcp@db.internal:5433/auth")),
            Path::new("/"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.tls, Tls::VerifyFull);
        assert_eq!(c.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(
            c.connect_timeout,
            Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS)
        );
        assert_eq!(c.connection.get_ports(), &[5433]);
    }

    #[test]
    fn incomplete_or_ambiguous_urls_are_refused_naming_the_field() {
        for url in [
            "",
            "mysql://u@h/d",
            "postgres://u@h",
            "postgres://h/d",
            "postgres://u@h/d?sslmode=disable",
        ] {
            assert_eq!(
                field_of(validate(Some(raw(url)), Path::new("/"))),
                "postgres.url",
                "{url}"
            );
        }
    }

    #[test]
    fn the_password_comes_from_one_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let mut r = raw("postgres://u@h/d");
        r.password_file = Some("pw".into());
        let c = validate(Some(r), dir.path()).unwrap().unwrap();
        assert_eq!(c.connection.get_password(), Some(&b"s3cret"[..]));
        assert!(!format!("{c:?}").contains("s3cret"));
        let mut both = raw("postgres://u:inline@h/d");
        both.password_file = Some("pw".into());
        assert_eq!(
            field_of(validate(Some(both), dir.path())),
            "postgres.password_file"
        );
    }

    #[test]
    fn tls_settings_are_checked() {
        let mut r = raw("postgres://u@h/d");
        r.tls = Some("prefer".into());
        assert_eq!(field_of(validate(Some(r), Path::new("/"))), "postgres.tls");
        let mut r = raw("postgres://u@h/d");
        r.tls = Some("disable".into());
        r.ca_file = Some("/etc/ssl/certs/ca-certificates.crt".into());
        assert_eq!(
            field_of(validate(Some(r), Path::new("/"))),
            "postgres.ca_file"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let mut r = raw("postgres://u@h/d");
        r.ca_file = Some("empty.pem".into());
        assert_eq!(field_of(validate(Some(r), dir.path())), "postgres.ca_file");
    }

    #[test]
    fn pool_size_and_timeout_are_bounded() {
        let mut r = raw("postgres://u@h/d");
        r.pool_size = Some(0);
        assert_eq!(
            field_of(validate(Some(r), Path::new("/"))),
            "postgres.pool_size"
        );
        let mut r = raw("postgres://u@h/d");
        r.connect_timeout_secs = Some(MAX_CONNECT_TIMEOUT_SECS + 1);
        assert_eq!(
            field_of(validate(Some(r), Path::new("/"))),
            "postgres.connect_timeout_secs"
        );
    }
}
