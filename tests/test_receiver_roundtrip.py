"""An accepted delivery is one Redis round trip (deduplicate, queue, audit, count), and the jobs that
round trip writes are the jobs RQ itself would write."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import Job

from gatekeeper.state import audit, metrics
from gatekeeper.state.queue import EVALUATE_JOB, FAILURE_TTL, JOB_TIMEOUT, RESULT_TTL, RETRY, JobQueue
from gatekeeper.web import create_app
from tests.conftest import github_fixture
from tests.test_receiver import post


class Counting:
    """Counts the requests a Redis client sends (a pipeline would count once: it is one round trip)."""

    def __init__(self, conn, monkeypatch):
        self.commands: list[str] = []
        original = conn.execute_command

        def execute_command(*args, **options):
            self.commands.append(str(args[0]))
            return original(*args, **options)

        monkeypatch.setattr(conn, "execute_command", execute_command)


def _pr(number: int) -> dict:
    payload = github_fixture("pull_request.opened.1") | {"installation": {"id": 42}, "number": number}
    payload["pull_request"] = payload["pull_request"] | {"number": number}
    return payload


def test_an_accepted_delivery_is_one_redis_round_trip(settings, redis_conn, monkeypatch):
    """Verify, deduplicate, queue the evaluation, write the audit entry and count the delivery: one
    request to Redis (the first one of a process also loads the script)."""
    client = create_app(settings, redis_conn).test_client()
    assert post(client, _pr(1), delivery="warm-up").status_code == 202
    counting = Counting(redis_conn, monkeypatch)
    resp = post(client, _pr(2), delivery="counted")
    assert resp.status_code == 202 and resp.json["jobs"] == ["github-counted-0"]
    assert counting.commands == ["EVALSHA"]
    [entry] = [e for e in audit.query(redis_conn) if e.delivery == "counted"]
    assert entry.event == "pull_request" and entry.target == "#2"
    counter = metrics.field("agentgate_webhooks", "github", "pull_request", "queued")
    assert redis_conn.hget("agentgate:metrics:counters", counter) == b"2"


def test_an_ignored_delivery_is_one_round_trip_too(settings, redis_conn, monkeypatch):
    """A delivery agentgate does not act on is still recorded (once) and counted in one request."""
    client = create_app(settings, redis_conn).test_client()
    assert post(client, _pr(1), delivery="warm-up").status_code == 202
    counting = Counting(redis_conn, monkeypatch)
    resp = post(client, {"action": "created", "repository": {"full_name": "a/b"}}, event="star", delivery="s1")
    assert resp.status_code == 202 and resp.json["result"] == "ignored"
    assert counting.commands == ["EVALSHA"]


def _hash(redis_conn, job_id: str) -> dict[bytes, bytes]:
    fields = redis_conn.hgetall(f"rq:job:{job_id}")
    return {k: v for k, v in fields.items() if k not in (b"created_at", b"enqueued_at")}


@pytest.mark.parametrize("scheduled", [False, True])
def test_jobs_are_written_as_rq_writes_them(redis_conn, scheduled):
    """The script writes a job's hash, queue entry or schedule and the queue registration exactly as
    RQ's `enqueue` / `enqueue_at` do (times aside), so RQ's workers and scheduler take it as their own."""
    from datetime import UTC, datetime

    now = 1_800_000_000.0
    ours = JobQueue(redis_conn, "agentgate", clock=lambda: now)
    delay = 300 if scheduled else 0
    assert ours.enqueue_evaluation("github", "o/r", 7, 42, "scheduled", "job-1", delivery="d", delay_seconds=delay)
    written = _hash(redis_conn, "job-1")
    where = (redis_conn.zrange("rq:scheduled:agentgate", 0, -1, withscores=True) if scheduled
             else redis_conn.lrange("rq:queue:agentgate", 0, -1))
    registered = redis_conn.smembers("rq:queues")
    redis_conn.flushdb()

    rq_queue = Queue("agentgate", connection=redis_conn)
    kwargs = {"platform": "github", "repo": "o/r", "number": 7, "installation": 42, "trigger": "scheduled",
              "delivery": "d"}
    options = {"job_id": "job-1", "retry": RETRY, "job_timeout": JOB_TIMEOUT, "result_ttl": RESULT_TTL,
               "failure_ttl": FAILURE_TTL, "description": "evaluate o/r#7"}
    if scheduled:
        rq_queue.enqueue_at(datetime.fromtimestamp(now + delay, UTC), EVALUATE_JOB, kwargs=kwargs, **options)
    else:
        rq_queue.enqueue(EVALUATE_JOB, kwargs=kwargs, **options)
    assert written == _hash(redis_conn, "job-1")
    assert where == (redis_conn.zrange("rq:scheduled:agentgate", 0, -1, withscores=True) if scheduled
                     else redis_conn.lrange("rq:queue:agentgate", 0, -1))
    assert registered == redis_conn.smembers("rq:queues")
    job = Job.fetch("job-1", connection=redis_conn)
    assert job.kwargs == kwargs and job.retries_left == 5


def test_a_duplicate_says_which_jobs_its_first_receipt_made(settings, redis_conn):
    """A redelivery changes nothing and is answered from what the first receipt recorded."""
    client = create_app(settings, redis_conn).test_client()
    assert post(client, _pr(3), delivery="twice").json["jobs"] == ["github-twice-0"]
    entries = len(list(audit.query(redis_conn)))
    again = post(client, _pr(3), delivery="twice")
    assert again.status_code == 200 and again.json == {"result": "duplicate"}
    assert len(list(audit.query(redis_conn))) == entries
    assert redis_conn.get("agentgate:delivery:github:twice") == b"github-twice-0"
