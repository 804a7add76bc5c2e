"""RFC 8707 audience binding end to end: a real token from the same authorization server, issued
for another resource, is refused by the filter in the real Envoy, and never reaches the MCP
server. The token is obtained with a plain OAuth 2.1 code flow (registration, PKCE S256,
sign-in and consent, token request), each step checked as a client would see it."""

from __future__ import annotations

import base64
import hashlib
import secrets

import httpx

from conftest import Stack, loopback_redirect_uri
from oauth_client import HeadlessUser, jwt_parts


def test_token_for_another_resource_is_refused(stack: Stack):
    """A real token from the same authorization server, but for another resource (RFC 8707
    audience), obtained with a plain OAuth code flow, is refused by the filter."""
    redirect_uri = loopback_redirect_uri()
    registration = httpx.post(
        f"{stack.auth.issuer}/register",
        json={
            "client_name": "other-resource client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert registration.status_code == 201, registration.text
    client_id = registration.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    authorize = httpx.URL(
        f"{stack.auth.issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp:tools",
            "resource": stack.other_resource,
        },
    )
    result = HeadlessUser(redirect_uri).sign_in(str(authorize))
    assert result.state == state and result.iss == stack.auth.issuer
    token = httpx.post(
        f"{stack.auth.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": result.code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": stack.other_resource,
        },
    )
    assert token.status_code == 200, token.text
    access_token = token.json()["access_token"]
    assert jwt_parts(access_token)[1]["aud"] == stack.other_resource

    response = httpx.post(
        stack.envoy.mcp_url,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401
    challenge_header = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge_header
    assert 'error_description="audience not accepted"' in challenge_header
    assert stack.seen_authorization()["requests_with_authorization"] == 0
