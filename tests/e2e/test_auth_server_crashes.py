"""The authorization server loses nothing it acknowledged: killed with SIGKILL at random moments
under concurrent refresh rotations and registrations, and writing to a filesystem that fills up.
After each ordeal the SQLite file passes `PRAGMA integrity_check`, every acknowledged
registration and refresh token is there, and codes are still single use; a full disk is answered
with 503 and `Retry-After`, never a 500."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auth_server import AuthServer, configure
from oauth_client import authorization_code, code_flow_tokens
from processes import free_port

RESOURCE = "http://localhost:10000/mcp"
CHAINS = 12
REGISTRARS = 4
KILLS = 3


def start(auth_server_bin: Path, workdir: Path, name: str, storage: Path | None = None) -> AuthServer:
    server = configure(auth_server_bin, workdir, port=free_port(), resources=[RESOURCE], name=name)
    server.service.env = {
        # The load registers far more clients than one address may in a minute by default.
        "MCP_AUTH_SERVER__REGISTRATION__RATE_LIMIT_PER_MINUTE": "100000",
        **({"MCP_AUTH_SERVER__STORAGE_PATH": str(storage)} if storage else {}),
    }
    return server.start()


def kill(server: AuthServer) -> None:
    os.killpg(server.service.process.pid, signal.SIGKILL)
    server.service.process.wait()


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def register(issuer: str, redirect_uri: str) -> httpx.Response:
    return httpx.post(
        f"{issuer}/register",
        json={
            "client_name": "crash test",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        timeout=10,
    )


def is_registered(issuer: str, client_id: str, redirect_uri: str) -> bool:
    """An unknown client gets an error page; a known one the sign-in page."""
    response = httpx.get(
        f"{issuer}/authorize",
        params={
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256", "state": "s", "resource": RESOURCE,
        },
    )
    return response.status_code == 200 and 'name="password"' in response.text


@dataclass
class Chain:
    """One client's refresh tokens, rotated again and again."""

    client_id: str
    refresh_token: str
    acknowledged: int = 0
    # A request whose answer was lost when the server died: it may have been committed.
    uncertain: bool = False
    # The server revoked the family because a retry after an uncertain request looked like reuse.
    ended_by_retry: bool = False


def test_nothing_acknowledged_is_lost_when_the_server_is_killed_under_load(auth_server_bin, workdir):
    server = start(auth_server_bin, workdir, "crash-auth")
    database = workdir / "crash-auth.sqlite"
    chains = []
    for _ in range(CHAINS):
        tokens = code_flow_tokens(server.issuer, RESOURCE, "mcp:tools", client_name="crash chain", refresh=True)
        chains.append(Chain(tokens.client_id, tokens.refresh_token))
    registered: list[tuple[str, str]] = []
    unexpected: list[str] = []
    up = threading.Event()
    up.set()
    stop = threading.Event()

    def rotate(chain: Chain) -> None:
        while not stop.is_set() and not chain.ended_by_retry:
            up.wait()
            try:
                response = httpx.post(
                    f"{server.issuer}/token",
                    data={"grant_type": "refresh_token", "refresh_token": chain.refresh_token,
                          "client_id": chain.client_id, "resource": RESOURCE},
                    timeout=10,
                )
            except httpx.HTTPError:
                chain.uncertain = True
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                chain.refresh_token = response.json()["refresh_token"]
                chain.acknowledged += 1
                chain.uncertain = False
            elif response.status_code == 400 and response.json()["error"] == "invalid_grant" and chain.uncertain:
                chain.ended_by_retry = True
            elif response.status_code != 503:
                unexpected.append(f"refresh: {response.status_code} {response.text}")
                return

    def enroll() -> None:
        while not stop.is_set():
            up.wait()
            redirect_uri = f"http://127.0.0.1:{random.randint(1024, 65535)}/cb"
            try:
                response = register(server.issuer, redirect_uri)
            except httpx.HTTPError:
                continue
            if response.status_code == 201:
                registered.append((response.json()["client_id"], redirect_uri))
            elif response.status_code != 503:
                unexpected.append(f"register: {response.status_code} {response.text}")
                return

    workers = [threading.Thread(target=rotate, args=(c,)) for c in chains]
    workers += [threading.Thread(target=enroll) for _ in range(REGISTRARS)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(KILLS):
            time.sleep(random.uniform(0.5, 1.5))
            kill(server)
            up.clear()
            server.start()
            up.set()
        time.sleep(random.uniform(0.5, 1.5))
    finally:
        stop.set()
        up.set()
        for worker in workers:
            worker.join(timeout=30)

    assert not unexpected, unexpected[:5]
    assert sum(c.acknowledged for c in chains) > CHAINS and len(registered) > REGISTRARS

    kill(server)
    assert integrity(database) == "ok"
    server.start()
    try:
        # Every acknowledged registration survived.
        missing = [c for c, uri in registered if not is_registered(server.issuer, c, uri)]
        assert not missing, f"{len(missing)} of {len(registered)} acknowledged registrations lost"
        # Every chain whose last rotation was acknowledged still rotates from its last token.
        for chain in chains:
            if chain.uncertain or chain.ended_by_retry:
                continue
            response = httpx.post(
                f"{server.issuer}/token",
                data={"grant_type": "refresh_token", "refresh_token": chain.refresh_token,
                      "client_id": chain.client_id, "resource": RESOURCE},
            )
            assert response.status_code == 200, f"acknowledged refresh token lost: {response.text}"
        # Codes issued before a crash are still single use after it.
        issued = authorization_code(server.issuer, RESOURCE, "mcp:tools", client_name="crash code")
        kill(server)
        server.start()
        assert issued.redeem(server.issuer).status_code == 200
        second = issued.redeem(server.issuer)
        assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    finally:
        server.service.stop()


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MiB tmpfs: room for the database, and a filler file takes the rest."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem has no room left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_answered_503_and_nothing_acknowledged_is_lost(auth_server_bin, workdir, small_filesystem):
    database = small_filesystem / "auth.sqlite"
    server = start(auth_server_bin, workdir, "full-disk-auth", storage=database)
    try:
        acknowledged = []
        for i in range(5):
            response = register(server.issuer, f"http://127.0.0.1/cb{i}")
            assert response.status_code == 201, response.text
            acknowledged.append((response.json()["client_id"], f"http://127.0.0.1/cb{i}"))

        filler = fill(small_filesystem)
        refused = None
        for i in range(200):
            response = register(server.issuer, f"http://127.0.0.1/full{i}")
            if response.status_code == 201:
                acknowledged.append((response.json()["client_id"], f"http://127.0.0.1/full{i}"))
                continue
            refused = response
            break
        assert refused is not None, "the full filesystem never refused a write"
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["retry-after"] == "5"
        assert "storage unavailable" in server.service.log_tail(80)

        filler.unlink()
        recovered = register(server.issuer, "http://127.0.0.1/after")
        assert recovered.status_code == 201, recovered.text
        acknowledged.append((recovered.json()["client_id"], "http://127.0.0.1/after"))

        kill(server)
        assert integrity(database) == "ok"
        server.start()
        missing = [c for c, uri in acknowledged if not is_registered(server.issuer, c, uri)]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged registrations lost"
    finally:
        server.service.stop()
