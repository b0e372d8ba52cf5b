"""The settle window: a burst of deliveries about one pull request makes few evaluations, while the
first delivery after a quiet spell is still evaluated at once. Real Redis, RQ's own registries; time is
injected (the queue's clock), never slept; a "fast worker" starts every due job as soon as it can."""

from __future__ import annotations

import copy

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from gatekeeper.forges.github.webhooks import parse
from gatekeeper.state import keys
from gatekeeper.state.queue import JobQueue
from tests.conftest import github_fixture

REPO, NUMBER = "Codertocat/Hello-World", 2
T0 = 1_800_000_000.0  # a whole second, so the window's end falls on one too


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FastWorker:
    """Does what RQ's scheduler and a worker do, at the injected time: moves due scheduled jobs to the
    queue, then starts every queued job. An evaluation deletes its PR's waiting slot as it starts (see
    worker/jobs.py); a handled label or comment asks for a re-evaluation of its PR, as the handlers do
    (worker/jobs.apply). Records when each evaluation started."""

    def __init__(self, conn, clock: Clock, queue: JobQueue | None = None):
        self.conn, self.clock, self.jobs = conn, clock, queue
        self.queue = Queue("agentgate", connection=conn)
        self.scheduled = ScheduledJobRegistry(queue=self.queue)
        self.started: list[float] = []

    def run(self) -> None:
        for job_id in self.scheduled.get_jobs_to_schedule(int(self.clock.now)):
            self.queue.enqueue_job(Job.fetch(job_id, connection=self.conn))
            self.scheduled.remove(job_id)
        while (job_id := self.conn.lpop(self.queue.key)) is not None:
            job = Job.fetch(job_id.decode(), connection=self.conn)
            if job.func_name.endswith(".handle"):
                event = job.kwargs["event"]
                assert self.jobs is not None
                self.jobs.enqueue_evaluation("github", event["repo"], event["subject"], 42, event["kind"],
                                             f"{job.id}-eval-{event['subject']}", delivery=event["delivery"])
                continue
            self.conn.delete(keys.eval_waiting("github", job.kwargs["repo"], job.kwargs["number"]))
            self.started.append(self.clock.now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(redis_conn, clock) -> JobQueue:
    # What a running `agentgate worker` holds: RQ's scheduler lock for the queue.
    redis_conn.set(RQScheduler.get_locking_key("agentgate"), "a-worker", ex=60)
    return JobQueue(redis_conn, "agentgate", clock=clock)


def deliver(queue: JobQueue, delivery: str, action: str = "edited") -> list[str]:
    payload = copy.deepcopy(github_fixture("pull_request.opened.1")) | {"installation": {"id": 42}}
    payload["action"] = action
    events = parse("pull_request", payload, delivery)
    assert [e.kind for e in events] == ["evaluate"]
    accepted = queue.accept_delivery("github", delivery, events)
    assert not accepted.duplicate
    return accepted.job_ids


def scheduled_at(redis_conn) -> dict[str, float]:
    return {i.decode(): s for i, s in redis_conn.zrange("rq:scheduled:agentgate", 0, -1, withscores=True)}


def test_a_burst_of_twenty_deliveries_over_three_seconds_makes_at_most_three_evaluations(queue, clock, redis_conn):
    """20 deliveries about one PR spread over 3 s, with a worker that starts each job at once: at most
    3 evaluations, the first at once, and one starting after the last delivery (it sees the final state)."""
    worker = FastWorker(redis_conn, clock)
    created: list[str] = []
    for n in range(20):
        clock.now = T0 + n * 0.15
        worker.run()
        created += deliver(queue, f"burst-{n}")
        worker.run()
    last_delivery = clock.now
    while scheduled_at(redis_conn):  # let the windows run out
        clock.now += 0.25
        worker.run()
    assert worker.started[0] == T0  # the first delivery is evaluated at once
    assert len(worker.started) == len(created) <= 3
    assert worker.started[-1] >= last_delivery


def test_a_delivery_after_a_quiet_spell_is_evaluated_at_once(queue, clock, redis_conn):
    """Deliveries further apart than the quiet spell (an approving review after the push it approves)
    are each evaluated at once, however close to the previous evaluation: never held for a window."""
    worker = FastWorker(redis_conn, clock)
    for n in range(4):
        clock.now = T0 + n * (keys.SETTLE_QUIET + 0.1)
        assert deliver(queue, f"quiet-{n}") == [f"github-quiet-{n}-0"]
        worker.run()
    assert worker.started == [T0 + n * (keys.SETTLE_QUIET + 0.1) for n in range(4)]
    assert scheduled_at(redis_conn) == {}


def test_the_trailing_evaluation_is_scheduled_at_the_end_of_the_window(queue, clock, redis_conn):
    """Once the first evaluation started, the next delivery of the burst is one evaluation scheduled at
    the window's end (whole seconds, as RQ schedules); the deliveries after it add nothing."""
    worker = FastWorker(redis_conn, clock)
    deliver(queue, "first")
    worker.run()
    clock.now += 0.1
    assert deliver(queue, "second") == ["github-second-0"]
    assert scheduled_at(redis_conn) == {"github-second-0": T0 + keys.SETTLE_WINDOW}
    clock.now += 0.1
    assert deliver(queue, "third") == []
    worker.run()
    assert worker.started == [T0]  # the trailing one is not due yet


def test_a_burst_folds_into_a_waiting_evaluation_without_a_window(queue, clock, redis_conn):
    """While an evaluation waits in the queue (a busy worker), the burst adds nothing: the waiting one
    reads the PR when it starts."""
    assert deliver(queue, "a") == ["github-a-0"]
    for n in range(5):
        clock.now += 0.1
        assert deliver(queue, f"more-{n}") == []
    assert len(Queue("agentgate", connection=redis_conn).get_job_ids()) == 1
    assert scheduled_at(redis_conn) == {}


def test_a_far_delayed_recheck_does_not_hold_back_a_delivery(queue, clock, redis_conn):
    """A re-check the worker scheduled minutes out (a policy preview's) holds the PR's slot; a delivery
    meanwhile is still evaluated at once, and the re-check stays scheduled."""
    assert queue.enqueue_evaluation("github", REPO, NUMBER, 42, "scheduled", "preview-2", delay_seconds=301)
    clock.now += 1
    assert deliver(queue, "review") == ["github-review-0"]
    assert Queue("agentgate", connection=redis_conn).get_job_ids() == ["github-review-0"]
    assert list(scheduled_at(redis_conn)) == ["preview-2"]


def test_the_workers_reevaluations_follow_the_window_only_while_deliveries_keep_coming(queue, clock, redis_conn):
    """A re-evaluation a handler asks for (after a label, a comment, a push) joins the window while
    deliveries about the PR keep coming, and is queued at once when they have stopped: the deliveries a
    test sends before a worker starts never leave it a scheduled job."""
    worker = FastWorker(redis_conn, clock)
    deliver(queue, "first")
    worker.run()
    clock.now += 0.1
    assert queue.enqueue_evaluation("github", REPO, NUMBER, 42, "issue_comment.created", "in-burst")
    assert list(scheduled_at(redis_conn)) == ["in-burst"]
    clock.now += keys.SETTLE_WINDOW + 1
    worker.run()
    clock.now += keys.SETTLE_QUIET
    assert queue.enqueue_evaluation("github", REPO, NUMBER, 42, "issue_comment.created", "after")
    assert Queue("agentgate", connection=redis_conn).get_job_ids() == ["after"]


def label(queue: JobQueue, delivery: str) -> list[str]:
    payload = copy.deepcopy(github_fixture("pull_request.labeled.1")) | {"installation": {"id": 42}}
    events = parse("pull_request", payload, delivery)
    assert [(e.kind, e.subject) for e in events] == [("label", NUMBER)]
    return queue.accept_delivery("github", delivery, events).job_ids


def test_a_burst_of_labels_pushes_and_reviews_makes_at_most_three_evaluations(queue, clock, redis_conn):
    """Most of a burst is labels, comments and pushes, each handled first and then asking for an
    evaluation. 20 deliveries over 3 s, three in four of them labels, still make at most 3 evaluations,
    the last after the last delivery."""
    worker = FastWorker(redis_conn, clock, queue)
    for n in range(20):
        clock.now = T0 + n * 0.15
        worker.run()
        if n % 4 == 0:
            deliver(queue, f"review-{n}")
        else:
            label(queue, f"label-{n}")
        worker.run()
    last = clock.now
    while scheduled_at(redis_conn):
        clock.now += 0.25
        worker.run()
    assert worker.started[0] == T0
    assert len(worker.started) <= 3 and worker.started[-1] >= last


def test_handled_deliveries_then_a_worker_later_leave_nothing_scheduled(queue, clock, redis_conn):
    """What the end-to-end tests do: a few deliveries, then a worker that starts a second or more
    later. Every re-evaluation its handlers ask for is queued at once, none is left scheduled."""
    worker = FastWorker(redis_conn, clock, queue)
    deliver(queue, "review")
    label(queue, "label-1")
    label(queue, "label-2")
    clock.now += 1.2  # `agentgate worker --burst` takes at least this long to start
    worker.run()
    assert scheduled_at(redis_conn) == {}
    assert len(worker.started) == 2  # the review's, then the one the labels asked for


def test_without_a_scheduler_nothing_waits_for_a_window(queue, clock, redis_conn):
    """With no worker running RQ's scheduler (`agentgate dev`, workers in burst mode) a job scheduled
    for later would never start: the burst's next evaluation is queued at once instead."""
    redis_conn.delete(RQScheduler.get_locking_key("agentgate"))
    worker = FastWorker(redis_conn, clock, queue)
    deliver(queue, "first")
    worker.run()
    clock.now += 0.1
    assert deliver(queue, "second") == ["github-second-0"]
    assert scheduled_at(redis_conn) == {}
    assert Queue("agentgate", connection=redis_conn).get_job_ids() == ["github-second-0"]


def test_settle_state_expires(queue, clock, redis_conn):
    """The window's state is kept only while a burst can last: nothing stays behind in Redis."""
    deliver(queue, "only")
    ttl = redis_conn.pttl(keys.eval_settle("github", REPO, NUMBER))
    assert 0 < ttl <= (keys.SETTLE_WINDOW + keys.SETTLE_QUIET) * 1000 + 1000
