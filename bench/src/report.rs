//! Turning per-round samples into the Markdown table: medians, ratios and the performance
//! targets listed in bench/README.md.
//!
//! Ratios are the median over rounds of the per-round ratio (cells of one round run back to
//! back, so a ratio within a round cancels slow drifts of the shared machine). A target compares
//! its row with a reference row measured right next to it in every round (see
//! [`Kind::target_reference`]), not with that row's own place in the round: a round of every
//! cell takes minutes, and the machine's load drifts within it by more than a target's margin.

use std::fmt::Write as _;

use crate::tokens::Alg;

/// What a cell measures; decides which rows it is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NoAuth,
    NoopWasm,
    /// Only the host calls an identity-forwarding filter makes on a cache hit.
    FloorWasm,
    /// The same with the long token of [`Kind::FilterLongToken`]: Envoy's own cost of a longer
    /// `Authorization` header (reading it from the socket, parsing it, copying it into the VM)
    /// is in both rows, so their ratio is the filter's own per-byte cost.
    FloorLongToken,
    /// `jwt_authn`; with its cache the token is reused, without it each request has a fresh one.
    JwtAuthn {
        alg: Alg,
        cache: bool,
    },
    /// The filter; `hit`: one token reused, otherwise a fresh token per request (every lookup misses).
    Filter {
        alg: Alg,
        hit: bool,
    },
    /// The filter with one reused EdDSA token of [`crate::tokens::LONG_TOKEN_BYTES`]: what a
    /// cache hit costs per byte of token.
    FilterLongToken,
    /// The hit row with the filter's default `access_log_properties: true` (the other filter
    /// rows turn them off): what the access-log properties cost a cache hit.
    FilterAccessLog,
    /// The filter with one reused EdDSA token, per-tool rules and `hold_headers_for_body`,
    /// receiving a `tools/call` `POST` without `Mcp-Method`: the cost of buffering and parsing
    /// the body on top of a cache hit.
    FilterToolCall,
    /// The filter with [`MANY_TOKENS`] distinct EdDSA tokens in rotation, its cache sized for
    /// them, and `workers` Envoy workers: cache pressure and memory per worker.
    FilterManyTokens {
        workers: u32,
    },
}

/// Distinct live tokens in the rotation of the many-token rows.
pub const MANY_TOKENS: usize = 10_000;

/// Cache hit: Envoy CPU per request at most this multiple of the host-call floor filter's.
pub const HIT_LIMIT_TO_FLOOR: f64 = 1.05;
/// Cache miss: Envoy CPU per request at most this multiple of `jwt_authn`'s (fresh tokens), for
/// EdDSA and ES256.
pub const MISS_LIMIT_EC: f64 = 1.0;
/// The same for RS256 (public-key operation with a 2048-bit modulus in 32-bit wasm arithmetic).
pub const MISS_LIMIT_RSA: f64 = 1.75;
/// Startup to the first 200: below this multiple of the no-op filter's.
pub const STARTUP_LIMIT_TO_NOOP: f64 = 1.5;

impl Kind {
    pub fn label(self) -> String {
        match self {
            Kind::NoAuth => "no auth".into(),
            Kind::NoopWasm => "no-op wasm filter".into(),
            Kind::FloorWasm => "host-call floor wasm filter".into(),
            Kind::FloorLongToken => format!(
                "host-call floor wasm filter, {} KB token",
                crate::tokens::LONG_TOKEN_BYTES / 1024
            ),
            Kind::JwtAuthn { alg, cache: true } => {
                format!("jwt_authn {} + jwt_cache_config, token reused", alg.jose())
            }
            Kind::JwtAuthn { alg, cache: false } => {
                format!("jwt_authn {}, fresh token per request", alg.jose())
            }
            Kind::Filter { alg, hit: true } => format!("filter {} cache hit", alg.jose()),
            Kind::Filter { alg, hit: false } => format!("filter {} cache miss", alg.jose()),
            Kind::FilterLongToken => format!(
                "filter EdDSA cache hit, {} KB token",
                crate::tokens::LONG_TOKEN_BYTES / 1024
            ),
            Kind::FilterAccessLog => "filter EdDSA cache hit, access-log properties".into(),
            Kind::FilterToolCall => {
                "filter EdDSA cache hit, tools/call body, per-tool rules".into()
            }
            Kind::FilterManyTokens { workers } => format!(
                "filter EdDSA, {MANY_TOKENS} tokens in rotation, {workers} worker{}",
                if workers == 1 { "" } else { "s" }
            ),
        }
    }

    /// Envoy workers (`--concurrency`) of the cell.
    pub fn workers(self) -> u32 {
        match self {
            Kind::FilterManyTokens { workers } => workers,
            _ => 1,
        }
    }

    /// The row this row's performance target compares it with, measured right before or after
    /// it in every round: the host-call floor for a cache hit (the floor fed the same long token
    /// for the long-token row), `jwt_authn` with fresh tokens for a cache miss.
    pub fn target_reference(self) -> Option<Kind> {
        match self {
            Kind::Filter { hit: true, .. } | Kind::FilterAccessLog => Some(Kind::FloorWasm),
            Kind::FilterLongToken => Some(Kind::FloorLongToken),
            Kind::Filter { alg, hit: false } => Some(Kind::JwtAuthn { alg, cache: false }),
            _ => None,
        }
    }

    /// The `jwt_authn` row a filter row is compared with: same algorithm and token pattern.
    pub fn jwt_counterpart(self) -> Option<Kind> {
        match self {
            Kind::Filter { alg, hit } => Some(Kind::JwtAuthn { alg, cache: hit }),
            _ => None,
        }
    }
}

/// One measurement of one cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Envoy's utime + stime during the run divided by the requests, in microseconds.
    pub cpu_us_per_req: f64,
}

/// All rounds of one cell, plus the filter's cache counters read after the last round.
#[derive(Clone, Debug)]
pub struct CellResult {
    pub kind: Kind,
    pub samples: Vec<Sample>,
    /// One sample per round of [`Kind::target_reference`]'s cell, taken back to back with this
    /// cell's sample of the same round (empty without a reference, or when its cell is not run).
    pub reference: Vec<Sample>,
    pub cache_hits_misses: Option<(u64, u64)>,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let middle = if v.len() % 2 == 1 {
        v.get(mid..=mid)
    } else {
        v.get(mid - 1..=mid)
    };
    match middle? {
        [middle] => Some(*middle),
        [low, high] => Some((low + high) / 2.0),
        _ => None,
    }
}

/// Median over rounds of `metric(a) / metric(b)`, pairing rounds by index.
fn ratio(a: &CellResult, b: &CellResult, metric: fn(&Sample) -> f64) -> Option<f64> {
    let per_round: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| metric(x) / metric(y))
        .collect();
    median(&per_round)
}

/// The lowest Envoy CPU per request among `samples`.
fn least_cpu(samples: &[Sample]) -> Option<f64> {
    samples
        .iter()
        .map(|s| s.cpu_us_per_req)
        .filter(|v| v.is_finite() && *v > 0.0)
        .min_by(f64::total_cmp)
}

fn find(cells: &[CellResult], kind: Kind) -> Option<&CellResult> {
    cells.iter().find(|c| c.kind == kind)
}

/// A target check: its text and whether it passed.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub text: String,
    pub pass: bool,
}

/// The row's performance target (bench/README.md), if it has one: CPU per request, not
/// throughput (on a shared machine measured throughput also moves with other processes on
/// Envoy's core, CPU per request much less), against the reference measured next to the row.
///
/// The ratio is of the fastest round of each side. What the machine adds (other tenants' work,
/// their cache traffic, less batching at lower throughput) only ever adds CPU per request, in
/// bursts shorter than a round and larger than the targets' margins, so the least cost seen is
/// the closest reading of the cost itself; the crypto micro-benchmark reads its timings the same
/// way.
pub fn row_target(cell: &CellResult) -> Option<Verdict> {
    let reference = cell.kind.target_reference()?;
    let r = least_cpu(&cell.samples)? / least_cpu(&cell.reference)?;
    let (limit, against) = match reference {
        Kind::JwtAuthn {
            alg: Alg::Rs256, ..
        } => (MISS_LIMIT_RSA, "jwt_authn"),
        Kind::JwtAuthn { .. } => (MISS_LIMIT_EC, "jwt_authn"),
        _ => (HIT_LIMIT_TO_FLOOR, "floor"),
    };
    Some(Verdict {
        text: format!("CPU/req ≤ {limit:.2}× {against} next to it, fastest rounds: {r:.2}×"),
        pass: r <= limit,
    })
}

/// The floor row's reading: how much of the no-op filter's throughput a filter keeps that only
/// makes the host calls of an identity-forwarding cache hit (no target; the filter's hit rows
/// cannot do better than this).
pub fn floor_note(cells: &[CellResult], cell: &CellResult) -> Option<String> {
    if cell.kind == Kind::FloorLongToken {
        let floor = find(cells, Kind::FloorWasm)?;
        let d = median(
            &cell
                .samples
                .iter()
                .zip(&floor.samples)
                .map(|(x, y)| x.cpu_us_per_req - y.cpu_us_per_req)
                .collect::<Vec<_>>(),
        )?;
        return Some(format!(
            "reference for the 2 KB token row: CPU/req {d:+.1} µs vs the floor"
        ));
    }
    if cell.kind != Kind::FloorWasm {
        return None;
    }
    let noop = find(cells, Kind::NoopWasm)?;
    let r = ratio(cell, noop, |s| s.rps)?;
    let by_cpu = ratio(noop, cell, |s| s.cpu_us_per_req)?;
    Some(format!(
        "reference: req/s {:.1}% of no-op (by CPU/req: {:.1}%)",
        r * 100.0,
        by_cpu * 100.0
    ))
}

/// The reading of the rows without a target: what they cost above the short-token EdDSA cache
/// hit (median over rounds of the per-round difference in Envoy CPU per request).
pub fn extra_note(cells: &[CellResult], cell: &CellResult) -> Option<String> {
    if !matches!(
        cell.kind,
        Kind::FilterToolCall | Kind::FilterManyTokens { .. }
    ) {
        return None;
    }
    let hit = find(
        cells,
        Kind::Filter {
            alg: Alg::EdDsa,
            hit: true,
        },
    )?;
    let per_round: Vec<f64> = cell
        .samples
        .iter()
        .zip(&hit.samples)
        .map(|(x, y)| x.cpu_us_per_req - y.cpu_us_per_req)
        .collect();
    let d = median(&per_round)?;
    Some(format!("CPU/req {d:+.1} µs vs EdDSA cache hit"))
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

/// The main Markdown table.
pub fn table(cells: &[CellResult]) -> String {
    let mut out = String::new();
    out.push_str(
        "| cell | req/s | p50 µs | p99 µs | Envoy CPU µs/req | req/s ÷ no-auth | CPU/req ÷ no-auth \
         | req/s ÷ jwt_authn | CPU/req ÷ jwt_authn | filter cache hit/miss | target |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let no_auth = find(cells, Kind::NoAuth);
    for cell in cells {
        let med = |m: fn(&Sample) -> f64| median(&cell.samples.iter().map(m).collect::<Vec<_>>());
        let num = |v: Option<f64>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "–".into())
        };
        let jwt = cell.kind.jwt_counterpart().and_then(|k| find(cells, k));
        let target = row_target(cell)
            .map(|v| format!("{} **{}**", v.text, if v.pass { "PASS" } else { "FAIL" }))
            .or_else(|| floor_note(cells, cell))
            .or_else(|| extra_note(cells, cell))
            .unwrap_or_default();
        let counters = cell
            .cache_hits_misses
            .map(|(h, m)| format!("{h} / {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell.kind.label(),
            num(med(|s| s.rps), 0),
            num(med(|s| s.p50_us), 0),
            num(med(|s| s.p99_us), 0),
            num(med(|s| s.cpu_us_per_req), 1),
            fmt_ratio(no_auth.and_then(|n| ratio(cell, n, |s| s.rps))),
            fmt_ratio(no_auth.and_then(|n| ratio(cell, n, |s| s.cpu_us_per_req))),
            fmt_ratio(jwt.and_then(|j| ratio(cell, j, |s| s.rps))),
            fmt_ratio(jwt.and_then(|j| ratio(cell, j, |s| s.cpu_us_per_req))),
            counters,
            target,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rps: &[f64], cpu: &[f64]) -> Vec<Sample> {
        rps.iter()
            .zip(cpu)
            .map(|(&rps, &cpu_us_per_req)| Sample {
                rps,
                p50_us: 100.0,
                p99_us: 300.0,
                cpu_us_per_req,
            })
            .collect()
    }

    fn cell(kind: Kind, rps: &[f64], cpu: &[f64]) -> CellResult {
        CellResult {
            kind,
            samples: samples(rps, cpu),
            reference: vec![],
            cache_hits_misses: None,
        }
    }

    /// `cell` with its target reference's CPU per request, measured next to it in each round.
    fn paired(kind: Kind, cpu: &[f64], reference_cpu: &[f64]) -> CellResult {
        CellResult {
            reference: samples(&vec![1.0; reference_cpu.len()], reference_cpu),
            ..cell(kind, &vec![1.0; cpu.len()], cpu)
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn cache_hit_target_compares_the_fastest_rounds_of_the_row_and_the_floor_next_to_it() {
        for (kind, cpu, pass, reading) in [
            // A burst in two rounds (a ratio of 1.19 in their median) does not fail the row.
            (
                Kind::Filter {
                    alg: Alg::EdDsa,
                    hit: true,
                },
                [10.4, 30.0, 12.0],
                true,
                "1.04",
            ),
            // Every round above the floor by more than the margin fails it.
            (Kind::FilterLongToken, [10.6, 10.7, 10.8], false, "1.06"),
            (Kind::FilterAccessLog, [10.7, 10.6, 11.0], false, "1.06"),
        ] {
            let hit = paired(kind, &cpu, &[10.0, 10.1, 10.2]);
            // The floor row's own samples, taken elsewhere in the round, do not count: here they
            // would pass every row.
            let floor = cell(Kind::FloorWasm, &[100.0; 3], &[50.0; 3]);
            let long_floor = cell(Kind::FloorLongToken, &[100.0; 3], &[50.0; 3]);
            let cells = vec![floor, long_floor, hit.clone()];
            let v = row_target(&hit).unwrap();
            assert_eq!(v.pass, pass, "{v:?}");
            assert_eq!(
                v.text,
                format!("CPU/req ≤ 1.05× floor next to it, fastest rounds: {reading}×")
            );
            assert!(table(&cells).contains(&v.text));
        }
        assert_eq!(
            Kind::FilterLongToken.target_reference(),
            Some(Kind::FloorLongToken)
        );
        assert_eq!(
            Kind::FilterAccessLog.target_reference(),
            Some(Kind::FloorWasm)
        );
        // Without samples of its reference a row has no verdict.
        let alone = cell(Kind::FilterLongToken, &[1.0], &[10.0]);
        assert_eq!(row_target(&alone), None);
    }

    #[test]
    fn floor_row_is_a_reference_against_the_noop_filter_without_a_verdict() {
        let noop = cell(Kind::NoopWasm, &[100.0], &[10.0]);
        let floor = cell(Kind::FloorWasm, &[80.0], &[12.5]);
        let cells = vec![noop.clone(), floor.clone()];
        assert_eq!(row_target(&floor), None);
        assert_eq!(
            floor_note(&cells, &floor).as_deref(),
            Some("reference: req/s 80.0% of no-op (by CPU/req: 80.0%)")
        );
        assert_eq!(floor_note(&cells, &noop), None);
        let long = cell(Kind::FloorLongToken, &[70.0], &[14.0]);
        let cells = vec![noop, floor, long.clone()];
        assert_eq!(row_target(&long), None);
        assert_eq!(
            floor_note(&cells, &long).as_deref(),
            Some("reference for the 2 KB token row: CPU/req +1.5 µs vs the floor")
        );
        assert!(table(&cells).contains("| host-call floor wasm filter | 80 |"));
    }

    #[test]
    fn rows_without_a_target_read_as_a_difference_to_the_eddsa_hit() {
        let hit = cell(
            Kind::Filter {
                alg: Alg::EdDsa,
                hit: true,
            },
            &[1.0; 3],
            &[30.0, 40.0, 30.0],
        );
        let body = cell(Kind::FilterToolCall, &[1.0; 3], &[34.0, 41.0, 32.5]);
        let many = cell(
            Kind::FilterManyTokens { workers: 2 },
            &[1.0; 3],
            &[60.0, 70.0, 60.0],
        );
        let cells = vec![hit.clone(), body.clone(), many.clone()];
        assert_eq!(row_target(&body), None);
        assert_eq!(
            extra_note(&cells, &body).as_deref(),
            Some("CPU/req +2.5 µs vs EdDSA cache hit")
        );
        assert_eq!(
            extra_note(&cells, &many).as_deref(),
            Some("CPU/req +30.0 µs vs EdDSA cache hit")
        );
        assert_eq!(extra_note(&cells, &hit), None);
        assert_eq!(many.kind.workers(), 2);
        assert!(many.kind.label().ends_with("2 workers"));
        assert!(
            Kind::FilterManyTokens { workers: 1 }
                .label()
                .ends_with("1 worker")
        );
    }

    #[test]
    fn cache_miss_limit_is_one_for_eddsa_and_es256_and_one_and_three_quarters_for_rs256() {
        let mk = |alg, jwt_cpu: f64, filter_cpu: f64| {
            let miss = paired(Kind::Filter { alg, hit: false }, &[filter_cpu], &[jwt_cpu]);
            assert_eq!(
                miss.kind.target_reference(),
                Some(Kind::JwtAuthn { alg, cache: false })
            );
            row_target(&miss).unwrap().pass
        };
        assert!(mk(Alg::EdDsa, 10.0, 10.0));
        assert!(!mk(Alg::Es256, 10.0, 10.5));
        assert!(mk(Alg::Rs256, 10.0, 17.5));
        assert!(!mk(Alg::Rs256, 10.0, 18.0));
    }

    #[test]
    fn table_has_one_row_per_cell_with_ratios_to_no_auth_and_jwt_authn() {
        let cells = vec![
            cell(Kind::NoAuth, &[1000.0], &[10.0]),
            cell(
                Kind::JwtAuthn {
                    alg: Alg::Es256,
                    cache: true,
                },
                &[800.0],
                &[12.5],
            ),
            cell(Kind::NoopWasm, &[900.0], &[11.0]),
            cell(Kind::FloorWasm, &[890.0], &[11.5]),
            CellResult {
                reference: samples(&[890.0], &[11.5]),
                ..cell(
                    Kind::Filter {
                        alg: Alg::Es256,
                        hit: true,
                    },
                    &[880.0],
                    &[12.0],
                )
            },
        ];
        let t = table(&cells);
        assert_eq!(t.lines().count(), 2 + cells.len());
        let row = t
            .lines()
            .find(|l| l.starts_with("| filter ES256 cache hit"))
            .unwrap();
        assert!(row.contains("| 0.88× | 1.20× | 1.10× | 0.96× |"), "{row}");
        assert!(
            row.contains("floor next to it, fastest rounds: 1.04× **PASS**"),
            "{row}"
        );
    }
}
