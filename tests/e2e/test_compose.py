"""envoy/docker-compose.yml, checked statically (no Docker engine needed): every file it mounts
and builds from exists, the Envoy configuration it mounts is the demo template rendered for
compose, and the ports and host names line up between compose, Envoy and the servers."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from envoy_template import COMPOSE_RENDERED, ROOT, render_compose

COMPOSE = ROOT / "envoy" / "docker-compose.yml"
COMPOSE_DIR = COMPOSE.parent


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def envoy_config() -> dict:
    return yaml.safe_load(COMPOSE_RENDERED.read_text())


def plugin_config(envoy: dict) -> dict:
    import json

    hcm = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    wasm = next(f for f in hcm["typed_config"]["http_filters"] if f["name"] == "envoy.filters.http.wasm")
    return json.loads(wasm["typed_config"]["config"]["configuration"]["value"])


def cluster_address(envoy: dict, name: str) -> tuple[str, int]:
    cluster = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == name)
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    return address["socket_address"]["address"], address["socket_address"]["port_value"]


def published(service: dict) -> dict[int, int]:
    """host port -> container port"""
    ports = {}
    for entry in service.get("ports", []):
        host, container = str(entry).split(":")[-2:]
        ports[int(host)] = int(container)
    return ports


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def test_mounted_envoy_config_is_the_demo_template_rendered_for_compose():
    assert COMPOSE_RENDERED.read_text() == render_compose(), (
        "envoy/compose/envoy.yaml is stale; regenerate it with "
        ".venv/bin/python tests/e2e/envoy_template.py --compose > envoy/compose/envoy.yaml"
    )


def test_envoy_uses_the_official_image_and_the_filter_from_the_shared_volume():
    services = compose()["services"]
    envoy = services["envoy"]
    assert envoy["image"] == "envoyproxy/envoy:v1.40-latest"
    mounts = dict((target.split(":")[0], source) for source, target in (v.split(":")[:2] for v in envoy["volumes"]))
    wasm = envoy_config()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    http_filters = wasm["typed_config"]["http_filters"]
    filename = http_filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
    wasm_dir = str(Path(filename).parent)
    assert mounts.get(wasm_dir) == "filter-wasm", f"{filename} is not on the filter-wasm volume"
    assert any(v.endswith(":/wasm") and v.startswith("filter-wasm") for v in services["filter-wasm"]["volumes"])
    assert envoy["depends_on"]["filter-wasm"]["condition"] == "service_completed_successfully"
    config_target = envoy["command"][envoy["command"].index("-c") + 1]
    assert (COMPOSE_DIR / mounts[config_target]).resolve() == COMPOSE_RENDERED


def test_ports_and_host_names_line_up():
    services = compose()["services"]
    envoy = envoy_config()
    listener = envoy["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener["address"] == "0.0.0.0"
    assert published(services["envoy"]) == {10000: listener["port_value"]}

    plugin = plugin_config(envoy)
    resource = plugin["resources"][0]["resource"]
    assert resource == f"http://localhost:{listener['port_value']}/mcp"

    # The authorization server: published on the issuer's port, reached by Envoy by service name.
    issuer = plugin["issuers"][0]["issuer"]
    issuer_port = int(issuer.rsplit(":", 1)[1])
    auth_env = services["auth-server"]["environment"]
    auth_listen_port = int(auth_env["MCP_AUTH_SERVER__LISTEN"].rsplit(":", 1)[1])
    assert published(services["auth-server"]) == {issuer_port: auth_listen_port}
    assert cluster_address(envoy, "auth_server") == ("auth-server", auth_listen_port)
    assert plugin["issuers"][0]["jwks"]["cluster"] == "auth_server"

    # The MCP server: reached by Envoy by service name, never published on the host.
    upstream = services["demo-mcp-server"]
    bind = upstream["command"][upstream["command"].index("--bind") + 1]
    assert cluster_address(envoy, "mcp_upstream") == ("demo-mcp-server", int(bind.rsplit(":", 1)[1]))
    assert "ports" not in upstream
    assert upstream["networks"] == ["internal"]
    assert compose()["networks"]["internal"]["internal"] is True


def test_every_bind_mount_and_build_input_exists():
    services = compose()["services"]
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.is_file(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert context == ROOT
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
            stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I)
            assert build["target"] in stages, f"{name}: no stage {build['target']} in {dockerfile}"


def test_the_auth_server_config_it_mounts_declares_the_same_issuer_and_resource():
    import tomllib

    services = compose()["services"]
    [(source, target)] = bind_mounts(services["auth-server"])
    assert target in services["auth-server"]["command"]
    config = tomllib.loads(source.read_text())
    plugin = plugin_config(envoy_config())
    assert config["issuer"] == plugin["issuers"][0]["issuer"]
    assert plugin["resources"][0]["resource"] in [r["url"] for r in config.get("resources", [])]
