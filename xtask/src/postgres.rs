//! A throwaway PostgreSQL cluster for `cargo xtask test` and `cargo xtask demo --ha`: Debian's
//! binaries, a data directory in a fresh temporary directory, a free loopback port, `trust`
//! authentication for local and loopback connections only, and everything removed when the
//! [`ThrowawayPostgres`] is dropped (also when the run fails or is interrupted with Ctrl-C).
//!
//! `initdb` refuses to run as root, so as root the server's own commands run as the `postgres`
//! user (which Debian's `postgresql` package creates); as anyone else they run as that user.

use std::fs::DirBuilder;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::install_debian_package;

/// Where Debian installs each major version's binaries: `/usr/lib/postgresql/<major>/bin`.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// The Debian package that pulls in the current major version's server.
const DEBIAN_PACKAGE: &str = "postgresql";
/// The superuser `initdb` creates, and the OS user that owns the cluster when xtask runs as root.
pub const SUPERUSER: &str = "postgres";
/// The database `cargo xtask test` hands to the tests (each test creates its own next to it).
pub const TEST_DATABASE: &str = "mcp_auth_test";
/// The database URL the tests use; when it is not set, `cargo xtask test` starts a throwaway
/// cluster and sets it.
pub const DATABASE_URL_ENV: &str = "MCP_AUTH_TEST_DATABASE_URL";
/// Set to `1` by xtask: a test that needs PostgreSQL then fails when the URL is missing instead
/// of running only its SQLite half (`test_support::postgres`).
pub const REQUIRE_ENV: &str = "MCP_AUTH_REQUIRE_POSTGRES";
/// Where the end-to-end tests find `initdb`, `pg_ctl` and `postgres` to start their own clusters.
pub const BIN_DIR_ENV: &str = "POSTGRES_BIN_DIR";
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "60";

/// The bin directory of the highest major version among `candidates` (each a directory under
/// [`DEBIAN_ROOT`], named by its major version) that holds the server programs.
/// Directories not named by a number (Debian's `pg_upgradecluster` leftovers, say) are ignored.
fn highest_version(candidates: &[(String, bool)]) -> Option<&str> {
    candidates
        .iter()
        .filter(|(_, has_binaries)| *has_binaries)
        .filter_map(|(name, _)| {
            let version: f64 = name.parse().ok()?;
            Some((version, name.as_str()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// The highest `/usr/lib/postgresql/<major>/bin` that has `initdb`, `pg_ctl` and `postgres`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let root = Path::new(DEBIAN_ROOT);
    let candidates: Vec<(String, bool)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| {
            let bin = entry.path().join("bin");
            let complete = ["initdb", "pg_ctl", "postgres", "createdb"]
                .iter()
                .all(|program| bin.join(program).is_file());
            (entry.file_name().to_string_lossy().into_owned(), complete)
        })
        .collect();
    highest_version(&candidates).map(|version| root.join(version).join("bin"))
}

/// [`find_bin_dir`], installing Debian's `postgresql` package first when there is none.
pub fn ensure_bin_dir() -> Result<PathBuf, String> {
    if let Some(bin) = find_bin_dir() {
        return Ok(bin);
    }
    // The package puts no server program on PATH, so "installed" means a bin directory above.
    install_debian_package(DEBIAN_PACKAGE)?;
    find_bin_dir().ok_or_else(|| {
        format!("no {DEBIAN_ROOT}/<version>/bin with initdb after apt-get install {DEBIAN_PACKAGE}")
    })
}

/// `POSTGRES_BIN_DIR` when set, otherwise [`ensure_bin_dir`].
pub fn bin_dir() -> Result<PathBuf, String> {
    match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => ensure_bin_dir(),
    }
}

/// The database for one test run: `MCP_AUTH_TEST_DATABASE_URL` when set (the cluster is someone
/// else's), otherwise a throwaway cluster's, which lives as long as the returned value.
pub fn test_database(bin: &Path) -> Result<(String, Option<ThrowawayPostgres>), String> {
    match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.is_empty() => {
            eprintln!("xtask: the tests use the PostgreSQL of {DATABASE_URL_ENV}");
            Ok((url, None))
        }
        _ => {
            let cluster = ThrowawayPostgres::start(bin, TEST_DATABASE)?;
            Ok((cluster.url(), Some(cluster)))
        }
    }
}

/// The URL a client uses: the superuser over TCP on loopback, no password (`trust`).
pub fn url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
}

/// `initdb`'s arguments: `trust` for local and loopback connections (the only ones `initdb`'s
/// pg_hba.conf lists, and the server listens on loopback only), UTF-8, the C locale (the same
/// collation on every machine), no fsync (the cluster is thrown away).
fn initdb_args(data: &Path) -> Vec<String> {
    vec![
        "--pgdata".into(),
        data.display().to_string(),
        "--username".into(),
        SUPERUSER.into(),
        "--auth".into(),
        "trust".into(),
        "--encoding".into(),
        "UTF8".into(),
        "--locale".into(),
        "C".into(),
        "--no-sync".into(),
    ]
}

/// Settings appended to the cluster's postgresql.conf: TCP on 127.0.0.1 only, the unix socket in
/// the cluster's own directory (not /var/run/postgresql, which a system cluster owns), and no
/// durability, which a throwaway cluster does not need and which makes every commit slow.
fn server_settings(port: u16, socket_dir: &Path) -> String {
    format!(
        "\n# cargo xtask: a throwaway cluster\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{}'\n\
         max_connections = 300\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n",
        socket_dir.display()
    )
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it a moment later).
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// A started cluster in its own temporary directory; dropping it stops the server and removes
/// the directory.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    database: String,
    as_root: bool,
}

impl ThrowawayPostgres {
    /// Creates, starts and fills a cluster with one empty database named `database`.
    pub fn start(bin: &Path, database: &str) -> Result<Self, String> {
        let as_root = running_as_root();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "mcp-auth-postgres-{}-{nanos:x}",
            std::process::id()
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // From here on, dropping `cluster` removes the directory, whatever fails next.
        let mut cluster = ThrowawayPostgres {
            bin: bin.to_path_buf(),
            dir,
            port: 0,
            database: database.to_owned(),
            as_root,
        };
        if as_root {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "cannot give {} to the {SUPERUSER} user: {e}",
                    cluster.dir.display()
                )
            })?;
        }
        run(cluster
            .as_owner("initdb")
            .args(initdb_args(&cluster.data())))?;
        cluster.port = free_port()?;
        let conf = cluster.data().join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| {
                file.write_all(server_settings(cluster.port, &cluster.dir).as_bytes())
            })
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let log = cluster.dir.join("postgres.log");
        run(cluster
            .as_owner("pg_ctl")
            .arg("--pgdata")
            .arg(cluster.data())
            .arg("--log")
            .arg(&log)
            .args(["--wait", "--timeout", PG_CTL_WAIT_SECS, "start"]))
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nxtask: the server's log ({}):\n{tail}", log.display())
        })?;
        run(Command::new(bin.join("createdb"))
            .args(["--host", "127.0.0.1", "--port", &cluster.port.to_string()])
            .args(["--username", SUPERUSER, database]))?;
        eprintln!(
            "xtask: PostgreSQL ({}) is running at {} (data in {})",
            bin.display(),
            cluster.url(),
            cluster.dir.display()
        );
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self) -> String {
        url(self.port, &self.database)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running `program` of the bin directory as the cluster's owner.
    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", SUPERUSER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            // `fast`: roll back open transactions and disconnect clients rather than wait for them.
            let _ = run(self
                .as_owner("pg_ctl")
                .arg("--pgdata")
                .arg(self.data())
                .args([
                    "--mode",
                    "fast",
                    "--wait",
                    "--timeout",
                    PG_CTL_WAIT_SECS,
                    "stop",
                ]));
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: cannot remove {}: {error}", self.dir.display());
        }
    }
}

/// Runs `command`, its output kept unless it fails: then the error carries it. initdb and
/// pg_ctl explain every step, which would bury the demo's banner and the test output.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|error| format!("could not start {shown}: {error}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, SUPERUSER])
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                format!(
                    "there is no {SUPERUSER} user to run the throwaway PostgreSQL as \
                     (Debian's {DEBIAN_PACKAGE} package creates it)"
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(entries: &[(&str, bool)]) -> Vec<(String, bool)> {
        entries.iter().map(|(n, b)| ((*n).to_owned(), *b)).collect()
    }

    #[test]
    fn the_highest_major_version_with_the_programs_is_chosen() {
        assert_eq!(
            highest_version(&dirs(&[("13", true), ("15", true), ("9.6", true)])),
            Some("15")
        );
        // Numerically, not as text: 9.6 < 13.
        assert_eq!(
            highest_version(&dirs(&[("9.6", true), ("13", true)])),
            Some("13")
        );
        // A newer version whose server package is not installed (client only) is skipped.
        assert_eq!(
            highest_version(&dirs(&[("15", true), ("16", false)])),
            Some("15")
        );
        assert_eq!(
            highest_version(&dirs(&[("15", true), ("lost+found", true)])),
            Some("15")
        );
        assert_eq!(highest_version(&dirs(&[("16", false)])), None);
        assert_eq!(highest_version(&[]), None);
    }

    #[test]
    fn the_url_names_the_superuser_the_loopback_port_and_the_database() {
        assert_eq!(
            url(54321, TEST_DATABASE),
            "postgres://postgres@127.0.0.1:54321/mcp_auth_test"
        );
    }

    #[test]
    fn initdb_trusts_only_local_connections_with_a_fixed_encoding_and_locale() {
        let args = initdb_args(Path::new("/tmp/x/data"));
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "--pgdata /tmp/x/data --username postgres --auth trust --encoding UTF8 --locale C --no-sync"
        );
    }

    #[test]
    fn the_server_listens_on_loopback_only_with_its_socket_in_its_own_directory() {
        let settings = server_settings(5433, Path::new("/tmp/x"));
        assert!(settings.contains("\nlisten_addresses = '127.0.0.1'\n"));
        assert!(settings.contains("\nport = 5433\n"));
        assert!(settings.contains("\nunix_socket_directories = '/tmp/x'\n"));
    }
}
