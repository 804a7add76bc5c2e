"""The throwaway PostgreSQL of postgres.py, which the replica tests stop and restart under running
authorization servers: committed rows survive a restart on the same port, and removing the
cluster stops the server and deletes its directory."""

from __future__ import annotations

import socket

import pytest

from postgres import PostgresCluster


def accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_cluster_keeps_its_rows_across_a_restart_and_leaves_nothing_behind(postgres_bin_dir):
    cluster = PostgresCluster(postgres_bin_dir)
    try:
        cluster.start()
        url = cluster.create_database("e2e_cluster_check")
        assert url == f"postgres://postgres@127.0.0.1:{cluster.port}/e2e_cluster_check"
        cluster.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')", "e2e_cluster_check")
        # Loopback only: the server was told to listen on 127.0.0.1 and nowhere else.
        assert cluster.psql("SHOW listen_addresses") == "127.0.0.1"
        cluster.stop()
        assert not accepts_connections(cluster.port)
        cluster.start()
        assert cluster.psql("SELECT v FROM t", "e2e_cluster_check") == "kept"
        with pytest.raises(ValueError):
            cluster.create_database("x; DROP DATABASE postgres")
    finally:
        cluster.remove()
    assert not cluster.dir.exists()
    assert not accepts_connections(cluster.port)
