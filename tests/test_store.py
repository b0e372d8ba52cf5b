"""Connecting to the shared store: plain Redis URLs and Sentinel-backed ones (for failover in production)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from gatekeeper.state import store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sentinel(tmp_path):
    """A real Redis Sentinel (redis-server --sentinel) watching the test Redis as `agentgate-test`."""
    binary = shutil.which("redis-server") or shutil.which("redis-sentinel")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor agentgate-test 127.0.0.1 6379 1\n")
    proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # waiting for a process to listen, bounded
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sentinel_url_reaches_the_primary(sentinel, redis_conn):
    """`redis+sentinel://host:port/service/db` asks Sentinel for the primary and uses that database."""
    conn = store.connect(f"redis+sentinel://127.0.0.1:{sentinel}/agentgate-test/13")
    conn.set("agentgate:test:sentinel", "via-sentinel")
    assert redis_conn.get("agentgate:test:sentinel") == b"via-sentinel"


def test_sentinel_url_without_service_is_refused():
    """A Sentinel URL must name the monitored service."""
    with pytest.raises(ValueError, match="names the service"):
        store.connect("redis+sentinel://127.0.0.1:26379")


def test_plain_url_and_embedded():
    """A plain URL is redis-py's; no URL is the embedded store (dev), shared within the process."""
    assert store.connect("redis://127.0.0.1:6379/13").ping()
    first, second = store.connect(None), store.connect(None)
    first.set("k", "v")
    assert second.get("k") == b"v"
