"""Nothing lost: the delivery log is used to recover failed deliveries, open PRs are reconciled, the
periodic jobs form one chain each, and every delivery the receiver answered 2xx is acted on across a
Redis crash (AOF, `appendfsync always`). Unit tests use a real Redis and the in-memory forge; the
end-to-end ones real processes against the fake GitHub."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis
import requests
from rq.registry import ScheduledJobRegistry

from gatekeeper.core.facts import User
from gatekeeper.forges.github.auth import InstallationTokens, app_jwt
from gatekeeper.forges.github.deliveries import GitHubDeliveryLog
from gatekeeper.forges.port import Delivery
from gatekeeper.state import keys
from gatekeeper.state.queue import JobQueue
from gatekeeper.worker import recovery
from gatekeeper.worker.runtime import Runtime
from tests.e2e import APP_ID, INSTALLATION, REPO, free_port, pr_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.fakegithub.state import iso
from tests.keys import app_key_pair
from tests.memoryforge import MemoryForge

AGENT = User("copilot-swe-agent[bot]", bot=True)
WAIT = 90


# ---- redeliver


@dataclass
class LogStub:
    """A delivery log: attempts newest first, and the redeliveries asked of it."""

    attempts: list[Delivery] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)

    def recent(self, since: str, max_pages: int) -> list[Delivery]:
        return sorted(self.attempts, key=lambda d: -d.id)

    def redeliver(self, attempt_id: int) -> None:
        self.asked.append(attempt_id)


def _attempt(id: int, guid: str, ok: bool) -> Delivery:
    return Delivery(id, guid, iso(time.time()), ok, False, "pull_request", "OK" if ok else "Invalid HTTP Response: 503",
                    200 if ok else 503)


@pytest.fixture
def rt(settings, redis_conn):
    forge = MemoryForge(platform="github")
    runtime = Runtime(replace(settings, reconcile_max_evaluations=2), redis_conn, lambda *a: forge,
                      JobQueue(redis_conn))
    runtime.forge = forge  # type: ignore[attr-defined]  # the tests' handle on the one forge
    yield runtime
    recovery.configure(None)


def test_each_failed_delivery_is_asked_for_once(rt, redis_conn):
    """Only deliveries that never succeeded and that the receiver never accepted are asked for again;
    never the same failed attempt twice, and a new failed attempt of one (its redelivery failed too)
    at most a few times in all."""
    stub = LogStub([_attempt(1, "lost", False), _attempt(2, "retried", False), _attempt(3, "retried", True),
                    _attempt(4, "accepted", False), _attempt(5, "twice", False), _attempt(6, "twice", False),
                    _attempt(10, "half", False)])
    redis_conn.set(keys.delivery("github", "accepted"), "job-1")  # GitHub timed out, but we had queued it
    redis_conn.set(keys.delivery("github", "half"), "")  # marked seen, then Redis failed before queueing
    recovery.configure(lambda platform: stub)
    assert recovery.redeliver(rt) == {"redelivered": ["half", "twice", "lost"]}
    assert stub.asked == [10, 6, 1]  # the newest failed attempt of each
    assert not redis_conn.exists(keys.delivery("github", "half"))  # or the redelivery would be a "duplicate"
    assert recovery.redeliver(rt) == {"redelivered": []}
    stub.attempts.append(_attempt(7, "lost", False))  # the redelivery failed as well
    recovery.redeliver(rt)
    stub.attempts.append(_attempt(8, "lost", False))
    recovery.redeliver(rt)
    stub.attempts.append(_attempt(9, "lost", False))
    recovery.redeliver(rt)
    assert stub.asked == [10, 6, 1, 7, 8]  # three asks for "lost", then it is left alone


# ---- the delivery log against the fake GitHub


@pytest.fixture
def hook_github():
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public, hook_log=True, hook_secret="s")
    state.add_installation(INSTALLATION, "acme", [REPO])
    with running_fake_github(state) as fake:
        yield fake, private


# GitHub's OpenAPI description (apps/list-webhook-deliveries, "Simple webhook delivery"): required fields.
DELIVERY_FIELDS = {"id", "guid", "delivered_at", "redelivery", "duration", "status", "status_code", "event", "action",
                   "installation_id", "repository_id"}


def test_hook_delivery_routes_follow_githubs_contract(hook_github):
    """`GET /app/hook/deliveries` (App JWT only) lists attempts newest first with every required field,
    pages by an opaque cursor in the Link header and filters by status; `POST .../attempts` answers
    202 and delivers again as a new attempt of the same guid."""
    fake, private = hook_github
    for n in range(3):
        fake.state.send_webhook("pull_request", {"action": "opened", "number": n})  # no URL: "failed to connect"
    auth = {"Authorization": f"Bearer {app_jwt(str(APP_ID), private)}"}
    assert requests.get(f"{fake.url}/app/hook/deliveries", timeout=5).status_code == 401
    first = requests.get(f"{fake.url}/app/hook/deliveries?per_page=2", headers=auth, timeout=5)
    assert first.status_code == 200 and all(DELIVERY_FIELDS <= set(d) for d in first.json())
    ids = [d["id"] for d in first.json()]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    rest = requests.get(first.links["next"]["url"], headers=auth, timeout=5)
    assert [d["id"] for d in rest.json()] == [ids[-1] - 1] and "next" not in rest.links
    assert requests.get(f"{fake.url}/app/hook/deliveries?status=success", headers=auth, timeout=5).json() == []
    fake.state.hook_url = "http://127.0.0.1:9/"  # nothing listens: the redelivery fails as well
    again = requests.post(f"{fake.url}/app/hook/deliveries/{ids[0]}/attempts", headers=auth, timeout=5)
    assert again.status_code == 202
    assert fake.state.wait_until(lambda: len(fake.state.hook_deliveries) == 4, 10)
    assert fake.state.hook_deliveries[-1]["redelivery"] is True
    assert fake.state.hook_deliveries[-1]["guid"] == fake.state.hook_deliveries[2]["guid"]


def test_delivery_log_client_follows_the_cursor_and_stops_at_since(hook_github, redis_conn):
    """The client reads pages by following GitHub's `rel="next"` link, and stops at the first page that
    reaches back past `since`."""
    fake, private = hook_github
    for n in range(5):
        fake.state.send_webhook("issues", {"action": "opened", "number": n})
    tokens = InstallationTokens(redis_conn, app_id=str(APP_ID), private_key=private, api_url=fake.url)
    found = GitHubDeliveryLog(tokens, per_page=2).recent(iso(time.time() - 60), max_pages=10)
    assert [d.id for d in found] == sorted((d["id"] for d in fake.state.hook_deliveries), reverse=True)
    assert all(not d.ok and d.status == "failed to connect" for d in found)
    assert len(fake.state.calls_matching("GET", "/app/hook/deliveries")) == 3
    fake.state.calls.clear()
    assert GitHubDeliveryLog(tokens, per_page=2).recent(iso(time.time() + 3600), max_pages=10) == []
    assert len(fake.state.calls_matching("GET", "/app/hook/deliveries")) == 1


# ---- reconcile


def test_reconcile_rejudges_missing_foreign_and_outdated_statuses_once(rt, redis_conn):
    """Open PRs with no status, an outdated one (the PR changed after it) or one that says it could not
    evaluate are re-evaluated; a fresh verdict is left alone; one change is re-judged once, and a run
    queues at most `reconcile_max_evaluations`."""
    forge = rt.forge
    for number, head in ((1, "a" * 40), (2, "b" * 40), (3, "c" * 40), (4, "d" * 40)):
        forge.add_pull(number, AGENT, head, ["x.py"])
    forge.updated = {1: "2026-01-01T10:00:00Z", 2: "2026-01-01T10:00:00Z", 3: "2026-01-01T10:05:00Z",
                     4: "2026-01-01T10:00:00Z"}
    forge.statuses += [("b" * 40, "pending", "Needs 1 more approval"), ("c" * 40, "pending", "Needs 1 more approval"),
                       ("d" * 40, "error", "Could not evaluate yet, retrying: GitHub answered 502")]
    forge.status_times = {"b" * 40: "2026-01-01T10:01:00Z", "c" * 40: "2026-01-01T10:01:00Z",
                          "d" * 40: "2026-01-01T10:00:30Z"}
    recovery.remember_repo(redis_conn, "github", 42, forge.repo)
    first = recovery.reconcile(rt)["queued"]
    assert first == [f"{forge.repo}#1", f"{forge.repo}#3"]  # the budget of two evaluations
    for number in (1, 3):
        redis_conn.delete(keys.eval_waiting("github", forge.repo, number))  # as if they ran
    forge.statuses.append(("a" * 40, "pending", "Needs 1 more approval"))
    forge.status_times["a" * 40] = "2026-01-01T10:02:00Z"
    assert recovery.reconcile(rt)["queued"] == [f"{forge.repo}#4"]  # 1 judged now, 3 re-judged: left alone
    assert recovery.reconcile(rt)["queued"] == []  # #4's evaluation still waits in the queue: not doubled
    redis_conn.delete(keys.eval_waiting("github", forge.repo, 4))  # it ran, and still could not evaluate
    assert recovery.reconcile(rt)["queued"] == [f"{forge.repo}#4"]
    forge.statuses.append(("d" * 40, "pending", "Needs 1 more approval"))
    assert recovery.reconcile(rt)["queued"] == []


def test_reconcile_leaves_the_budget_to_evaluations(rt, redis_conn):
    """With less than a fifth of the platform's request budget left, reconcile asks nothing more."""
    forge = rt.forge
    forge.add_pull(1, AGENT, "a" * 40, ["x.py"])
    forge.rate_budget = lambda: (100, 5000)  # type: ignore[method-assign]
    recovery.remember_repo(redis_conn, "github", 42, forge.repo)
    assert recovery.reconcile(rt)["queued"] == []


def test_rate_limit_hold_keeps_the_latest_reset(redis_conn):
    """A hold is per installation and keeps the later of two resets."""
    until = recovery.hold(redis_conn, "github", 42, 30)
    recovery.hold(redis_conn, "github", 42, 5)
    assert recovery.limited_until(redis_conn, "github", 42) == pytest.approx(until, abs=0.01)
    assert recovery.limited_until(redis_conn, "github", 43) is None


# ---- periodic jobs


def test_periodic_jobs_form_one_chain_each(rt, redis_conn):
    """Starting the periodic jobs from any number of workers schedules each once per run slot."""
    first, second = recovery.start_periodic(rt), recovery.start_periodic(rt)
    assert len(first) == len(rt.settings.periodic_jobs) and second == []
    assert set(ScheduledJobRegistry("agentgate", connection=redis_conn).get_job_ids()) == set(first)


# ---- end to end: a lost delivery, and a Redis crash


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of our own with AOF fsynced on every write, that the test can crash and restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port, data = free_port(), tmp_path / "redis"
    data.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--appendonly", "yes",
               "--appendfsync", "always", "--save", "", "--protected-mode", "no"]
    server = RedisProcess(command, port)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class RedisProcess:
    def __init__(self, command: list[str], port: int):
        self.command, self.port = command, port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20  # waiting for it to listen (and load its AOF), bounded
        while time.monotonic() < deadline:
            try:
                if conn.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        """A crash, not a shutdown: nothing is written on the way out; only what AOF already has survives."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


RECOVERY_ENV = {"AGENTGATE_PERIODIC_JOBS": "redeliver,recover", "AGENTGATE_REDELIVER_INTERVAL": "2",
                "AGENTGATE_RECOVER_INTERVAL": "1", "AGENTGATE_RECONCILE_INTERVAL": "2", "AGENTGATE_WORKER_LEASE": "3",
                "AGENTGATE_WORKER_MAINTENANCE_INTERVAL": "2", "AGENTGATE_RETRY_INTERVALS": "1"}


def _status(state: FakeState, sha: str) -> str | None:
    posts = [c.body["state"] for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}") if c.status == 201]
    return posts[-1] if posts else None


@pytest.mark.e2e
def test_a_redis_crash_under_load_loses_no_delivery(hook_github, redis_server, tmp_path):
    """40 deliveries sent by GitHub (the fake) from 4 connections while Redis is crashed (SIGKILL) and
    restarted with AOF: the receiver answers 503 while Redis is down, web and worker reconnect by
    themselves, every delivery answered 2xx is acted on, and each one answered 503 is asked for again
    exactly once through the delivery log and acted on too (reconcile is off: the log alone must do
    it): every PR ends with its verdict."""
    fake, private = hook_github
    state = fake.state
    heads = {}
    for n in range(1, 41):
        heads[n] = f"{n:04d}" + "a" * 36
        state.add_pull(REPO, n, user="octocat", head_sha=heads[n], base_ref="main")
        state.add_file(REPO, n, "README.md")
    with running_agentgate(fake, private, tmp_path, redis_url=redis_server.url, extra_env=RECOVERY_ENV) as gate:
        gate.worker()
        crash, back = threading.Event(), threading.Event()
        sent: list[int] = []

        def send(numbers: list[int]) -> None:
            for n in numbers:
                if len(sent) == 12:
                    crash.set()
                if len(sent) == 24:
                    back.set()
                gate.send("pull_request", pr_payload(state.repo(REPO).pulls[n]))
                sent.append(n)

        threads = [threading.Thread(target=send, args=(list(range(k, 41, 4)),)) for k in range(1, 5)]
        for t in threads:
            t.start()
        assert crash.wait(WAIT)
        redis_server.kill()
        assert back.wait(WAIT)
        redis_server.start()
        for t in threads:
            t.join(WAIT)
        log = state.hook_deliveries
        failed = {d["guid"] for d in log if not d["redelivery"] and d["status_code"] != 202}
        assert failed and all(d["status_code"] in (202, 503) for d in log if not d["redelivery"])
        done = state.wait_until(lambda: all(_status(state, h) == "success" for h in heads.values()), WAIT)
        missing = [n for n, h in heads.items() if _status(state, h) != "success"]
        assert done, f"no verdict for {missing}; worker log:\n{gate.workers[0].log()[-3000:]}"
        redelivered = [d["guid"] for d in state.hook_deliveries if d["redelivery"]]
        # A 503 answered after the jobs were written (Redis died before the receiver's last write) was
        # queued all the same: it is acted on from the AOF and is not asked for again.
        conn = redis.Redis.from_url(redis_server.url)
        unasked = failed - set(redelivered)
        assert all(conn.get(keys.delivery("github", g)) for g in unasked), unasked
    asks = state.calls_matching("POST", r"/app/hook/deliveries/\d+/attempts")
    assert len(redelivered) == len(set(redelivered)) == len(asks) and set(redelivered) <= failed


@pytest.mark.e2e
def test_reconcile_rejudges_a_pr_whose_delivery_was_lost(hook_github, tmp_path):
    """An approval whose delivery never arrived: the reconcile job sees the PR changed after its status
    and re-evaluates it, so the old `pending` does not stand."""
    fake, private = hook_github
    state = fake.state
    state.set_permission(REPO, "maintainer", "write")
    pr = state.add_pull(REPO, 5, user=AGENT.login, head_sha="5" * 40, base_ref="main")
    state.add_file(REPO, 5, "src/x.py")
    with running_agentgate(fake, private, tmp_path, extra_env=RECOVERY_ENV | {"AGENTGATE_PERIODIC_JOBS": "reconcile"}
                           ) as gate:
        assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
        gate.work()
        assert _status(state, "5" * 40) == "pending"
        state.add_review(REPO, 5, "maintainer", "APPROVED")  # ...and its delivery is lost
        pr["updated_at"] = iso(state.now() + 2)
        gate.worker()
        assert state.wait_until(lambda: _status(state, "5" * 40) == "success", WAIT), gate.workers[0].log()[-3000:]


def test_docs_name_the_redis_settings():
    """The operator's page names the Redis settings the no-loss guarantee rests on."""
    text = (Path(__file__).parents[1] / "docs" / "redis-and-recovery.md").read_text()
    for setting in ("appendonly yes", "appendfsync always", "maxmemory-policy noeviction"):
        assert setting in text
