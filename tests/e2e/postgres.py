"""A throwaway PostgreSQL cluster for the end-to-end tests that need their own server (to stop and
restart it under running authorization servers): the recipe of xtask/src/postgres.rs.

Debian's binaries come from POSTGRES_BIN_DIR (set by `cargo xtask test|e2e`), else the highest
/usr/lib/postgresql/<major>/bin. The cluster lives in a fresh 0700 directory; as root its
commands run as the `postgres` user (initdb refuses root). It trusts local and loopback
connections only and listens on 127.0.0.1 on a free port, its unix socket in its own directory.
Clients use `psql` from the same bin directory: no Python driver is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from processes import free_port

SUPERUSER = "postgres"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")


def bin_dir() -> Path | None:
    """POSTGRES_BIN_DIR, or the highest Debian bin directory with the server programs."""
    if os.environ.get("POSTGRES_BIN_DIR"):
        return Path(os.environ["POSTGRES_BIN_DIR"])
    versions = []
    for entry in DEBIAN_ROOT.glob("*/bin"):
        try:
            version = float(entry.parent.name)
        except ValueError:
            continue
        if all((entry / program).is_file() for program in PROGRAMS):
            versions.append((version, entry))
    return max(versions)[1] if versions else None


class PostgresCluster:
    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="mcp-auth-e2e-postgres-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        self._databases = 0
        if self._as_root:
            shutil.chown(self.dir, SUPERUSER, SUPERUSER)
        self._owner(
            "initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
            "--encoding", "UTF8", "--locale", "C", "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tests/e2e/postgres.py: a throwaway cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "max_connections = 300\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def _owner(self, program: str, *args: str) -> str:
        argv = [str(self.bin / program), *args]
        if self._as_root:
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )
        return result.stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> "PostgresCluster":
        """Starts the server and returns once it accepts connections (same port every time)."""
        self._owner("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log), "--wait", "start")
        return self

    def stop(self) -> None:
        """Stops the server: `fast` rolls back open transactions and disconnects every client, as a
        database failover or restart does to the authorization servers."""
        if self.running:
            self._owner("pg_ctl", "--pgdata", str(self.data), "--mode", "fast", "--wait", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Runs `sql` with psql and returns its unaligned, tuples-only output."""
        result = subprocess.run(
            [str(self.bin / "psql"), self.url(dbname), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr}")
        return result.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """Creates an empty database and returns its URL."""
        self._databases += 1
        name = name or f"e2e_{self._databases}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        """Stops the server if it runs and deletes the cluster's directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
