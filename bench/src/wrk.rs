//! The load generator for the Envoy cells: `wrk` (Debian package `wrk`) driven by a Lua script.
//!
//! The script reads a file of tokens (one a line), pre-formats one request per token in `init`,
//! and `request()` hands them out in rotation, so each request carries the next token without
//! building strings on the hot path. Every cell uses the same script (a one-line file for the
//! cells that reuse one token), so the load generator's own cost is identical across cells.
//! `done()` prints one machine-readable line with the counts and wrk's latency percentiles.
//!
//! With a body file the requests are `POST`s of that body as JSON (an MCP client's
//! `tools/call`, without `Mcp-Method`/`Mcp-Name`, so the filter learns the tool from the body).

use std::path::Path;
use std::process::Command;

use crate::envoy_config::PATH;

/// The Lua script given to `wrk -s`.
pub const SCRIPT: &str = r#"
local requests = {}
local next_index = 0

function init(args)
  local path = args[1]
  local method, body = "GET", nil
  if args[3] then
    local f = assert(io.open(args[3], "rb"))
    body = f:read("*a")
    f:close()
    method = "POST"
  end
  for line in io.lines(args[2]) do
    if #line > 0 then
      local headers = { ["Authorization"] = "Bearer " .. line }
      if body then
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json, text/event-stream"
      end
      requests[#requests + 1] = wrk.format(method, path, headers, body)
    end
  end
  if #requests == 0 then error("no tokens in " .. args[2]) end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// The JSON-RPC body of the `tools/call` cells: a tool that the per-tool rule (`admin_*`)
/// does not cover, so the bench's tokens (`mcp:tools`) are allowed to call it.
pub const TOOL_CALL_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the benchmark"}}}"#;

/// What one wrk run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Responses that were not 2xx/3xx (every cell expects 200).
    pub status_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// How wrk is run.
pub struct WrkRun<'a> {
    pub port: u16,
    pub script: &'a Path,
    pub tokens: &'a Path,
    /// A file holding the body to `POST` with every request; `GET`s without a body when `None`.
    pub body: Option<&'a Path>,
    pub seconds: u32,
    pub connections: u32,
    /// The CPU to pin wrk to (`taskset -c`), if pinning is available.
    pub cpu: Option<usize>,
}

/// Runs wrk once and parses its result line.
pub fn run(r: &WrkRun) -> Result<WrkResult, String> {
    let mut cmd = match r.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    cmd.args(["-t1", "-c", &r.connections.to_string()])
        .args(["-d", &format!("{}s", r.seconds), "--timeout", "5s", "-s"])
        .arg(r.script)
        .arg(format!("http://127.0.0.1:{}{PATH}", r.port))
        .arg("--")
        .arg(PATH)
        .arg(r.tokens)
        .args(r.body);
    let out = cmd.output().map_err(|e| format!("running wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&stdout).ok_or_else(|| format!("no result line in wrk output:\n{stdout}"))
}

/// Parses the `BENCH key=value ...` line printed by [`SCRIPT`]'s `done()`.
pub fn parse(output: &str) -> Option<WrkResult> {
    let line = output.lines().find_map(|l| l.strip_prefix("BENCH "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(WrkResult {
        requests: field("requests")?,
        duration_us: field("duration_us")?,
        socket_errors: field("connect_errors")?
            + field("read_errors")?
            + field("write_errors")?
            + field("timeouts")?,
        status_errors: field("status_errors")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
    })
}

/// Whether `wrk` can be run.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wrk") || o.status.code().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_is_found_among_wrks_own_report() {
        let out = "Running 2s test @ http://127.0.0.1:1/mcp\n  1 threads and 16 connections\n\
                   BENCH requests=50000 duration_us=2000100 connect_errors=0 read_errors=1 \
                   write_errors=0 status_errors=3 timeouts=2 p50_us=310 p99_us=900\n";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 50000);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.status_errors, 3);
        assert_eq!((r.p50_us, r.p99_us), (310, 900));
        assert_eq!(parse("Running 2s test"), None);
    }
}
