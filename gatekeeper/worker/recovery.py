"""Nothing lost, nobody hammered: what keeps agentgate's verdicts current when deliveries, workers,
Redis or GitHub's patience fail.

- **Rate limits**: when the platform says "wait" (`RateLimited`), the installation is held until the
  reset; every job for it that starts before then is re-enqueued at the reset without asking anything.
  A worker never sleeps.
- **Periodic jobs** (self-rescheduling RQ jobs, one deterministic id per run slot, so any number of
  workers starting them make one chain each):
  - `redeliver`: reads the platform's delivery log and asks once for each failed delivery agentgate
    never accepted to be delivered again (GitHub never redelivers on its own);
  - `reconcile`: re-evaluates open pull requests (of the repositories deliveries named) whose status
    is missing, not agentgate's, could not be evaluated, or older than the PR's last change; bounded per
    run and stopping early when the platform's request budget runs low;
  - `recover`: a job whose worker died (SIGKILL, OOM, a lost machine: its lease lapsed) runs again on
    another worker at once, and the pull request lock it held is released. RQ alone would wait for
    the job's timeout and its ten-minute maintenance, and fail the job if it had no retries left.

Every key is in `state/keys.py`; the queue's waiting slot per PR is `state/queue.py`'s."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from gatekeeper.forges.port import EVALUATE, DeliveryLogs, ForgeError, PullActivity, RateLimited
from gatekeeper.settings import Settings
from gatekeeper.state import keys, metrics
from gatekeeper.state.queue import EVALUATE_JOB
from gatekeeper.state.store import text
from gatekeeper.tokens.revoke import cipher_for, sweep
from gatekeeper.worker.runtime import Runtime, current

log = logging.getLogger(__name__)

PERIODIC_JOB = "gatekeeper.worker.recovery.periodic"
PERIODIC_PREFIX = "agentgate-periodic-"
MAX_RATE_LIMIT_RESCHEDULES = 20  # then the job fails (fail closed: `error`, never a stale verdict)
MAX_ORPHANED_RUNS = 3  # a job that kills its worker every time is left to RQ to fail
MAX_DELIVERY_PAGES = 10  # 1,000 delivery attempts per redeliver run
MAX_ASKS_PER_DELIVERY = 3  # redeliveries asked for one delivery, each for a different failed attempt
DELIVERY_LOG_OVERLAP = 600  # seconds re-read behind the newest attempt seen: attempts are logged late
DELIVERY_LOG_DAYS = 3  # GitHub redelivers deliveries of the past three days
BUDGET_RESERVE = 0.2  # reconcile stops when less than this share of the request budget is left
UNEVALUATED = "Could not evaluate"  # how `actions.post_unevaluated` starts its description

_delivery_logs: DeliveryLogs | None = None


def configure(delivery_logs: DeliveryLogs | None) -> None:
    """The platforms' delivery logs, handed over by whoever starts the worker (like `runtime.configure`)."""
    global _delivery_logs
    _delivery_logs = delivery_logs


# ---- rate limits: hold the installation, re-enqueue at the reset


def limited_until(conn: redis.Redis, platform: str, installation: int | None) -> float | None:
    """When the platform lets this installation ask again, if it asked us to wait."""
    raw = conn.get(keys.rate_limited(platform, installation))
    until = float(text(raw)) if raw is not None else 0.0
    return until if until > time.time() else None


def hold(conn: redis.Redis, platform: str, installation: int | None, seconds: float) -> float:
    """Remember that the platform asked this installation to wait; returns when the wait ends."""
    seconds = min(max(1.0, seconds), keys.RATE_LIMIT_MAX_WAIT)
    until = time.time() + seconds
    current_until = limited_until(conn, platform, installation) or 0.0
    if until > current_until:
        conn.set(keys.rate_limited(platform, installation), f"{until:.3f}", ex=int(seconds) + 2)
    return max(until, current_until)


def reschedule(rt: Runtime, job: Job, at: float, why: str) -> dict[str, Any]:
    """Run `job` again (as a new job with the same arguments) at `at`, without counting it as a failure."""
    count = int(job.meta.get("rate_limited", 0)) + 1
    if count > MAX_RATE_LIMIT_RESCHEDULES:
        raise RateLimited(f"still rate limited after {count - 1} waits: {why}", at - time.time())
    base = str(job.meta.get("first_id") or job.id)
    new_id = f"{base[:150]}-rl{count}"
    retries = job.retries_left or 0
    rt.queue.queue.enqueue_at(
        datetime.fromtimestamp(at, UTC), job.func_name, kwargs=job.kwargs, job_id=new_id,
        retry=Retry(max=retries, interval=job.retry_intervals or 0) if retries > 0 else None,
        job_timeout=job.timeout, result_ttl=job.result_ttl, failure_ttl=job.failure_ttl, description=job.description,
        meta={**job.meta, "rate_limited": count, "first_id": base})
    if job.func_name == EVALUATE_JOB:
        # Deliveries about this PR until then coalesce into the rescheduled evaluation.
        kw = job.kwargs
        slot = keys.eval_waiting(kw["platform"], kw["repo"], kw["number"])
        holder = rt.conn.get(slot)
        if holder is None or text(holder) == job.id:
            rt.conn.set(slot, new_id, ex=max(keys.COALESCE_TTL, int(at - time.time()) + keys.COALESCE_TTL))
    log.warning("job %s waits for the platform's rate limit: again as %s in %.0f s", job.id, new_id, at - time.time())
    return {"rescheduled": new_id, "at": at, "why": why}


def tune_retries(job: Job | None, settings: Settings) -> None:
    """Operators (and tests) may shorten the backoff between retries; the job carries the queue's own."""
    if job is not None and settings.retry_intervals:
        job.retry_intervals = list(settings.retry_intervals)


# ---- which repositories agentgate knows (what reconcile covers)


def remember_repo(conn: redis.Redis, platform: str, installation: int | None, repo: str) -> None:
    if installation is not None and repo:
        conn.zadd(keys.known_repos(platform), {f"{int(installation)} {repo}": time.time()})


def known_repos(conn: redis.Redis, platform: str) -> list[tuple[int, str]]:
    """Most recently active first; those no delivery named for a while are forgotten."""
    name = keys.known_repos(platform)
    conn.zremrangebyscore(name, 0, time.time() - keys.KNOWN_REPO_TTL)
    found = []
    for member in conn.zrevrange(name, 0, -1):
        installation, _, repo = _member(member).partition(" ")
        found.append((int(installation), repo))
    return found


# ---- periodic jobs


def _interval(settings: Settings, name: str) -> int:
    return int(getattr(settings, f"{name}_interval"))


def start_periodic(rt: Runtime) -> list[str]:
    """Make sure each periodic job has its next run scheduled; returns the ids it scheduled now."""
    return [job_id for name in rt.settings.periodic_jobs if (job_id := _schedule_next(rt, name)) is not None]


def _schedule_next(rt: Runtime, name: str) -> str | None:
    interval = _interval(rt.settings, name)
    slot = int(time.time() // interval) + 1
    job_id = f"{PERIODIC_PREFIX}{name}-{slot}"
    # The id is the run slot's: every worker computes the same one, so the chain is never doubled.
    if Job.exists(job_id, connection=rt.conn):
        return None
    rt.queue.queue.enqueue_at(datetime.fromtimestamp(slot * interval, UTC), PERIODIC_JOB,
                              kwargs={"name": name}, job_id=job_id, job_timeout=max(60, interval),
                              result_ttl=2 * interval, failure_ttl=keys.DAY, description=f"periodic {name}")
    return job_id


def periodic(*, name: str) -> dict[str, Any]:
    """One run of a periodic job; the next run is scheduled whatever this one met."""
    rt = current()
    try:
        return TASKS[name](rt)
    finally:
        metrics.flush(rt.conn)  # the platform calls it made, counted now rather than at the next job
        start_periodic(rt)  # this chain's next run, and any other chain that was lost


# ---- redeliver: the platform's delivery log


def redeliver(rt: Runtime) -> dict[str, Any]:
    asked: list[str] = []
    for platform in ("github",):
        delivery_log = _delivery_logs(platform) if _delivery_logs is not None else None
        if delivery_log is None:
            continue
        conn = rt.conn
        scanned = conn.get(keys.deliveries_scanned(platform))
        floor = datetime.now(UTC) - timedelta(days=DELIVERY_LOG_DAYS)
        if scanned is not None:
            floor = max(floor, _when(text(scanned)) - timedelta(seconds=DELIVERY_LOG_OVERLAP))
        try:
            attempts = delivery_log.recent(floor.strftime("%Y-%m-%dT%H:%M:%SZ"), MAX_DELIVERY_PAGES)
        except ForgeError as exc:
            log.warning("could not read the %s delivery log: %s", platform, exc)
            continue
        by_guid: dict[str, list[Any]] = {}
        for attempt in attempts:  # newest first
            by_guid.setdefault(attempt.guid, []).append(attempt)
        for guid, tries in by_guid.items():
            if any(t.ok for t in tries) or _accepted(conn, platform, guid):
                continue  # delivered, or the receiver queued it although the platform saw a failure
            newest = tries[0]
            remembered = keys.redelivery_asked(platform, guid)
            if conn.sismember(remembered, str(newest.id)):
                continue  # this failed attempt was found (and asked for again) before
            metrics.incr(conn, metrics.FAILED_DELIVERIES, platform)
            if conn.scard(remembered) >= MAX_ASKS_PER_DELIVERY:
                continue  # a few times per delivery at most
            try:
                delivery_log.redeliver(newest.id)
            except ForgeError as exc:
                log.warning("could not ask for delivery %s again: %s", guid, exc)
                if isinstance(exc, RateLimited):
                    break
                continue
            conn.sadd(remembered, str(newest.id))
            conn.expire(remembered, keys.REDELIVERY_TTL)
            asked.append(guid)
            log.info("asked %s to deliver %s (%s) again: it answered %s", platform, guid, newest.event,
                     newest.status_code or newest.status)
        if attempts:
            conn.set(keys.deliveries_scanned(platform), max(a.delivered_at for a in attempts), ex=keys.REDELIVERY_TTL)
    return {"redelivered": asked}


def _accepted(conn: redis.Redis, platform: str, guid: str) -> bool:
    """Whether the receiver queued this delivery. It marks a delivery seen before queueing it and writes
    the job ids after: a mark still empty means Redis failed in between (the answer was 503), and would
    make the redelivery look like a duplicate, so it is cleared for the redelivery to be taken."""
    seen = conn.get(keys.delivery(platform, guid))
    if seen is None:
        return False
    if text(seen):
        return True
    conn.delete(keys.delivery(platform, guid))
    return False


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---- reconcile: open pull requests whose verdict is missing or out of date


def reconcile(rt: Runtime, platform: str = "github") -> dict[str, Any]:
    settings, conn = rt.settings, rt.conn
    reads, evaluations = settings.reconcile_max_prs, settings.reconcile_max_evaluations
    queued: list[str] = []
    for installation, repo in known_repos(conn, platform):
        if reads <= 0 or evaluations <= 0:
            break
        if limited_until(conn, platform, installation):
            continue
        try:
            forge = rt.forges(platform, installation, repo, EVALUATE)
            pulls = forge.list_open_pull_activity(min(reads, 100))
            reads -= 1
            for pull in pulls:
                if reads <= 0 or evaluations <= 0 or _budget_low(forge.rate_budget()):
                    break
                marker = keys.reconciled(platform, repo, pull.number)
                seen = text(conn.get(marker) or b"")
                if seen == _marker(pull, "ok"):
                    continue  # nothing changed since it was found judged
                status = forge.latest_status(pull.head_sha, settings.status_context)
                reads -= 1
                why = _why_stale(pull, status, asked_before=seen == _marker(pull, "asked"))
                if why is None:
                    conn.set(marker, _marker(pull, "ok"), ex=keys.RECONCILED_TTL)
                    continue
                job_id = f"reconcile-{platform}-{_digest(repo)}-{pull.number}-{int(time.time())}"
                if rt.queue.enqueue_evaluation(platform, repo, pull.number, installation, f"reconcile.{why}", job_id):
                    queued.append(f"{repo}#{pull.number}")
                evaluations -= 1
                conn.set(marker, _marker(pull, "asked"), ex=keys.RECONCILED_TTL)
        except RateLimited as exc:
            hold(conn, platform, installation, exc.retry_after)
        except ForgeError as exc:
            log.warning("reconcile skipped %s: %s", repo, exc)
    if queued:
        log.warning("reconcile re-evaluates %d pull request(s): %s", len(queued), ", ".join(queued))
    return {"queued": queued}


def _marker(pull: PullActivity, phase: str) -> str:
    return f"{pull.head_sha} {pull.updated_at} {phase}"


def _why_stale(pull: PullActivity, status: Any, asked_before: bool) -> str | None:
    """Why this PR needs a fresh evaluation, None when its status stands. Fail closed: a status that is
    not agentgate's, or says it could not evaluate, is no verdict."""
    if status is None:
        return "missing"
    if not status.own:
        return "foreign"
    if status.description.startswith(UNEVALUATED):
        return "unevaluated"
    if asked_before:
        return None  # re-evaluated since this change: an unchanged verdict is not posted again
    if status.created_at and pull.updated_at and _when(status.created_at) < _when(pull.updated_at):
        return "outdated"
    return None


def _budget_low(budget: tuple[int, int] | None) -> bool:
    """Background work leaves the last part of the platform's request budget to evaluations."""
    return budget is not None and budget[0] < budget[1] * BUDGET_RESERVE


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


# ---- recover: jobs whose worker died


class Lease:
    """While the block runs, a thread of this process tells the store every `seconds / 3` that the
    worker `name` is alive. SIGKILL stops the thread with the process: the lease lapses within `seconds`
    and `recover` runs the worker's job elsewhere. (RQ's own worker key lives as long as a job may run.)"""

    def __init__(self, conn: redis.Redis, name: str, seconds: int):
        self.conn, self.name, self.seconds = conn, name, max(1, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{name}", daemon=True)

    def _renew(self) -> None:
        try:
            self.conn.set(keys.worker_alive(self.name), "1", ex=self.seconds)
        except redis.RedisError:
            pass  # Redis is away: so are the worker's jobs; the lease is renewed once it answers

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            self._renew()

    def __enter__(self) -> Lease:
        self.conn.set(keys.worker_leased(self.name), "1", ex=keys.WORKER_LEASED_TTL)
        self._renew()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.conn.delete(keys.worker_alive(self.name))
        except redis.RedisError:
            pass  # it lapses by itself


def recover(rt: Runtime) -> dict[str, Any]:
    conn, queue = rt.conn, rt.queue.queue
    registry = StartedJobRegistry(queue=queue)
    running = [job for job in Job.fetch_many(registry.get_job_ids(cleanup=False), connection=conn)
               if job is not None and job.get_status(refresh=False) == JobStatus.STARTED]
    alive: dict[str, bool] = {}

    def live(job: Job) -> bool:
        """Dead only when it held leases and its lease lapsed; anything else is left to RQ."""
        name = job.worker_name or ""
        if name not in alive:
            alive[name] = not name or not conn.exists(keys.worker_leased(name)) or bool(
                conn.exists(keys.worker_alive(name)))
        return alive[name]

    me = _current_job_id()
    requeued = []
    for job in running:
        if job.id == me or live(job) or int(job.meta.get("orphaned", 0)) >= MAX_ORPHANED_RUNS:
            continue
        _release_pr_lock(conn, job, [j for j in running if j is not job and live(j)])
        job.meta["orphaned"] = int(job.meta.get("orphaned", 0)) + 1
        job.save_meta()
        # The dead worker's entries only: queued first, so a crash in between leaves the job queued (and
        # RQ drops a registry entry whose job is no longer started), never neither.
        entries = [e for e in map(_member, conn.zrange(registry.key, 0, -1)) if e.startswith(f"{job.id}:")]
        queue.enqueue_job(job, at_front=True)
        if entries:
            conn.zrem(registry.key, *entries)
        conn.lrem(queue.intermediate_queue_key, 0, job.id)
        requeued.append(job.id)
        log.warning("job %s lost its worker %s mid-run: queued again", job.id, job.worker_name)
    return {"requeued": requeued}


def _release_pr_lock(conn: redis.Redis, job: Job, others: list[Job]) -> None:
    """The dead job's pull request lock would hold every evaluation of that PR off for minutes. It is
    the dead job's when no live job of the same PR runs and it cannot have lapsed since."""
    if job.func_name != EVALUATE_JOB:
        return
    kw = job.kwargs
    pr = (kw.get("platform"), kw.get("repo"), kw.get("number"))
    if any(o.func_name == EVALUATE_JOB and (o.kwargs.get("platform"), o.kwargs.get("repo"), o.kwargs.get("number"))
           == pr for o in others):
        return
    started = job.started_at
    if started is None:
        return
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    if time.time() - started.timestamp() > keys.LOCK_TTL:
        return  # the lock lapsed by itself; whoever holds it now is alive
    conn.delete(keys.pr_lock(str(pr[0]), str(pr[1]), int(pr[2] or 0)))


def _member(raw: object) -> str:
    """A sorted-set member as text (redis-py types zrange's items loosely)."""
    return text(raw) if isinstance(raw, bytes | str) else str(raw)


def _current_job_id() -> str | None:
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else None


def expire(rt: Runtime) -> dict[str, Any]:
    """Revoke agent tokens whose ttl passed (the platform's own expiry can be later: GitHub's is an hour,
    GitLab's a date), and retry revocations that failed."""
    return sweep(rt.conn, rt.token_issuers(), cipher_for(rt.settings))


def rotate(rt: Runtime) -> dict[str, Any]:
    """Rotate agentgate's own standing credentials when due (GitLab's token, AGENTGATE_GITLAB_ROTATE_DAYS)."""
    return rt.rotate_credentials() if rt.rotate_credentials is not None else {"rotated": False}


TASKS: dict[str, Callable[[Runtime], dict[str, Any]]] = {"redeliver": redeliver, "reconcile": reconcile,
                                                         "recover": recover, "expire": expire, "rotate": rotate}
