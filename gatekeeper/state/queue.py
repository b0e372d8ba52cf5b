"""The job queue (RQ on the shared Redis): deterministic job ids, retries with backoff."""

from __future__ import annotations

import logging

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from gatekeeper.forges.github.webhooks import EVALUATE_PR, JobRequest
from gatekeeper.state.store import key, text

log = logging.getLogger(__name__)

# Backoff for transient failures (platform 5xx, rate limits, Redis blips). Jobs are idempotent.
RETRY = Retry(max=5, interval=[5, 20, 60, 180, 600])
JOB_TIMEOUT = 120
# An evaluation waiting in the queue will read the PR's state when it starts, so a burst of deliveries
# about one PR (labels, comments, check suites, a push) needs just that one. Bounded in case it is lost.
COALESCE_SECONDS = 600


def waiting_key(platform: str, repo: str, number: int) -> str:
    return key("eval-waiting", platform, repo, number)


class EnqueueFailed(Exception):
    pass


class JobQueue:
    def __init__(self, conn: redis.Redis, name: str = "agentgate", *, is_async: bool = True):
        self.queue = Queue(name, connection=conn, is_async=is_async)

    def enqueue_all(self, platform: str, delivery: str, jobs: list[JobRequest]) -> list[str]:
        ids: list[str] = []
        claimed: list[str] = []
        try:
            for index, job in enumerate(jobs):
                job_id = f"{platform}-{delivery}-{job.name or index}"
                if job.func == EVALUATE_PR:
                    slot = waiting_key(platform, str(job.kwargs.get("repo")), int(job.kwargs.get("number") or 0))
                    if not self._claim(slot, job_id):
                        continue  # an evaluation of this PR is already waiting to start
                    claimed.append(slot)
                self.queue.enqueue(
                    job.func,
                    kwargs={**job.kwargs, "delivery_id": delivery},
                    job_id=job_id,
                    retry=RETRY,
                    job_timeout=JOB_TIMEOUT,
                    result_ttl=3600,
                    failure_ttl=7 * 24 * 3600,
                    description=job.description,
                )
                ids.append(job_id)
        except Exception as exc:
            self._release(claimed)  # or the redelivery would be coalesced into a job that never was
            raise EnqueueFailed(str(exc)) from exc
        return ids

    def _claim(self, slot: str, job_id: str) -> bool:
        """Take the PR's waiting slot, or find it held by a job that is really still waiting."""
        conn = self.queue.connection
        if conn.set(slot, job_id, nx=True, ex=COALESCE_SECONDS):
            return True
        holder = conn.get(slot)
        try:
            waiting = holder is not None and Job.fetch(text(holder), connection=conn).get_status() in (
                JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
        except NoSuchJobError:
            waiting = False
        if waiting:
            return False
        # The holder was lost (a failover, a crash between slot and job): this delivery takes over.
        conn.set(slot, job_id, ex=COALESCE_SECONDS)
        return True

    def _release(self, slots: list[str]) -> None:
        try:
            if slots:
                self.queue.connection.delete(*slots)
        except Exception:  # noqa: BLE001 - best effort; they expire after COALESCE_SECONDS
            log.warning("could not release %d evaluation slot(s)", len(slots))

    def requeue_failed(self, job_ids: list[str]) -> list[str]:
        """Put jobs that failed for good back on the queue; returns the ids requeued."""
        requeued = []
        for job_id in filter(None, job_ids):
            try:
                job = Job.fetch(job_id, connection=self.queue.connection)
            except NoSuchJobError:
                continue
            if job.get_status() == JobStatus.FAILED:
                job.requeue()
                requeued.append(job_id)
        return requeued
