"""Three authorization-server replicas on one PostgreSQL behind Envoy (round robin, health
checked: the shape of `cargo xtask demo --ha`), with the filter and the demo MCP server. What a
person or a client notices when a replica dies or the database restarts mid-flow: the MCP SDK's
whole flow still completes, an outage is answered 503 with `Retry-After` and an OAuth error
(never a 500, never a dropped connection), nothing acknowledged before it is lost, a code is
single use across replicas, and a login session and its CSRF token work on every replica."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from auth_server import AuthServer, configure
from conftest import Envoy, loopback_redirect_uri, start_demo_mcp_server, start_envoy
from envoy_template import replica_values
from oauth_client import (
    HeadlessUser,
    MemoryStorage,
    authorization_code,
    http_client,
    oauth_provider,
    parse_form,
)
from postgres import PostgresCluster
from processes import free_port

REPLICAS = 3


@dataclass
class Replicas:
    servers: list[AuthServer]
    envoy: Envoy
    database: PostgresCluster
    mcp_url: str

    @property
    def issuer(self) -> str:
        """Envoy's front listener: where clients reach whichever replica is next."""
        return self.servers[0].issuer

    def kill(self, index: int) -> None:
        server = self.servers[index]
        os.killpg(server.service.process.pid, signal.SIGKILL)
        server.service.process.wait()
        server.service.process = None


@pytest.fixture(scope="module")
def replicas(envoy_bin, wasm_path, demo_mcp_server_bin, auth_server_bin, workdir, postgres_cluster):
    database = postgres_cluster.create_database("replicas")
    upstream = start_demo_mcp_server(demo_mcp_server_bin, workdir)
    front, envoy_port = free_port(), free_port()
    mcp_url = f"http://localhost:{envoy_port}/mcp"
    servers = [
        configure(
            auth_server_bin, workdir, port=front, listen_port=free_port(), resources=[mcp_url],
            name=f"replica-{n}", postgres_url=database,
        )
        for n in range(1, REPLICAS + 1)
    ]
    started: list[AuthServer] = []
    envoy = None
    try:
        # All at once, as a deployment rolls out: the schema migrations take a lock.
        for server in servers:
            server.service.start()
            started.append(server)
        for server in servers:
            server.service.wait_http(f"{server.direct_url}/.well-known/oauth-authorization-server", timeout=60)
        envoy = start_envoy(
            envoy_bin, wasm_path, workdir, auth_server_port=front, upstream_port=upstream.port,
            listener_port=envoy_port, name="replicas-envoy",
            edit_values=lambda values: replica_values(
                values, front_port=front, replica_ports=[s.listen_port for s in servers]
            ),
        )
        envoy.service.wait_http(f"http://127.0.0.1:{front}/.well-known/oauth-authorization-server")
        yield Replicas(servers, envoy, postgres_cluster, mcp_url)
    finally:
        if envoy is not None:
            envoy.service.stop()
        for server in started:
            server.service.stop()
        upstream.service.stop()


@pytest.fixture
def anyio_backend():
    return "asyncio"


def assert_unavailable(response: httpx.Response, what: str) -> None:
    """The database outage as the authorization server itself answers it."""
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("retry-after", "").isdigit(), f"{what}: no Retry-After: {response.headers}"
    assert response.json()["error"] == "temporarily_unavailable", f"{what}: {response.text[:300]}"


def until_available(request, what: str, attempts: int = 40) -> httpx.Response:
    """`request()` repeated while it is answered 503 + Retry-After, as a client honouring
    Retry-After would (briefly: the test does not wait the advertised seconds). Anything else
    than that 503 ends the loop and is returned."""
    for _ in range(attempts):
        response = request()
        if response.status_code != 503:
            return response
        assert_unavailable(response, what)
        time.sleep(0.25)
    raise AssertionError(f"{what}: still 503 after {attempts} attempts")


def refresh(issuer: str, client_id: str, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
        timeout=10,
    )


@pytest.mark.anyio
async def test_the_sdk_flow_completes_while_a_replica_is_killed_before_the_code_is_redeemed(replicas):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(replicas.mcp_url, user, storage)
    # Registration and sign-in are done; the client is about to redeem its code.
    user.after_code = lambda: replicas.kill(1)

    async def call_refresh_call(client):
        first = await client.call_tool("echo", {"text": "before the refresh"})
        user.after_code = None
        before = storage.tokens.refresh_token
        provider.context.token_expiry_time = time.time() - 1  # as if the access token expired
        second = await client.call_tool("whoami", {})
        return first, before, second

    try:
        async with http_client(provider) as http:
            async with Client(streamable_http_client(replicas.mcp_url, http_client=http)) as client:
                first, refresh_before, second = await call_refresh_call(client)
    finally:
        if replicas.servers[1].service.process is None:
            replicas.servers[1].start()

    assert storage.client_info is not None and storage.client_info.client_id
    assert len(user.authorization_urls) == 1, "the person signed in once"
    assert not first.is_error and first.content[0].text == "before the refresh"
    assert storage.tokens.refresh_token != refresh_before, "the refresh rotated the token"
    assert not second.is_error and second.structured_content["subject"] == "demo"


def test_a_database_restart_is_answered_503_and_nothing_acknowledged_is_lost(replicas):
    issuer = replicas.issuer
    # Acknowledged before the restart: a registration with a code waiting to be redeemed, and a
    # refresh token from another, completed flow.
    waiting = authorization_code(issuer, replicas.mcp_url, "mcp:tools", client_name="outage waiting", refresh=True)
    done = authorization_code(issuer, replicas.mcp_url, "mcp:tools", client_name="outage done", refresh=True)
    issued = done.redeem(issuer)
    assert issued.status_code == 200, issued.text
    refresh_token = issued.json()["refresh_token"]

    replicas.database.stop()
    try:
        def register(target: str) -> httpx.Response:
            return httpx.post(
                f"{target}/register",
                json={"client_name": "during the outage", "redirect_uris": [loopback_redirect_uri()],
                      "token_endpoint_auth_method": "none"},
                timeout=30,
            )

        attempts = [
            ("code redemption", lambda target: waiting.redeem(target)),
            ("refresh", lambda target: refresh(target, done.client_id, refresh_token)),
            ("registration", register),
        ]
        # Through Envoy (round robin: each to another replica), and then one kind of request at
        # each replica directly: every replica answers the outage itself.
        for what, attempt in attempts:
            assert_unavailable(attempt(issuer), f"{what} through Envoy")
        for server, (what, attempt) in zip(replicas.servers, attempts):
            assert_unavailable(attempt(server.direct_url), f"{what} at {server.service.name}")
    finally:
        replicas.database.start()

    # The interrupted flow carries on with the code it had: it was never spent by a 503.
    redeemed = until_available(lambda: waiting.redeem(issuer), "code redemption after the restart")
    assert redeemed.status_code == 200, redeemed.text
    # The refresh token acknowledged before the restart still works, at every replica.
    token = refresh_token
    for server in replicas.servers:
        rotated = until_available(lambda: refresh(server.direct_url, done.client_id, token), "refresh after")
        assert rotated.status_code == 200, rotated.text
        token = rotated.json()["refresh_token"]
    # And the registration from before the restart signs in anew.
    again = httpx.get(
        f"{issuer}/authorize",
        params={
            "response_type": "code", "client_id": waiting.client_id, "redirect_uri": waiting.redirect_uri,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
            "state": "s", "resource": replicas.mcp_url, "scope": "mcp:tools",
        },
        timeout=10,
    )
    assert again.status_code == 200 and 'name="password"' in again.text, again.text[:300]


def test_one_code_redeemed_at_two_replicas_at_once_succeeds_once_and_the_replay_revokes_it(replicas):
    for attempt in range(3):
        issued = authorization_code(
            replicas.issuer, replicas.mcp_url, "mcp:tools", client_name=f"race {attempt}", refresh=True
        )
        barrier = threading.Barrier(2)
        responses: list[httpx.Response] = []

        def redeem_at(server: AuthServer) -> None:
            with httpx.Client(timeout=10) as client:
                client.get(f"{server.direct_url}/.well-known/oauth-authorization-server")  # connected
                barrier.wait()
                responses.append(
                    client.post(
                        f"{server.direct_url}/token",
                        data={
                            "grant_type": "authorization_code", "code": issued.code,
                            "redirect_uri": issued.redirect_uri, "client_id": issued.client_id,
                            "code_verifier": issued.verifier, "resource": issued.resource,
                        },
                    )
                )

        threads = [threading.Thread(target=redeem_at, args=(s,)) for s in replicas.servers[:2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 400], [(r.status_code, r.text[:200]) for r in responses]
        [won] = [r for r in responses if r.status_code == 200]
        [lost] = [r for r in responses if r.status_code == 400]
        assert lost.json()["error"] == "invalid_grant"
        # The replay revoked what the winning redemption issued, wherever it is used.
        for server in replicas.servers:
            reuse = refresh(server.direct_url, issued.client_id, won.json()["refresh_token"])
            assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", reuse.text


def test_a_login_session_and_its_csrf_token_work_on_every_replica(replicas):
    first, second, third = (server.direct_url for server in replicas.servers)
    redirect_uri = loopback_redirect_uri()
    registration = httpx.post(
        f"{first}/register",
        json={"client_name": "session roaming", "redirect_uris": [redirect_uri],
              "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]},
    )
    assert registration.status_code == 201, registration.text
    client_id = registration.json()["client_id"]
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
        "scope": "mcp:tools", "resource": replicas.mcp_url,
    }

    def at(base: str, url: str) -> str:
        """`url` (a form's action on whichever replica served it) sent to replica `base`."""
        parsed = urlparse(url)
        return f"{base}{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")

    # The cookie jar ignores ports: the browser's cookies go to every replica, as behind one host.
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        sign_in = browser.get(f"{first}/authorize", params=params)
        form = parse_form(sign_in.text)
        assert sign_in.status_code == 200 and form is not None and "password" in form.inputs, sign_in.text[:300]
        # Signed in at the first replica...
        consent = browser.post(
            at(first, urljoin(str(sign_in.url), form.action)),
            data={**form.hidden, "username": "demo", "password": "demo", "action": "login"},
        )
        while consent.is_redirect and not consent.headers["location"].startswith(redirect_uri):
            consent = browser.get(at(first, urljoin(str(consent.url), consent.headers["location"])))
        consent_form = parse_form(consent.text)
        assert consent.status_code == 200 and consent_form is not None, consent.text[:300]
        assert "password" not in consent_form.inputs, "the sign-in was accepted"
        assert "csrf_token" in consent_form.hidden
        # ...the consent page's form, with its CSRF token, posted to the second.
        approved = browser.post(
            at(second, urljoin(str(consent.url), consent_form.action)),
            data={**consent_form.hidden, "action": "approve"},
        )
        assert approved.is_redirect, approved.text[:300]
        location = approved.headers["location"]
        assert location.startswith(redirect_uri), location
        assert "code" in parse_qs(urlparse(location).query), location
        # The third knows the session too: no password asked again.
        again = browser.get(f"{third}/authorize", params=params)
        again_form = parse_form(again.text) if again.status_code == 200 else None
        assert again.is_redirect or (again_form is not None and "password" not in again_form.inputs), again.text[:300]
