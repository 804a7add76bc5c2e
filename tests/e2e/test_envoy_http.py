"""The real Envoy 1.40 with the built filter and the demo configuration, over plain HTTP:
challenges, resource metadata, CORS and Origin checks. No authorization server is running here
(the filter's JWKS fetches fail), which none of these responses may depend on."""

from __future__ import annotations

import httpx
import pytest

from conftest import Envoy, start_envoy
from processes import free_port

INSPECTOR_ORIGIN = "http://localhost:6274"


@pytest.fixture(scope="module")
def envoy(envoy_bin, wasm_path, workdir, demo_mcp_server):
    envoy = start_envoy(
        envoy_bin,
        wasm_path,
        workdir,
        auth_server_port=free_port(),  # nothing listens there
        upstream_port=demo_mcp_server.port,
    )
    yield envoy
    envoy.service.stop()


def upstream_requests(demo_mcp_server) -> int:
    # The witness endpoint counts itself too; subtract this request.
    return httpx.get(demo_mcp_server.seen_authorization_url).json()["requests"] - 1


def challenge_params(header: str) -> dict[str, str]:
    scheme, _, params = header.partition(" ")
    assert scheme == "Bearer"
    parsed = {}
    for part in params.split(", "):
        key, _, value = part.partition("=")
        parsed[key] = value.strip('"')
    return parsed


def test_request_without_token_gets_401_challenge_and_never_reaches_upstream(envoy: Envoy, demo_mcp_server):
    before = upstream_requests(demo_mcp_server)
    response = httpx.post(envoy.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{envoy.metadata_url}", scope="mcp:tools"'
    )
    assert response.json()["error"] == "unauthorized"
    assert upstream_requests(demo_mcp_server) == before + 1  # only our own witness request


def test_challenge_urls_come_from_configuration_not_the_host_header(envoy: Envoy):
    response = httpx.get(envoy.mcp_url, headers={"Host": "evil.example"})
    assert response.status_code == 401
    assert challenge_params(response.headers["www-authenticate"])["resource_metadata"] == envoy.metadata_url


def test_path_inserted_metadata_describes_the_resource(envoy: Envoy):
    response = httpx.get(envoy.metadata_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cache-control"] == "public, max-age=3600"
    issuer = f"http://localhost:{_issuer_port(envoy)}"
    assert response.json() == {
        "resource": envoy.mcp_url,
        "authorization_servers": [issuer],
        "scopes_supported": ["mcp:tools", "mcp:admin"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Demo MCP server",
    }


def test_root_metadata_is_the_same_document(envoy: Envoy):
    root = httpx.get(f"{envoy.base_url}/.well-known/oauth-protected-resource")
    assert root.status_code == 200
    assert root.json() == httpx.get(envoy.metadata_url).json()


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource/other",
        "/.well-known/oauth-protected-resource/mcp/extra",
        "/.well-known/oauth-protected-resourcex",
    ],
)
def test_unknown_well_known_paths_get_404_not_401(envoy: Envoy, path: str):
    response = httpx.get(f"{envoy.base_url}{path}")
    assert response.status_code == 404
    assert "www-authenticate" not in response.headers


def test_garbage_token_gets_invalid_token_naming_the_check(envoy: Envoy, demo_mcp_server):
    before = upstream_requests(demo_mcp_server)
    response = httpx.get(envoy.mcp_url, headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    params = challenge_params(response.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["error_description"] == "token is not a JWS compact serialization"
    assert params["resource_metadata"] == envoy.metadata_url
    assert params["scope"] == "mcp:tools"
    assert upstream_requests(demo_mcp_server) == before + 1


def test_non_bearer_scheme_is_invalid_token(envoy: Envoy):
    response = httpx.get(envoy.mcp_url, headers={"Authorization": "Basic ZGVtbzpkZW1v"})
    assert response.status_code == 401
    assert challenge_params(response.headers["www-authenticate"])["error"] == "invalid_token"


def test_token_in_query_is_ignored(envoy: Envoy):
    response = httpx.get(f"{envoy.mcp_url}?access_token=abc")
    assert response.status_code == 401
    assert "error" not in challenge_params(response.headers["www-authenticate"])


def test_cors_preflight_from_allowed_origin_is_answered_without_a_token(envoy: Envoy):
    response = httpx.options(
        envoy.mcp_url,
        headers={
            "Origin": INSPECTOR_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == INSPECTOR_ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "mcp-protocol-version", "mcp-session-id"} <= allowed
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert "www-authenticate" in exposed


def test_401_to_an_allowed_origin_exposes_the_challenge(envoy: Envoy):
    response = httpx.post(envoy.mcp_url, headers={"Origin": INSPECTOR_ORIGIN}, json={})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == INSPECTOR_ORIGIN
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()


def test_disallowed_origin_gets_403(envoy: Envoy, demo_mcp_server):
    before = upstream_requests(demo_mcp_server)
    response = httpx.post(
        envoy.mcp_url,
        headers={"Origin": "http://evil.example", "Authorization": "Bearer x"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers
    assert upstream_requests(demo_mcp_server) == before + 1


def test_the_upstream_debug_endpoint_is_not_reachable_through_envoy(envoy: Envoy):
    response = httpx.get(f"{envoy.base_url}/debug/seen-authorization")
    assert response.status_code == 404


def test_filter_counters_appear_in_envoy_stats(envoy: Envoy):
    httpx.get(envoy.metadata_url)
    httpx.get(envoy.mcp_url)
    stats = httpx.get(f"http://127.0.0.1:{envoy.admin_port}/stats?filter=mcp_auth").text
    counters = dict(line.split(": ", 1) for line in stats.splitlines() if ": " in line)
    served = [int(v) for k, v in counters.items() if k.endswith("mcp_auth.metadata.served")]
    missing = [int(v) for k, v in counters.items() if k.endswith("mcp_auth.denied.missing_token")]
    assert served and served[0] >= 1, stats
    assert missing and missing[0] >= 1, stats


def _issuer_port(envoy: Envoy) -> str:
    import re

    return re.search(r'"issuer": "http://localhost:(\d+)"', envoy.config.read_text()).group(1)
