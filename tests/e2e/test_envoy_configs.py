"""Every Envoy configuration the repository ships is accepted by the real Envoy 1.40
(`envoy --mode validate`, which also loads the filter and its plugin configuration), and a
plugin configuration with an invalid field makes Envoy refuse to start (fail closed)."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from envoy_template import COMPOSE_RENDERED, ROOT, local_values, render, replica_values

PRODUCTION = ROOT / "envoy" / "production"


def validate(envoy_bin: Path, config_text: str, workdir: Path, name: str) -> subprocess.CompletedProcess:
    config = workdir / name
    config.write_text(config_text)
    return subprocess.run(
        [str(envoy_bin), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_valid(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout + result.stderr


def self_signed_certificate(directory: Path, host: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def demo_config(wasm_path: Path) -> str:
    return render(
        local_values(
            listener_port=10000,
            admin_port=9901,
            auth_server_port=9000,
            upstream_port=8080,
            wasm_path=str(wasm_path),
        )
    )


def test_demo_template_rendered_for_this_machine_is_valid(envoy_bin, wasm_path, tmp_path):
    assert_valid(validate(envoy_bin, demo_config(wasm_path), tmp_path, "demo.yaml"))


def test_demo_template_rendered_for_three_replicas_is_valid(envoy_bin, wasm_path, tmp_path):
    """`cargo xtask demo --ha`'s shape: the replicas behind a front listener at the issuer's port."""
    values = local_values(
        listener_port=10000, admin_port=9901, auth_server_port=9000, upstream_port=8080, wasm_path=str(wasm_path)
    )
    text = render(replica_values(values, front_port=9000, replica_ports=[9001, 9002, 9003]))
    assert_valid(validate(envoy_bin, text, tmp_path, "demo-ha.yaml"))


def test_compose_config_is_valid(envoy_bin, wasm_path, tmp_path):
    text = COMPOSE_RENDERED.read_text()
    assert "/etc/envoy/wasm/mcp_auth_filter.wasm" in text
    text = text.replace("/etc/envoy/wasm/mcp_auth_filter.wasm", str(wasm_path))
    assert_valid(validate(envoy_bin, text, tmp_path, "compose.yaml"))


@pytest.mark.parametrize("name", ["envoy-tls.yaml", "envoy-behind-alb.yaml"])
def test_production_configs_are_valid(envoy_bin, wasm_path, tmp_path, name):
    text = (PRODUCTION / name).read_text()
    assert "/etc/envoy/mcp_auth_filter.wasm" in text
    text = text.replace("/etc/envoy/mcp_auth_filter.wasm", str(wasm_path))
    if "/etc/envoy/tls/" in text:
        self_signed_certificate(tmp_path / "tls", "mcp.example.com")
        text = text.replace("/etc/envoy/tls/", f"{tmp_path / 'tls'}/")
    assert_valid(validate(envoy_bin, text, tmp_path, name))


AUDIT_FIELDS = ["decision", "resource", "subject", "client_id", "mcp_method", "mcp_name"]


def test_every_shipped_config_writes_the_audit_fields_and_no_credentials():
    configs = {
        "template": (ROOT / "envoy" / "envoy.yaml.tmpl").read_text(),
        "compose": COMPOSE_RENDERED.read_text(),
        **{name: (PRODUCTION / name).read_text() for name in ["envoy-tls.yaml", "envoy-behind-alb.yaml"]},
    }
    for name, text in configs.items():
        assert "envoy.access_loggers.file" in text and "json_format:" in text, name
        for field in AUDIT_FIELDS:
            assert f'{field}: "%FILTER_STATE(wasm.mcp_auth_{field}:PLAIN)%"' in text, (name, field)
        # Headers and the query string can carry tokens and authorization codes.
        assert "%REQ(AUTHORIZATION)%" not in text.upper() and "%REQ(:PATH)%" not in text, name


def test_every_shipped_envoy_config_holds_headers_for_the_body_and_tells_the_filter():
    """Envoy's `allow_on_headers_stop_iteration` and the filter's `hold_headers_for_body` only
    work together: the filter alone would wait for a body Envoy never delivers, Envoy alone would
    release a partial body when keys arrive early. Istio cannot set Envoy's field."""
    import yaml

    configs = {
        "template": (ROOT / "envoy" / "envoy.yaml.tmpl").read_text(),
        "compose": COMPOSE_RENDERED.read_text(),
        **{name: (PRODUCTION / name).read_text() for name in ["envoy-tls.yaml", "envoy-behind-alb.yaml"]},
    }
    for name, text in configs.items():
        assert text.count("allow_on_headers_stop_iteration: true") == 1, name
        assert text.count('"hold_headers_for_body": true\n') == 1, name
    documents = list(yaml.safe_load_all((ROOT / "envoy" / "istio" / "wasmplugin.yaml").read_text()))
    [plugin] = [d for d in documents if d["kind"] == "WasmPlugin"]
    assert not plugin["spec"]["pluginConfig"].get("hold_headers_for_body", False)


def test_production_configs_publish_https_resource_urls():
    for name in ["envoy-tls.yaml", "envoy-behind-alb.yaml"]:
        text = (PRODUCTION / name).read_text()
        assert '"resource": "https://mcp.example.com/mcp"' in text, name
        assert "http://" not in text.split('"resources"')[1].split('"identity_headers"')[0], name


def test_invalid_plugin_configuration_makes_envoy_refuse_to_start(envoy_bin, wasm_path, tmp_path):
    text = demo_config(wasm_path).replace(
        '"resource": "http://localhost:10000/mcp"', '"resource": "localhost:10000/mcp"', 1
    )
    result = validate(envoy_bin, text, tmp_path, "broken.yaml")
    assert result.returncode != 0
    assert "resources[0].resource" in result.stdout + result.stderr


def test_istio_wasmplugin_configuration_is_accepted_by_the_filter(envoy_bin, wasm_path, tmp_path):
    """The `pluginConfig` of envoy/istio/wasmplugin.yaml, as the JSON Istio hands to the filter,
    loads in Envoy (the filter validates every field at configure time)."""
    import json

    import yaml

    documents = list(yaml.safe_load_all((ROOT / "envoy" / "istio" / "wasmplugin.yaml").read_text()))
    [plugin] = [d for d in documents if d["kind"] == "WasmPlugin"]
    assert plugin["spec"]["failStrategy"] == "FAIL_CLOSE"
    assert plugin["spec"]["phase"] == "AUTHN"
    [entry] = [d for d in documents if d["kind"] == "ServiceEntry"]
    jwks = plugin["spec"]["pluginConfig"]["issuers"][0]["jwks"]
    host, port = entry["spec"]["hosts"][0], entry["spec"]["ports"][0]["number"]
    assert jwks["cluster"] == f"outbound|{port}||{host}"

    config = yaml.safe_load(demo_config(wasm_path))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    wasm = hcm["typed_config"]["http_filters"][0]["typed_config"]["config"]
    # Istio's WasmPlugin has no way to set Envoy's field.
    wasm.pop("allow_on_headers_stop_iteration")
    wasm["configuration"]["value"] = json.dumps(plugin["spec"]["pluginConfig"])
    assert_valid(validate(envoy_bin, yaml.safe_dump(config), tmp_path, "istio.yaml"))
