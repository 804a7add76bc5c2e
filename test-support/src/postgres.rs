//! A fresh, empty PostgreSQL database per test, so that tests on one server run in parallel
//! without seeing each other's rows.
//!
//! The server is the one of `MCP_AUTH_TEST_DATABASE_URL` (`cargo xtask test` starts a throwaway
//! cluster and sets it). Without it, [`fresh_database`] returns `None` and a test runs only its
//! SQLite half, so that plain `cargo test` works on a machine without PostgreSQL; but under
//! `cargo xtask test` (`MCP_AUTH_REQUIRE_POSTGRES=1`) or in CI (`CI` set) a missing URL fails
//! the test instead of silently skipping the PostgreSQL half.
//!
//! The databases are left behind: the throwaway cluster is removed after the run. Against a
//! long-lived server, drop the `test_*` databases now and then.
#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a test that cannot get its database fails, loudly"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The server's URL, `postgres://user@host:port/database` (a libpq-style URL).
pub const DATABASE_URL_ENV: &str = "MCP_AUTH_TEST_DATABASE_URL";
/// `1`: a missing URL is an error (`cargo xtask test` sets it).
pub const REQUIRE_ENV: &str = "MCP_AUTH_REQUIRE_POSTGRES";

/// A URL for a new, empty database on the test server, or `None` when there is no test server
/// and none is required.
///
/// # Panics
/// When a server is required but `MCP_AUTH_TEST_DATABASE_URL` is unset, or the server refuses
/// the connection or the `CREATE DATABASE`.
pub fn fresh_database() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let required = env(REQUIRE_ENV).is_some_and(|v| v == "1") || env("CI").is_some();
    let server = match server_url(env(DATABASE_URL_ENV), required) {
        Ok(server) => server?,
        Err(message) => panic!("{message}"),
    };
    let name = unique_name();
    let mut client = postgres::Client::connect(&server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_ENV} ({server}): {e}"));
    // `name` is made of [a-z0-9_] only: quoting is enough.
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|e| panic!("cannot create database {name} on {server}: {e}"));
    Some(with_database(&server, &name).unwrap_or_else(|e| panic!("{e}")))
}

/// The test server's URL, `None` when there is none and none is required.
fn server_url(url: Option<String>, required: bool) -> Result<Option<String>, String> {
    match url {
        Some(url) => Ok(Some(url)),
        None if required => Err(format!(
            "{DATABASE_URL_ENV} is not set, but this run needs PostgreSQL ({REQUIRE_ENV}=1 or CI \
             is set): run the tests with `cargo xtask test`, which starts a throwaway cluster, or \
             set {DATABASE_URL_ENV}=postgres://user@host:port/database"
        )),
        None => Ok(None),
    }
}

/// `test_<process id>_<counter>_<nanoseconds>`: unique across the threads of one test binary and
/// across the binaries `cargo test` runs one after another against the same server.
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with its database (the path) replaced by `database`; the query (`?sslmode=...`) stays.
fn with_database(url: &str, database: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(scheme, _)| *scheme == "postgres" || *scheme == "postgresql")
        .ok_or_else(|| format!("{DATABASE_URL_ENV} must be a postgres:// URL, got {url:?}"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query
        .split_once('/')
        .map_or(before_query, |(a, _)| a);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_the_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/mcp_auth_test", "test_1"),
            Ok("postgres://postgres@127.0.0.1:5432/test_1".into())
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432?sslmode=disable", "t"),
            Ok("postgresql://u:p@db:5432/t?sslmode=disable".into())
        );
        assert_eq!(
            with_database("postgres://u@db/x/y?a=b", "t"),
            Ok("postgres://u@db/t?a=b".into())
        );
        assert!(with_database("host=db user=u", "t").is_err());
        assert!(with_database("mysql://db/x", "t").is_err());
    }

    #[test]
    fn a_missing_url_is_an_error_only_when_postgresql_is_required() {
        assert_eq!(server_url(None, false), Ok(None));
        let error = server_url(None, true).unwrap_err();
        assert!(error.contains("cargo xtask test"), "{error}");
        assert_eq!(
            server_url(Some("postgres://h/d".into()), false),
            Ok(Some("postgres://h/d".into()))
        );
    }

    #[test]
    fn names_are_distinct_lowercase_identifiers() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(
            a.len() <= 63,
            "PostgreSQL truncates identifiers at 63 bytes"
        );
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    /// Runs against the real server under `cargo xtask test`; without one it checks nothing more
    /// than the rule above (unless one is required, then it fails).
    #[test]
    fn each_call_gives_a_new_empty_database_on_the_test_server() {
        let Some(first) = fresh_database() else {
            return;
        };
        let second = fresh_database().expect("the server was there a moment ago");
        assert_ne!(first, second);
        let mut client = postgres::Client::connect(&first, postgres::NoTls).expect("connect");
        let row = client
            .query_one(
                "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
                &[],
            )
            .expect("query");
        let (database, tables): (String, i64) = (row.get(0), row.get(1));
        assert!(
            first.ends_with(&format!("/{database}")),
            "{first} vs {database}"
        );
        assert_eq!(tables, 0);
        // The test user creates tables in it (the server's migrations run as that user).
        client
            .batch_execute("CREATE TABLE t (id integer)")
            .expect("create a table");
    }
}
