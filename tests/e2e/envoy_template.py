"""Rendering of envoy/envoy.yaml.tmpl, the single source of the demo's Envoy configuration.

Every ``{{name}}`` is replaced by its value; an unknown name is an error. xtask/src/render.rs
implements the same rule for ``cargo xtask demo``.

Run as a script to regenerate envoy/compose/envoy.yaml (the template rendered for docker compose):

    .venv/bin/python tests/e2e/envoy_template.py --compose > envoy/compose/envoy.yaml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
FRONT_TEMPLATE = ROOT / "envoy" / "auth-server-front.yaml.tmpl"
COMPOSE_RENDERED = ROOT / "envoy" / "compose" / "envoy.yaml"

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)

# The values docker compose uses: Envoy listens on all interfaces inside its container, reaches
# the other services by their compose service names, and the wasm comes from a shared volume.
COMPOSE_VALUES = {
    "listen_address": "0.0.0.0",
    "listener_port": "10000",
    "admin_address": "127.0.0.1",
    "admin_port": "9901",
    "public_base_url": "http://localhost:10000",
    "issuer": "http://localhost:9000",
    "auth_server_host": "auth-server",
    "auth_server_port": "9000",
    "upstream_host": "demo-mcp-server",
    "upstream_port": "8080",
    "wasm_path": "/etc/envoy/wasm/mcp_auth_filter.wasm",
    "cors_origin": "http://localhost:6274",
    "access_log_path": "/dev/stdout",
    "auth_server_more_endpoints": "",
    "auth_server_front_listener": "",
}


def render(values: dict[str, str], template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"malformed placeholder {{{{{name}}}}}")
        if name not in values:
            raise KeyError(f"no value for placeholder {{{{{name}}}}}")
        return values[name]

    rendered = _PLACEHOLDER.sub(substitute, text)
    if "{{" in rendered:
        raise ValueError("unclosed placeholder")
    return rendered


def local_values(
    *,
    listener_port: int,
    admin_port: int,
    auth_server_port: int,
    upstream_port: int,
    wasm_path: str,
    access_log_path: str = "/dev/stdout",
) -> dict[str, str]:
    """Values for a topology on 127.0.0.1 (the demo's shape, on the given ports)."""
    return {
        "listen_address": "127.0.0.1",
        "listener_port": str(listener_port),
        "admin_address": "127.0.0.1",
        "admin_port": str(admin_port),
        "public_base_url": f"http://localhost:{listener_port}",
        "issuer": f"http://localhost:{auth_server_port}",
        "auth_server_host": "127.0.0.1",
        "auth_server_port": str(auth_server_port),
        "upstream_host": "127.0.0.1",
        "upstream_port": str(upstream_port),
        "wasm_path": wasm_path,
        "cors_origin": "http://localhost:6274",
        "access_log_path": access_log_path,
        "auth_server_more_endpoints": "",
        "auth_server_front_listener": "",
    }


def replica_values(values: dict[str, str], *, front_port: int, replica_ports: list[int]) -> dict[str, str]:
    """`values` changed for several authorization-server replicas on 127.0.0.1 behind Envoy's
    front listener on `front_port` (where the issuer's clients connect): the auth_server
    cluster lists every replica. xtask/src/demo.rs does the same for `cargo xtask demo --ha`."""
    first, *more = replica_ports
    front = render({"front_address": "127.0.0.1", "front_port": str(front_port)}, FRONT_TEMPLATE.read_text())
    return {
        **values,
        "auth_server_host": "127.0.0.1",
        "auth_server_port": str(first),
        "auth_server_more_endpoints": "".join(
            "\n              - endpoint:"
            "\n                  address:"
            f"\n                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}"
            for port in more
        ),
        "auth_server_front_listener": "\n" + front.rstrip("\n"),
    }


COMPOSE_HEADER = (
    "# GENERATED from envoy/envoy.yaml.tmpl for docker-compose.yml; do not edit.\n"
    "# Regenerate: .venv/bin/python tests/e2e/envoy_template.py --compose > envoy/compose/envoy.yaml\n"
)


def render_compose() -> str:
    return COMPOSE_HEADER + render(COMPOSE_VALUES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--compose"]:
        sys.exit("usage: envoy_template.py --compose")
    sys.stdout.write(render_compose())
