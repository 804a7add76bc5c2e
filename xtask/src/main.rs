//! `cargo xtask <command>`: the project's entry points for newcomers and CI.
//!
//! - `demo [--upstream-idp] [--ha]`: set up and run Envoy + filter + authorization server + demo
//!   MCP server (with `--upstream-idp`, people sign in at a local OpenID provider; with `--ha`,
//!   three authorization-server replicas share a throwaway PostgreSQL behind Envoy).
//! - `test`: set up, then `cargo test --workspace`, then the end-to-end tests (pytest), on the
//!   PostgreSQL of `MCP_AUTH_TEST_DATABASE_URL` or a throwaway cluster (`postgres.rs`).
//! - `e2e [pytest args]`: set up, build, and run only the end-to-end tests.
//! - `bench (--quick | --full) [bench flags]`: set up, then run the benchmarks (`bench/README.md`).
//! - `fuzz [--seconds N]`: run the filter's fuzz targets for a bounded time (`filter/fuzz`).
//!
//! Anything else on the command line is refused with the usage text and exit status 2.
//! - `build-wasm`: build the release filter (and the no-op filter the benchmark compares with).

mod demo;
mod fuzz;
mod npm;
mod oidc_provider;
mod postgres;
mod render;
mod supervise;
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo [--upstream-idp] [--ha]
                              build and run Envoy + filter + authorization server + demo MCP server
                              (--upstream-idp: sign in at a local OpenID provider as demo / demo;
                              --ha: three authorization-server replicas on a throwaway PostgreSQL,
                              behind Envoy at the same URLs)
  test                        run every test (unit, wasmtime host, end to end) on the PostgreSQL
                              of MCP_AUTH_TEST_DATABASE_URL, or else on a throwaway cluster
  e2e [pytest arguments]      run only the end-to-end tests; the arguments go to pytest
  bench (--quick | --full) [bench options]
                              run the benchmarks (options: bench/README.md)
  fuzz [--seconds N]          run each fuzz target of the filter for N seconds (default 60)
  build-wasm                  build the release filter and the benchmark's reference filters
  help                        print this text";

/// What the command line asks for. Arguments that belong to another program (pytest, the
/// benchmark) are passed on as they are; that program rejects what it does not know.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    Demo { upstream_idp: bool, ha: bool },
    Test,
    E2e(Vec<String>),
    Bench(Vec<String>),
    Fuzz(u64),
    BuildWasm,
    Help,
}

/// Parses the arguments after `cargo xtask`. Anything not understood is an error, so that a
/// mistyped flag never silently runs a different command than the one meant.
fn parse_task(args: &[String]) -> Result<Task, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    let no_arguments = |task: Task| match rest.first() {
        None => Ok(task),
        Some(extra) => Err(format!("`{command}` takes no arguments, got `{extra}`")),
    };
    match command.as_str() {
        "demo" => parse_demo(rest),
        "test" => no_arguments(Task::Test),
        "build-wasm" => no_arguments(Task::BuildWasm),
        "help" | "-h" | "--help" => no_arguments(Task::Help),
        "e2e" => Ok(Task::E2e(rest.to_vec())),
        // The benchmark parses its own options and refuses unknown ones, but only after the
        // builds it needs; the mode it cannot run without is checked here, before any build.
        "bench" if rest.iter().any(|a| a == "--quick" || a == "--full") => {
            Ok(Task::Bench(rest.to_vec()))
        }
        "bench" => Err("`bench` needs --quick or --full".into()),
        "fuzz" => fuzz::parse_seconds(rest).map(Task::Fuzz),
        other => Err(format!("unknown command `{other}`")),
    }
}

/// `demo [--upstream-idp] [--ha]`, each flag at most once, in any order.
fn parse_demo(flags: &[String]) -> Result<Task, String> {
    let (mut upstream_idp, mut ha) = (false, false);
    for flag in flags {
        let seen = match flag.as_str() {
            "--upstream-idp" => &mut upstream_idp,
            "--ha" => &mut ha,
            other => return Err(format!("`demo` does not know `{other}`")),
        };
        if *seen {
            return Err(format!("`demo` got `{flag}` twice"));
        }
        *seen = true;
    }
    Ok(Task::Demo { upstream_idp, ha })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_task(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        Task::Demo { upstream_idp, ha } => demo::demo(upstream_idp, ha),
        Task::Test => test(),
        Task::E2e(pytest_args) => e2e(&pytest_args),
        Task::Bench(bench_args) => bench(&bench_args),
        Task::Fuzz(seconds) => fuzz::fuzz(seconds),
        Task::BuildWasm => build_wasm(Wasm::WithBenchFilters).map(|_| ()),
        Task::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    eprintln!("xtask: running {shown}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .map_err(|error| format!("could not start {shown}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Which `.wasm` modules to build.
#[derive(Clone, Copy)]
enum Wasm {
    /// The filter alone (the demo, the end-to-end tests).
    FilterOnly,
    /// The filter and the benchmark's reference filters (no-op, host-call floor), which the
    /// benchmark and its smoke test in `cargo test` load.
    WithBenchFilters,
}

/// Builds the release filter (and, when asked, the benchmark's reference filters) and returns
/// the path of the filter's `.wasm`.
fn build_wasm(which: Wasm) -> Result<PathBuf, String> {
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip1",
        "-p",
        "mcp-auth-filter",
    ]);
    if let Wasm::WithBenchFilters = which {
        build.args(["-p", "noop-filter", "-p", "floor-filter"]);
    }
    run(&mut build)?;
    Ok(target_dir().join("wasm32-wasip1/release/mcp_auth_filter.wasm"))
}

/// Builds the two servers (the authorization server and the demo MCP server) and returns the
/// directory holding them. The demo and the end-to-end tests run the same debug build: it
/// compiles in about half the CPU time of an optimized one (the first `cargo xtask demo` waits
/// for it), serves a demo's or a test's load easily, and `cargo test` has already built it. The
/// one hot loop, password hashing, is optimized even here (`[profile.dev.package.argon2]`).
/// Only the filter is always built optimized: its size and speed are part of the product.
fn build_servers() -> Result<PathBuf, String> {
    run(cargo().args(["build", "-p", "mcp-auth-server", "-p", "demo-mcp-server"]))?;
    Ok(target_dir().join("debug"))
}

fn test() -> Result<(), String> {
    // Ctrl-C reaches cargo and pytest (the terminal's process group) and ends them, while xtask
    // itself carries on to its error path, which stops and removes the throwaway PostgreSQL.
    let stop = supervise::stop_flag()?;
    let interrupted = || {
        if supervise::stopped(&stop) {
            Err("interrupted".to_owned())
        } else {
            Ok(())
        }
    };
    let wasm = build_wasm(Wasm::WithBenchFilters)?;
    let venv = venv::ensure(&workspace_root())?;
    oidc_provider::ensure(&workspace_root())?;
    ensure_chromium()?;
    // The benchmark's smoke test (part of `cargo test --workspace`) drives Envoy with wrk.
    ensure_wrk()?;
    let postgres_bin = postgres::bin_dir()?;
    interrupted()?;
    let (database_url, _cluster) = postgres::test_database(&postgres_bin)?;
    interrupted()?;
    run(cargo()
        .args(["test", "--workspace"])
        .env("MCP_AUTH_FILTER_WASM", &wasm)
        .env(postgres::DATABASE_URL_ENV, &database_url)
        .env(postgres::REQUIRE_ENV, "1"))?;
    interrupted()?;
    fuzz::fuzz(fuzz::TEST_SECONDS)?;
    interrupted()?;
    crypto_tests_in_v8()?;
    interrupted()?;
    pytest(&venv, &wasm, &postgres_bin, Some(&database_url), &[])
}

/// Where the Node.js whose V8 matches Envoy's is pinned (`package.json` there says which).
const V8_NODE_DIR: &str = "filter/crypto/bench";

/// The Node.js whose V8 is the one the pinned Envoy embeds, installed from npm (the
/// `node-linux-*` packages carry the official binaries). The system's Node may have another V8,
/// with another optimizing compiler: the verifiers are tested where they run.
fn v8_node() -> Result<PathBuf, String> {
    let root = workspace_root();
    npm::ci(&root, V8_NODE_DIR, "running the verifiers in Envoy's V8")?;
    let node = root.join(V8_NODE_DIR).join("node_modules/.bin/node");
    if node.exists() {
        Ok(node)
    } else {
        Err(format!(
            "{} is missing after npm ci: the pinned Node.js is published for Linux on x86-64 \
             and arm64 only",
            node.display()
        ))
    }
}

/// The signature verifiers' tests (field arithmetic, differential and Wycheproof vectors)
/// compiled to wasm32-wasip1 as the filter is and run by the V8 Envoy embeds (`v8_node`): the
/// filter's verification runs there, not natively.
fn crypto_tests_in_v8() -> Result<(), String> {
    let runner = workspace_root().join("filter/crypto/bench/run.mjs");
    let node = v8_node()?;
    run(cargo()
        .args([
            "test",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "mcp-auth-filter-crypto",
        ])
        .env(
            "CARGO_TARGET_WASM32_WASIP1_RUNNER",
            format!("{} {}", node.display(), runner.display()),
        ))
}

fn e2e(pytest_args: &[String]) -> Result<(), String> {
    let wasm = build_wasm(Wasm::FilterOnly)?;
    let venv = venv::ensure(&workspace_root())?;
    oidc_provider::ensure(&workspace_root())?;
    ensure_chromium()?;
    // The end-to-end tests that need PostgreSQL start their own clusters.
    let postgres_bin = postgres::bin_dir()?;
    pytest(&venv, &wasm, &postgres_bin, None, pytest_args)
}

fn bench(bench_args: &[String]) -> Result<(), String> {
    build_wasm(Wasm::WithBenchFilters)?;
    venv::ensure(&workspace_root())?;
    ensure_wrk()?;
    run(cargo().args(["build", "--release", "-p", "mcp-auth-server"]))?;
    // Part 3 measures the token endpoint on PostgreSQL too: the same database as the tests get.
    let postgres_bin = postgres::bin_dir()?;
    let (database_url, _cluster) = postgres::test_database(&postgres_bin)?;
    run(cargo()
        .args(["run", "--release", "-p", "mcp-auth-bench", "--"])
        .args(bench_args)
        .env(postgres::DATABASE_URL_ENV, &database_url))
}

/// Installs Debian's Chromium when it is missing: the browser test of the pages
/// (`tests/e2e/test_browser.py`) drives it with playwright-core, which never downloads a browser.
fn ensure_chromium() -> Result<(), String> {
    ensure_debian_package("chromium", "chromium")
}

/// Installs the load generator `wrk` when it is missing.
fn ensure_wrk() -> Result<(), String> {
    ensure_debian_package("wrk", "wrk")
}

/// Installs the Debian package that provides `program` when `program` is missing: directly as
/// root, otherwise through `sudo`, which may ask for a password.
fn ensure_debian_package(program: &str, package: &str) -> Result<(), String> {
    let found = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if found(program) {
        return Ok(());
    }
    install_debian_package(package)?;
    if found(program) {
        Ok(())
    } else {
        Err(format!(
            "{program} is still missing after apt-get install {package}"
        ))
    }
}

/// `apt-get install package`: directly as root, otherwise through `sudo`, which may ask for a
/// password.
fn install_debian_package(package: &str) -> Result<(), String> {
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    if run(&mut apt(&["install", "-y", "-q", package])).is_err() {
        // A fresh machine may have no package lists yet.
        run(&mut apt(&["update", "-q"]))?;
        run(&mut apt(&["install", "-y", "-q", package]))?;
    }
    Ok(())
}

/// Runs the end-to-end tests against the servers of [`build_servers`], with PostgreSQL's
/// programs from `postgres_bin` and, when given, the shared test database.
/// Any non-zero pytest exit fails, including 5 ("no tests collected").
fn pytest(
    venv: &venv::Venv,
    wasm: &Path,
    postgres_bin: &Path,
    database_url: Option<&str>,
    args: &[String],
) -> Result<(), String> {
    let servers = build_servers()?;
    let mut command = Command::new(venv.python());
    if let Some(url) = database_url {
        command
            .env(postgres::DATABASE_URL_ENV, url)
            .env(postgres::REQUIRE_ENV, "1");
    }
    run(command
        .args(["-m", "pytest", "tests/e2e", "-p", "no:cacheprovider"])
        .args(args)
        .env(postgres::BIN_DIR_ENV, postgres_bin)
        .env("MCP_AUTH_FILTER_WASM", wasm)
        .env("MCP_AUTH_SERVER_BIN", servers.join("mcp-auth-server"))
        .env("DEMO_MCP_SERVER_BIN", servers.join("demo-mcp-server"))
        .env("ENVOY_BIN", venv.envoy())
        .env(
            "OIDC_PROVIDER_SCRIPT",
            workspace_root().join(oidc_provider::DIR).join("server.mjs"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task, String> {
        parse_task(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_without_arguments_are_recognised() {
        assert_eq!(
            parse(&["demo"]),
            Ok(Task::Demo {
                upstream_idp: false,
                ha: false
            })
        );
        assert_eq!(
            parse(&["demo", "--upstream-idp"]),
            Ok(Task::Demo {
                upstream_idp: true,
                ha: false
            })
        );
        assert_eq!(
            parse(&["demo", "--ha"]),
            Ok(Task::Demo {
                upstream_idp: false,
                ha: true
            })
        );
        assert_eq!(
            parse(&["demo", "--ha", "--upstream-idp"]),
            Ok(Task::Demo {
                upstream_idp: true,
                ha: true
            })
        );
        assert_eq!(parse(&["test"]), Ok(Task::Test));
        assert_eq!(parse(&["build-wasm"]), Ok(Task::BuildWasm));
        assert_eq!(parse(&["--help"]), Ok(Task::Help));
    }

    #[test]
    fn an_unknown_flag_is_refused_rather_than_ignored() {
        assert_eq!(
            parse(&["demo", "--anything"]),
            Err("`demo` does not know `--anything`".into())
        );
        assert_eq!(
            parse(&["demo", "--ha", "--ha"]),
            Err("`demo` got `--ha` twice".into())
        );
        assert!(parse(&["test", "-k"]).is_err());
        assert!(parse(&["build-wasm", "--release"]).is_err());
    }

    #[test]
    fn an_unknown_or_missing_command_is_refused() {
        assert_eq!(parse(&["deno"]), Err("unknown command `deno`".into()));
        assert_eq!(parse(&[]), Err("no command given".into()));
    }

    #[test]
    fn pytest_and_bench_arguments_are_passed_on() {
        assert_eq!(
            parse(&["e2e", "-k", "refresh"]),
            Ok(Task::E2e(vec!["-k".into(), "refresh".into()]))
        );
        assert_eq!(
            parse(&["bench", "--quick", "--part", "auth"]),
            Ok(Task::Bench(vec![
                "--quick".into(),
                "--part".into(),
                "auth".into()
            ]))
        );
        assert_eq!(
            parse(&["bench", "--part", "envoy", "--full"]),
            Ok(Task::Bench(vec![
                "--part".into(),
                "envoy".into(),
                "--full".into()
            ]))
        );
        assert!(parse(&["bench"]).is_err());
        assert_eq!(parse(&["fuzz"]), Ok(Task::Fuzz(fuzz::DEFAULT_SECONDS)));
        assert_eq!(parse(&["fuzz", "--seconds", "3"]), Ok(Task::Fuzz(3)));
        assert!(parse(&["fuzz", "-k"]).is_err());
        assert!(parse(&["bench", "--part", "auth"]).is_err());
    }
}
