"""Bodies whose tool depends on the MCP server's JSON parser, sent over raw HTTP through the real
Envoy with a real token that lacks mcp:admin and no Mcp-Method header: each names a permitted
tool to the filter and admin_report to a lenient parser (case-insensitive keys, keys read up to a
NUL, the last or first of duplicate keys). The filter answers 400 and no tool runs."""

from __future__ import annotations

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


def test_the_session_runs_a_permitted_tool(stack: Stack, session):
    token, session_id = session
    before = stack.seen_authorization()["tool_calls"]
    response = post(
        stack,
        token,
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}',
        session_id,
    )
    assert response.status_code == 200, response.text
    assert '"subject":"demo"' in response.text
    assert stack.seen_authorization()["tool_calls"] == before + 1


@pytest.mark.parametrize("case, body, description", AMBIGUOUS_BODIES, ids=[c[0] for c in AMBIGUOUS_BODIES])
def test_a_body_whose_tool_depends_on_the_parser_gets_400_and_runs_no_tool(
    stack: Stack, session, case: str, body: bytes, description: str
):
    token, session_id = session
    before = stack.seen_authorization()["tool_calls"]
    denied = stack.stat("mcp_auth.denied.bad_mcp_request")

    response = post(stack, token, body, session_id)

    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid_request", "error_description": description}
    assert "www-authenticate" not in response.headers
    assert stack.seen_authorization()["tool_calls"] == before
    assert stack.stat("mcp_auth.denied.bad_mcp_request") == denied + 1
