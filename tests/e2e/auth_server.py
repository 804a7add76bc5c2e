"""The authorization server (mcp-auth-server) as a real process with a real SQLite file (or a
PostgreSQL database), configured from auth-server/demo.toml with this test run's ports."""

from __future__ import annotations

import json
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from envoy_template import ROOT
from processes import Service, free_port

DEMO_CONFIG = ROOT / "auth-server" / "demo.toml"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table, such as a resource's scope_descriptions
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(document: dict) -> str:
    """Enough TOML for the server's configuration: scalars, arrays, tables, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    table_arrays: list[tuple[str, list]] = []
    for key, value in document.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            table_arrays.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    for key, items in table_arrays:
        for item in items:
            lines.append(f"\n[[{key}]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
    return "\n".join(lines) + "\n"


@dataclass
class AuthServer:
    binary: Path
    port: int
    config: Path
    service: Service
    # Where it listens when that is not the issuer's port (a replica behind a front proxy).
    listen_port: int | None = None

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def direct_url(self) -> str:
        """This process itself, bypassing any proxy at the issuer's address."""
        return f"http://127.0.0.1:{self.listen_port or self.port}"

    def start(self) -> "AuthServer":
        self.service.start()
        self.service.wait_http(f"{self.direct_url}/.well-known/oauth-authorization-server", timeout=60)
        return self

    def restart(self) -> None:
        self.service.stop()
        self.start()

    def rotate_key(self) -> str:
        """`mcp-auth-server keys rotate` with no publish delay: the new key signs at once."""
        result = subprocess.run(
            [str(self.binary), "--config", str(self.config), "keys", "rotate", "--publish-delay-secs", "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def configure(
    binary: Path,
    workdir: Path,
    *,
    port: int,
    resources: list[str],
    name: str = "auth-server",
    listen_port: int | None = None,
    postgres_url: str | None = None,
) -> AuthServer:
    """Writes a configuration derived from auth-server/demo.toml: same users, scopes and
    policies, with this run's issuer (on `port`), listening port (`listen_port`, default the
    issuer's), SQLite file or PostgreSQL database (`postgres_url`, plain TCP on loopback), and
    resource URLs."""
    demo = tomllib.loads(DEMO_CONFIG.read_text())
    template = demo["resources"][0]
    config = dict(demo)
    config.update(
        issuer=f"http://localhost:{port}",
        listen=f"127.0.0.1:{listen_port or port}",
        # A free port: the demo's fixed 9464 would collide with a running demo, between the
        # servers of one run and between concurrent runs.
        admin_listen=f"127.0.0.1:{free_port()}",
        storage_path=str(workdir / f"{name}.sqlite"),
        # Lets the test serve its client ID metadata document from http://localhost.
        allow_insecure_localhost_client_metadata=True,
        resources=[{**template, "url": url} for url in resources],
    )
    if postgres_url is not None:
        del config["storage_path"]
        # An unreachable database is reported within 2 s rather than the default 5.
        config["postgres"] = {"url": postgres_url, "tls": "disable", "connect_timeout_secs": 2}
    path = workdir / f"{name}.toml"
    path.write_text(dump_toml(config))
    service = Service(name, [str(binary), "--config", str(path)], workdir / f"{name}.log")
    return AuthServer(binary, port, path, service, listen_port)
