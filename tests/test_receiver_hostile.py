"""Hostile clients against a real `agentgate serve` (its web processes, a real Redis): slow senders must
not stall the receiver, and unauthenticated requests must leave no trace in Redis or /metrics."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from gatekeeper.web.app import BODY_SECONDS
from tests.conftest import SECRET, github_fixture, sign
from tests.e2e import E2E_REDIS_URL, agentgate_bin, free_port, wait_ready

pytestmark = pytest.mark.e2e


@dataclass
class Server:
    url: str
    port: int
    conn: redis.Redis


@contextmanager
def serving(tmp_path: Path) -> Iterator[Server]:
    """`agentgate serve` with 2 web processes on the E2E Redis (flushed before and after)."""
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    conn.flushdb()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")} | {
        "AGENTGATE_REDIS_URL": E2E_REDIS_URL, "AGENTGATE_GITHUB_WEBHOOK_SECRET": SECRET,
        "AGENTGATE_GITLAB_WEBHOOK_SECRET": "gitlab-secret", "AGENTGATE_WEB_WORKERS": "2"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([agentgate_bin(), "serve", "--port", str(port)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log_path)
        yield Server(url, port, conn)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        conn.flushdb()


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    with serving(tmp_path) as running:
        yield running


def signed_delivery(server: Server) -> requests.Response:
    payload = github_fixture("pull_request.opened.1") | {"installation": {"id": 42}}
    body = json.dumps(payload).encode()
    return requests.post(f"{server.url}/webhooks/github", data=body, timeout=10, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})


def test_slow_senders_do_not_stall_the_receiver(server):
    """48 unauthenticated connections (more than every thread a threaded server had) announce a 1 MB
    body and trickle it; a signed delivery sent meanwhile is answered at once, and the server closes
    each slow one when its body deadline passes."""
    slow = []
    for _ in range(48):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-GitHub-Event: pull_request\r\nContent-Length: 1000000\r\n\r\n{")
        slow.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.25):  # the attack's own pace: a byte per connection, four times a second
            for sock in slow:
                try:
                    sock.send(b" ")
                except OSError:
                    pass  # closed by the server, as it should

    attacker = threading.Thread(target=trickle, daemon=True)
    attacker.start()
    try:
        started = time.monotonic()
        resp = signed_delivery(server)
        answered = time.monotonic() - started
        assert resp.status_code == 202 and resp.json()["result"] == "queued"
        assert answered < 2.0, f"a signed delivery waited {answered:.1f} s behind slow senders"
        for sock in slow:
            sock.settimeout(BODY_SECONDS + 5)
            try:
                first = sock.recv(64)
            except ConnectionResetError:
                first = b""  # closed while the attacker was still sending: as good
            assert first == b"" or first.startswith(b"HTTP/1.1 408"), first
        assert time.monotonic() - started < BODY_SECONDS + 5
    finally:
        stop.set()
        attacker.join()
        for sock in slow:
            sock.close()


def _footprint(server: Server) -> tuple[dict[str, int], set[str]]:
    """Every key in the server's Redis database with its memory, and every series /metrics shows."""
    sizes = {key.decode(): int(server.conn.memory_usage(key) or 0) for key in server.conn.scan_iter(count=1000)}
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    series = {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    return sizes, series


def test_unauthenticated_requests_leave_no_trace(server):
    """2,000 forged requests (bad or missing signatures and tokens, random event names, delivery ids,
    bodies and headers) add no key to Redis, grow none beyond its counters' digits, and add no
    series to /metrics: nothing a sender chooses is stored before its signature is verified."""
    rng = random.Random(8)  # noqa: S311 - varied input, not secrets
    session = requests.Session()
    github, gitlab = f"{server.url}/webhooks/github", f"{server.url}/webhooks/gitlab"

    def forged(n: int) -> requests.Response:
        body = json.dumps({"action": uuid.uuid4().hex, "n": n, "pad": "x" * rng.randrange(2000)}).encode()
        if n % 5 == 4:
            return session.post(gitlab, data=body, timeout=10, headers={
                "X-Gitlab-Event": uuid.uuid4().hex, "X-Gitlab-Token": uuid.uuid4().hex})
        headers = {"X-GitHub-Event": rng.choice([uuid.uuid4().hex, "pull_request", "Push Hook", "x" * 300]),
                   "X-GitHub-Delivery": rng.choice([str(uuid.uuid4()), "a b:c", "z" * 300]),
                   f"X-Custom-{uuid.uuid4().hex[:8]}": uuid.uuid4().hex}
        if n % 3:
            headers["X-Hub-Signature-256"] = rng.choice(
                ["sha256=" + uuid.uuid4().hex * 2, sign(body, "not-the-secret"), "sha1=" + uuid.uuid4().hex])
        return session.post(github, data=body, timeout=10, headers=headers)

    for n in range(10):  # every kind once, so the fixed counters exist before the footprint is taken
        assert forged(n).status_code == 401
    keys_before, series_before = _footprint(server)
    for n in range(2000):
        assert forged(n).status_code == 401
    keys_after, series_after = _footprint(server)
    assert set(keys_after) == set(keys_before)
    assert sum(keys_after.values()) - sum(keys_before.values()) <= 64  # counters gain digits, nothing else
    assert series_after == series_before
    assert {s for s in series_after if s.startswith("agentgate_webhooks_total")} == {
        'agentgate_webhooks_total{event="-",platform="github",result="bad-signature"}',
        'agentgate_webhooks_total{event="-",platform="gitlab",result="bad-token"}'}
