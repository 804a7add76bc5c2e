"""Popular MCP clients, replayed against the real stack: each profile in `client_profiles.py`
discovers the server from the filter's 401, registers the way the client does (or names its
client ID metadata document), authorizes with the client's own parameters (the headless user
signs in and consents; for a private-use redirect the "browser" only reads the `Location`
header), redeems the code with the client's token request, calls a tool through Envoy,
refreshes, calls again, and meets a tool that needs a scope it lacks (step-up)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from client_profiles import ADVERTISED_SCOPES, CHALLENGE_SCOPE, PROFILES, Profile, Redirect
from auth_server import configure
from conftest import Stack, start_demo_mcp_server, start_envoy
from oauth_client import HeadlessUser, jwt_parts
from processes import free_port

ACCEPT = "application/json, text/event-stream"
INITIALIZE = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"profile","version":"1"}}}'
)


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a `WWW-Authenticate: Bearer ...` value."""
    assert header.startswith("Bearer"), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class Documents:
    """Client ID metadata documents served on http://localhost (accepted by the authorization
    server's development switch; real documents are https)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: dict[str, bytes] = {}
        documents = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = documents.bodies.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, name: str, document: dict) -> str:
        path = f"/clients/{name}.json"
        url = f"http://localhost:{self.port}{path}"
        self.bodies[path] = json.dumps({"client_id": url, **document}).encode()
        return url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(envoy_bin, wasm_path, demo_mcp_server_bin, auth_server_bin, workdir) -> Stack:
    """The demo's shape exactly: one resource. (The shared fixture adds a second resource, and
    then a request without `resource` cannot say which one it wants; clients built on rmcp,
    Codex and Goose, send none unless configured to.)"""
    auth_port, envoy_port = free_port(), free_port()
    started = []
    try:
        upstream = start_demo_mcp_server(demo_mcp_server_bin, workdir)
        started.append(upstream.service)
        auth = configure(
            auth_server_bin, workdir, port=auth_port, resources=[f"http://localhost:{envoy_port}/mcp"]
        )
        started.append(auth.service)
        auth.start()
        envoy = start_envoy(
            envoy_bin, wasm_path, workdir, auth_server_port=auth_port, upstream_port=upstream.port, listener_port=envoy_port
        )
        started.append(envoy.service)
        yield Stack(auth, upstream, envoy, other_resource="")
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture(scope="module")
def documents():
    served = Documents()
    yield served
    served.close()


@dataclass
class Registered:
    client_id: str
    secret: str | None
    redirect: Redirect


@dataclass
class Discovery:
    challenge_scope: str
    advertised: list[str]
    issuer: str


def discover(stack: Stack) -> Discovery:
    """What every client does first: an unauthenticated request, the 401 challenge, the
    protected resource metadata it names, and the authorization server metadata."""
    response = httpx.post(
        stack.envoy.mcp_url,
        headers={"Accept": ACCEPT, "Content-Type": "application/json"},
        content=INITIALIZE,
    )
    assert response.status_code == 401, response.text
    challenge = challenge_params(response.headers["www-authenticate"])
    resource_metadata = httpx.get(challenge["resource_metadata"]).json()
    assert resource_metadata["resource"] == stack.envoy.mcp_url
    [issuer] = resource_metadata["authorization_servers"]
    metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
    # Zed and others stop unless the issuer matches exactly and S256 is advertised.
    assert metadata["issuer"] == issuer == stack.auth.issuer
    assert "S256" in metadata["code_challenge_methods_supported"]
    advertised = sorted(set(resource_metadata.get("scopes_supported", [])) | set(metadata["scopes_supported"]))
    return Discovery(challenge["scope"], advertised, issuer)


def register(stack: Stack, documents: Documents, profile: Profile, slug: str) -> Registered:
    redirect = profile.redirect(free_port())
    metadata = profile.metadata(redirect)
    if profile.registers_with == "metadata_document":
        return Registered(documents.publish(slug, metadata), None, redirect)
    response = httpx.post(f"{stack.auth.issuer}/register", json=metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    # What took effect is echoed in full (SDK and rmcp clients refuse an answer without
    # redirect_uris); unsupported grant types are dropped, not refused.
    assert body["redirect_uris"] == redirect.registered
    assert set(body["grant_types"]) == {"authorization_code", "refresh_token"}
    assert body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == metadata["token_endpoint_auth_method"]
    assert body["application_type"] == profile.application_type
    assert isinstance(body["client_id_issued_at"], int)
    return Registered(body["client_id"], body.get("client_secret"), redirect)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def client_auth(profile: Profile, client: Registered) -> dict[str, str]:
    if profile.token_auth == "client_secret_post":
        assert client.secret, "a confidential registration returns a secret"
        return {"client_id": client.client_id, "client_secret": client.secret}
    return {"client_id": client.client_id}


@dataclass
class Tokens:
    access: str
    refresh: str
    scope: str


def authorize_and_redeem(
    stack: Stack, profile: Profile, client: Registered, scope: str | None
) -> tuple[Tokens, HeadlessUser]:
    verifier, challenge = pkce()
    state = profile.state()
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect.presented,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if state is not None:
        params["state"] = state
    if scope is not None:
        params["scope"] = scope
    if profile.sends_resource:
        params["resource"] = stack.envoy.mcp_url
    user = HeadlessUser(client.redirect.presented)
    result = user.sign_in(str(httpx.URL(f"{stack.auth.issuer}/authorize", params=params)))
    assert result.state == state and result.iss == stack.auth.issuer
    fields = {
        "grant_type": "authorization_code",
        "code": result.code,
        "redirect_uri": client.redirect.presented,
        "code_verifier": verifier,
        **client_auth(profile, client),
    }
    if profile.sends_resource:
        fields["resource"] = stack.envoy.mcp_url
    response = httpx.post(f"{stack.auth.issuer}/token", data=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["refresh_token"], body
    return Tokens(body["access_token"], body["refresh_token"], body["scope"]), user


def refresh(stack: Stack, profile: Profile, client: Registered, tokens: Tokens, scope: str | None) -> Tokens:
    fields = {"grant_type": "refresh_token", "refresh_token": tokens.refresh, **client_auth(profile, client)}
    if profile.refresh_sends_scope and scope:
        fields["scope"] = scope
    if profile.sends_resource:
        fields["resource"] = stack.envoy.mcp_url
    response = httpx.post(f"{stack.auth.issuer}/token", data=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"], body["scope"])


class McpSession:
    """A streamable HTTP session through Envoy, as any client opens one."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.stack, self.token = stack, token
        initialize = self.post(INITIALIZE)
        assert initialize.status_code == 200, initialize.text
        self.session_id = initialize.headers["mcp-session-id"]
        initialized = self.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        assert initialized.status_code == 202, initialized.text

    def post(self, body: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": ACCEPT, "Content-Type": "application/json"}
        if getattr(self, "session_id", None):
            headers["Mcp-Session-Id"] = self.session_id
        return httpx.post(self.stack.envoy.mcp_url, headers=headers, content=body)

    def call(self, tool: str) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {}}}
        return self.post(json.dumps(body).encode())


def requested_scope(profile: Profile, discovery: Discovery) -> str | None:
    if profile.scope == CHALLENGE_SCOPE:
        return discovery.challenge_scope
    if profile.scope == ADVERTISED_SCOPES:
        return " ".join(discovery.advertised)
    return profile.scope


def expected_grant(profile: Profile) -> set[str]:
    # Unknown scopes (claudeai) and no scope at all get the resource's default.
    return {"mcp:tools", "mcp:admin"} if profile.scope == ADVERTISED_SCOPES else {"mcp:tools"}


def recipient_phrase(presented: str) -> str | None:
    scheme = urlparse(presented).scheme
    if scheme in ("http", "https"):
        return None
    return f"the app that handles <code>{scheme}://</code> links"


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_client_profile_connects(stack: Stack, documents: Documents, profile: Profile):
    discovery = discover(stack)
    slug = re.sub(r"[^a-z0-9]+", "-", profile.name.lower()).strip("-")
    client = register(stack, documents, profile, slug)
    scope = requested_scope(profile, discovery)

    tokens, user = authorize_and_redeem(stack, profile, client, scope)

    # The consent page names the client as self-asserted, and an app redirect's recipient.
    [consent] = user.consent_pages
    assert "unverified" in consent
    phrase = recipient_phrase(client.redirect.presented)
    if phrase:
        assert phrase in consent, consent
        host = urlparse(client.redirect.presented).netloc
        assert f"<strong>{host}</strong>" in consent, consent
    # The token response reports what was granted; the token is for this resource.
    assert set(tokens.scope.split()) == expected_grant(profile)
    _, claims = jwt_parts(tokens.access)
    assert claims["aud"] == stack.envoy.mcp_url and claims["client_id"] == client.client_id

    session = McpSession(stack, tokens.access)
    whoami = session.call("whoami")
    assert whoami.status_code == 200, whoami.text
    assert '"subject":"demo"' in whoami.text and client.client_id in whoami.text

    refreshed = refresh(stack, profile, client, tokens, scope)
    assert refreshed.access != tokens.access and refreshed.refresh != tokens.refresh
    assert set(refreshed.scope.split()) == expected_grant(profile)
    session.token = refreshed.access
    again = session.call("whoami")
    assert again.status_code == 200, again.text

    admin = session.call("admin_report")
    if "mcp:admin" in expected_grant(profile):
        assert admin.status_code == 200, admin.text
        return
    # Step-up: a 403 naming every scope the call needs.
    assert admin.status_code == 403, admin.text
    step_up = challenge_params(admin.headers["www-authenticate"])
    assert step_up["error"] == "insufficient_scope"
    assert set(step_up["scope"].split()) >= {"mcp:admin"}
    if not profile.steps_up:
        return
    upgraded, _ = authorize_and_redeem(stack, profile, client, step_up["scope"])
    assert "mcp:admin" in upgraded.scope.split()
    session.token = upgraded.access
    report = session.call("admin_report")
    assert report.status_code == 200, report.text


def test_every_profile_cites_its_source():
    for profile in PROFILES:
        assert profile.source and ("/" in profile.source or "trace" in profile.source), profile.name


def test_a_dangerous_redirect_scheme_is_refused_naming_it(stack: Stack):
    for uri, scheme in [("javascript:alert(1)", "javascript"), ("data:text/html,x", "data"), ("file:///etc/passwd", "file")]:
        response = httpx.post(f"{stack.auth.issuer}/register", json={"redirect_uris": [uri]})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_redirect_uri"
        assert f"scheme `{scheme}`" in body["error_description"]


def test_errors_to_a_private_use_redirect_carry_iss_and_state(stack: Stack):
    app = "cursor://anysphere.cursor-mcp/oauth/callback"
    registration = httpx.post(
        f"{stack.auth.issuer}/register",
        json={"redirect_uris": [app], "token_endpoint_auth_method": "none"},
    ).json()
    response = httpx.get(
        f"{stack.auth.issuer}/authorize",
        params={
            "response_type": "token",
            "client_id": registration["client_id"],
            "redirect_uri": app,
            "state": "s-1",
            "code_challenge": pkce()[1],
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{app}?error=unsupported_response_type")
    query = parse_qs(urlparse(location).query)
    assert query["state"] == ["s-1"] and query["iss"] == [stack.auth.issuer]


@pytest.fixture(scope="module")
def challenge_all_stack(envoy_bin, wasm_path, demo_mcp_server_bin, auth_server_bin, workdir) -> Stack:
    """The same shape, with the filter's `challenge_scopes: "all"` on the resource."""
    auth_port, envoy_port = free_port(), free_port()
    started = []

    def ask_for_every_scope(config: str) -> str:
        anchor = '"resource_name": "Demo MCP server"'
        assert anchor in config
        return config.replace(anchor, anchor + ', "challenge_scopes": "all"')

    try:
        upstream = start_demo_mcp_server(demo_mcp_server_bin, workdir)
        started.append(upstream.service)
        auth = configure(
            auth_server_bin, workdir, port=auth_port, resources=[f"http://localhost:{envoy_port}/mcp"],
            name="challenge-all-auth",
        )
        started.append(auth.service)
        auth.start()
        envoy = start_envoy(
            envoy_bin, wasm_path, workdir, auth_server_port=auth_port, upstream_port=upstream.port,
            listener_port=envoy_port, name="challenge-all-envoy", edit_config=ask_for_every_scope,
        )
        started.append(envoy.service)
        yield Stack(auth, upstream, envoy, other_resource="")
    finally:
        for service in reversed(started):
            service.stop()


def test_claude_code_never_meets_a_403_when_the_first_challenge_asks_for_every_scope(
    challenge_all_stack: Stack, documents: Documents
):
    """Claude Code asks for the scopes of the first 401 and mishandles a later 403: with
    `challenge_scopes: "all"` it is granted every scope the resource's rules can require at
    once, and the admin tool runs without a step-up."""
    stack = challenge_all_stack
    [profile] = [p for p in PROFILES if p.name == "Claude Code"]
    assert not profile.steps_up and profile.scope == CHALLENGE_SCOPE
    discovery = discover(stack)
    assert set(discovery.challenge_scope.split()) == {"mcp:tools", "mcp:admin"}
    client = register(stack, documents, profile, "claude-code-challenge-all")

    tokens, _ = authorize_and_redeem(stack, profile, client, requested_scope(profile, discovery))

    assert set(tokens.scope.split()) == {"mcp:tools", "mcp:admin"}
    session = McpSession(stack, tokens.access)
    report = session.call("admin_report")
    assert report.status_code == 200, report.text
