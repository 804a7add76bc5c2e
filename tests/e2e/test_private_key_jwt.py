"""ChatGPT's wire behaviour, replayed against the real stack: a client ID metadata document
that declares `private_key_jwt` with an RS256 key at a `jwks_uri`, then login, consent, a code
redeemed with a signed client assertion (RFC 7523 §2.2), a tool call through Envoy, a refresh
and a revocation, each authenticated with a fresh assertion.

ChatGPT's document shape is published in other servers' trackers, which had to add support
for it: https://github.com/Altinity/altinity-mcp/issues/118 (the document and the refusal it
met) and https://github.com/django-oauth/django-oauth-toolkit/issues/1845 (the document at
https://chatgpt.com/oauth/client.json, with `token_endpoint_auth_methods_supported`,
`client_uri` and `logo_uri` besides the members this server reads). The document and keys here
are served from http://localhost (the authorization server's development switch); ChatGPT's
are https."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import httpx
import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import Stack, loopback_redirect_uri
from oauth_client import HeadlessUser
from processes import free_port

pytestmark = pytest.mark.anyio

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class ChatGptLikeClient:
    client_id: str
    jwks_uri: str
    redirect_uri: str
    key: rsa.RSAPrivateKey
    kid: str
    jwks_fetches: int = 0

    def assertion(self, audience: str, **overrides) -> str:
        """An RS256 client assertion: iss = sub = client_id, a fresh jti, one minute to live."""
        now = int(time.time())
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
            **overrides,
        }
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def authentication(self, audience: str) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(audience),
        }


@pytest.fixture(scope="module")
def chatgpt_client():
    port = free_port()
    base = f"http://localhost:{port}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    client = ChatGptLikeClient(
        client_id=f"{base}/oauth/client.json",
        jwks_uri=f"{base}/oauth/jwks.json",
        redirect_uri=loopback_redirect_uri(),
        key=key,
        kid="chatgpt-e2e-1",
    )
    document = json.dumps(
        {
            "client_id": client.client_id,
            "client_uri": "https://chatgpt.com/",
            "redirect_uris": [client.redirect_uri],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "ChatGPT",
            "logo_uri": "https://persistent.oaistatic.com/sonic/misc/openai-logo.png",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": client.jwks_uri,
        }
    ).encode()
    jwks = json.dumps(
        {
            "keys": [
                {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": client.kid, "n": uint(numbers.n), "e": uint(numbers.e)}
            ]
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/oauth/client.json":
                body = document
            elif self.path == "/oauth/jwks.json":
                client.jwks_fetches += 1
                body = jwks
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=300")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield client
    server.shutdown()
    server.server_close()


async def whoami(stack: Stack, access_token: str):
    headers = {"Authorization": f"Bearer {access_token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        async with Client(streamable_http_client(stack.envoy.mcp_url, http_client=http)) as client:
            return await client.call_tool("whoami", {})


async def test_chatgpt_signs_in_and_authenticates_with_private_key_jwt(stack: Stack, chatgpt_client):
    client = chatgpt_client
    # Discovery, as any MCP client: the 401 names the resource metadata, which names the server.
    challenge = httpx.post(stack.envoy.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert challenge.status_code == 401
    resource = httpx.get(stack.envoy.metadata_url).json()
    [issuer] = resource["authorization_servers"]
    metadata = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "RS256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert metadata["client_id_metadata_document_supported"] is True
    token_endpoint, revocation_endpoint = metadata["token_endpoint"], metadata["revocation_endpoint"]

    # Authorization code with PKCE and the resource, the document URL as client_id.
    verifier = secrets.token_urlsafe(48)
    challenge_s256 = b64url(hashlib.sha256(verifier.encode()).digest())
    user = HeadlessUser(client.redirect_uri)
    authorization_url = metadata["authorization_endpoint"] + "?" + urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uri,
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge_s256,
            "code_challenge_method": "S256",
            "scope": "mcp:tools",
            "resource": stack.envoy.mcp_url,
        }
    )
    code = user.sign_in(authorization_url).code
    assert "ChatGPT" in user.consent_pages[0] and "unverified" in user.consent_pages[0]

    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": verifier,
        "resource": stack.envoy.mcp_url,
    }
    # Without its assertion the client is refused, and the code stays unused.
    refused = httpx.post(token_endpoint, data={**redeem, "client_id": client.client_id})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    tokens = httpx.post(token_endpoint, data={**redeem, **client.authentication(token_endpoint)})
    assert tokens.status_code == 200, tokens.text
    tokens = tokens.json()

    # The access token works through Envoy, and names the document URL as the client.
    result = await whoami(stack, tokens["access_token"])
    assert not result.is_error
    assert result.structured_content["client_id"] == client.client_id

    # Refresh with a fresh assertion (audience: the issuer); a replayed assertion is refused.
    authentication = client.authentication(issuer)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    refreshed = httpx.post(token_endpoint, data={**refresh, **authentication})
    assert refreshed.status_code == 200, refreshed.text
    refreshed = refreshed.json()
    replayed = httpx.post(
        token_endpoint, data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], **authentication}
    )
    assert replayed.status_code == 401 and "jti was already used" in replayed.json()["error_description"]
    result = await whoami(stack, refreshed["access_token"])
    assert not result.is_error

    # Revocation authenticates the same way and ends the grant.
    revoked = httpx.post(
        revocation_endpoint, data={"token": refreshed["refresh_token"], **client.authentication(token_endpoint)}
    )
    assert revoked.status_code == 200, revoked.text
    after = httpx.post(
        token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], **client.authentication(token_endpoint)},
    )
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant", after.text
    # The keys were fetched once and then served from the cache (Cache-Control: max-age).
    assert client.jwks_fetches == 1
