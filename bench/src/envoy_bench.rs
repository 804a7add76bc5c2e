//! Part 1: the filter against no authentication, `jwt_authn` and the no-op wasm filter, on the
//! real Envoy with one worker and a `direct_response` route.
//!
//! One Envoy process per cell, all started up front and pinned to the same core; wrk runs on
//! another core. Rounds visit every cell in the same order (A B C … A B C …); each visit is one
//! wrk run with Envoy's utime+stime read from `/proc/<pid>/stat` just before and after.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::envoy_config::{self, Auth, PATH, Wasm};
use crate::report::{CellResult, Kind, MANY_TOKENS, Sample};
use crate::tokens::{Alg, Keys, LONG_TOKEN_BYTES};
use crate::{Plan, Prereqs, http, procfs, wrk};

/// Slots of the filter's token cache in the cache-hit cells (the filter's default).
const HIT_CACHE_ENTRIES: u32 = 1024;
/// Slots in the cache-miss cells: with one slot every insert evicts the previous token, and the
/// rotation never sends the same token twice in a row, so every lookup misses (the counters
/// printed next to the row show `0 / N`).
const MISS_CACHE_ENTRIES: u32 = 1;
/// Slots in the many-token cells: a power of two above [`MANY_TOKENS`], as an operator would
/// size the cache for that many live tokens. The shared table is direct-mapped and each worker's
/// own table two-way set-associative, so some tokens still evict each other (the hit/miss
/// counters show how many lookups that costs).
const MANY_CACHE_ENTRIES: u32 = 16_384;

/// Everything part 1 measured.
pub struct EnvoyResults {
    pub cells: Vec<CellResult>,
    pub filter_wasm_bytes: u64,
    pub noop_wasm_bytes: u64,
    pub rss_kib: Vec<(String, u64)>,
    /// Envoy's own heap (admin `/memory`, `allocated`) of the same cells; the wasm VMs' linear
    /// memory is mapped by V8 outside it and shows only in the RSS.
    pub heap_kib: Vec<(String, u64)>,
    pub startup_ms: Vec<(String, f64)>,
    pub sharing: SharingResult,
}

/// The two-worker cache-sharing check.
pub struct SharingResult {
    pub connections: u32,
    pub worker_connections: Vec<u64>,
    pub hits: u64,
    pub misses: u64,
}

impl SharingResult {
    /// One sentence: shared, per worker, or inconclusive.
    pub fn verdict(&self) -> String {
        let workers_used = self.worker_connections.iter().filter(|&&n| n > 0).count();
        let detail = format!(
            "{} fresh connections with one token; connections per worker {:?}; cache hits {}, misses {}",
            self.connections, self.worker_connections, self.hits, self.misses
        );
        if workers_used < 2 {
            format!("inconclusive (only one worker received connections): {detail}")
        } else if self.misses == 1 {
            format!("**shared**: one miss for both workers: {detail}")
        } else {
            format!("**not shared** (one miss per worker): {detail}")
        }
    }
}

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    log: PathBuf,
}

impl Envoy {
    /// Writes the bootstrap and starts Envoy with `concurrency` workers, optionally pinned.
    pub fn start(
        p: &Prereqs,
        dir: &Path,
        name: &str,
        auth: &Auth,
        jwks: &Value,
        concurrency: u32,
        cpu: Option<usize>,
    ) -> Result<Envoy, String> {
        let (port, admin) = (free_port()?, free_port()?);
        let wasm = Wasm {
            filter: &p.filter_wasm,
            noop: &p.noop_wasm,
            floor: &p.floor_wasm,
        };
        let config = envoy_config::bootstrap(auth, port, admin, jwks, &wasm);
        let config_path = dir.join(format!("{name}.json"));
        std::fs::write(&config_path, config.to_string())
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let log = dir.join(format!("{name}.log"));
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(&p.envoy);
                c
            }
            None => Command::new(&p.envoy),
        };
        cmd.arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--disable-hot-restart", "-l", "warning", "--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", p.envoy.display()))?;
        Ok(Envoy {
            child,
            port,
            admin,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Polls the listener with a valid token until it answers 200; returns the time waited.
    pub fn wait_ready(&mut self, token: &str, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let auth = format!("Bearer {token}");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "Envoy exited ({status}); log:\n{}",
                    self.log_tail()
                ));
            }
            match http::get(self.addr(), PATH, &[("Authorization", &auth)]) {
                Ok((200, _)) => return Ok(start.elapsed()),
                Ok((status, body)) if start.elapsed() > timeout => {
                    return Err(format!(
                        "listener answers {status} {body}; log:\n{}",
                        self.log_tail()
                    ));
                }
                _ if start.elapsed() > timeout => {
                    return Err(format!(
                        "Envoy not ready after {timeout:?}; log:\n{}",
                        self.log_tail()
                    ));
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Counters from the admin `/stats`, as `(name, value)`.
    pub fn stats(&self) -> Result<Vec<(String, u64)>, String> {
        let (status, body) = http::get(
            SocketAddr::from(([127, 0, 0, 1], self.admin)),
            "/stats",
            &[],
        )?;
        if status != 200 {
            return Err(format!("admin /stats answered {status}"));
        }
        Ok(parse_stats(&body))
    }

    /// Bytes Envoy's allocator has handed out (admin `/memory`, `allocated`).
    pub fn heap_allocated(&self) -> Result<u64, String> {
        let (status, body) = http::get(
            SocketAddr::from(([127, 0, 0, 1], self.admin)),
            "/memory",
            &[],
        )?;
        if status != 200 {
            return Err(format!("admin /memory answered {status}"));
        }
        parse_allocated(&body).ok_or_else(|| format!("no `allocated` in admin /memory: {body}"))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines.len().saturating_sub(20);
        lines.get(tail..).unwrap_or_default().join("\n")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name: value` lines of Envoy's text `/stats` whose value is an integer.
pub fn parse_stats(body: &str) -> Vec<(String, u64)> {
    body.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The `allocated` field of admin `/memory` (a JSON object whose numbers are strings).
fn parse_allocated(body: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(body).ok()?;
    match v.get("allocated")? {
        Value::String(s) => s.parse().ok(),
        n => n.as_u64(),
    }
}

fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The cells in round order.
pub fn cells() -> Vec<(Kind, Auth)> {
    let mut cells = vec![(Kind::NoAuth, Auth::None)];
    for alg in Alg::ALL {
        for cache in [true, false] {
            cells.push((Kind::JwtAuthn { alg, cache }, Auth::JwtAuthn { alg, cache }));
        }
    }
    cells.push((Kind::NoopWasm, Auth::NoopWasm));
    cells.push((Kind::FloorWasm, Auth::FloorWasm));
    for alg in Alg::ALL {
        for hit in [true, false] {
            let cache_entries = if hit {
                HIT_CACHE_ENTRIES
            } else {
                MISS_CACHE_ENTRIES
            };
            cells.push((
                Kind::Filter { alg, hit },
                Auth::Filter {
                    alg,
                    cache_entries,
                    tool_rules: false,
                    access_log: false,
                },
            ));
        }
    }
    cells.push((Kind::FloorLongToken, Auth::FloorWasm));
    cells.push((
        Kind::FilterLongToken,
        Auth::Filter {
            alg: Alg::EdDsa,
            cache_entries: HIT_CACHE_ENTRIES,
            tool_rules: false,
            access_log: false,
        },
    ));
    cells.push((
        Kind::FilterAccessLog,
        Auth::Filter {
            alg: Alg::EdDsa,
            cache_entries: HIT_CACHE_ENTRIES,
            tool_rules: false,
            access_log: true,
        },
    ));
    cells.push((
        Kind::FilterToolCall,
        Auth::Filter {
            alg: Alg::EdDsa,
            cache_entries: HIT_CACHE_ENTRIES,
            tool_rules: true,
            access_log: false,
        },
    ));
    for workers in [1, 2] {
        cells.push((
            Kind::FilterManyTokens { workers },
            Auth::Filter {
                alg: Alg::EdDsa,
                cache_entries: MANY_CACHE_ENTRIES,
                tool_rules: false,
                access_log: false,
            },
        ));
    }
    cells
}

/// Which token file a cell's load uses.
/// The tokens wrk sends in the `run`-th run (warm-up 0, then rounds 1, 2, …) against a cell.
fn token_file(kind: Kind, files: &TokenFiles, run: u32) -> &Path {
    match kind {
        Kind::NoAuth
        | Kind::NoopWasm
        | Kind::FloorWasm
        | Kind::FilterToolCall
        | Kind::FilterAccessLog => files.pick(Alg::EdDsa, true, run),
        Kind::JwtAuthn { alg, cache } => files.pick(alg, cache, run),
        Kind::Filter { alg, hit } => files.pick(alg, hit, run),
        Kind::FilterLongToken | Kind::FloorLongToken => &files.long,
        Kind::FilterManyTokens { .. } => &files.many,
    }
}

/// The token files of one algorithm.
struct AlgTokens {
    /// One reused token.
    one: PathBuf,
    /// Two disjoint rotations of distinct tokens, used by alternate runs.
    ///
    /// Each wrk run starts its rotation from the top, and the cell's Envoy keeps its cache
    /// between runs. With one rotation, the token the previous run left in a miss cell's
    /// one-slot cache could be among the first the next run sends (a hit, seen in CI). Runs
    /// alternate between the two rotations, so the next run never sends that token.
    fresh: [PathBuf; 2],
    /// A token outside every file, for readiness probes.
    probe: String,
}

struct TokenFiles {
    /// One reused EdDSA token of `LONG_TOKEN_BYTES`.
    long: PathBuf,
    /// `MANY_TOKENS` distinct EdDSA tokens, the same rotation in every run (the cache is meant
    /// to keep them).
    many: PathBuf,
    eddsa: AlgTokens,
    es256: AlgTokens,
    rs256: AlgTokens,
}

impl TokenFiles {
    fn of(&self, alg: Alg) -> &AlgTokens {
        match alg {
            Alg::EdDsa => &self.eddsa,
            Alg::Es256 => &self.es256,
            Alg::Rs256 => &self.rs256,
        }
    }
    fn pick(&self, alg: Alg, reused: bool, run: u32) -> &Path {
        let tokens = self.of(alg);
        let [even, odd] = &tokens.fresh;
        match (reused, run % 2) {
            (true, _) => &tokens.one,
            (false, 0) => even,
            (false, _) => odd,
        }
    }
    fn probe(&self, alg: Alg) -> &str {
        &self.of(alg).probe
    }
}

fn write_tokens(dir: &Path, keys: &Keys, plan: &Plan) -> Result<TokenFiles, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let write = |alg: Alg| -> Result<AlgTokens, String> {
        let tokens = keys.tokens(alg, 2 * plan.fresh_tokens + 1, now);
        // The readiness probe's token is verified (and cached) before the load starts, so it
        // must not be in either rotation: the miss cells' one-slot cache would still hold it
        // when wrk's first requests arrive, and one of them could be a hit.
        let (probe, rotations) = tokens.split_last().ok_or("no tokens generated")?;
        let (even, odd) = rotations
            .split_at_checked(plan.fresh_tokens)
            .ok_or("no tokens generated")?;
        let first = even.first().ok_or("no tokens generated")?;
        let one = dir.join(format!("one-{}.txt", alg.jose()));
        std::fs::write(&one, format!("{first}\n")).map_err(|e| e.to_string())?;
        let mut fresh = [PathBuf::new(), PathBuf::new()];
        for (path, (name, rotation)) in fresh.iter_mut().zip([("even", even), ("odd", odd)]) {
            *path = dir.join(format!("fresh-{name}-{}.txt", alg.jose()));
            std::fs::write(&*path, rotation.join("\n") + "\n").map_err(|e| e.to_string())?;
        }
        Ok(AlgTokens {
            one,
            fresh,
            probe: probe.clone(),
        })
    };
    let long = dir.join("one-long.txt");
    let long_token = keys.long_token(Alg::EdDsa, now, LONG_TOKEN_BYTES);
    std::fs::write(&long, format!("{long_token}\n")).map_err(|e| e.to_string())?;
    let many = dir.join("many-EdDSA.txt");
    let serials = 1_000_000..1_000_000 + MANY_TOKENS as u64;
    let many_tokens: Vec<String> = serials
        .map(|serial| keys.token(Alg::EdDsa, serial, now))
        .collect();
    std::fs::write(&many, many_tokens.join("\n") + "\n").map_err(|e| e.to_string())?;
    Ok(TokenFiles {
        long,
        many,
        eddsa: write(Alg::EdDsa)?,
        es256: write(Alg::Es256)?,
        rs256: write(Alg::Rs256)?,
    })
}

fn cell_alg(kind: Kind) -> Alg {
    match kind {
        Kind::JwtAuthn { alg, .. } | Kind::Filter { alg, .. } => alg,
        Kind::NoAuth
        | Kind::NoopWasm
        | Kind::FloorWasm
        | Kind::FloorLongToken
        | Kind::FilterLongToken
        | Kind::FilterToolCall
        | Kind::FilterAccessLog
        | Kind::FilterManyTokens { .. } => Alg::EdDsa,
    }
}

/// Runs part 1.
pub fn run(p: &Prereqs, plan: &Plan) -> Result<EnvoyResults, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
    let keys = Keys::fixed();
    let jwks = keys.jwks();
    let files = write_tokens(dir.path(), &keys, plan)?;
    let body = dir.path().join("tools-call.json");
    std::fs::write(&body, wrk::TOOL_CALL_BODY).map_err(|e| e.to_string())?;
    let script = dir.path().join("rotate.lua");
    std::fs::write(&script, wrk::SCRIPT).map_err(|e| e.to_string())?;
    let ticks_per_sec = procfs::clock_ticks_per_second() as f64;

    let cells: Vec<(Kind, Auth)> = cells()
        .into_iter()
        .filter(|(kind, _)| {
            let label = kind.label();
            plan.cells.is_empty() || plan.cells.iter().any(|part| label.contains(part.as_str()))
        })
        .collect();
    if cells.is_empty() {
        return Err(format!(
            "--cells {:?} selects no cell",
            plan.cells.join(",")
        ));
    }
    // New Envoy processes for every round. Where a process's code and heap happen to land makes
    // it a few per cent faster or slower for its whole life (identical hit rows read 1.02× and
    // 1.11× the floor in one run with one process per cell); a fresh set per round lets the
    // rounds see different layouts instead of repeating one.
    let start_all = || -> Result<Vec<Envoy>, String> {
        let mut envoys = Vec::new();
        for (i, (kind, auth)) in cells.iter().enumerate() {
            let mut envoy = Envoy::start(
                p,
                dir.path(),
                &format!("cell{i}"),
                auth,
                &jwks,
                kind.workers(),
                p.envoy_cpu,
            )?;
            envoy
                .wait_ready(files.probe(cell_alg(*kind)), Duration::from_secs(30))
                .map_err(|e| format!("{}: {e}", kind.label()))?;
            envoys.push(envoy);
        }
        Ok(envoys)
    };

    let measure = |kind: Kind, envoy: &Envoy, run: u32, seconds: u32| -> Result<Sample, String> {
        let before = procfs::cpu_ticks(envoy.pid())?;
        let r = wrk::run(&wrk::WrkRun {
            port: envoy.port,
            script: &script,
            tokens: token_file(kind, &files, run),
            body: (kind == Kind::FilterToolCall).then_some(body.as_path()),
            seconds,
            connections: plan.connections,
            cpu: p.load_cpu,
        })?;
        let after = procfs::cpu_ticks(envoy.pid())?;
        // A busy machine may time out a rare connection; more than 1% means something is wrong.
        if r.requests == 0 || r.status_errors > 0 || r.socket_errors * 100 > r.requests {
            return Err(format!(
                "{}: {} requests, {} non-2xx responses, {} socket errors",
                kind.label(),
                r.requests,
                r.status_errors,
                r.socket_errors
            ));
        }
        if r.socket_errors > 0 {
            eprintln!(
                "bench: {}: {} socket errors in {} requests",
                kind.label(),
                r.socket_errors,
                r.requests
            );
        }
        let cpu_secs = after.saturating_sub(before) as f64 / ticks_per_sec;
        Ok(Sample {
            rps: r.requests as f64 / (r.duration_us as f64 / 1e6),
            p50_us: r.p50_us as f64,
            p99_us: r.p99_us as f64,
            cpu_us_per_req: cpu_secs * 1e6 / r.requests as f64,
        })
    };

    let mut results: Vec<CellResult> = cells
        .iter()
        .map(|(kind, _)| CellResult {
            kind: *kind,
            samples: vec![],
            reference: vec![],
            cache_hits_misses: None,
        })
        .collect();
    // Where each cell's target reference runs, if it is among the cells.
    let references: Vec<Option<usize>> = cells
        .iter()
        .map(|(kind, _)| {
            let reference = kind.target_reference()?;
            cells.iter().position(|(k, _)| *k == reference)
        })
        .collect();
    let mut rss_kib = Vec::new();
    let mut heap_kib = Vec::new();
    for round in 1..=plan.rounds {
        let envoys = start_all()?;
        eprintln!(
            "bench: round {round}/{}: {} Envoy processes ready; warming up",
            plan.rounds,
            envoys.len()
        );
        // Counters at the end of the warm-up: the table's hit/miss column covers the measured
        // runs only (the warm-up's first lookups of every token are misses by design). The
        // warm-up sends the other rotation than the round (`round + 1`), so a miss cell's one
        // slot never holds a token the round is about to send.
        let mut warm_counters = Vec::new();
        for ((kind, _), envoy) in cells.iter().zip(&envoys) {
            let warm = measure(*kind, envoy, round + 1, plan.warmup_seconds)?;
            if let Some(seconds) = fill_seconds(*kind, warm.rps) {
                // Each wrk run starts its rotation from the top: one run long enough to send
                // every token once, so the round measures the cache holding all of them.
                measure(*kind, envoy, round + 1, seconds)?;
            }
            warm_counters.push(cache_counters(envoy)?);
        }
        for ((result, envoy), reference) in results.iter_mut().zip(&envoys).zip(&references) {
            let kind = result.kind;
            let Some((ref_kind, ref_envoy)) =
                reference.and_then(|j| Some((cells.get(j)?.0, envoys.get(j)?)))
            else {
                result
                    .samples
                    .push(measure(kind, envoy, round, plan.seconds)?);
                continue;
            };
            // The reference once more, back to back with the cell; which of the two goes first
            // alternates by round, so a drift within the pair favours neither.
            if round % 2 == 1 {
                let r = measure(ref_kind, ref_envoy, round, plan.seconds)?;
                result.reference.push(r);
                result
                    .samples
                    .push(measure(kind, envoy, round, plan.seconds)?);
            } else {
                result
                    .samples
                    .push(measure(kind, envoy, round, plan.seconds)?);
                let r = measure(ref_kind, ref_envoy, round, plan.seconds)?;
                result.reference.push(r);
            }
        }

        for ((result, envoy), (warm_hits, warm_misses)) in
            results.iter_mut().zip(&envoys).zip(warm_counters)
        {
            if matches!(
                result.kind,
                Kind::Filter { .. }
                    | Kind::FilterLongToken
                    | Kind::FilterAccessLog
                    | Kind::FilterToolCall
                    | Kind::FilterManyTokens { .. }
            ) {
                let (hits, misses) = cache_counters(envoy)?;
                let (sum_hits, sum_misses) = result.cache_hits_misses.unwrap_or_default();
                result.cache_hits_misses = Some((
                    sum_hits + hits.saturating_sub(warm_hits),
                    sum_misses + misses.saturating_sub(warm_misses),
                ));
            }
            let memory_row = matches!(
                result.kind,
                Kind::NoAuth
                    | Kind::NoopWasm
                    | Kind::Filter {
                        alg: Alg::EdDsa,
                        hit: true
                    }
                    | Kind::FilterManyTokens { .. }
            );
            if memory_row && round == plan.rounds {
                rss_kib.push((result.kind.label(), procfs::rss_kib(envoy.pid())?));
                heap_kib.push((result.kind.label(), envoy.heap_allocated()? / 1024));
            }
        }
        drop(envoys);
    }

    let startup_ms = startup(p, plan, dir.path(), &jwks, &files)?;
    let sharing = sharing(p, dir.path(), &jwks, &files)?;
    Ok(EnvoyResults {
        cells: results,
        filter_wasm_bytes: file_size(&p.filter_wasm)?,
        noop_wasm_bytes: file_size(&p.noop_wasm)?,
        rss_kib,
        heap_kib,
        startup_ms,
        sharing,
    })
}

/// The filter's cache hit and miss counters (zero for cells without the filter).
fn cache_counters(envoy: &Envoy) -> Result<(u64, u64), String> {
    let stats = envoy.stats()?;
    Ok((
        stat(&stats, "wasmcustom.mcp_auth.cache.hit"),
        stat(&stats, "wasmcustom.mcp_auth.cache.miss"),
    ))
}

/// For the many-token cells, the length of a second warm-up run that sends each of their
/// tokens once (with a fifth to spare) at the rate the first warm-up measured; `None` when the
/// cell needs none.
fn fill_seconds(kind: Kind, warmup_rps: f64) -> Option<u32> {
    if !matches!(kind, Kind::FilterManyTokens { .. }) {
        return None;
    }
    let seconds = (MANY_TOKENS as f64 * 1.2 / warmup_rps.max(1.0)).ceil();
    Some(seconds.clamp(1.0, 120.0) as u32)
}

fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Median time from process start until the listener answers 200, no-op vs the filter,
/// alternating the two for `plan.startups` tries each.
fn startup(
    p: &Prereqs,
    plan: &Plan,
    dir: &Path,
    jwks: &Value,
    files: &TokenFiles,
) -> Result<Vec<(String, f64)>, String> {
    let configs = [
        (Kind::NoopWasm, Auth::NoopWasm),
        (
            Kind::Filter {
                alg: Alg::EdDsa,
                hit: true,
            },
            Auth::Filter {
                alg: Alg::EdDsa,
                cache_entries: HIT_CACHE_ENTRIES,
                tool_rules: false,
                access_log: false,
            },
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    for attempt in 0..plan.startups {
        for (i, ((_, auth), times)) in configs.iter().zip(&mut times).enumerate() {
            let mut envoy = Envoy::start(
                p,
                dir,
                &format!("startup{i}-{attempt}"),
                auth,
                jwks,
                1,
                p.envoy_cpu,
            )?;
            let t = envoy.wait_ready(files.probe(Alg::EdDsa), Duration::from_secs(30))?;
            times.push(t.as_secs_f64() * 1e3);
        }
    }
    Ok(configs
        .iter()
        .zip(&times)
        .map(|((kind, _), t)| (kind.label(), crate::report::median(t).unwrap_or(f64::NAN)))
        .collect())
}

/// Two workers, one token, many fresh connections: is the verified-token cache shared?
fn sharing(
    p: &Prereqs,
    dir: &Path,
    jwks: &Value,
    files: &TokenFiles,
) -> Result<SharingResult, String> {
    let auth = Auth::Filter {
        alg: Alg::EdDsa,
        cache_entries: HIT_CACHE_ENTRIES,
        tool_rules: false,
        access_log: false,
    };
    let mut envoy = Envoy::start(p, dir, "sharing", &auth, jwks, 2, None)?;
    let token = files.probe(Alg::EdDsa);
    envoy.wait_ready(token, Duration::from_secs(30))?;
    let connections = 40;
    let header = format!("Bearer {token}");
    for _ in 1..connections {
        let (status, _) = http::get(envoy.addr(), PATH, &[("Authorization", &header)])?;
        if status != 200 {
            return Err(format!("two-worker Envoy answered {status}"));
        }
    }
    let stats = envoy.stats()?;
    let listener = format!("listener.127.0.0.1_{}", envoy.port);
    let worker_connections = (0..2)
        .map(|w| {
            stat(
                &stats,
                &format!("{listener}.worker_{w}.downstream_cx_total"),
            )
        })
        .collect();
    Ok(SharingResult {
        connections,
        worker_connections,
        hits: stat(&stats, "wasmcustom.mcp_auth.cache.hit"),
        misses: stat(&stats, "wasmcustom.mcp_auth.cache.miss"),
    })
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "rps": s.rps, "p50_us": s.p50_us, "p99_us": s.p99_us,
        "cpu_us_per_req": s.cpu_us_per_req,
    })
}

/// The results as JSON (for scripts and the smoke test).
pub fn to_json(r: &EnvoyResults) -> Value {
    json!({
        "cells": r.cells.iter().map(|c| json!({
            "cell": c.kind.label(),
            "samples": c.samples.iter().map(sample_json).collect::<Vec<_>>(),
            "reference": c.kind.target_reference().map(|k| k.label()),
            "reference_samples": c.reference.iter().map(sample_json).collect::<Vec<_>>(),
            "cache_hits": c.cache_hits_misses.map(|h| h.0),
            "cache_misses": c.cache_hits_misses.map(|h| h.1),
        })).collect::<Vec<_>>(),
        "filter_wasm_bytes": r.filter_wasm_bytes,
        "noop_wasm_bytes": r.noop_wasm_bytes,
        "rss_kib": r.rss_kib.iter().map(|(k, v)| json!({"cell": k, "kib": v})).collect::<Vec<_>>(),
        "heap_kib": r.heap_kib.iter().map(|(k, v)| json!({"cell": k, "kib": v})).collect::<Vec<_>>(),
        "startup_ms": r.startup_ms.iter().map(|(k, v)| json!({"cell": k, "ms": v})).collect::<Vec<_>>(),
        "sharing": {
            "connections": r.sharing.connections,
            "worker_connections": r.sharing.worker_connections,
            "hits": r.sharing.hits,
            "misses": r.sharing.misses,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_with_integer_values_are_parsed() {
        let body = "wasmcustom.mcp_auth.cache.hit: 39\nwasmcustom.mcp_auth.cache.miss: 1\n\
                    cluster_manager.cds.version_text: \"\"\nhist: P0(nan,0)\n";
        let stats = parse_stats(body);
        assert_eq!(stat(&stats, "wasmcustom.mcp_auth.cache.hit"), 39);
        assert_eq!(stat(&stats, "wasmcustom.mcp_auth.cache.miss"), 1);
        assert_eq!(stats.len(), 2);
    }

    #[test]
    fn many_token_cells_get_a_warm_up_that_sends_every_token() {
        let many = Kind::FilterManyTokens { workers: 1 };
        assert_eq!(fill_seconds(many, 3000.0), Some(4));
        assert_eq!(fill_seconds(many, 1e9), Some(1));
        assert_eq!(fill_seconds(many, 0.0), Some(120));
        assert_eq!(fill_seconds(Kind::FilterToolCall, 3000.0), None);
    }

    #[test]
    fn the_heap_size_is_read_from_admin_memory() {
        let body = r#"{"allocated": "7053048", "heap_size": "12582912", "pageheap_unmapped": "0"}"#;
        assert_eq!(parse_allocated(body), Some(7_053_048));
        assert_eq!(parse_allocated(r#"{"allocated": 5}"#), Some(5));
        assert_eq!(parse_allocated("{}"), None);
        assert_eq!(parse_allocated("not json"), None);
    }

    #[test]
    fn sharing_verdict_needs_both_workers_and_counts_misses() {
        let r = |workers: Vec<u64>, misses| SharingResult {
            connections: 40,
            worker_connections: workers,
            hits: 40 - misses,
            misses,
        };
        assert!(r(vec![20, 20], 1).verdict().starts_with("**shared**"));
        assert!(r(vec![20, 20], 2).verdict().starts_with("**not shared**"));
        assert!(r(vec![40, 0], 1).verdict().starts_with("inconclusive"));
    }

    #[test]
    fn every_filter_row_has_its_jwt_authn_counterpart_among_the_cells() {
        let kinds: Vec<Kind> = cells().into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds.len(), 21);
        assert!(kinds.contains(&Kind::FilterToolCall));
        let workers: Vec<u32> = kinds
            .iter()
            .filter(|k| matches!(k, Kind::FilterManyTokens { .. }))
            .map(|k| k.workers())
            .collect();
        assert_eq!(workers, [1, 2]);
        assert!(kinds.contains(&Kind::NoopWasm) && kinds.contains(&Kind::FloorWasm));
        for k in &kinds {
            if let Some(jwt) = k.jwt_counterpart() {
                assert!(kinds.contains(&jwt), "{k:?}");
            }
        }
        let miss = cells()
            .into_iter()
            .find(|(k, _)| {
                *k == Kind::Filter {
                    alg: Alg::Rs256,
                    hit: false,
                }
            })
            .unwrap();
        assert_eq!(
            miss.1,
            Auth::Filter {
                alg: Alg::Rs256,
                cache_entries: 1,
                tool_rules: false,
                access_log: false,
            }
        );
    }
}
