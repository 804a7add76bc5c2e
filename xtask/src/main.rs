//! `cargo xtask <command>`: the project's entry points for newcomers and CI.
//!
//! - `demo`: set up and run Envoy + filter + authorization server + demo MCP server.
//! - `test`: set up, then `cargo test --workspace`, then the end-to-end tests (pytest).
//! - `e2e [pytest args]`: set up, build, and run only the end-to-end tests.
//! - `bench [--quick | --full | bench flags]`: set up, then run the benchmarks (`bench/README.md`).
//! - `build-wasm`: build the release filter (and the no-op filter the benchmark compares with).

mod demo;
mod render;
mod supervise;
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str =
    "usage: cargo xtask <demo | test | e2e [pytest args] | bench [--quick | --full] | build-wasm>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::demo(),
        Some("test") => test(),
        Some("e2e") => e2e(args.get(1..).unwrap_or_default()),
        Some("bench") => bench(args.get(1..).unwrap_or_default()),
        Some("build-wasm") => build_wasm().map(|_| ()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
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

/// Builds the release filter (and the no-op filter the benchmark compares it with) and returns
/// the path of the filter's `.wasm`.
fn build_wasm() -> Result<PathBuf, String> {
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))?;
    run(cargo().args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip1",
        "-p",
        "mcp-auth-filter",
        "-p",
        "noop-filter",
        "-p",
        "floor-filter",
    ]))?;
    Ok(target_dir().join("wasm32-wasip1/release/mcp_auth_filter.wasm"))
}

/// Builds the servers the demo runs, optimized.
fn build_release_binaries() -> Result<(), String> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "mcp-auth-server",
        "-p",
        "demo-mcp-server",
    ]))
}

fn test() -> Result<(), String> {
    let wasm = build_wasm()?;
    let venv = venv::ensure(&workspace_root())?;
    // The benchmark's smoke test (part of `cargo test --workspace`) drives Envoy with wrk.
    ensure_wrk()?;
    run(cargo()
        .args(["test", "--workspace"])
        .env("MCP_AUTH_FILTER_WASM", &wasm))?;
    pytest(&venv, &wasm, &[])
}

fn e2e(pytest_args: &[String]) -> Result<(), String> {
    let wasm = build_wasm()?;
    let venv = venv::ensure(&workspace_root())?;
    pytest(&venv, &wasm, pytest_args)
}

fn bench(bench_args: &[String]) -> Result<(), String> {
    build_wasm()?;
    venv::ensure(&workspace_root())?;
    ensure_wrk()?;
    run(cargo().args(["build", "--release", "-p", "mcp-auth-server"]))?;
    run(cargo()
        .args(["run", "--release", "-p", "mcp-auth-bench", "--"])
        .args(bench_args))
}

/// Installs the load generator `wrk` (Debian package) when it is missing: directly as root,
/// otherwise through `sudo`, which may ask for a password.
fn ensure_wrk() -> Result<(), String> {
    let found = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if found("wrk") {
        return Ok(());
    }
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
    if run(&mut apt(&["install", "-y", "-q", "wrk"])).is_err() {
        // A fresh machine may have no package lists yet.
        run(&mut apt(&["update", "-q"]))?;
        run(&mut apt(&["install", "-y", "-q", "wrk"]))?;
    }
    if found("wrk") {
        Ok(())
    } else {
        Err("wrk is still missing after apt-get install wrk".into())
    }
}

/// Runs the end-to-end tests against debug builds of the servers (the ones `cargo test` built).
/// Any non-zero pytest exit fails, including 5 ("no tests collected").
fn pytest(venv: &venv::Venv, wasm: &Path, args: &[String]) -> Result<(), String> {
    run(cargo().args(["build", "-p", "mcp-auth-server", "-p", "demo-mcp-server"]))?;
    let debug = target_dir().join("debug");
    run(Command::new(venv.python())
        .args(["-m", "pytest", "tests/e2e", "-p", "no:cacheprovider"])
        .args(args)
        .env("MCP_AUTH_FILTER_WASM", wasm)
        .env("MCP_AUTH_SERVER_BIN", debug.join("mcp-auth-server"))
        .env("DEMO_MCP_SERVER_BIN", debug.join("demo-mcp-server"))
        .env("ENVOY_BIN", venv.envoy()))
}
