"""Fixtures: the real components on free ports on 127.0.0.1, in the demo's shape.

Binaries come from the environment set by `cargo xtask test` / `cargo xtask e2e`
(MCP_AUTH_FILTER_WASM, MCP_AUTH_SERVER_BIN, DEMO_MCP_SERVER_BIN, ENVOY_BIN), with defaults in
the workspace's target directory and .venv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from envoy_template import ROOT, local_values, render
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
    envoy_bin: Path, wasm_path: Path, workdir: Path, *, auth_server_port: int, upstream_port: int
) -> Envoy:
    port, admin_port = free_port(), free_port()
    config = workdir / "envoy.yaml"
    config.write_text(
        render(
            local_values(
                listener_port=port,
                admin_port=admin_port,
                auth_server_port=auth_server_port,
                upstream_port=upstream_port,
                wasm_path=str(wasm_path),
            )
        )
    )
    service = Service(
        "envoy",
        [
            str(envoy_bin), "-c", str(config), "--disable-hot-restart",
            "--concurrency", "2", "--log-level", "info",
            "--component-log-level", "wasm:debug",
        ],
        workdir / "envoy.log",
    ).start()
    envoy = Envoy(port, admin_port, config, service)
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
