//! `cargo xtask <command>`: the project's entry points for newcomers and CI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("build-wasm") => build_wasm().map(|_| ()),
        _ => {
            eprintln!("usage: cargo xtask <test|build-wasm>");
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

/// Builds the release filter and returns the path of the `.wasm`.
fn build_wasm() -> Result<PathBuf, String> {
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip1"]))?;
    run(cargo().args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip1",
        "-p",
        "mcp-auth-filter",
    ]))?;
    Ok(workspace_root().join("target/wasm32-wasip1/release/mcp_auth_filter.wasm"))
}

fn test() -> Result<(), String> {
    let wasm = build_wasm()?;
    run(cargo()
        .args(["test", "--workspace"])
        .env("MCP_AUTH_FILTER_WASM", &wasm))
}
