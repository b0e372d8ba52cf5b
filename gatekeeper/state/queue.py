"""The job queue (RQ on the shared Redis): deterministic job ids, retries with backoff, and one waiting
evaluation per pull request.

Two jobs exist (see `worker/jobs.py`): `evaluate` (one pull request, fresh state) and `handle` (any
other event). Every evaluation, whether a delivery or a handler asks for it, goes through the PR's
waiting slot: while one waits in the queue it will read the PR's state when it starts, so a burst of
deliveries about one PR needs just that one."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from gatekeeper.forges.port import Event
from gatekeeper.state import keys
from gatekeeper.state.store import text

log = logging.getLogger(__name__)

EVALUATE_JOB = "gatekeeper.worker.jobs.evaluate"
HANDLE_JOB = "gatekeeper.worker.jobs.handle"

# Backoff for transient failures (platform 5xx, Redis blips). Jobs are idempotent.
RETRY = Retry(max=5, interval=[5, 20, 60, 180, 600])
JOB_TIMEOUT = 120


class EnqueueFailed(Exception):
    pass


class JobQueue:
    def __init__(self, conn: redis.Redis, name: str = "agentgate", *, is_async: bool = True):
        self.queue = Queue(name, connection=conn, is_async=is_async)

    @property
    def conn(self) -> redis.Redis:
        return self.queue.connection

    def enqueue_events(self, platform: str, delivery: str, events: list[Event]) -> list[str]:
        """Queue a delivery's events; returns the job ids (an evaluation already waiting adds none)."""
        ids: list[str] = []
        claimed: list[str] = []
        try:
            for index, event in enumerate(events):
                job_id = f"{platform}-{delivery}-{index}"
                if event.evaluates_only:
                    slot = keys.eval_waiting(platform, event.repo, event.subject)
                    if not self._claim(slot, job_id):
                        continue  # an evaluation of this PR is already waiting to start
                    claimed.append(slot)
                    kwargs = evaluation_kwargs(event.platform, event.repo, event.subject, event.installation,
                                               str(event.data.get("trigger") or event.kind), delivery,
                                               event.data.get("head_sha"))
                    self._enqueue(EVALUATE_JOB, job_id, kwargs, f"evaluate {event.repo}#{event.subject}")
                else:
                    self._enqueue(HANDLE_JOB, job_id, {"event": event.to_dict()},
                                  f"{event.kind} {event.repo}#{event.subject or ''}")
                ids.append(job_id)
        except Exception as exc:
            self._release(claimed)  # or the redelivery would be coalesced into a job that never was
            raise EnqueueFailed(str(exc)) from exc
        return ids

    def enqueue_evaluation(self, platform: str, repo: str, number: int, installation: int | None, trigger: str,
                           job_id: str, *, delivery: str = "", delay_seconds: int = 0) -> bool:
        """A re-evaluation asked for by the worker, through the same waiting slot as deliveries."""
        slot = keys.eval_waiting(platform, repo, number)
        if not self._claim(slot, job_id):
            return False
        try:
            kwargs = evaluation_kwargs(platform, repo, number, installation, trigger, delivery)
            self._enqueue(EVALUATE_JOB, job_id, kwargs, f"evaluate {repo}#{number}", delay_seconds)
        except Exception:
            self._release([slot])
            raise
        return True

    def _enqueue(self, func: str, job_id: str, kwargs: dict[str, Any], description: str,
                 delay_seconds: int = 0) -> None:
        options: dict[str, Any] = {"job_id": job_id, "retry": RETRY, "job_timeout": JOB_TIMEOUT, "result_ttl": 3600,
                                   "failure_ttl": 7 * keys.DAY, "description": description}
        if delay_seconds > 0:
            self.queue.enqueue_in(timedelta(seconds=delay_seconds), func, kwargs=kwargs, **options)
        else:
            self.queue.enqueue(func, kwargs=kwargs, **options)

    def _claim(self, slot: str, job_id: str) -> bool:
        """Take the PR's waiting slot, or find it held by a job that is really still waiting."""
        conn = self.conn
        if conn.set(slot, job_id, nx=True, ex=keys.COALESCE_TTL):
            return True
        holder = conn.get(slot)
        try:
            waiting = holder is not None and Job.fetch(text(holder), connection=conn).get_status() in (
                JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
        except NoSuchJobError:
            waiting = False
        if waiting:
            return False
        # The holder was lost (a failover, a crash between slot and job): this request takes over.
        conn.set(slot, job_id, ex=keys.COALESCE_TTL)
        return True

    def _release(self, slots: list[str]) -> None:
        try:
            if slots:
                self.conn.delete(*slots)
        except Exception:  # noqa: BLE001 - best effort; they expire after COALESCE_TTL
            log.warning("could not release %d evaluation slot(s)", len(slots))

    def requeue_failed(self, job_ids: list[str]) -> list[str]:
        """Put jobs that failed for good back on the queue; returns the ids requeued."""
        requeued = []
        for job_id in filter(None, job_ids):
            try:
                job = Job.fetch(job_id, connection=self.conn)
            except NoSuchJobError:
                continue
            if job.get_status() == JobStatus.FAILED:
                job.requeue()
                requeued.append(job_id)
        return requeued


def evaluation_kwargs(platform: str, repo: str, number: int, installation: int | None, trigger: str,
                      delivery: str, head_sha: str | None = None) -> dict[str, Any]:
    kwargs = {"platform": platform, "repo": repo, "number": number, "installation": installation,
              "trigger": trigger, "delivery": delivery}
    if head_sha:
        kwargs["head_sha"] = head_sha
    return kwargs
