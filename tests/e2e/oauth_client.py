"""The MCP Python SDK's OAuth client driven headlessly: a person's part of the authorization
code flow (sign in, consent) done over HTTP with httpx, plus in-memory token storage."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlparse

import anyio.to_thread
import httpx
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from processes import free_port


class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Form:
    action: str
    hidden: dict[str, str]
    inputs: set[str]


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append(Form(attributes.get("action") or "", {}, set()))
        elif tag == "input" and self.forms:
            name = attributes.get("name")
            if not name:
                return
            if attributes.get("type") == "hidden":
                self.forms[-1].hidden[name] = attributes.get("value") or ""
            else:
                self.forms[-1].inputs.add(name)


def parse_form(html: str) -> Form | None:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms[0] if parser.forms else None


@dataclass
class HeadlessUser:
    """Plays the person at the browser: follows the authorization URL, signs in, and approves
    the consent page; the redirect back to the client's loopback URI is captured, not fetched."""

    redirect_uri: str
    username: str = "demo"
    password: str = "demo"
    # Called between receiving the code and handing it to the client (e.g. restart the server).
    after_code: object = None
    authorization_urls: list[str] = field(default_factory=list)
    consent_pages: list[str] = field(default_factory=list)
    result: AuthorizationCodeResult | None = None

    def sign_in(self, authorization_url: str) -> AuthorizationCodeResult:
        self.authorization_urls.append(authorization_url)
        with httpx.Client(follow_redirects=False, timeout=10) as browser:
            response = browser.get(authorization_url)
            for _ in range(10):
                if response.is_redirect:
                    location = urljoin(str(response.url), response.headers["location"])
                    if location.startswith(self.redirect_uri):
                        query = parse_qs(urlparse(location).query)
                        if "error" in query:
                            raise AssertionError(f"authorization failed: {query}")
                        return AuthorizationCodeResult(
                            code=query["code"][0],
                            state=query.get("state", [None])[0],
                            iss=query.get("iss", [None])[0],
                        )
                    response = browser.get(location)
                    continue
                form = parse_form(response.text)
                assert form is not None, f"no form on page ({response.status_code}): {response.text[:800]}"
                data = dict(form.hidden)
                if "username" in form.inputs:
                    data.update(username=self.username, password=self.password, action="login")
                else:
                    self.consent_pages.append(response.text)
                    data["action"] = "approve"
                response = browser.post(urljoin(str(response.url), form.action), data=data)
        raise AssertionError("too many steps in the authorization flow")

    async def redirect_handler(self, authorization_url: str) -> None:
        self.result = await anyio.to_thread.run_sync(self.sign_in, authorization_url)
        if callable(self.after_code):
            await anyio.to_thread.run_sync(self.after_code)

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.result is not None
        result, self.result = self.result, None
        return result


def client_metadata(redirect_uri: str, name: str = "mcp-auth-proxy e2e client") -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name=name,
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )


def oauth_provider(
    mcp_url: str, user: HeadlessUser, storage: MemoryStorage, client_metadata_url: str | None = None
) -> OAuthClientProvider:
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=client_metadata(user.redirect_uri),
        storage=storage,
        redirect_handler=user.redirect_handler,
        callback_handler=user.callback_handler,
    )
    if client_metadata_url is not None:
        # The SDK's constructor only accepts https document URLs; the test serves the document
        # from http://localhost, which the authorization server accepts with its development
        # switch. Everything after construction is the SDK's own CIMD path.
        provider.context.client_metadata_url = client_metadata_url
    return provider


def http_client(provider: OAuthClientProvider) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30, read=60))


def jwt_parts(token: str) -> tuple[dict, dict]:
    """Header and claims of a JWT, unverified (the filter verifies; tests only look)."""

    def decode(segment: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    verifier: str
    code: str
    resource: str

    def redeem(self, issuer: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(
            f"{issuer}/token",
            timeout=timeout,
            data={
                "grant_type": "authorization_code",
                "code": self.code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": self.verifier,
                "resource": self.resource,
            },
        )


@dataclass
class CodeFlowTokens:
    client_id: str
    access_token: str
    refresh_token: str | None
    scope: str


def authorization_code(
    issuer: str, resource: str, scope: str, *, client_name: str, refresh: bool = False
) -> IssuedCode:
    """A plain authorization code flow up to the code (dynamic registration, PKCE, the headless
    person signing in as demo / demo), without the SDK: for tests that need real codes and
    tokens and not the SDK's client."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    grant_types = ["authorization_code", "refresh_token"] if refresh else ["authorization_code"]
    registration = httpx.post(
        f"{issuer}/register",
        json={
            "client_name": client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert registration.status_code == 201, registration.text
    client_id = registration.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    authorize = httpx.URL(
        f"{issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": scope,
            "resource": resource,
        },
    )
    result = HeadlessUser(redirect_uri).sign_in(str(authorize))
    return IssuedCode(client_id, redirect_uri, verifier, result.code, resource)


def code_flow_tokens(
    issuer: str, resource: str, scope: str, *, client_name: str, refresh: bool = False
) -> CodeFlowTokens:
    """[`authorization_code`], then the code redeemed."""
    issued = authorization_code(issuer, resource, scope, client_name=client_name, refresh=refresh)
    token = issued.redeem(issuer)
    assert token.status_code == 200, token.text
    body = token.json()
    return CodeFlowTokens(issued.client_id, body["access_token"], body.get("refresh_token"), body["scope"])
