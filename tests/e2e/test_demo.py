"""`cargo xtask demo` as a newcomer runs it: it builds what it needs, serves the demo on the
README's ports, and SIGTERM (what Ctrl-C also delivers) stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from envoy_template import ROOT

DEMO_PORTS = (10000, 9901, 9000, 9464, 8080)


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_serves_the_readme_urls_and_sigterm_stops_everything(tmp_path):
    busy = [port for port in DEMO_PORTS if port_in_use(port)]
    assert not busy, f"ports {busy} are in use; stop the running demo before this test"
    output = tmp_path / "demo.out"
    with open(output, "wb") as out:
        demo = subprocess.Popen(
            [os.environ.get("CARGO", "cargo"), "xtask", "demo"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 1200  # the first run builds the optimized servers
        while "The demo is running" not in output.read_text(errors="replace"):
            assert demo.poll() is None, output.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "demo did not start"
            time.sleep(0.5)
        banner = output.read_text()
        for text in [
            "http://localhost:10000/mcp",
            'user "demo", password "demo"',
            "claude mcp add --transport http demo http://localhost:10000/mcp",
            ".vscode/mcp.json",
            "npx @modelcontextprotocol/inspector",
            "http://127.0.0.1:9464/metrics",
        ]:
            assert text in banner

        metadata = httpx.get("http://localhost:10000/.well-known/oauth-protected-resource/mcp")
        assert metadata.status_code == 200
        assert metadata.json()["resource"] == "http://localhost:10000/mcp"
        assert metadata.json()["authorization_servers"] == ["http://localhost:9000"]
        challenge = httpx.post("http://localhost:10000/mcp", json={})
        assert challenge.status_code == 401
        issuer = httpx.get("http://localhost:9000/.well-known/oauth-authorization-server").json()["issuer"]
        assert issuer == "http://localhost:9000"
        metrics = httpx.get("http://127.0.0.1:9464/metrics")
        assert metrics.status_code == 200
        assert 'mcp_auth_server_http_requests_total{endpoint="metadata"}' in metrics.text
        assert httpx.get("http://localhost:9000/metrics").status_code == 404
        # The filter's counters, as filter/README.md names them in Prometheus output: the 401
        # above is counted.
        envoy_stats = httpx.get("http://127.0.0.1:9901/stats/prometheus").text
        assert re.search(r"^mcp_auth_denied_missing_token\{\} [1-9]", envoy_stats, re.M), envoy_stats[:2000]

        started = descendants(demo.pid)
        assert len(started) >= 3, "auth server, demo MCP server and Envoy run as children"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0
        time.sleep(0.5)
        assert [pid for pid in started if alive(pid)] == [], "a process outlived the demo"
        assert [port for port in DEMO_PORTS if port_in_use(port)] == []
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def test_an_unknown_demo_flag_is_refused_before_anything_starts():
    result = subprocess.run(
        [os.environ.get("CARGO", "cargo"), "xtask", "demo", "--anything"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr
    assert "`demo` does not know `--anything`" in result.stderr
    assert "usage: cargo xtask <command>" in result.stderr
    assert "The demo is running" not in result.stdout
