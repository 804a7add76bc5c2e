"""What popular MCP clients send to an authorization server, one profile per client.

Each profile records how the client registers (dynamic client registration with its exact
metadata, or a client ID metadata document), which redirect URI it presents, how it words the
authorization request (state, scope, resource), how it authenticates at the token endpoint,
whether it sends a scope on refresh, and whether it follows a 403 `insufficient_scope` with a
new authorization (step-up). `test_client_profiles.py` replays them against the real stack.

Open clients are written from their own source code (repository and file named on each
profile). Closed clients are written from published traces of their requests, as reported in
other MCP servers' issue trackers; those sources are named as such. Values that differ per
installation (ports, hashes, UUIDs) are generated per run; everything else is as the client
sends it.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Callable

# What a profile asks for at /authorize.
CHALLENGE_SCOPE = "challenge"  # the `scope` of the filter's 401 challenge (SDK-based clients)
ADVERTISED_SCOPES = "advertised"  # every scope the metadata documents advertise (Gemini CLI)
NO_SCOPE = None  # no `scope` parameter


@dataclass(frozen=True)
class Redirect:
    """The redirect URIs a client registers, and the one it then presents at /authorize and
    /token (the port of a loopback listener is only known at run time)."""

    registered: list[str]
    presented: str


def loopback(host: str, port: int, path: str) -> str:
    return f"http://{host}:{port}{path}"


def only(uri: str) -> Redirect:
    """One registered redirect URI, presented as registered."""
    return Redirect([uri], uri)


@dataclass(frozen=True)
class Profile:
    name: str
    # Where the behaviour was read: a repository and file, or a published trace.
    source: str
    # "registration" (RFC 7591) or "metadata_document" (client ID metadata document).
    registers_with: str
    # The registration body, or the document without `client_id`, for a callback port.
    metadata: Callable[[Redirect], dict]
    redirect: Callable[[int], Redirect]
    # The `state` parameter it sends, if any.
    state: Callable[[], str | None]
    scope: str | None
    sends_resource: bool = True
    # "none" (client_id in the body), "client_secret_post" or "client_secret_basic".
    token_auth: str = "none"
    refresh_sends_scope: bool = False
    # Re-authorizes with the challenge's scope after a 403 insufficient_scope.
    steps_up: bool = True
    # The application type the server should record (inferred from the redirect URIs).
    application_type: str = "native"
    notes: list[str] = field(default_factory=list)


def hex_state(nbytes: int) -> Callable[[], str]:
    return lambda: secrets.token_hex(nbytes)


def base64url_state(nbytes: int) -> Callable[[], str]:
    return lambda: secrets.token_urlsafe(nbytes)


# ChatGPT authenticates with private_key_jwt (a signed client assertion per token request);
# its replay, with its own metadata document and keys, is tests/e2e/test_private_key_jwt.py.
PROFILES: list[Profile] = [
    Profile(
        name="VS Code",
        source="microsoft/vscode src/vs/base/common/oauth.ts (fetchDynamicRegistration)",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Visual Studio Code",
            "client_uri": "https://code.visualstudio.com",
            # Includes the device-code grant, which this server does not serve.
            "grant_types": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "response_types": ["code"],
            "redirect_uris": r.registered,
            "scope": "mcp:tools",
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        },
        # Bare loopback origins (no path), plus the fixed port 33418; it listens on a port of
        # its own and comes back to `/`.
        redirect=lambda port: Redirect(
            [
                "https://insiders.vscode.dev/redirect",
                "https://vscode.dev/redirect",
                "http://localhost",
                "http://127.0.0.1",
                "http://localhost:33418",
                "http://127.0.0.1:33418",
            ],
            loopback("127.0.0.1", port, "/"),
        ),
        state=base64url_state(16),
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="VS Code (client ID metadata document)",
        source="microsoft/vscode src/vs/base/common/oauth.ts; the document here carries the same "
        "metadata as its registration and is served locally",
        registers_with="metadata_document",
        metadata=lambda r: {
            "client_name": "Visual Studio Code",
            "client_uri": "https://code.visualstudio.com",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": r.registered,
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        },
        redirect=lambda port: Redirect(
            ["http://127.0.0.1", "https://vscode.dev/redirect"], loopback("127.0.0.1", port, "/")
        ),
        state=base64url_state(16),
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="Cline before 3.8 (vscode://)",
        source="cline/cline src/services/mcp/McpOAuthManager.ts (ClineOAuthClientProvider.clientMetadata), "
        "TypeScript MCP SDK auth flow",
        registers_with="registration",
        metadata=lambda r: {
            "redirect_uris": r.registered,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Cline",
            "client_uri": "https://cline.bot",
            "software_id": "cline",
        },
        redirect=lambda port: only(
            f"vscode://saoudrizwan.claude-dev/mcp-auth/callback/{secrets.token_hex(8)}"
        ),
        state=hex_state(32),
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="Cline (standalone, loopback)",
        source="cline/cline src/services/mcp/McpOAuthRedirectResolver.ts (http://127.0.0.1:{port}/mcp-auth/callback/{hash})",
        registers_with="registration",
        metadata=lambda r: {
            "redirect_uris": r.registered,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Cline",
            "client_uri": "https://cline.bot",
            "software_id": "cline",
        },
        redirect=lambda port: only(
            loopback("127.0.0.1", port, f"/mcp-auth/callback/{secrets.token_hex(8)}")
        ),
        state=hex_state(32),
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="Gemini CLI",
        source="google-gemini/gemini-cli packages/core/src/mcp/oauth-provider.ts (registerClient, "
        "buildAuthorizationUrl, refreshAccessToken)",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Gemini CLI MCP Client",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            # Empty when no scopes are configured or discovered at registration time.
            "scope": "",
        },
        redirect=lambda port: only(
            loopback("localhost", port, "/oauth/callback")
        ),
        state=base64url_state(16),
        scope=ADVERTISED_SCOPES,
        refresh_sends_scope=True,
    ),
    Profile(
        name="Codex CLI",
        source="openai/codex codex-rs/rmcp-client/src/perform_oauth_login.rs (rmcp OAuthState, "
        "client name `Codex`, http://127.0.0.1:{port}/callback/{id})",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Codex",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: only(
            loopback("127.0.0.1", port, f"/callback/{secrets.token_urlsafe(9)}")
        ),
        state=base64url_state(16),
        scope=NO_SCOPE,
        # Adds `resource` only when configured (`oauth_resource`).
        sends_resource=False,
    ),
    Profile(
        name="Goose",
        source="block/goose crates/goose/src/oauth/mod.rs (rmcp OAuthState with CLIENT_METADATA_URL "
        "https://goose-docs.ai/oauth/client-metadata.json, client name `goose`, "
        "http://127.0.0.1:{port}/oauth_callback); the document is served locally and lists the "
        "callback without a port",
        registers_with="metadata_document",
        metadata=lambda r: {
            "client_name": "goose",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: Redirect(
            ["http://127.0.0.1/oauth_callback"], loopback("127.0.0.1", port, "/oauth_callback")
        ),
        state=base64url_state(16),
        scope=NO_SCOPE,
        sends_resource=False,
    ),
    Profile(
        name="Continue",
        source="continuedev/continue core/context/mcp/MCPOauth.ts (MCPConnectionOauthProvider: the "
        "registered redirect is http://localhost:3000 with ?state=<uuid> added, the one used by the "
        "TypeScript MCP SDK flow is http://localhost:3000; the provider has no state())",
        registers_with="registration",
        metadata=lambda r: {
            "redirect_uris": r.registered,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Continue Dev, Inc",
            "client_uri": "https://continue.dev",
        },
        # Registers the URI with its state in the query, then authorizes and redeems with the
        # bare origin (no path, no query); it listens on the fixed port 3000.
        redirect=lambda port: Redirect(
            [f"http://localhost:3000/?state={uuid.uuid4()}"], "http://localhost:3000"
        ),
        state=lambda: None,
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="Zed",
        source="zed-industries/zed crates/context_server/src/oauth.rs (CIMD_URL, loopback callback "
        "with an ephemeral port); the document is served locally",
        registers_with="metadata_document",
        metadata=lambda r: {
            "client_name": "Zed",
            "client_uri": "https://zed.dev",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: Redirect(
            ["http://127.0.0.1/callback"], loopback("127.0.0.1", port, "/callback")
        ),
        state=base64url_state(32),
        scope=CHALLENGE_SCOPE,
    ),
    Profile(
        name="MCP Inspector",
        source="modelcontextprotocol/inspector client/src/lib/auth.ts (InspectorOAuthClientProvider, "
        "discoverScopes: the resource metadata's scopes_supported), TypeScript MCP SDK auth flow",
        registers_with="registration",
        metadata=lambda r: {
            "redirect_uris": r.registered,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "MCP Inspector",
            "client_uri": "https://github.com/modelcontextprotocol/inspector",
            "scope": "mcp:tools mcp:admin",
        },
        redirect=lambda port: Redirect(
            [
                loopback("localhost", port, "/oauth/callback"),
                loopback("localhost", port, "/oauth/callback/debug"),
            ],
            loopback("localhost", port, "/oauth/callback"),
        ),
        state=hex_state(32),
        scope=ADVERTISED_SCOPES,
    ),
    Profile(
        name="Claude Code",
        source="published traces of Claude Code's registration and authorization requests",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Claude Code (demo)",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: only(
            loopback("localhost", port, "/callback")
        ),
        state=base64url_state(32),
        scope=CHALLENGE_SCOPE,
        # Reported to drop or misreport a 403 insufficient_scope instead of authorizing again.
        steps_up=False,
    ),
    Profile(
        name="Claude.ai connectors",
        source="published traces of Claude.ai's registration (client_secret_post) and its "
        "`scope=claudeai` authorization request",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "claudeai",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": "claudeai",
            "redirect_uris": r.registered,
        },
        redirect=lambda port: only("https://claude.ai/api/mcp/auth_callback"),
        state=base64url_state(32),
        scope="claudeai",
        token_auth="client_secret_post",
        application_type="web",
    ),
    Profile(
        name="Cursor",
        source="published traces of Cursor's registration (one request with its cursor://, an https "
        "and a loopback redirect URI)",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Cursor",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: Redirect(
            [
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://cursor.com/oauth/callback",
                loopback("127.0.0.1", port, "/callback"),
            ],
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ),
        state=base64url_state(32),
        scope=NO_SCOPE,
    ),
    Profile(
        name="Cursor (older builds, cursor:// only)",
        source="published traces of older Cursor builds' registration",
        registers_with="registration",
        metadata=lambda r: {
            "client_name": "Cursor",
            "redirect_uris": r.registered,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        redirect=lambda port: only("cursor://anysphere.cursor-mcp/oauth/callback"),
        state=base64url_state(32),
        scope=NO_SCOPE,
    ),
]
