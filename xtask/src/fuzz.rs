//! `cargo xtask fuzz [--seconds N]`: builds the fuzz targets in `filter/fuzz` with libFuzzer's
//! coverage instrumentation and runs each for a bounded time. A crash, a panic, a timeout, an
//! allocation over the targets' limit or a resident size over [`RSS_LIMIT_MB`] fails the run; the
//! input that caused it is kept under `target/fuzz/artifacts/<target>/`.
//!
//! No `cargo fuzz`: it would be one more tool to install on a clean machine, and what it adds for
//! these targets is exactly the compiler flags below. They are stable `-C` options; no sanitizer
//! runs (the filter is safe Rust), so no nightly compiler is needed.

use std::path::Path;
use std::process::Command;

use crate::{cargo, ensure_debian_package, run, target_dir, workspace_root};

/// The fuzz targets, each a binary of `filter/fuzz` with a seed corpus in `filter/fuzz/seeds/`.
pub const TARGETS: [&str; 4] = ["token", "jwks", "config", "mcp_request"];

/// How long `cargo xtask fuzz` runs each target unless told otherwise.
pub const DEFAULT_SECONDS: u64 = 60;

/// How long `cargo xtask test` runs each target: enough to replay the corpus and explore a
/// little, short enough for every CI run.
pub const TEST_SECONDS: u64 = 10;

/// Largest input libFuzzer generates: above every limit the filter applies to what it parses
/// from a request (tokens are refused above 8 KiB) and large enough for JWKS documents and
/// configurations with many entries.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// The process may not grow beyond this (libFuzzer checks it while the target runs).
const RSS_LIMIT_MB: u64 = 1024;

/// One input may not take longer than this.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// libFuzzer's coverage instrumentation (what `cargo fuzz` passes to rustc), and `--cfg fuzzing`.
const INSTRUMENTATION: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing";

/// Parses `[--seconds N]`.
pub fn parse_seconds(args: &[String]) -> Result<u64, String> {
    match args {
        [] => Ok(DEFAULT_SECONDS),
        [flag, value] if flag == "--seconds" => match value.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Ok(seconds),
            _ => Err(format!(
                "--seconds needs a positive whole number, got `{value}`"
            )),
        },
        [flag] if flag == "--seconds" => Err("--seconds needs a value".into()),
        [other, ..] => Err(format!("`fuzz` takes only --seconds N, got `{other}`")),
    }
}

pub fn fuzz(seconds: u64) -> Result<(), String> {
    // libfuzzer-sys compiles libFuzzer itself, which is C++.
    ensure_debian_package("c++", "g++")?;
    let host = host_triple()?;
    let fuzz_target_dir = target_dir().join("fuzz");
    run(cargo()
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(workspace_root().join("filter/fuzz/Cargo.toml"))
        // An explicit target keeps the instrumentation off build scripts and proc macros.
        .args(["--target", &host, "--target-dir"])
        .arg(&fuzz_target_dir)
        .env("RUSTFLAGS", INSTRUMENTATION))?;
    let binaries = fuzz_target_dir.join(&host).join("release");
    for target in TARGETS {
        run_target(&binaries.join(target), target, seconds, &fuzz_target_dir)?;
    }
    Ok(())
}

fn run_target(binary: &Path, target: &str, seconds: u64, fuzz_dir: &Path) -> Result<(), String> {
    // The working corpus grows across runs; the seeds are added to it each time.
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let logs = fuzz_dir.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // libFuzzer reports every new input; that goes to a log file, and only its verdict (or, on
    // a failure, the end of the log) to the terminal.
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let seeds = workspace_root().join("filter/fuzz/seeds").join(target);
    let result = run(Command::new(binary)
        .arg(&corpus)
        .arg(&seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_INPUT_BYTES}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(log)
        .stderr(log_err));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    match result {
        Ok(()) => {
            let summary: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("Done ") || l.starts_with("stat::"))
                .collect();
            eprintln!("xtask: fuzz target `{target}`: {}", summary.join("; "));
            Ok(())
        }
        Err(failure) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(40)..)
                .unwrap_or_default()
                .join("\n");
            Err(format!(
                "fuzz target `{target}` found a failing input: {failure}\n{tail}\n\
                 the input is in {dir}; replay it with: {binary} {dir}/<file> \
                 (whole log: {log})",
                dir = artifacts.display(),
                binary = binary.display(),
                log = log_path.display(),
            ))
        }
    }
}

fn host_triple() -> Result<String, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("could not run {rustc} -vV: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| format!("{rustc} -vV printed no host triple"))
}

/// Where the fuzz targets' seeds live (for the tests below).
#[cfg(test)]
fn seed_dir(target: &str) -> std::path::PathBuf {
    workspace_root().join("filter/fuzz/seeds").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn seconds_default_and_explicit() {
        assert_eq!(parse_seconds(&[]), Ok(DEFAULT_SECONDS));
        assert_eq!(parse_seconds(&args(&["--seconds", "5"])), Ok(5));
    }

    #[test]
    fn bad_seconds_are_refused() {
        assert!(parse_seconds(&args(&["--seconds"])).is_err());
        assert!(parse_seconds(&args(&["--seconds", "0"])).is_err());
        assert!(parse_seconds(&args(&["--seconds", "ten"])).is_err());
        assert!(parse_seconds(&args(&["--minutes", "1"])).is_err());
        assert!(parse_seconds(&args(&["--seconds", "5", "--extra"])).is_err());
    }

    #[test]
    fn every_target_has_a_binary_and_seeds() {
        let manifest = std::fs::read_to_string(workspace_root().join("filter/fuzz/Cargo.toml"))
            .unwrap_or_default();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target}"
            );
            let seeds = std::fs::read_dir(seed_dir(target)).map(Iterator::count);
            assert!(seeds.is_ok_and(|n| n > 0), "no seeds for {target}");
        }
    }
}
