"""Harness for end-to-end tests: `agentgate serve` and `agentgate worker` as real processes, a fake
GitHub REST server (tests/fakegithub) and a real Redis."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from tests.conftest import SECRET, github_fixture, sign
from tests.fakegithub import FakeGitHub

E2E_REDIS_URL = os.environ.get("AGENTGATE_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")
APP_ID = 4242
INSTALLATION = 42
REPO = "acme/widgets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agentgate_bin() -> str:
    found = shutil.which("agentgate", path=str(Path(sys.executable).parent))
    return found or "agentgate"


PERIODIC_PREFIX = "agentgate-periodic-"  # gatekeeper.worker.recovery's periodic jobs


@dataclass
class Worker:
    """A long-running `agentgate worker` process (with RQ's scheduler, leases and periodic jobs)."""

    process: subprocess.Popen[str]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        """Processes it forked (RQ's scheduler), read from /proc: they outlive a SIGKILL of the worker."""
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: the current job finishes), bounded; SIGKILL if it hangs."""
        if self.process.poll() is None:
            forked = self.children()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in forked:  # its scheduler would outlive it
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@dataclass
class Agentgate:
    url: str
    env: dict[str, str]
    fake: FakeGitHub
    tmp_path: Path | None = None
    workers: list[Worker] = field(default_factory=list)
    redis_url: str = E2E_REDIS_URL

    def worker(self, **env: str) -> Worker:
        """Start `agentgate worker` (not burst) with extra settings; stopped when the gate stops."""
        log_dir = self.tmp_path or Path("/tmp")
        log_path = log_dir / f"worker-{len(self.workers)}-{uuid.uuid4().hex[:6]}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen([agentgate_bin(), "worker"], env=self.env | env, stdout=log,
                                       stderr=subprocess.STDOUT, text=True)
        worker = Worker(process, log_path)
        self.workers.append(worker)
        return worker

    def send(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver the way GitHub does: the fake sends it and logs the attempt in its delivery log."""
        return self.fake.state.send_webhook(event, payload)

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None,
                session: requests.Session | None = None) -> requests.Response:
        body = json.dumps(payload).encode()
        return (session or requests).post(f"{self.url}/webhooks/github", data=body, timeout=10, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})

    def work(self, allow_scheduled: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a worker until the queue is empty (RQ burst mode): no sleeping, no polling. Jobs left
        failed (or scheduled for a retry) fail the test, unless scheduling was expected."""
        done = subprocess.run([agentgate_bin(), "worker", "--burst"], env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        conn = redis.Redis.from_url(self.redis_url)
        failed = FailedJobRegistry("agentgate", connection=conn)
        scheduled = ScheduledJobRegistry("agentgate", connection=conn)
        waiting = [] if allow_scheduled else [j for j in scheduled.get_job_ids() if not j.startswith(PERIODIC_PREFIX)]
        problems = [Job.fetch(job_id, connection=conn) for job_id in failed.get_job_ids() + waiting]
        assert not problems, f"jobs failed: {[job.id for job in problems]}\n{done.stderr[-4000:]}"
        return done

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        return [c.body for c in self.fake.state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}$")]


@contextmanager
def running_agentgate(fake: FakeGitHub, private_key_pem: str, tmp_path: Path, *, app_credentials: bool = True,
                      fresh_redis: bool = True, redis_url: str = E2E_REDIS_URL,
                      extra_env: dict[str, str] | None = None) -> Iterator[Agentgate]:
    """`agentgate serve` against the fake. `app_credentials=False` starts it without the App id and
    key (a web process that was given only the webhook secret); `fresh_redis=False` shares whatever
    another running agentgate keeps in the E2E Redis instead of flushing it on start and stop. The
    fake's webhook points at it (`Agentgate.send`); workers started with `Agentgate.worker` stop with it."""
    conn = redis.Redis.from_url(redis_url)
    if fresh_redis:
        conn.flushdb()
    key_file = tmp_path / "app.pem"
    key_file.write_text(private_key_pem)
    port = free_port()
    credentials = {
        "AGENTGATE_GITHUB_APP_ID": str(APP_ID),
        "AGENTGATE_GITHUB_PRIVATE_KEY_PATH": str(key_file),
    } if app_credentials else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")} | credentials | {
        "AGENTGATE_REDIS_URL": redis_url,
        "AGENTGATE_GITHUB_WEBHOOK_SECRET": f"old-secret,{SECRET}",
        "AGENTGATE_GITHUB_API_URL": fake.url,
        "AGENTGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AGENTGATE_WEB_WORKERS": "2",
    } | (extra_env or {})
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([agentgate_bin(), "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    gate = Agentgate(url, env, fake, tmp_path, redis_url=redis_url)
    fake.state.hook_url, fake.state.hook_secret = f"{url}/webhooks/github", SECRET
    try:
        wait_ready(url, server, log_path)
        yield gate
    finally:
        for worker in gate.workers:
            worker.stop()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        if fresh_redis:
            conn.flushdb()


def wait_ready(url: str, server: subprocess.Popen[Any], log_path: Path) -> None:
    # Waiting for a process to start listening is the one wait here; it is bounded and checks the
    # process has not died, so a broken server fails fast with its own error output.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"agentgate serve exited: {log_path.read_text()}")
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still booting (a busy machine) answered too slowly
        time.sleep(0.05)
    raise AssertionError("agentgate serve did not become ready in 30 s")


def redis_entries(conn: redis.Redis, match: str | None = None) -> Iterator[tuple[bytes, list[bytes]]]:
    """Every key of `conn` (or those matching `match`) with every value it holds, whatever its type:
    what a scan for secrets in clear must read."""
    for name in conn.scan_iter(match=match):
        kind = conn.type(name)
        values: list[bytes] = []
        if kind == b"string":
            values.append(conn.get(name) or b"")
        elif kind == b"hash":
            values += [b for pair in conn.hgetall(name).items() for b in pair]
        elif kind == b"set":
            values += list(conn.smembers(name))
        elif kind == b"zset":
            values += [m for m, _ in conn.zrange(name, 0, -1, withscores=True)]
        elif kind == b"list":
            values += list(conn.lrange(name, 0, -1))
        elif kind == b"stream":
            values += [v for _, fields in conn.xrange(name) for pair in fields.items() for v in pair]
        yield name, values


def redis_dump(conn: redis.Redis) -> bytes:
    """Every key and value in `conn`'s database as one blob, to assert no secret appears in it."""
    return b"\n".join(b for name, values in redis_entries(conn) for b in (name, *values))


def pr_payload(pr: dict[str, Any], action: str = "opened", sender: str | None = None) -> dict[str, Any]:
    """GitHub's example pull_request payload, pointed at the fake's repository and pull request."""
    payload = copy.deepcopy(github_fixture("pull_request.opened.1"))
    payload["action"] = action
    payload["number"] = pr["number"]
    payload["pull_request"].update(number=pr["number"], user=pr["user"], title=pr["title"])
    payload["pull_request"]["head"].update(sha=pr["head"]["sha"], ref=pr["head"]["ref"])
    payload["pull_request"]["base"].update(sha=pr["base"]["sha"], ref=pr["base"]["ref"])
    payload["repository"].update(full_name=REPO, name=REPO.split("/")[1], default_branch="main")
    payload["installation"] = {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI="}
    payload["sender"] = {"login": sender or pr["user"]["login"], "type": "User", "id": 1}
    return payload


def review_payload(pr: dict[str, Any], review: dict[str, Any], action: str = "submitted") -> dict[str, Any]:
    payload = copy.deepcopy(github_fixture("pull_request_review.submitted.1"))
    base = pr_payload(pr)
    payload.update(action=action, pull_request=base["pull_request"], repository=base["repository"],
                   installation=base["installation"], sender=review["user"])
    payload["review"].update(id=review["id"], user=review["user"], state=review["state"].lower(),
                             commit_id=review["commit_id"])
    return payload
