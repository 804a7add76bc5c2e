"""Sign-in at an upstream OpenID provider, end to end: a real provider (node-oidc-provider from
tests/oidc-provider, started with node), the authorization server federating to it, the real
Envoy with the filter, the demo MCP server, and the MCP Python SDK as the client. The headless
user fills in the provider's own login form over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from auth_server import AuthServer, dump_toml
from conftest import Envoy, loopback_redirect_uri, start_demo_mcp_server, start_envoy
from envoy_template import ROOT
from oauth_client import HeadlessUser, MemoryStorage, http_client, jwt_parts, oauth_provider
from processes import Service, free_port

pytestmark = pytest.mark.anyio

PROVIDER_ID = "test-idp"
CLIENT_ID = "mcp-auth-server-e2e"
CLIENT_SECRET = "e2e-upstream-secret"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def provider_script() -> Path:
    path = Path(os.environ.get("OIDC_PROVIDER_SCRIPT", ROOT / "tests/oidc-provider/server.mjs"))
    if not (path.parent / "node_modules").is_dir():
        pytest.exit(f"{path.parent}/node_modules is missing; run the tests with `cargo xtask e2e`", returncode=2)
    return path


@dataclass
class OpenIdProvider:
    port: int
    service: Service

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"


def start_provider(
    workdir: Path, redirect_uris: list[str], port: int | None = None, extra_env: dict[str, str] | None = None
) -> OpenIdProvider:
    port = port or free_port()
    service = Service(
        "oidc-provider",
        ["node", str(provider_script())],
        workdir / "oidc-provider.log",
        env={
            "PORT": str(port),
            "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": CLIENT_SECRET,
            "REDIRECT_URIS": ",".join(redirect_uris),
            **(extra_env or {}),
        },
    ).start()
    provider = OpenIdProvider(port, service)
    service.wait_http(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
    return provider


def auth_server_config(
    workdir: Path,
    *,
    port: int,
    issuer: str,
    resource: str,
    name: str,
    secret: str | None = None,
    private_key: Path | None = None,
    client_id: str = CLIENT_ID,
) -> Path:
    """No local users, one identity provider: the login page goes straight to the provider."""
    if private_key is not None:
        credential = f'private_key_file = "{private_key}"'
    else:
        secret_file = workdir / f"{name}.secret"
        secret_file.write_text(f"{secret}\n")
        credential = f'client_secret_file = "{secret_file}"'

    base = dump_toml(
        {
            "issuer": f"http://localhost:{port}",
            "listen": f"127.0.0.1:{port}",
            "storage_path": str(workdir / f"{name}.sqlite"),
            "registration": {"enabled": True, "rate_limit_per_minute": 100},
            "resources": [
                {"url": resource, "scopes": ["mcp:tools", "mcp:admin"], "default_scopes": ["mcp:tools"]}
            ],
        }
    )
    path = workdir / f"{name}.toml"
    path.write_text(
        base
        + f"""
[[identity_providers]]
id = "{PROVIDER_ID}"
display_name = "Test IdP"
issuer = "{issuer}"
client_id = "{client_id}"
{credential}
scopes = ["openid", "email", "profile", "groups"]
copy_claims = ["email", "name", "groups"]
allowed_email_domains = ["example.com"]
required_groups = ["mcp-users"]

[[identity_providers.scope_rules]]
scope = "mcp:admin"
groups = ["mcp-admins"]
"""
    )
    return path


@dataclass
class FederatedStack:
    idp: OpenIdProvider
    auth: AuthServer
    envoy: Envoy

    @property
    def callback(self) -> str:
        return f"{self.auth.issuer}/upstream/{PROVIDER_ID}/callback"


@pytest.fixture(scope="module")
def fed(envoy_bin, wasm_path, demo_mcp_server_bin, auth_server_bin, workdir):
    auth_port, envoy_port = free_port(), free_port()
    idp = start_provider(workdir, [f"http://localhost:{auth_port}/upstream/{PROVIDER_ID}/callback"])
    upstream = start_demo_mcp_server(demo_mcp_server_bin, workdir)
    config = auth_server_config(
        workdir,
        port=auth_port,
        issuer=idp.issuer,
        resource=f"http://localhost:{envoy_port}/mcp",
        name="auth-server",
        secret=CLIENT_SECRET,
    )
    service = Service("auth-server", [str(auth_server_bin), "--config", str(config)], workdir / "auth-server.log")
    auth = AuthServer(auth_server_bin, auth_port, config, service).start()
    envoy = start_envoy(
        envoy_bin, wasm_path, workdir, auth_server_port=auth_port, upstream_port=upstream.port, listener_port=envoy_port
    )
    yield FederatedStack(idp, auth, envoy)
    envoy.service.stop()
    auth.service.stop()
    upstream.service.stop()
    idp.service.stop()


async def with_client(fed: FederatedStack, provider, action):
    async with http_client(provider) as http:
        async with Client(streamable_http_client(fed.envoy.mcp_url, http_client=http)) as client:
            return await action(client)


async def test_sign_in_at_the_provider_reaches_the_tool_as_the_upstream_person(fed: FederatedStack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(fed.envoy.mcp_url, user, storage)

    whoami = await with_client(fed, provider, lambda client: client.call_tool("whoami", {}))

    assert not whoami.is_error, whoami
    _, claims = jwt_parts(storage.tokens.access_token)
    # The subject is derived from the provider and the provider's sub (demo at the test IdP).
    assert claims["sub"] == f"{PROVIDER_ID}:demo"
    assert claims["email"] == "demo@example.com"
    assert claims["groups"] == ["mcp-users", "mcp-admins"]
    assert claims["iss"] == fed.auth.issuer and claims["aud"] == fed.envoy.mcp_url
    # What the filter verified and forwarded is the upstream person.
    assert whoami.structured_content["subject"] == f"{PROVIDER_ID}:demo"
    # The consent page named who signed in.
    assert "demo@example.com" in user.consent_pages[0] or f"{PROVIDER_ID}:demo" in user.consent_pages[0]


async def test_admin_scope_for_members_of_the_admin_group(fed: FederatedStack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(fed.envoy.mcp_url, user, storage)

    report = await with_client(fed, provider, lambda client: client.call_tool("admin_report", {}))

    assert not report.is_error, report
    assert set(storage.tokens.scope.split()) == {"mcp:tools", "mcp:admin"}


async def test_outsider_step_up_is_told_why_and_gets_no_admin_scope(fed: FederatedStack):
    user = HeadlessUser(loopback_redirect_uri(), username="outsider", password="outsider")
    storage = MemoryStorage()
    provider = oauth_provider(fed.envoy.mcp_url, user, storage)

    async def whoami_then_admin(client):
        await client.call_tool("whoami", {})
        try:
            return await client.call_tool("admin_report", {})
        except Exception as error:  # the SDK may give up with an error instead of a result
            return error

    report = await with_client(fed, provider, whoami_then_admin)

    assert not hasattr(report, "is_error") or report.is_error, report
    assert "mcp:admin" not in storage.tokens.scope.split()
    # The step-up's consent page said which scope is not granted and why.
    assert len(user.authorization_urls) >= 2
    assert "Not granted" in user.consent_pages[-1] and "only members of mcp-admins" in user.consent_pages[-1]


def start_at_authorize(
    issuer: str, resource: str, scope: str, cookies: httpx.Cookies | None = None
) -> tuple[httpx.Client, httpx.Response, str]:
    """A browser (holding `cookies`) at our /authorize (issuer) for a freshly registered client:
    returns it with the response that sends it to the provider."""
    redirect_uri = loopback_redirect_uri()
    registered = httpx.post(
        f"{issuer}/register",
        json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "client_name": "e2e"},
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    browser = httpx.Client(follow_redirects=False, timeout=10, cookies=cookies)
    response = browser.get(
        f"{issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            "resource": resource,
        },
    )
    return browser, response, redirect_uri


def sign_in_at_provider(browser: httpx.Client, response: httpx.Response, username: str) -> httpx.Response:
    """Follows redirects to the provider's login form, fills it in, and follows the provider's
    redirects until the answer comes back to our callback (which is returned, unfollowed)."""
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if "/upstream/" in location and "/callback" in location:
                return browser.get(location)
            response = browser.get(location)
            continue
        action = re.search(r'<form method="post" action="([^"]+)"', response.text)
        assert action, response.text[:800]
        response = browser.post(
            urljoin(str(response.url), action.group(1)), data={"username": username, "password": username}
        )
    raise AssertionError("the provider never sent the browser back")


async def test_outsider_never_gets_the_admin_scope(fed: FederatedStack):
    # Asking for mcp:admin alone: nothing the person may have is left, a clear page says why.
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:admin")
    try:
        back = sign_in_at_provider(browser, response, "outsider")
        assert back.status_code == 303  # signed in: back to the authorization request
        page = browser.get(urljoin(str(back.url), back.headers["location"]))
    finally:
        browser.close()
    assert page.status_code == 403
    assert "mcp:admin" in page.text and "mcp-admins" in page.text
    # Asking for both: the consent page grants mcp:tools and says mcp:admin is withheld.
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools mcp:admin")
    try:
        back = sign_in_at_provider(browser, response, "outsider")
        consent = browser.get(urljoin(str(back.url), back.headers["location"]))
    finally:
        browser.close()
    assert consent.status_code == 200
    assert "Not granted" in consent.text and "only members of mcp-admins" in consent.text


async def test_a_browser_with_an_expired_session_cookie_signs_in_at_the_provider(fed: FederatedStack):
    """The login session cookie of yesterday (expired, or purged) is still in the browser: the
    sign-in at the provider must come back to the same browser, not be taken for another one."""
    stale = httpx.Cookies()
    # As the cookie jar keeps a host-only cookie of http://localhost, so the new session cookie
    # replaces it, as in a browser.
    stale.set("mcp_as_session", "expired-session-id", domain="localhost.local", path="/")
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools", cookies=stale)
    try:
        back = sign_in_at_provider(browser, response, "demo")
        assert back.status_code == 303, back.text[:800]  # signed in: back to the authorization request
        consent = browser.get(urljoin(str(back.url), back.headers["location"]))
    finally:
        browser.close()
    assert consent.status_code == 200 and 'value="approve"' in consent.text, consent.text[:800]


async def test_people_outside_the_allowed_domain_or_group_are_refused_on_a_page(fed: FederatedStack):
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools")
    try:
        refused = sign_in_at_provider(browser, response, "stranger")
    finally:
        browser.close()
    assert refused.status_code == 403
    assert "elsewhere.test may not sign in" in refused.text
    assert "Try again" in refused.text and "/authorize?" in refused.text


async def test_cancelling_at_the_provider_ends_on_a_page_with_a_way_back(fed: FederatedStack):
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools")
    try:
        for _ in range(5):
            if not response.is_redirect:
                break
            response = browser.get(urljoin(str(response.url), response.headers["location"]))
        abort = re.search(r'<form method="post" action="([^"]+/abort)"', response.text)
        assert abort, response.text[:800]
        response = browser.post(urljoin(str(response.url), abort.group(1)))
        for _ in range(5):
            location = urljoin(str(response.url), response.headers["location"])
            response = browser.get(location)
            if "/callback" in location:
                break
    finally:
        browser.close()
    assert response.status_code == 403
    assert "cancelled" in response.text and "/authorize?" in response.text
    assert "the person cancelled" not in response.text, "the provider's own words are not shown"


async def test_a_callback_this_browser_never_started_is_refused_on_a_page(fed: FederatedStack):
    forged = httpx.get(f"{fed.callback}?code=abc&state=never-issued")
    assert forged.status_code == 400
    assert "not started in this browser" in forged.text
    # A real flow's callback replayed in another browser (no cookies) is refused the same way.
    browser, response, _ = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools")
    try:
        for _ in range(10):
            location = urljoin(str(response.url), response.headers["location"]) if response.is_redirect else None
            if location and "/callback" in location:
                break
            if location:
                response = browser.get(location)
                continue
            action = re.search(r'<form method="post" action="([^"]+)"', response.text)
            response = browser.post(urljoin(str(response.url), action.group(1)), data={"username": "demo", "password": "demo"})
    finally:
        browser.close()
    elsewhere = httpx.get(location)
    assert elsewhere.status_code == 400 and "not started in this browser" in elsewhere.text


async def test_our_restart_between_the_redirect_and_the_callback_loses_nothing(fed: FederatedStack):
    browser, response, redirect_uri = start_at_authorize(fed.auth.issuer, fed.envoy.mcp_url, "mcp:tools")
    assert response.status_code == 303 and response.headers["location"].startswith(fed.idp.issuer)
    fed.auth.restart()
    try:
        back = sign_in_at_provider(browser, response, "demo")
        assert back.status_code == 303, back.text[:800]
        consent = browser.get(urljoin(str(back.url), back.headers["location"]))
        assert consent.status_code == 200 and "Allow" in consent.text
    finally:
        browser.close()


async def test_provider_down_and_wrong_secret_give_clear_pages(auth_server_bin, workdir):
    # A provider nobody listens on: the page names the provider and the step, not a 500.
    dead_port, port = free_port(), free_port()
    config = auth_server_config(
        workdir, port=port, issuer=f"http://localhost:{dead_port}", resource="http://localhost:1/mcp",
        name="down", secret="x",
    )
    down = AuthServer(auth_server_bin, port, config, Service("down", [str(auth_server_bin), "--config", str(config)], workdir / "down.log")).start()
    try:
        browser, response, _ = start_at_authorize(down.issuer, "http://localhost:1/mcp", "mcp:tools")
        browser.close()
        assert response.status_code == 502
        assert "cannot be reached" in response.text and PROVIDER_ID in response.text
        assert "Try again" in response.text
        # Reported at startup too, with the provider's id and the failing step.
        log = (workdir / "down.log").read_text()
        assert PROVIDER_ID in log and "discovery" in log
    finally:
        down.service.stop()

    # A provider that does not know our secret: the token exchange fails, clearly.
    port = free_port()
    idp = start_provider(workdir, [f"http://localhost:{port}/upstream/{PROVIDER_ID}/callback"])
    config = auth_server_config(
        workdir, port=port, issuer=idp.issuer, resource="http://localhost:1/mcp", name="wrong-secret",
        secret="not-the-secret",
    )
    wrong = AuthServer(auth_server_bin, port, config, Service("wrong", [str(auth_server_bin), "--config", str(config)], workdir / "wrong.log")).start()
    try:
        browser, response, _ = start_at_authorize(wrong.issuer, "http://localhost:1/mcp", "mcp:tools")
        try:
            page = sign_in_at_provider(browser, response, "demo")
        finally:
            browser.close()
        assert page.status_code == 502
        assert "did not accept this server's credentials" in page.text and "token exchange" in page.text
        assert "invalid_client" in (workdir / "wrong.log").read_text()
    finally:
        wrong.service.stop()
        idp.service.stop()


async def test_private_key_jwt_towards_the_provider(auth_server_bin, workdir):
    key, public = workdir / "pkjwt.pem", workdir / "pkjwt.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)], check=True
    )
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(public)], check=True)
    port = free_port()
    idp = start_provider(
        workdir,
        [f"http://localhost:{port}/upstream/{PROVIDER_ID}/callback"],
        extra_env={"PKJWT_CLIENT_ID": "pkjwt-client", "PKJWT_PUBLIC_KEY_FILE": str(public)},
    )
    config = auth_server_config(
        workdir, port=port, issuer=idp.issuer, resource="http://localhost:1/mcp", name="pkjwt",
        private_key=key, client_id="pkjwt-client",
    )
    server = AuthServer(auth_server_bin, port, config, Service("pkjwt", [str(auth_server_bin), "--config", str(config)], workdir / "pkjwt.log")).start()
    try:
        browser, response, _ = start_at_authorize(server.issuer, "http://localhost:1/mcp", "mcp:tools")
        try:
            back = sign_in_at_provider(browser, response, "demo")
            assert back.status_code == 303, back.text[:800]
            consent = browser.get(urljoin(str(back.url), back.headers["location"]))
        finally:
            browser.close()
        assert consent.status_code == 200 and "Allow" in consent.text
    finally:
        server.service.stop()
        idp.service.stop()


async def test_connected_apps_sign_in_at_the_provider_comes_back_to_the_page(fed: FederatedStack):
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(f"{fed.auth.issuer}/account")
        assert page.status_code == 200
        assert f'value="upstream:{PROVIDER_ID}"' in page.text, page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        response = browser.post(
            f"{fed.auth.issuer}/account", data={"csrf_token": csrf.group(1), "action": f"upstream:{PROVIDER_ID}"}
        )
        back = sign_in_at_provider(browser, response, "demo")
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/account"
        account = browser.get(f"{fed.auth.issuer}/account")
    assert account.status_code == 200
    assert "Signed in as" in account.text and "demo@example.com" in account.text, account.text
