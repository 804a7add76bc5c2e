"""The authorization server's TLS to PostgreSQL, against a real server with a certificate from a
test CA: `tls = "verify-full"` connects when the chain and the host name check out, and refuses,
naming the cause, when either does not or when the server offers no TLS at all.

The connection is exercised by `mcp-auth-server migrate`, which connects, migrates and exits.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from postgres import SUPERUSER, PostgresCluster

RESOURCE = "http://localhost:10000/mcp"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign", cwd=directory,
    )


def make_server_certificate(directory: Path, ca: str) -> None:
    """A certificate for 127.0.0.1 only (no DNS name), signed by `ca`."""
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory,
    )
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "test-ca")
    make_ca(directory, "other-ca")
    make_server_certificate(directory, "test-ca")
    return directory


@pytest.fixture(scope="module")
def tls_cluster(postgres_bin_dir, certificates):
    """A PostgreSQL server that offers TLS with the test CA's certificate for 127.0.0.1."""
    cluster = PostgresCluster(postgres_bin_dir)
    try:
        for name in ["server.crt", "server.key"]:
            target = cluster.data / name
            shutil.copy(certificates / name, target)
            target.chmod(0o600)
            if cluster._as_root:
                shutil.chown(target, SUPERUSER, SUPERUSER)
        with open(cluster.data / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def migrate(auth_server_bin: Path, workdir: Path, url: str, tls: str, ca_file: Path | None):
    postgres = f'[postgres]\nurl = "{url}"\ntls = "{tls}"\nconnect_timeout_secs = 5\n'
    if ca_file:
        postgres += f'ca_file = "{ca_file}"\n'
    config = workdir / "config.toml"
    config.write_text(
        'issuer = "http://127.0.0.1:9"\n'
        f"{postgres}\n"
        f'[[resources]]\nurl = "{RESOURCE}"\nscopes = ["mcp:tools"]\n'
    )
    return subprocess.run(
        [str(auth_server_bin), "--config", str(config), "migrate"],
        capture_output=True, text=True, timeout=60, env={"RUST_BACKTRACE": "0", "PATH": "/usr/bin:/bin"},
    )


def test_verify_full_connects_when_the_chain_and_the_name_check_out(
    auth_server_bin, tls_cluster, certificates, tmp_path
):
    url = tls_cluster.create_database("tls_ok")
    done = migrate(auth_server_bin, tmp_path, url, "verify-full", certificates / "test-ca.pem")
    assert done.returncode == 0, done.stderr
    assert "applied migration 1" in done.stdout
    # The server saw an encrypted connection from us (pg_stat_ssl lists it while it is open,
    # so look for the migration's rows instead, and at the server's own TLS setting).
    assert tls_cluster.psql("SHOW ssl") == "on"
    assert tls_cluster.psql("SELECT count(*) FROM schema_migrations", dbname="tls_ok") == "2"


@pytest.mark.parametrize(
    ("case", "host", "ca", "cause"),
    [
        ("a certificate from an untrusted CA", "127.0.0.1", "other-ca.pem", "unknownissuer"),
        ("the system's roots, which do not hold the test CA", "127.0.0.1", None, "unknownissuer"),
        ("a host name the certificate does not name", "localhost", "test-ca.pem", "not valid for name"),
    ],
)
def test_verify_full_refuses_a_server_it_cannot_verify(
    auth_server_bin, tls_cluster, certificates, tmp_path, case, host, ca, cause
):
    url = tls_cluster.create_database().replace("127.0.0.1", host)
    done = migrate(auth_server_bin, tmp_path, url, "verify-full", certificates / ca if ca else None)
    assert done.returncode != 0, f"{case}: connected ({done.stdout})"
    # The error that stops the command names the cause, not only "TLS handshake".
    error = done.stderr.strip().splitlines()[-1].lower()
    assert error.startswith("error:") and cause in error, f"{case}: {done.stderr}"
    assert "panicked" not in done.stderr, done.stderr


def test_verify_full_refuses_a_server_without_tls(
    auth_server_bin, postgres_cluster, certificates, tmp_path
):
    url = postgres_cluster.create_database("no_tls")
    done = migrate(auth_server_bin, tmp_path, url, "verify-full", certificates / "test-ca.pem")
    assert done.returncode != 0, done.stdout
    assert "tls" in done.stderr.lower() or "ssl" in done.stderr.lower(), done.stderr
    # With tls = "disable" the same server is fine.
    done = migrate(auth_server_bin, tmp_path, url, "disable", None)
    assert done.returncode == 0, done.stderr
