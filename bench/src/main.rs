//! `mcp-auth-bench`: the MCP auth filter against Envoy's native `jwt_authn` (part 1) and the
//! authorization server's token endpoint (part 3). See `bench/README.md`.

mod auth_bench;
mod envoy_bench;
mod envoy_config;
mod http;
mod procfs;
mod report;
mod tokens;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::report::STARTUP_LIMIT_TO_NOOP;

const USAGE: &str = "\
usage: mcp-auth-bench (--quick | --full) [options]

  --quick                 seconds per cell, 1 round (CI smoke run)
  --full                  longer cells, 5 rounds (the BENCHMARKS.md table)
  --part envoy|auth|all   which benchmark to run (default all)
  --rounds N              override the number of rounds
  --seconds N             override the seconds per cell and round
  --connections N         wrk connections (default 16)
  --cells A,B             only the Envoy cells whose label contains one of these (for focused
                          runs, e.g. --cells no-op,cache hit); ratios to absent cells print –
  --envoy PATH            Envoy binary (default .venv/lib/python3.11/site-packages/envoy/_bin/envoy)
  --filter-wasm PATH      filter module (default $MCP_AUTH_FILTER_WASM, then
                          $CARGO_TARGET_DIR or target/ wasm32-wasip1/release/mcp_auth_filter.wasm)
  --noop-wasm PATH        no-op module (default ... wasm32-wasip1/release/noop_filter.wasm)
  --floor-wasm PATH       host-call floor module (default ... wasm32-wasip1/release/floor_filter.wasm)
  --auth-server PATH      auth server binary (default ... release/mcp-auth-server)
  --auth-db-dir DIR       where the auth server's SQLite file goes (default: a new temp dir)
  --json PATH             also write the raw results as JSON
  --no-pin                do not pin processes to cores with taskset";

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub rounds: u32,
    pub seconds: u32,
    pub warmup_seconds: u32,
    pub connections: u32,
    /// Distinct tokens per algorithm for the fresh-token cells.
    pub fresh_tokens: usize,
    /// Envoy starts per configuration for the startup time.
    pub startups: u32,
    /// Authorization codes redeemed per round (part 3).
    pub codes: usize,
    /// Seconds of refresh rotation per round (part 3).
    pub refresh_seconds: u32,
    /// Concurrent clients of the auth server (part 3).
    pub auth_concurrency: usize,
    /// Directory for the auth server's database; a new temp dir when `None`.
    pub auth_db_dir: Option<PathBuf>,
    /// Label substrings selecting Envoy cells; every cell when empty.
    pub cells: Vec<String>,
}

impl Plan {
    fn quick() -> Plan {
        Plan {
            rounds: 1,
            seconds: 2,
            warmup_seconds: 1,
            connections: 16,
            fresh_tokens: 256,
            startups: 2,
            codes: 100,
            refresh_seconds: 2,
            auth_concurrency: 8,
            auth_db_dir: None,
            cells: Vec::new(),
        }
    }
    fn full() -> Plan {
        Plan {
            rounds: 5,
            seconds: 6,
            warmup_seconds: 2,
            connections: 16,
            fresh_tokens: 2048,
            startups: 5,
            codes: 1000,
            refresh_seconds: 6,
            auth_concurrency: 8,
            auth_db_dir: None,
            cells: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Envoy,
    Auth,
    All,
}

#[derive(Debug)]
struct Options {
    mode: &'static str,
    plan: Plan,
    part: Part,
    envoy: Option<PathBuf>,
    filter_wasm: Option<PathBuf>,
    noop_wasm: Option<PathBuf>,
    floor_wasm: Option<PathBuf>,
    auth_server: Option<PathBuf>,
    json: Option<PathBuf>,
    pin: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut mode = None;
    let mut o = Options {
        mode: "",
        plan: Plan::quick(),
        part: Part::All,
        envoy: None,
        filter_wasm: None,
        noop_wasm: None,
        floor_wasm: None,
        auth_server: None,
        json: None,
        pin: true,
    };
    let (mut rounds, mut seconds, mut connections) = (None, None, None);
    let mut auth_db_dir = None;
    let mut cells = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<u32, String> {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}: expected a positive integer, got {v:?}"))
        };
        match arg.as_str() {
            "--quick" => mode = Some(("quick", Plan::quick())),
            "--full" => mode = Some(("full", Plan::full())),
            "--part" => {
                o.part = match value("--part")?.as_str() {
                    "envoy" => Part::Envoy,
                    "auth" => Part::Auth,
                    "all" => Part::All,
                    other => {
                        return Err(format!(
                            "--part: expected envoy, auth or all, got {other:?}"
                        ));
                    }
                }
            }
            "--rounds" => rounds = Some(number("--rounds", value("--rounds")?)?),
            "--seconds" => seconds = Some(number("--seconds", value("--seconds")?)?),
            "--connections" => {
                connections = Some(number("--connections", value("--connections")?)?)
            }
            "--envoy" => o.envoy = Some(value("--envoy")?.into()),
            "--filter-wasm" => o.filter_wasm = Some(value("--filter-wasm")?.into()),
            "--noop-wasm" => o.noop_wasm = Some(value("--noop-wasm")?.into()),
            "--floor-wasm" => o.floor_wasm = Some(value("--floor-wasm")?.into()),
            "--auth-server" => o.auth_server = Some(value("--auth-server")?.into()),
            "--json" => o.json = Some(value("--json")?.into()),
            "--auth-db-dir" => auth_db_dir = Some(PathBuf::from(value("--auth-db-dir")?)),
            "--cells" => {
                cells = value("--cells")?
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                if cells.is_empty() {
                    return Err("--cells: expected comma-separated label parts".into());
                }
            }
            "--no-pin" => o.pin = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let (name, plan) = mode.ok_or("choose --quick or --full")?;
    o.mode = name;
    o.plan = plan;
    if let Some(r) = rounds {
        o.plan.rounds = r;
    }
    if let Some(s) = seconds {
        o.plan.seconds = s;
        o.plan.refresh_seconds = s;
    }
    if let Some(c) = connections {
        o.plan.connections = c;
    }
    o.plan.auth_db_dir = auth_db_dir;
    o.plan.cells = cells;
    Ok(o)
}

/// Located binaries and modules, and the CPUs to pin to.
pub struct Prereqs {
    pub envoy: PathBuf,
    pub filter_wasm: PathBuf,
    pub noop_wasm: PathBuf,
    pub floor_wasm: PathBuf,
    pub auth_server: PathBuf,
    pub envoy_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Candidate target directories: `$CARGO_TARGET_DIR`, then `<workspace>/target`.
fn target_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.push(workspace_root().join("target"));
    dirs
}

fn locate(
    given: Option<PathBuf>,
    env: Option<&str>,
    relative: &str,
) -> Result<PathBuf, Vec<PathBuf>> {
    let mut candidates: Vec<PathBuf> = given.into_iter().collect();
    if candidates.is_empty() {
        candidates.extend(env.and_then(std::env::var_os).map(PathBuf::from));
        candidates.extend(target_dirs().into_iter().map(|d| d.join(relative)));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(candidates)
}

fn missing(what: &str, tried: &[PathBuf], how: &str) -> String {
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    format!(
        "{what} not found (looked at {}). Build it with: {how}",
        tried.join(", ")
    )
}

fn prereqs(o: &Options) -> Result<Prereqs, String> {
    let mut problems = Vec::new();
    let root = workspace_root();
    let envoy = o
        .envoy
        .clone()
        .unwrap_or_else(|| root.join(".venv/lib/python3.11/site-packages/envoy/_bin/envoy"));
    let wasm_how = "cargo build --release --target wasm32-wasip1 -p mcp-auth-filter -p noop-filter -p floor-filter";
    let need_envoy = o.part != Part::Auth;
    let need_auth = o.part != Part::Envoy;
    if need_envoy && !envoy.is_file() {
        problems.push(format!(
            "Envoy not found at {}. Create the venv with the pinned Envoy: cargo xtask test (or cargo xtask demo), or pass --envoy",
            envoy.display()
        ));
    }
    let mut path = |given: &Option<PathBuf>, env, rel, what, how: &str, needed: bool| match locate(
        given.clone(),
        env,
        rel,
    ) {
        Ok(p) => p,
        Err(tried) => {
            if needed {
                problems.push(missing(what, &tried, how));
            }
            PathBuf::new()
        }
    };
    let filter_wasm = path(
        &o.filter_wasm,
        Some("MCP_AUTH_FILTER_WASM"),
        "wasm32-wasip1/release/mcp_auth_filter.wasm",
        "filter wasm",
        wasm_how,
        need_envoy,
    );
    let noop_wasm = path(
        &o.noop_wasm,
        None,
        "wasm32-wasip1/release/noop_filter.wasm",
        "no-op wasm",
        wasm_how,
        need_envoy,
    );
    let floor_wasm = path(
        &o.floor_wasm,
        None,
        "wasm32-wasip1/release/floor_filter.wasm",
        "host-call floor wasm",
        wasm_how,
        need_envoy,
    );
    let auth_server = path(
        &o.auth_server,
        None,
        "release/mcp-auth-server",
        "auth server binary",
        "cargo build --release -p mcp-auth-server",
        need_auth,
    );
    if need_envoy && !wrk::available() {
        problems.push(
            "wrk not found: `cargo xtask bench` installs it, or apt-get install -y wrk".into(),
        );
    }
    if !problems.is_empty() {
        return Err(format!(
            "missing prerequisites:\n  - {}",
            problems.join("\n  - ")
        ));
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pin = o.pin && cpus >= 2 && Command::new("taskset").arg("-V").output().is_ok();
    Ok(Prereqs {
        envoy,
        filter_wasm,
        noop_wasm,
        floor_wasm,
        auth_server,
        envoy_cpu: pin.then_some(0),
        load_cpu: pin.then_some(1),
    })
}

/// Pins this process (and the threads it starts later) to `cpu`.
fn pin_self(cpu: usize) {
    let _ = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status();
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    format!("{cpus} CPUs (/proc/cpuinfo), {model}")
}

fn run(o: &Options) -> Result<(), String> {
    let p = prereqs(o)?;
    if let Some(cpu) = p.load_cpu {
        pin_self(cpu);
    }
    let plan = &o.plan;
    let mut out = String::new();
    out.push_str(&format!(
        "## mcp-auth-bench --{} ({} round(s), {} s per cell, {} connections)\n\nMachine: {}. Pinning: {}.\n\n",
        o.mode,
        plan.rounds,
        plan.seconds,
        plan.connections,
        machine(),
        match (p.envoy_cpu, p.load_cpu) {
            (Some(e), Some(l)) => format!("Envoy and the auth server on CPU {e}, wrk and this process on CPU {l}"),
            _ => "none".into(),
        }
    ));
    let mut json = serde_json::Map::new();
    json.insert("mode".into(), serde_json::json!(o.mode));
    if o.part != Part::Auth {
        let r = envoy_bench::run(&p, plan)?;
        out.push_str("### Envoy, one worker, direct_response route\n\n");
        out.push_str(&report::table(&r.cells));
        out.push('\n');
        out.push_str(&envoy_extras(&r));
        json.insert("envoy".into(), envoy_bench::to_json(&r));
    }
    if o.part != Part::Envoy {
        let r = auth_bench::run(&p, plan)?;
        out.push_str("\n### Authorization server token endpoint (SQLite synchronous=FULL; PostgreSQL, 1 and 3 servers)\n\n");
        out.push_str(&auth_bench::table(&r));
        json.insert("auth_server".into(), auth_bench::to_json(&r));
    }
    println!("{out}");
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::Value::Object(json).to_string())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The filter module's size budget: room for faster verifiers and new decisions, while a module
/// this size still loads in V8 within the startup target.
const WASM_SIZE_BUDGET_BYTES: u64 = 640_000;

/// RSS of the two-worker many-token cell minus the one-worker one, in KiB: what one more worker
/// (its own wasm VM, its own table of tokens, its share of Envoy) costs with the cache full.
fn memory_per_worker(rss_kib: &[(String, u64)]) -> Option<i64> {
    let rss = |workers| {
        let label = report::Kind::FilterManyTokens { workers }.label();
        rss_kib
            .iter()
            .find(|(c, _)| *c == label)
            .map(|(_, k)| *k as i64)
    };
    Some(rss(2)? - rss(1)?)
}

fn envoy_extras(r: &envoy_bench::EnvoyResults) -> String {
    let mut s = String::from("| measure | value | target |\n|---|---|---|\n");
    let kb = |b: u64| b as f64 / 1000.0;
    s.push_str(&format!(
        "| filter .wasm size | {:.0} KB ({} bytes); no-op {:.0} KB | < {:.0} KB **{}** |\n",
        kb(r.filter_wasm_bytes),
        r.filter_wasm_bytes,
        kb(r.noop_wasm_bytes),
        kb(WASM_SIZE_BUDGET_BYTES),
        if r.filter_wasm_bytes < WASM_SIZE_BUDGET_BYTES {
            "PASS"
        } else {
            "FAIL"
        }
    ));
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (cell, kib) in &r.rss_kib {
        let heap = r.heap_kib.iter().find(|(c, _)| c == cell).map(|(_, h)| *h);
        s.push_str(&format!(
            "| Envoy RSS after the run, {cell} | {:.1} MiB{} | – |\n",
            mib(*kib),
            heap.map(|h| format!(" (Envoy heap {:.1} MiB)", mib(h)))
                .unwrap_or_default()
        ));
    }
    if let Some(per_worker) = memory_per_worker(&r.rss_kib) {
        s.push_str(&format!(
            "| memory of the second worker with {} tokens cached (RSS, 2 workers − 1) | {:.1} MiB | – |\n",
            report::MANY_TOKENS,
            per_worker as f64 / 1024.0
        ));
    }
    let startup = |label: &str| {
        r.startup_ms
            .iter()
            .find(|(c, _)| c.starts_with(label))
            .map(|(_, v)| *v)
    };
    if let (Some(noop), Some(filter)) = (startup("no-op"), startup("filter")) {
        let ratio = filter / noop;
        s.push_str(&format!(
            "| startup to ready (median) | filter {filter:.0} ms, no-op {noop:.0} ms: {ratio:.2}× | < {STARTUP_LIMIT_TO_NOOP}× no-op **{}** |\n",
            if ratio < STARTUP_LIMIT_TO_NOOP { "PASS" } else { "FAIL" }
        ));
    }
    s.push_str(&format!(
        "| token cache with 2 workers | {} | – |\n",
        r.sharing.verdict()
    ));
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-auth-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_mode_is_required_and_overrides_apply_on_top_of_it() {
        assert!(parse_args(&args(&[])).is_err());
        let o = parse_args(&args(&["--full", "--rounds", "7", "--part", "envoy"])).unwrap();
        assert_eq!(
            (o.mode, o.plan.rounds, o.plan.seconds, o.part),
            ("full", 7, 6, Part::Envoy)
        );
        assert!(
            parse_args(&args(&["--quick", "--rounds", "0"]))
                .unwrap_err()
                .contains("--rounds")
        );
        let o = parse_args(&args(&["--quick", "--cells", "no-op, cache hit"])).unwrap();
        assert_eq!(o.plan.cells, ["no-op", "cache hit"]);
        assert!(
            parse_args(&args(&["--quick", "--cells", ","]))
                .unwrap_err()
                .contains("--cells")
        );
        let o = parse_args(&args(&["--quick", "--auth-db-dir", "/dev/shm"])).unwrap();
        assert_eq!(o.plan.auth_db_dir, Some(PathBuf::from("/dev/shm")));
        assert!(
            parse_args(&args(&["--quick", "--bogus"]))
                .unwrap_err()
                .contains("--bogus")
        );
    }

    #[test]
    fn memory_per_worker_needs_both_many_token_cells() {
        let label = |w| report::Kind::FilterManyTokens { workers: w }.label();
        let rss = vec![
            (label(1), 60_000),
            (label(2), 75_000),
            ("no auth".into(), 1),
        ];
        assert_eq!(memory_per_worker(&rss), Some(15_000));
        assert_eq!(memory_per_worker(&rss[..1]), None);
    }

    #[test]
    fn full_mode_has_at_least_five_rounds() {
        assert!(Plan::full().rounds >= 5);
        assert_eq!(Plan::quick().rounds, 1);
    }
}
