"""Per-tool decisions through the real Envoy, over raw HTTP, with a real token that lacks
mcp:admin and no Mcp-Method header (how every client before MCP 2026-07-28 calls a tool).

Bodies whose tool depends on the MCP server's JSON parser each name a permitted tool to the filter
and admin_report to a lenient parser (case-insensitive keys, keys read up to a NUL, the last or
first of duplicate keys): the filter answers 400 and no tool runs.

The demo Envoy sets `allow_on_headers_stop_iteration` and the filter `hold_headers_for_body`, so a
call the filter refuses from its body never reaches the MCP server at all: the demo server counts
every request it receives (`requests`, the debug endpoint's own included) and every tool call."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from conftest import Stack
from oauth_client import code_flow_tokens

ACCEPT = "application/json, text/event-stream"

AMBIGUOUS_BODIES = [
    (
        "case-variant name",
        rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","Name":"admin_report","arguments":{}}}',
        "ambiguous params.name key",
    ),
    (
        "NUL-terminated name",
        rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","name\u0000":"admin_report","arguments":{}}}',
        "ambiguous params.name key",
    ),
    (
        "duplicate name",
        rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"admin_report","name":"whoami","arguments":{}}}',
        "ambiguous params.name key",
    ),
    (
        "duplicate method",
        rb'{"jsonrpc":"2.0","id":3,"method":"tools/call","method":"tools/list","params":{"name":"admin_report"}}',
        "ambiguous method key",
    ),
    (
        "case-variant method alone",
        rb'{"jsonrpc":"2.0","id":3,"Method":"tools/call","params":{"name":"admin_report","arguments":{}}}',
        "ambiguous method key",
    ),
    (
        "params key with a long s",
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}},'
        '"param\u017f":{"name":"admin_report","arguments":{}}}'.encode(),
        "ambiguous params key",
    ),
]


def tools_token(stack: Stack) -> str:
    """An access token for the MCP resource with only mcp:tools, from a plain code flow."""
    tokens = code_flow_tokens(
        stack.auth.issuer, stack.envoy.mcp_url, "mcp:tools", client_name="parser differential client"
    )
    assert tokens.scope == "mcp:tools"
    return tokens.access_token


def post(stack: Stack, token: str, body: bytes, session: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
    return httpx.post(stack.envoy.mcp_url, headers=headers, content=body)


@pytest.fixture(scope="module")
def session(stack: Stack) -> tuple[str, str]:
    """A token with only mcp:tools and an initialized MCP session on the demo server."""
    token = tools_token(stack)
    initialize = post(
        stack,
        token,
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        b'"capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}',
    )
    assert initialize.status_code == 200, initialize.text
    session_id = initialize.headers["mcp-session-id"]
    initialized = post(stack, token, b'{"jsonrpc":"2.0","method":"notifications/initialized"}', session_id)
    assert initialized.status_code == 202, initialized.text
    return token, session_id


def assert_upstream_saw_nothing(stack: Stack, before: dict) -> None:
    """Since `before` the MCP server received only the debug request that reads its counts."""
    after = stack.seen_authorization()
    assert after["requests"] == before["requests"] + 1, (before, after)
    assert after["tool_calls"] == before["tool_calls"], (before, after)


def test_the_session_runs_a_permitted_tool(stack: Stack, session):
    token, session_id = session
    before = stack.seen_authorization()
    response = post(
        stack,
        token,
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}',
        session_id,
    )
    assert response.status_code == 200, response.text
    assert '"subject":"demo"' in response.text
    after = stack.seen_authorization()
    assert after["tool_calls"] == before["tool_calls"] + 1
    assert after["requests"] == before["requests"] + 2


def test_a_refused_tool_call_never_reaches_the_mcp_server(stack: Stack, session):
    token, session_id = session
    before = stack.seen_authorization()
    refused = stack.stat("mcp_auth.denied.insufficient_scope")

    response = post(
        stack,
        token,
        b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"admin_report","arguments":{}}}',
        session_id,
    )

    assert response.status_code == 403, response.text
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert_upstream_saw_nothing(stack, before)
    assert stack.stat("mcp_auth.denied.insufficient_scope") == refused + 1


def test_headers_that_disagree_with_the_body_get_header_mismatch_and_reach_nothing(stack: Stack, session):
    token, session_id = session
    before = stack.seen_authorization()
    response = httpx.post(
        stack.envoy.mcp_url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "Mcp-Session-Id": session_id,
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            # A permitted tool in the Base64 sentinel form, decoded before it is authorized and
            # compared; the body calls another tool.
            "Mcp-Name": "=?base64?" + base64.b64encode(b"whoami").decode() + "?=",
        },
        content=b'{"jsonrpc":"2.0","id":"m-1","method":"tools/call","params":{"name":"admin_report","arguments":{}}}',
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": "m-1",
        "error": {"code": -32020, "message": "Mcp-Name header does not match the body"},
    }
    assert_upstream_saw_nothing(stack, before)


def unsigned_token(issuer: str, audience: str, kid: str) -> str:
    """A token of the right issuer whose `kid` the authorization server never published: the
    filter waits for a refetch of the issuer's keys before it can decide."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    claims = {"iss": issuer, "aud": audience, "sub": "nobody", "scope": "mcp:tools mcp:admin"}
    return f"{part(header)}.{part(claims)}.{'A' * 86}"


def test_a_call_waiting_for_keys_is_held_and_then_answered(stack: Stack, session):
    _, session_id = session
    before = stack.seen_authorization()
    fetches = stack.stat("mcp_auth.jwks_fetch.ok")
    token = unsigned_token(stack.auth.issuer, stack.envoy.mcp_url, "never-published")

    # The whole call arrives while the filter waits for the refetch: Envoy holds the headers and
    # passes the body to the filter, which keeps it until the keys decide.
    response = post(
        stack,
        token,
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"admin_report","arguments":{}}}',
        session_id,
    )

    assert response.status_code == 401, response.text
    assert 'error_description="unknown key id"' in response.headers["www-authenticate"]
    assert stack.stat("mcp_auth.jwks_fetch.ok") > fetches, "answered after a refetch of the keys"
    assert_upstream_saw_nothing(stack, before)


@pytest.mark.parametrize("case, body, description", AMBIGUOUS_BODIES, ids=[c[0] for c in AMBIGUOUS_BODIES])
def test_a_body_whose_tool_depends_on_the_parser_gets_400_and_runs_no_tool(
    stack: Stack, session, case: str, body: bytes, description: str
):
    token, session_id = session
    before = stack.seen_authorization()
    denied = stack.stat("mcp_auth.denied.bad_mcp_request")

    response = post(stack, token, body, session_id)

    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid_request", "error_description": description}
    assert "www-authenticate" not in response.headers
    assert_upstream_saw_nothing(stack, before)
    assert stack.stat("mcp_auth.denied.bad_mcp_request") == denied + 1
