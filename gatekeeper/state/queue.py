"""The job queue (RQ on the shared Redis): deterministic job ids, retries with backoff, one waiting
evaluation per pull request, and a settle window per pull request.

Two jobs exist (see `worker/jobs.py`): `evaluate` (one pull request, fresh state) and `handle` (any
other event). Every evaluation goes through the PR's waiting slot (`keys.eval_waiting`): while one
waits to start it will read the PR's state when it does, so deliveries meanwhile add none. Deliveries
also go through the PR's settle window (`keys.eval_settle`): the first after a quiet spell is evaluated
at once, and those that follow it in a burst are folded into one evaluation at the window's end (RQ's
scheduler, which `agentgate worker` runs, starts it), so a burst costs about one evaluation per window.
While no scheduler runs (`agentgate dev`, workers in burst mode) nothing is held for a window.

A delivery is accepted in ONE Redis round trip: a Lua script deduplicates it, makes the jobs (the same
writes RQ's `enqueue_job` / `schedule_job` make), writes its audit entry and counts it, atomically, so
a delivery is either recorded with its jobs or not at all (and GitHub's redelivery then processes it)."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import utcformat

from gatekeeper.forges.port import Event
from gatekeeper.state import keys
from gatekeeper.state.audit import MAX_ENTRIES as AUDIT_MAX_ENTRIES

log = logging.getLogger(__name__)

EVALUATE_JOB = "gatekeeper.worker.jobs.evaluate"
HANDLE_JOB = "gatekeeper.worker.jobs.handle"

# Backoff for transient failures (platform 5xx, Redis blips). Jobs are idempotent.
RETRY = Retry(max=5, interval=[5, 20, 60, 180, 600])
JOB_TIMEOUT = 120
RESULT_TTL = 3600
FAILURE_TTL = 7 * keys.DAY


class EnqueueFailed(Exception):
    pass


@dataclass(frozen=True)
class Accepted:
    """What became of a delivery: new (its jobs, none when every evaluation coalesced) or a duplicate
    (then `job_ids` are the jobs its first receipt made, for requeueing failed ones)."""

    duplicate: bool
    job_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    # "evaluate" (a delivery's), "reevaluate" (the worker's), "touch" (a delivery about a PR that its
    # handler judges first) or "handle"
    kind: str
    func: str
    job_id: str
    kwargs: dict[str, Any]
    description: str
    # An evaluation's slot and settle window; a `touch` job has the window only, a `handle` job neither.
    slot: str = ""
    settle: str = ""
    delay_ms: int = 0
    # When the delivery behind it was received (epoch seconds), kept in the job's meta so the worker can
    # measure delivery → status (`agentgate_job_latency_seconds`); None for the worker's own checks.
    received_at: float | None = None


# KEYS: delivery, metric counters, audit stream, queue list, queues set, scheduled registry, RQ's
#   scheduler lock; then per job its hash key, and for an evaluation its slot and settle window.
# ARGV: see JobQueue._run. Times are epoch milliseconds (the client's clock, as RQ's schedule uses).
_ACCEPT = """
local now, delivery_ttl, metric = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local job_prefix, enqueued_at, audit_max = ARGV[4], ARGV[5], ARGV[6]
local slot_ttl, quiet, window = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a = 10
local function take(n)
  local out = {}
  for i = 1, n do out[i] = ARGV[a]; a = a + 1 end
  return out
end
local function ms(n) return string.format('%.0f', n) end

if delivery_ttl > 0 then
  local seen = redis.call('GET', KEYS[1])
  if seen then return {'duplicate', seen} end
end
local audit = take(2 * tonumber(take(1)[1]))
local jobs = tonumber(take(1)[1])
local made, ids, k = {'new'}, {}, 8
-- Held while a worker runs RQ's scheduler: without one, a job scheduled for later would never start.
local scheduler = redis.call('EXISTS', KEYS[7]) == 1
for _ = 1, jobs do
  -- kind: 'evaluate' (a delivery's), 'reevaluate' (the worker's), 'touch' (a delivery about a PR that
  -- its handler judges first) or 'handle'
  local head = take(4)
  local kind, job_id, delay, fields = head[1], head[2], tonumber(head[3]), take(2 * tonumber(head[4]))
  local job_key = KEYS[k]
  k = k + 1
  local evaluation = kind == 'evaluate' or kind == 'reevaluate'
  local run_at, wanted, slot, settle, last, nxt = now, true, nil, nil, nil, nil
  if evaluation then
    slot = KEYS[k]
    k = k + 1
  end
  if evaluation or kind == 'touch' then
    settle = KEYS[k]
    k = k + 1
  end
  if slot then
    local holder = redis.call('GET', slot)
    if holder then
      local hid, hat = string.match(holder, '^(%S+) (%d+)$')
      if not hid then hid, hat = holder, ms(now) end
      local status = redis.call('HGET', job_prefix .. hid, 'status')
      -- One that has not started reads the PR as it is when it starts; one scheduled far out (a
      -- delayed re-check) must not hold back a delivery's evaluation.
      if (status == 'queued' or status == 'scheduled' or status == 'deferred') and tonumber(hat) <= now + window then
        wanted = false
      end
    end
  end
  if settle and quiet > 0 and delay == 0 then
    local state = redis.call('GET', settle)
    if state then
      local l, n = string.match(state, '^(%d+) (%d+)$')
      last, nxt = tonumber(l), tonumber(n)
    end
  end
  if evaluation and wanted then
    if delay > 0 then
      run_at = now + delay
    elseif last and now - last < quiet and nxt > now and scheduler then
      run_at = nxt  -- inside a burst: at the end of the window since the last evaluation
    end
    if run_at > now then run_at = math.ceil(run_at / 1000) * 1000 end  -- RQ schedules by the second
    if delay == 0 then nxt = run_at + window end
  end
  -- Writes in an order that leaves nothing dangling if Redis refuses one part way: the job is queued
  -- before a slot names it, and the delivery is recorded last (unrecorded, its redelivery is processed).
  if wanted then
    fields[#fields + 1] = 'status'
    if run_at > now then
      fields[#fields + 1] = 'scheduled'
      redis.call('HSET', job_key, unpack(fields))
      redis.call('ZADD', KEYS[6], ms(run_at / 1000), job_id)
    else
      fields[#fields + 1] = 'queued'
      fields[#fields + 1] = 'enqueued_at'
      fields[#fields + 1] = enqueued_at
      redis.call('HSET', job_key, unpack(fields))
      redis.call('RPUSH', KEYS[4], job_id)
    end
    redis.call('SADD', KEYS[5], KEYS[4])
    if slot then redis.call('SET', slot, job_id .. ' ' .. ms(run_at), 'EX', slot_ttl) end
    ids[#ids + 1] = job_id
    made[#made + 1] = job_id
    made[#made + 1] = ms(run_at)
  end
  -- Deliveries mark the burst as going on (`last`); the worker's own requests only follow it. `nxt`
  -- is when the PR may next be evaluated.
  if settle and quiet > 0 and delay == 0 and (kind ~= 'reevaluate' or wanted) then
    if kind ~= 'reevaluate' then last = now end
    nxt = nxt or now
    redis.call('SET', settle, ms(last or 0) .. ' ' .. ms(nxt), 'PX', ms(math.max(nxt - now, 0) + quiet + 1000))
  end
end
if #audit > 0 then redis.call('XADD', KEYS[3], 'MAXLEN', '~', audit_max, '*', unpack(audit)) end
if metric ~= '' then redis.call('HINCRBY', KEYS[2], metric, 1) end
if delivery_ttl > 0 then redis.call('SET', KEYS[1], table.concat(ids, ','), 'EX', delivery_ttl) end
return made
"""


class JobQueue:
    def __init__(self, conn: redis.Redis, name: str = "agentgate", *, is_async: bool = True,
                 settle_quiet: float = keys.SETTLE_QUIET, settle_window: float = keys.SETTLE_WINDOW,
                 clock: Callable[[], float] = time.time):
        self.queue = Queue(name, connection=conn, is_async=is_async)
        self._hashes = _JobHashes(self.queue)
        self._scheduled = ScheduledJobRegistry(queue=self.queue).key
        self._scheduler_lock = RQScheduler.get_locking_key(name)
        self._accept = conn.register_script(_ACCEPT)
        self._quiet_ms = int(settle_quiet * 1000)
        self._window_ms = int(settle_window * 1000)
        self._clock = clock  # injectable: tests move time instead of sleeping

    @property
    def conn(self) -> redis.Redis:
        return self.queue.connection

    def accept_delivery(self, platform: str, delivery: str, events: list[Event], *,
                        audit: Mapping[str, str] | None = None, metric: str = "") -> Accepted:
        """Record a verified delivery once, in one round trip: deduplicate it by its id, queue its jobs
        (through each PR's waiting slot and settle window), append its audit entry and count it under
        the metric counter field `metric`. A redelivery of a recorded one changes nothing."""
        jobs = [self._job(platform, delivery, index, event) for index, event in enumerate(events)]
        return self._run(jobs, delivery_key=keys.delivery(platform, delivery), audit=audit, metric=metric,
                         received=True)

    def enqueue_events(self, platform: str, delivery: str, events: list[Event]) -> list[str]:
        """Queue a delivery's events without recording the delivery; returns the job ids (an evaluation
        already waiting adds none)."""
        jobs = [self._job(platform, delivery, index, event) for index, event in enumerate(events)]
        return self._run(jobs).job_ids

    def enqueue_evaluation(self, platform: str, repo: str, number: int, installation: int | None, trigger: str,
                           job_id: str, *, delivery: str = "", delay_seconds: int = 0,
                           received_at: float | None = None) -> bool:
        """A re-evaluation asked for by the worker (a handler's finding, a PR sharing a head), through the
        same waiting slot as deliveries. It follows the PR's settle window while deliveries about the PR
        keep coming (a burst), and is queued at once otherwise; `delay_seconds` schedules it regardless.
        `received_at` is when the delivery that led to it was received, if one did."""
        job = _Job("reevaluate", EVALUATE_JOB, job_id,
                   evaluation_kwargs(platform, repo, number, installation, trigger, delivery),
                   f"evaluate {repo}#{number}", keys.eval_waiting(platform, repo, number),
                   keys.eval_settle(platform, repo, number), max(0, delay_seconds) * 1000, received_at)
        return bool(self._run([job]).job_ids)

    def _job(self, platform: str, delivery: str, index: int, event: Event) -> _Job:
        job_id = f"{platform}-{delivery}-{index}"
        if event.evaluates_only:
            kwargs = evaluation_kwargs(event.platform, event.repo, event.subject, event.installation,
                                       str(event.data.get("trigger") or event.kind), delivery,
                                       event.data.get("head_sha"))
            return _Job("evaluate", EVALUATE_JOB, job_id, kwargs, f"evaluate {event.repo}#{event.subject}",
                        keys.eval_waiting(platform, event.repo, event.subject),
                        keys.eval_settle(platform, event.repo, event.subject))
        # A label, a comment, a push: handled first, and its handler usually asks for an evaluation of
        # the PR; the delivery tells the PR's settle window that deliveries about it keep coming.
        about_pr = event.subject > 0 and bool(event.repo)
        return _Job("touch" if about_pr else "handle", HANDLE_JOB, job_id, {"event": event.to_dict()},
                    f"{event.kind} {event.repo}#{event.subject or ''}",
                    settle=keys.eval_settle(platform, event.repo, event.subject) if about_pr else "")

    def _run(self, jobs: list[_Job], *, delivery_key: str = "", audit: Mapping[str, str] | None = None,
             metric: str = "", received: bool = False) -> Accepted:
        now = self._clock()
        job_keys: list[str] = []
        job_args: list[Any] = []
        created_at = utcformat(datetime.fromtimestamp(now, UTC))
        for job in jobs:
            fields = self._hashes.fields(job.func, job.kwargs, job.description, created_at)
            received_at = now if received else job.received_at
            if received_at is not None:
                fields["meta"] = self.queue.serializer.dumps({"received_at": received_at})
            job_keys += [Job.redis_job_namespace_prefix + job.job_id, *filter(None, (job.slot, job.settle))]
            job_args += [job.kind, job.job_id, job.delay_ms, len(fields)]
            for name, value in fields.items():
                job_args += [name, value]
        audit_args = [v for pair in (audit or {}).items() for v in pair]
        args = [int(now * 1000), keys.DELIVERY_TTL if delivery_key else 0, metric, Job.redis_job_namespace_prefix,
                created_at, AUDIT_MAX_ENTRIES,
                keys.COALESCE_TTL, self._quiet_ms, self._window_ms,
                len(audit_args) // 2, *audit_args, len(jobs), *job_args]
        script_keys = [delivery_key or keys.METRIC_COUNTERS, keys.METRIC_COUNTERS, keys.AUDIT_STREAM, self.queue.key,
                       self.queue.redis_queues_keys, self._scheduled, self._scheduler_lock, *job_keys]
        try:
            reply = self._accept(keys=script_keys, args=args)
        except redis.ResponseError as exc:
            # Redis refused a write part way: the delivery is not recorded (that is its last write), so
            # GitHub's redelivery is processed; jobs queued before the refusal are idempotent.
            raise EnqueueFailed(str(exc)) from exc
        status = _text(reply[0])
        if status == "duplicate":
            return Accepted(True, [i for i in _text(reply[1]).split(",") if i])
        made = [_text(v) for v in reply[1::2]]
        if not self.queue.is_async:
            self._run_now([_text(v) for v, at in zip(reply[1::2], reply[2::2], strict=True) if int(at) <= now * 1000])
        return Accepted(False, made)

    def _run_now(self, job_ids: list[str]) -> None:
        """A synchronous queue (tests) runs the jobs just queued here and now, as RQ's own would."""
        for job_id in job_ids:
            self.conn.lrem(self.queue.key, 0, job_id)
            self.queue.run_sync(Job.fetch(job_id, connection=self.conn))

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


class _JobHashes:
    """A job's hash as RQ writes it (but its status and enqueue time, the script's to set). RQ's own
    `create_job` costs more than the rest of a delivery's parsing; every field but the function call, its
    description and the creation time is the same for every job of ours, so those are taken once from a
    job RQ built. Checked against RQ when a process starts: should a version of RQ build its jobs
    otherwise, every job is built by RQ."""

    _PER_JOB = frozenset({"created_at", "data", "description", "status"})

    def __init__(self, queue: Queue):
        self.queue = queue
        probe = self._rq(EVALUATE_JOB, {"repo": "o/r", "number": 1}, "probe", "probe")
        self._same = {k: v for k, v in probe.items() if k not in self._PER_JOB}
        self._fast = self._built(EVALUATE_JOB, {"repo": "o/r", "number": 1}, "probe", probe["created_at"]) == probe
        if not self._fast:
            log.warning("RQ builds jobs differently than expected: building each job with RQ")

    def fields(self, func: str, kwargs: dict[str, Any], description: str, created_at: str) -> dict[str, Any]:
        if self._fast:
            return self._built(func, kwargs, description, created_at)
        fields = self._rq(func, kwargs, description, "job")
        fields["created_at"] = created_at
        return fields

    def _built(self, func: str, kwargs: dict[str, Any], description: str, created_at: str) -> dict[str, Any]:
        # RQ's `Job.data`: the call (function name, no instance, no positional arguments, the keyword
        # arguments) serialized by the queue's serializer, then zlib-compressed by `Job.to_dict`.
        data = zlib.compress(self.queue.serializer.dumps((func, None, (), kwargs)))
        return {**self._same, "created_at": created_at, "data": data, "description": description}

    def _rq(self, func: str, kwargs: dict[str, Any], description: str, job_id: str) -> dict[str, Any]:
        job = self.queue.create_job(func, kwargs=kwargs, job_id=job_id, retry=RETRY, timeout=JOB_TIMEOUT,
                                    result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=description)
        fields = job.to_dict()
        fields.pop("status", None)
        return fields


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def evaluation_kwargs(platform: str, repo: str, number: int, installation: int | None, trigger: str,
                      delivery: str, head_sha: str | None = None) -> dict[str, Any]:
    kwargs = {"platform": platform, "repo": repo, "number": number, "installation": installation,
              "trigger": trigger, "delivery": delivery}
    if head_sha:
        kwargs["head_sha"] = head_sha
    return kwargs
