"""End to end with the official MCP Python SDK as the client: its OAuth support discovers the
filter's metadata, registers (dynamically or with a client ID metadata document), signs in
through the real authorization server (a headless user does the person's part), and calls the
demo MCP server through the real Envoy with the filter."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import Stack, loopback_redirect_uri
from oauth_client import HeadlessUser, MemoryStorage, http_client, jwt_parts, oauth_provider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def with_client(stack: Stack, provider, action, mode: str = "auto"):
    async with http_client(provider) as http:
        async with Client(streamable_http_client(stack.envoy.mcp_url, http_client=http), mode=mode) as client:
            return await action(client)


async def access_log(stack: Stack, until) -> tuple[str, list[dict]]:
    """Envoy's access log (text and JSON records), once a record satisfies `until` (Envoy
    writes it out every 200 ms in these tests)."""
    deadline = time.monotonic() + 15
    while True:
        text = stack.envoy.access_log.read_text() if stack.envoy.access_log.exists() else ""
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if any(until(record) for record in records) or time.monotonic() > deadline:
            return text, records
        await anyio.sleep(0.2)


async def whoami_and_add(client):
    tools = await client.list_tools()
    whoami = await client.call_tool("whoami", {})
    added = await client.call_tool("add", {"a": 2, "b": 40})
    return {tool.name for tool in tools.tools}, whoami, added


async def test_dynamic_registration_sign_in_and_tool_calls(stack: Stack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(stack.envoy.mcp_url, user, storage)

    names, whoami, added = await with_client(stack, provider, whoami_and_add)

    assert {"whoami", "add", "echo", "admin_report"} <= names
    assert not added.is_error and added.structured_content == {"sum": 42}
    # The client registered dynamically and asked for the scope the challenge named.
    assert storage.client_info.client_id and not storage.client_info.client_id.startswith("http")
    [url] = user.authorization_urls
    assert "scope=mcp%3Atools" in url and "resource=" in url and "code_challenge_method=S256" in url
    # The tokens are RFC 9068 JWTs for this resource, and whoami sees what the filter verified.
    header, claims = jwt_parts(storage.tokens.access_token)
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == stack.envoy.mcp_url and claims["iss"] == stack.auth.issuer
    assert not whoami.is_error
    assert whoami.structured_content == {
        "subject": claims["sub"],
        "client_id": storage.client_info.client_id,
        "scopes": ["mcp:tools"],
    }
    assert claims["sub"] == "demo"
    # Token passthrough never happens.
    seen = stack.seen_authorization()
    assert seen["requests"] > 0 and seen["requests_with_authorization"] == 0
    # The access log attributes the tool call to the user and the client, and holds no token.
    def is_add(record):
        return record["mcp_method"] == "tools/call" and record["mcp_name"] == "add"

    text, records = await access_log(stack, is_add)
    [add] = [record for record in records if is_add(record)]
    assert add["decision"] == "allowed" and add["status"] == 200
    assert add["subject"] == "demo" and add["client_id"] == storage.client_info.client_id
    assert add["resource"] == stack.envoy.mcp_url and add["path"] == "/mcp"
    assert any(record["decision"] == "missing_token" for record in records), "the first 401"
    for secret in [storage.tokens.access_token, storage.tokens.refresh_token]:
        assert secret and secret not in text
    assert "Bearer" not in text and "eyJ" not in text and "code=" not in text


async def test_client_id_metadata_document_instead_of_registration(stack: Stack, cimd_document):
    user, storage = HeadlessUser(cimd_document.redirect_uri), MemoryStorage()
    provider = oauth_provider(stack.envoy.mcp_url, user, storage, client_metadata_url=cimd_document.url)

    _, whoami, _ = await with_client(stack, provider, whoami_and_add)

    assert storage.client_info.client_id == cimd_document.url
    assert whoami.structured_content["client_id"] == cimd_document.url
    assert cimd_document.fetches >= 1, "the authorization server never fetched the document"
    # The consent page names the client from its document, marked as self-asserted.
    assert "CIMD e2e client" in user.consent_pages[0]
    assert "unverified" in user.consent_pages[0]


async def test_refresh_rotates_tokens_and_the_new_token_works(stack: Stack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(stack.envoy.mcp_url, user, storage)

    async def call_then_refresh(client):
        first = (storage.tokens.access_token, storage.tokens.refresh_token) if storage.tokens else None
        await client.call_tool("echo", {"text": "before"})
        before = (storage.tokens.access_token, storage.tokens.refresh_token)
        provider.context.token_expiry_time = time.time() - 1  # as if the access token expired
        after_result = await client.call_tool("echo", {"text": "after"})
        return first, before, (storage.tokens.access_token, storage.tokens.refresh_token), after_result

    _, before, after, result = await with_client(stack, provider, call_then_refresh)

    assert len(user.authorization_urls) == 1, "refresh must not need the user again"
    assert after[0] != before[0] and after[1] != before[1], "access and refresh token both rotate"
    assert not result.is_error
    # The old refresh token is spent: reusing it fails (and revokes the family).
    reuse = httpx.post(
        f"{stack.auth.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": before[1], "client_id": storage.client_info.client_id},
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"


async def test_step_up_on_admin_report_reauthorizes_with_the_admin_scope(stack: Stack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(stack.envoy.mcp_url, user, storage)
    denied_before = stack.stat("mcp_auth.denied.insufficient_scope")

    async def whoami_then_admin(client):
        await client.call_tool("whoami", {})
        scope_before = storage.tokens.scope
        report = await client.call_tool("admin_report", {})
        return scope_before, report

    scope_before, report = await with_client(stack, provider, whoami_then_admin)

    assert scope_before == "mcp:tools"
    assert stack.stat("mcp_auth.denied.insufficient_scope") == denied_before + 1
    assert len(user.authorization_urls) == 2, "the 403 sent the user through consent again"
    assert "mcp%3Aadmin" in user.authorization_urls[1] and "mcp%3Atools" in user.authorization_urls[1]
    assert "mcp:admin" in user.consent_pages[-1]
    assert set(storage.tokens.scope.split()) == {"mcp:tools", "mcp:admin"}
    assert not report.is_error, report
    assert report.structured_content["requests_with_authorization"] == 0


async def test_authorization_server_restarts_mid_flow_without_losing_anything(stack: Stack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    # Restart between the authorization response and the token request.
    user.after_code = stack.auth.restart
    provider = oauth_provider(stack.envoy.mcp_url, user, storage)

    async def call_restart_refresh(client):
        await client.call_tool("echo", {"text": "one"})
        user.after_code = None
        stack.auth.restart()  # between token and refresh
        provider.context.token_expiry_time = time.time() - 1
        before = storage.tokens.access_token
        result = await client.call_tool("whoami", {})
        return before, result

    before, result = await with_client(stack, provider, call_restart_refresh)

    assert storage.tokens.access_token != before, "the refresh after the restart issued a new token"
    assert not result.is_error
    assert len(user.authorization_urls) == 1


async def test_signing_key_rotation_is_picked_up_without_restarting_envoy(stack: Stack):
    user, storage = HeadlessUser(loopback_redirect_uri()), MemoryStorage()
    provider = oauth_provider(stack.envoy.mcp_url, user, storage)
    envoy_pid = stack.envoy.service.process.pid

    async def rotate_and_refresh(client):
        await client.call_tool("echo", {"text": "old key"})
        old_kid = jwt_parts(storage.tokens.access_token)[0]["kid"]
        stack.auth.rotate_key()
        provider.context.token_expiry_time = time.time() - 1
        result = await client.call_tool("whoami", {})
        new_kid = jwt_parts(storage.tokens.access_token)[0]["kid"]
        return old_kid, new_kid, result

    old_kid, new_kid, result = await with_client(stack, provider, rotate_and_refresh)

    assert new_kid != old_kid, "tokens after the rotation are signed with the new key"
    assert not result.is_error, result
    assert stack.envoy.service.process.pid == envoy_pid
    assert len(user.authorization_urls) == 1


