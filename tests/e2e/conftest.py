"""Fixtures: the real components on free ports on 127.0.0.1, in the demo's shape.

Binaries come from the environment set by `cargo xtask test` / `cargo xtask e2e`
(MCP_AUTH_FILTER_WASM, MCP_AUTH_SERVER_BIN, DEMO_MCP_SERVER_BIN, ENVOY_BIN, POSTGRES_BIN_DIR),
with defaults in the workspace's target directory, .venv and /usr/lib/postgresql.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from auth_server import AuthServer, configure
from envoy_template import ROOT, local_values, render
from postgres import PostgresCluster
from postgres import bin_dir as find_postgres_bin_dir
from processes import Service, free_port

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET


def _artifact(var: str, default: Path) -> Path:
    path = Path(os.environ.get(var, default))
    if not path.is_file():
        pytest.exit(f"{var}: {path} does not exist; run the tests with `cargo xtask test`", returncode=2)
    return path


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    return _artifact("MCP_AUTH_FILTER_WASM", TARGET / "wasm32-wasip1/release/mcp_auth_filter.wasm")


@pytest.fixture(scope="session")
def envoy_bin() -> Path:
    return _artifact("ENVOY_BIN", ROOT / ".venv/bin/envoy")


@pytest.fixture(scope="session")
def demo_mcp_server_bin() -> Path:
    return _artifact("DEMO_MCP_SERVER_BIN", TARGET / "debug/demo-mcp-server")


@pytest.fixture(scope="session")
def auth_server_bin() -> Path:
    return _artifact("MCP_AUTH_SERVER_BIN", TARGET / "debug/mcp-auth-server")


@pytest.fixture(scope="session")
def postgres_bin_dir() -> Path:
    found = find_postgres_bin_dir()
    if found is None or not (found / "initdb").is_file():
        pytest.exit(
            f"POSTGRES_BIN_DIR: no PostgreSQL server programs ({found}); run the tests with "
            "`cargo xtask test`, which installs Debian's postgresql package",
            returncode=2,
        )
    return found


@pytest.fixture(scope="module")
def postgres_cluster(postgres_bin_dir):
    """A running throwaway cluster of this module's own: its tests may stop and restart it."""
    cluster = PostgresCluster(postgres_bin_dir)
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@dataclass
class DemoMcpServer:
    port: int
    service: Service

    @property
    def seen_authorization_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/debug/seen-authorization"


@dataclass
class Envoy:
    port: int
    admin_port: int
    config: Path
    service: Service
    access_log: Path

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/oauth-protected-resource/mcp"


def start_demo_mcp_server(binary: Path, workdir: Path) -> DemoMcpServer:
    port = free_port()
    service = Service(
        "demo-mcp-server",
        [str(binary), "--bind", f"127.0.0.1:{port}"],
        workdir / "demo-mcp-server.log",
    ).start()
    server = DemoMcpServer(port, service)
    service.wait_http(server.seen_authorization_url)
    return server


def start_envoy(
    envoy_bin: Path,
    wasm_path: Path,
    workdir: Path,
    *,
    auth_server_port: int,
    upstream_port: int,
    listener_port: int | None = None,
    name: str = "envoy",
    edit_config: Callable[[str], str] | None = None,
    edit_values: Callable[[dict[str, str]], dict[str, str]] | None = None,
) -> Envoy:
    """Envoy with the demo template rendered for these ports; `edit_values` may change the
    template's values (several authorization-server replicas: `replica_values`), `edit_config`
    the rendered text (a filter setting the demo does not use), `name` names its files."""
    port, admin_port = listener_port or free_port(), free_port()
    config, access_log = workdir / f"{name}.yaml", workdir / f"{name}-access.log"
    values = local_values(
        listener_port=port,
        admin_port=admin_port,
        auth_server_port=auth_server_port,
        upstream_port=upstream_port,
        wasm_path=str(wasm_path),
        access_log_path=str(access_log),
    )
    text = render(edit_values(values) if edit_values else values)
    config.write_text(edit_config(text) if edit_config else text)
    service = Service(
        name,
        [
            str(envoy_bin), "-c", str(config), "--disable-hot-restart",
            "--concurrency", "2", "--log-level", "info", "--file-flush-interval-msec", "200",
            "--component-log-level", os.environ.get("E2E_ENVOY_LOG", "wasm:debug"),
        ],
        workdir / f"{name}.log",
    ).start()
    envoy = Envoy(port, admin_port, config, service, access_log)
    service.wait_http(f"http://127.0.0.1:{admin_port}/ready")
    return envoy


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def demo_mcp_server(demo_mcp_server_bin, workdir):
    server = start_demo_mcp_server(demo_mcp_server_bin, workdir)
    yield server
    server.service.stop()


@dataclass
class Stack:
    auth: AuthServer
    upstream: DemoMcpServer
    envoy: Envoy
    other_resource: str

    def seen_authorization(self) -> dict:
        return httpx.get(self.upstream.seen_authorization_url).json()

    def stat(self, suffix: str) -> int:
        stats = httpx.get(f"http://127.0.0.1:{self.envoy.admin_port}/stats?filter=mcp_auth").text
        for line in stats.splitlines():
            name, _, value = line.partition(": ")
            if name.endswith(suffix):
                return int(value)
        return 0


@pytest.fixture(scope="module")
def stack(envoy_bin, wasm_path, demo_mcp_server_bin, auth_server_bin, workdir) -> Stack:
    auth_port, envoy_port = free_port(), free_port()
    upstream = start_demo_mcp_server(demo_mcp_server_bin, workdir)
    other_resource = f"http://localhost:{free_port()}/other"
    auth = configure(
        auth_server_bin,
        workdir,
        port=auth_port,
        resources=[f"http://localhost:{envoy_port}/mcp", other_resource],
    ).start()
    envoy = start_envoy(
        envoy_bin,
        wasm_path,
        workdir,
        auth_server_port=auth_port,
        upstream_port=upstream.port,
        listener_port=envoy_port,
    )
    yield Stack(auth, upstream, envoy, other_resource)
    envoy.service.stop()
    auth.service.stop()
    upstream.service.stop()


def loopback_redirect_uri() -> str:
    # Never listened on: the headless user captures the redirect instead of following it.
    return f"http://127.0.0.1:{free_port()}/callback"


@dataclass
class CimdDocument:
    url: str
    redirect_uri: str
    fetches: int = 0


@pytest.fixture(scope="module")
def cimd_document():
    """Serves a client ID metadata document on http://localhost (accepted by the authorization
    server's development switch; production documents are https)."""
    port = free_port()
    document = CimdDocument(
        url=f"http://localhost:{port}/clients/e2e.json", redirect_uri=loopback_redirect_uri()
    )
    body = json.dumps(
        {
            "client_id": document.url,
            "client_name": "CIMD e2e client",
            "redirect_uris": [document.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/clients/e2e.json":
                self.send_error(404)
                return
            document.fetches += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield document
    server.shutdown()
    server.server_close()
