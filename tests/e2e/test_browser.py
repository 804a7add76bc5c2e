"""The authorization server's pages in a real headless browser: Debian's Chromium driven by
playwright-core (tests/oidc-provider/pages.mjs) at phone width through sign-in, consent, the
connected-apps page, revocation, sign-out and an error page. Checks what a person would notice:
the flow clicks through, no console errors, no Content-Security-Policy violations, no sideways
scrolling at 360 px, a label for every input, the operator's scope descriptions shown."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from auth_server import DEMO_CONFIG, configure
from envoy_template import ROOT
from processes import free_port

SCRIPT = ROOT / "tests" / "oidc-provider" / "pages.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RESOURCE = "http://localhost:10000/mcp"
CLIENT_NAME = "Browser Test Client"


def _requirements() -> None:
    if not (SCRIPT.parent / "node_modules" / "playwright-core").is_dir():
        pytest.exit(f"{SCRIPT.parent}/node_modules lacks playwright-core; run the tests with `cargo xtask e2e`", returncode=2)
    if not Path(CHROMIUM).exists() or shutil.which("node") is None:
        pytest.exit(f"{CHROMIUM} or node is missing; `cargo xtask e2e` installs Chromium (Debian package chromium)", returncode=2)


class _Callback(BaseHTTPRequestHandler):
    """The client's redirect URI: a plain page, so the browser lands somewhere real."""

    def do_GET(self):
        body = b"<!doctype html><title>callback</title><p>done</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def callback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/callback"
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth_server(auth_server_bin, tmp_path):
    server = configure(auth_server_bin, tmp_path, port=free_port(), resources=[RESOURCE]).start()
    yield server
    server.service.stop()


def test_pages_in_a_phone_sized_browser(auth_server, callback, tmp_path):
    _requirements()
    # The issuer's own origin: the server refuses form posts from any other (Origin check).
    issuer = auth_server.issuer
    registered = httpx.post(
        f"{issuer}/register",
        json={"client_name": CLIENT_NAME, "redirect_uris": [callback], "token_endpoint_auth_method": "none"},
    )
    assert registered.status_code == 201, registered.text
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": callback,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "browser",
            "scope": "mcp:tools mcp:admin",
            "resource": RESOURCE,
        }
    )
    demo = tomllib.loads(DEMO_CONFIG.read_text())
    screenshot = tmp_path / "consent-360.png"
    argument = {
        "authorizeUrl": f"{issuer}/authorize?{query}",
        "accountUrl": f"{issuer}/account",
        "errorUrl": f"{issuer}/authorize?client_id=unknown&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        "callbackPrefix": callback,
        "username": "demo",
        "password": "demo",
        "description": demo["resources"][0]["scope_descriptions"]["mcp:admin"],
        "productName": demo["branding"]["product_name"],
        "clientName": CLIENT_NAME,
        "screenshot": str(screenshot),
    }
    result = subprocess.run(
        ["node", str(SCRIPT), json.dumps(argument)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    # Kept for a look with an image viewer: PAGES_SCREENSHOT=/some/file.png.
    if os.environ.get("PAGES_SCREENSHOT") and screenshot.exists():
        shutil.copy(screenshot, os.environ["PAGES_SCREENSHOT"])
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert [p["name"] for p in report["visited"]] == [
        "sign-in",
        "consent",
        "connected apps",
        "after revoke",
        "signed out",
        "error",
    ], report
