"""Faults, as real processes: `agentgate serve` and `agentgate worker` against the fake GitHub, with
the fault injected where it happens (the fake's answers, its clock, a killed process). Each test
fails if a delivery is lost or if a change is passed that was not evaluated."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from rq.job import Job
from rq.registry import FinishedJobRegistry

from tests.e2e import APP_ID, INSTALLATION, REPO, pr_payload, review_payload, running_agentgate
from tests.fakegithub import FakeState, Fault, running_fake_github
from tests.keys import app_key_pair
from tests.test_e2e_chains import comment_payload

pytestmark = pytest.mark.e2e

AGENT = "copilot-swe-agent[bot]"
WAIT = 60  # seconds any one wait for a process may take on a busy 2-core machine
# Faults resolve in seconds, not minutes: short backoff, leases and periodic intervals.
FAST = {"AGENTGATE_RETRY_INTERVALS": "1", "AGENTGATE_GITHUB_TIMEOUT": "1", "AGENTGATE_WORKER_LEASE": "3",
        "AGENTGATE_RECOVER_INTERVAL": "1", "AGENTGATE_WORKER_MAINTENANCE_INTERVAL": "2",
        "AGENTGATE_PERIODIC_JOBS": "recover"}


@pytest.fixture
def github():
    _, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    with running_fake_github(state) as fake:
        yield fake


@pytest.fixture
def gate(github, tmp_path):
    with running_agentgate(github, app_key_pair()[0], tmp_path, extra_env=FAST) as running:
        yield running


def _states(state: FakeState, sha: str) -> list[str]:
    return [c.body["state"] for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}")
            if c.status == 201]


def _no_token_logged(gate, state: FakeState) -> None:
    """No installation token the fake issued, nor the App's key, appears in any process's log."""
    logs = "".join(p.read_text() for p in gate.tmp_path.glob("*.log"))
    assert logs and not [t for t in state.tokens if t in logs] and "PRIVATE KEY" not in logs


def _human_pr(state: FakeState, number: int, head: str) -> dict:
    pr = state.add_pull(REPO, number, user="octocat", head_sha=head, base_ref="main")
    state.add_file(REPO, number, "README.md")
    return pr


@pytest.mark.parametrize("failing", ["files", "pull"])
def test_platform_5xx_is_pending_while_retrying_then_error_never_success(gate, github, failing):
    """GitHub answering 502 to every read of a PR agentgate would pass: the head is `pending` while the
    job retries with backoff and `error` once retries are spent, never `success`; also when the very
    first read (the PR itself) is what fails."""
    state, head = github.state, "5" * 40
    pr = _human_pr(state, 21, head)
    path = rf"/repos/{REPO}/pulls/21" + ("/files" if failing == "files" else "")
    state.add_fault(Fault("GET", path, status=502, message="Bad Gateway"))
    gate.worker()
    assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
    assert state.wait_until(lambda: "error" in _states(state, head), WAIT), _states(state, head)
    states = _states(state, head)
    assert states[-1] == "error" and set(states[:-1]) == {"pending"} and "success" not in states
    attempts = [c.at for c in state.calls_matching("GET", path)]
    assert len(attempts) == 6  # the first try and RQ's five retries
    # Backoff, not a hammer: RQ's scheduler runs a retry within its one-second tick of the 1 s interval.
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert min(gaps) >= 0.5 and sum(gaps) >= 4, gaps
    _no_token_logged(gate, state)


def test_timeouts_are_retried_and_the_verdict_comes_when_github_answers(gate, github):
    """GitHub not answering within the client's timeout (1 s here) twice: `pending` ("could not evaluate
    yet") meanwhile, and the real verdict once it answers again; no `success` before that."""
    state, head = github.state, "6" * 40
    pr = _human_pr(state, 22, head)
    state.add_fault(Fault("GET", rf"/repos/{REPO}/pulls/22/files", delay=2.5, times=2))
    gate.worker()
    assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
    assert state.wait_until(lambda: "success" in _states(state, head), WAIT), _states(state, head)
    assert _states(state, head) == ["pending", "pending", "success"]
    assert len(state.calls_matching("GET", rf"/repos/{REPO}/pulls/22/files")) == 3


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_reenqueues_at_the_reset_and_asks_nothing_before(gate, github, status):
    """A rate limit (403 with the limit spent, or 429 with Retry-After): the job is re-enqueued at the
    reset instead of sleeping in the worker, and GitHub sees no request between the refusal and the
    reset; the verdict follows after it."""
    state, head = github.state, "7" * 40
    pr = _human_pr(state, 23, head)
    reset = state.rate_limit(6, status=status)
    gate.worker()
    assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
    assert state.wait_until(lambda: "success" in _states(state, head), WAIT), _states(state, head)
    refused = [c for c in state.calls if c.status == status]
    during = [c for c in state.calls if c.at < reset]
    assert len(refused) == 1 and during == refused, [(c.method, c.path, c.at - reset) for c in during]
    # The worker did not wait: the refused job ended long before the reset, its successor ran after it.
    conn = redis.Redis.from_url(gate.redis_url)
    finished = [Job.fetch(i, connection=conn) for i in FinishedJobRegistry("agentgate", connection=conn).get_job_ids()]
    first = next(j for j in finished if isinstance(j.return_value(), dict) and "rescheduled" in j.return_value())
    assert first.ended_at is not None and first.ended_at.timestamp() < reset - 1


def test_worker_killed_mid_job_runs_again_elsewhere_without_a_second_comment(gate, github):
    """A worker SIGKILLed after its evaluation posted the one comment but before it learnt the comment's
    id: the job runs again on another worker (its lease lapsed; RQ alone would wait for the timeout),
    the PR lock it held is released, the PR ends with its status and still has exactly one comment."""
    state, head = github.state, "8" * 40
    state.repo(REPO).branches["main"] = "d" * 40
    state.add_pull(REPO, 7, user=AGENT, head_sha=head, head_ref="copilot/task-7", base_ref="main", title="Bump")
    state.add_file(REPO, 7, "src/widget.py")
    release = threading.Event()
    held = state.add_fault(Fault("POST", rf"/repos/{REPO}/issues/7/comments", hold=release, times=1))
    victim = gate.worker()
    bot = {"login": "helper-bot[bot]", "id": 99, "type": "Bot"}
    assert gate.deliver("issue_comment", comment_payload("/deploy production", bot)).status_code == 202
    assert held.held.wait(WAIT), victim.log()
    scheduler = victim.children()  # RQ's scheduler process: it outlives the worker, like after an OOM kill
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()
    release.set()
    try:
        gate.worker()
        assert state.wait_until(lambda: len(state.calls_matching("GET", rf"/repos/{REPO}/issues/7/comments")) > 0
                                and bool(state.repo(REPO).comments.get(7)) and len(_states(state, head)) >= 1
                                and _settled(state), WAIT), gate.workers[-1].log()[-5000:]
    finally:
        for pid in scheduler:
            _terminate(pid)
    assert len(state.repo(REPO).comments[7]) == 1  # found by its marker and edited, not posted again
    assert len(state.calls_matching("POST", rf"/repos/{REPO}/issues/7/comments")) == 1
    assert _states(state, head)[-1] == "failure"
    _no_token_logged(gate, state)


def _settled(state: FakeState) -> bool:
    """The re-run edited the comment the killed worker had posted (a PATCH after the lookup)."""
    return bool(state.calls_matching("PATCH", rf"/repos/{REPO}/issues/comments/\d+"))


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("offset", [-600, 600])
def test_app_jwt_follows_githubs_clock(gate, github, offset):
    """GitHub's clock ten minutes behind or ahead of ours: the first App JWT is refused (`iat` in its
    future, or expired), agentgate reads GitHub's time from the refusal's `Date` header and the same
    request succeeds with a JWT on GitHub's time; the PR gets its verdict."""
    state, head = github.state, "9" * 40
    state.clock_offset = offset
    pr = _human_pr(state, 24, head)
    assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
    gate.work()
    mints = state.calls_matching("POST", rf"/app/installations/{INSTALLATION}/access_tokens")
    assert [c.status for c in mints] == [401, 201]
    assert _states(state, head) == ["success"]


def test_burst_of_1000_deliveries_over_50_prs_loses_nothing(gate, github):
    """1,000 deliveries (pushes and approvals) over 50 agent PRs from 32 concurrent connections, while two
    workers run: every delivery is accepted, no job fails, and every PR's final status matches its last
    state (approved at its final head: success; pushed after the last approval: pending)."""
    state = github.state
    state.repo(REPO).branches["main"] = "d" * 40
    state.set_permission(REPO, "maintainer", "write")
    prs = {}
    for n in range(1, 51):
        prs[n] = state.add_pull(REPO, n, user=AGENT, head_sha=f"{n:04d}" + "0" * 36, head_ref=f"copilot/{n}",
                                base_ref="main")
        state.add_file(REPO, n, f"src/m{n}.py")
    answers: list[int] = []
    lock = threading.Lock()

    def one_pr(n: int) -> None:
        session, pr = requests.Session(), prs[n]
        for step in range(20):
            if step % 2 == 0:  # a push: a new head, then its delivery
                with state.lock:
                    pr["head"]["sha"] = f"{n:04d}{step:04d}" + "f" * 32
                event, payload = "pull_request", pr_payload(pr, "synchronize", sender=AGENT)
            else:
                review = state.add_review(REPO, n, "maintainer", "APPROVED", commit_id=pr["head"]["sha"])
                event, payload = "pull_request_review", review_payload(pr, review)
            if n % 2 and step == 19:  # odd PRs end with a push after the last approval
                with state.lock:
                    pr["head"]["sha"] = f"{n:04d}9999" + "e" * 32
                event, payload = "pull_request", pr_payload(pr, "synchronize", sender=AGENT)
            status = gate.deliver(event, payload, session=session).status_code
            with lock:
                answers.append(status)

    workers = [gate.worker(AGENTGATE_PERIODIC_JOBS="off"), gate.worker(AGENTGATE_PERIODIC_JOBS="off")]
    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one_pr, prs))
    sent = time.monotonic() - started
    for worker in workers:
        worker.stop()
    gate.work()  # what the two workers left: a burst drains it, and fails on any failed job
    assert len(answers) == 1000 and set(answers) == {202}, sorted(set(answers))
    wrong = {}
    for n, pr in prs.items():
        states = _states(state, pr["head"]["sha"])
        expected = "pending" if n % 2 else "success"
        if not states or states[-1] != expected:
            wrong[n] = states
    assert not wrong, wrong
    reads = len(state.calls_matching("GET", rf"/repos/{REPO}/pulls/\d+"))
    print(f"\nburst: 1000 deliveries sent in {sent:.1f} s; {reads} PR reads for 50 PRs")
