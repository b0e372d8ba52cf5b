"""Prometheus metrics kept in the shared store, so one scrape of any web process sees every process.

Counters live in one hash (`keys.METRIC_COUNTERS`), histograms in another (`keys.METRIC_HISTOGRAMS`,
one field per bucket, not cumulative: the scrape adds them up, so the buckets it shows are always
consistent with each other and with the count), gauges a process sets in a third (`keys.METRIC_GAUGES`).
Queue depth, the oldest job's age and the active agent tokens are read when scraped.

Every label value is one agentgate chose or validated (a platform, an endpoint class, an outcome): a
value as a client sent it would let anyone add series to /metrics."""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from rq.job import Job
from rq.queue import Queue
from rq.utils import utcparse

from gatekeeper.state import keys
from gatekeeper.state.store import text

_COUNTERS = keys.METRIC_COUNTERS
_SEP = "\x1f"

PLATFORMS = frozenset({"github", "gitlab"})

# name -> (help, label names). Prometheus shows each with `_total` appended.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "agentgate_webhooks": ("Webhook deliveries by platform, event and result", ("platform", "event", "result")),
    "agentgate_verdicts": ("Verdicts reached, by outcome", ("platform", "outcome")),
    "agentgate_platform_calls": ("Calls made to platform APIs, by endpoint class", ("platform", "endpoint")),
    "agentgate_job_failures": ("Jobs that raised and will be retried or failed", ("job",)),
    "agentgate_failed_deliveries": ("Failed webhook deliveries found in the platform's delivery log",
                                    ("platform",)),
    # result: the answer's status (201, 401, 403, 429, 503, 400) or revoked / revoke-failed
    "agentgate_token_requests": ("Agent token requests and revocations, by result", ("platform", "result")),
}

# Gauges a process sets (the last value written wins): name -> (help, label names).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "agentgate_rate_limit_remaining": ("Requests left in the platform's rate limit, from its last answer",
                                       ("platform",)),
}


@dataclass(frozen=True)
class HistogramSpec:
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied


# From a warm evaluation (~50 ms) to a settle window and a retry (tens of seconds).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
HISTOGRAMS: dict[str, HistogramSpec] = {
    "agentgate_job_latency_seconds": HistogramSpec(
        "Seconds from a delivery's receipt to the verdict's status being posted", ("platform",), LATENCY_BUCKETS),
}

JOB_LATENCY = "agentgate_job_latency_seconds"
RATE_LIMIT_REMAINING = "agentgate_rate_limit_remaining"
PLATFORM_CALLS = "agentgate_platform_calls"
FAILED_DELIVERIES = "agentgate_failed_deliveries"
JOB_FAILURES = "agentgate_job_failures"

# Above this many active agent tokens the scrape reports only their number (platform "all") instead of
# reading each token's record to split them by platform.
ACTIVE_TOKENS_SPLIT_MAX = 1000


def field(name: str, *labels: str) -> str:
    """The hash field of one counter: its name and label values. Callers pass only values they
    validated (never a header as sent): each distinct value is a new field and a new /metrics series."""
    return _SEP.join((name, *labels))


def incr(conn: redis.Redis, name: str, *labels: str, by: int = 1) -> None:
    try:
        conn.hincrby(_COUNTERS, field(name, *labels), by)
    except redis.RedisError:
        pass  # metrics must never break the path they measure


def observe(conn: redis.Redis, name: str, value: float, *labels: str) -> None:
    """One observation of a histogram: its bucket and its sum move together (one round trip)."""
    spec = HISTOGRAMS[name]
    if len(labels) != len(spec.labels) or not math.isfinite(value):
        return
    value = max(0.0, value)  # a receipt stamped by a clock slightly ahead of this one
    index = bisect.bisect_left(spec.buckets, value)  # the first bound >= value: Prometheus' `le`
    bound = floatToGoString(spec.buckets[index]) if index < len(spec.buckets) else "+Inf"
    try:
        with conn.pipeline(transaction=True) as pipe:
            pipe.hincrby(keys.METRIC_HISTOGRAMS, field(name, *labels, bound), 1)
            pipe.hincrbyfloat(keys.METRIC_HISTOGRAMS, field(name, *labels, "sum"), value)
            pipe.execute()
    except redis.RedisError:
        pass


def set_gauge(conn: redis.Redis, name: str, value: float, *labels: str) -> None:
    try:
        conn.hset(keys.METRIC_GAUGES, field(name, *labels), value)
    except redis.RedisError:
        pass


# ---- platform API calls ---------------------------------------------------------------------------
#
# The adapters record each call here, in this process, without a Redis round trip per call (the forge
# of a job holds no store); `flush` writes what accumulated in one round trip, at the end of every job
# and at every scrape of this process.

ENDPOINTS = ("pulls", "reviews", "files", "commits", "contents", "branches", "statuses", "checks", "issues",
             "permissions", "tokens", "app", "deliveries", "deployments", "actions", "users", "other")

# GitHub: the first segment under /repos/OWNER/NAME, then (for a few) the sub-resource after its id.
_GITHUB_REPO = {
    "pulls": "pulls", "commits": "commits", "statuses": "statuses", "check-runs": "checks",
    "check-suites": "checks", "contents": "contents", "readme": "contents", "git": "contents",
    "branches": "branches", "rulesets": "branches", "rules": "branches", "issues": "issues",
    "collaborators": "permissions", "deployments": "deployments", "environments": "deployments",
    "actions": "actions", "installation": "app", "hooks": "deliveries", "labels": "issues",
}
_GITHUB_PULL_SUB = {"reviews": "reviews", "comments": "reviews", "requested_reviewers": "reviews",
                    "files": "files", "commits": "commits"}
_COMMIT_SUB = {"pulls": "pulls", "merge_requests": "pulls", "statuses": "statuses", "status": "statuses",
               "check-runs": "checks", "check-suites": "checks"}
_GITHUB_ACTIONS_SUB = {"deployment_protection_rule": "deployments", "pending_deployments": "deployments",
                       "approve": "deployments"}
# GitLab: the first segment under /projects/ID, then the sub-resource.
_GITLAB_PROJECT = {
    "merge_requests": "pulls", "repository": "contents", "statuses": "statuses", "issues": "issues",
    "members": "permissions", "external_status_checks": "checks", "status_checks": "checks",
    "pipelines": "actions", "jobs": "actions", "deployments": "deployments", "environments": "deployments",
    "protected_environments": "deployments", "hooks": "deliveries", "access_tokens": "tokens",
    "protected_branches": "branches", "labels": "issues", "approval_rules": "reviews", "approvals": "reviews",
}
_GITLAB_MR_SUB = {"approvals": "reviews", "approval_state": "reviews", "approve": "reviews",
                  "unapprove": "reviews", "changes": "files", "diffs": "files", "commits": "commits",
                  "versions": "commits", "notes": "issues", "discussions": "issues",
                  "resource_label_events": "issues", "resource_state_events": "issues",
                  "pipelines": "actions", "status_checks": "checks"}
_GITLAB_REPOSITORY_SUB = {"files": "contents", "blobs": "contents", "tree": "contents", "commits": "commits",
                          "branches": "branches", "compare": "commits"}
_API_PREFIX = re.compile(r"^(?:api/v3|api/v4)(?:/|$)")


def endpoint_class(path: str) -> str:
    """The class of a platform REST path (GitHub's, or GitLab's under /api/v4), from `ENDPOINTS`. Only
    resource names in fixed positions are read; ids, SHAs, file paths and branch names never become a
    label (a file named `reviews` is still `contents`)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]
    path = _API_PREFIX.sub("", path.strip("/"))
    parts = path.split("/") if path else []
    if not parts:
        return "other"
    top = parts[0]
    if top in ("repos", "repositories"):
        rest = parts[3:] if top == "repos" else parts[2:]  # /repos/OWNER/NAME, /repositories/ID
        return _github_repo(rest)
    if top == "projects":
        return _gitlab_project(parts[2:])  # /projects/ID (a path is URL-encoded: one segment)
    if top == "app" and parts[1:3] == ["hook", "deliveries"]:
        return "deliveries"
    if top == "app" and len(parts) >= 4 and parts[1] == "installations" and parts[3] == "access_tokens":
        return "tokens"
    if top == "installation" and parts[1:2] == ["token"]:
        return "tokens"
    if top in ("app", "app-manifests", "installation") or (top == "orgs" and parts[2:3] == ["installation"]):
        return "app"
    if top == "personal_access_tokens":
        return "tokens"
    if top in ("user", "users"):
        return "users"
    return "other"


def _github_repo(rest: list[str]) -> str:
    if not rest:
        return "other"
    kind = _GITHUB_REPO.get(rest[0], "other")
    sub = rest[2] if len(rest) > 2 else ""
    if kind == "pulls":
        return _GITHUB_PULL_SUB.get(sub, "pulls")
    if kind == "commits":
        return _COMMIT_SUB.get(sub, "commits")
    if kind == "actions" and len(rest) > 3 and rest[1] == "runs":
        return _GITHUB_ACTIONS_SUB.get(rest[3], "actions")
    return kind


def _gitlab_project(rest: list[str]) -> str:
    if not rest:
        return "other"
    kind = _GITLAB_PROJECT.get(rest[0], "other")
    if rest[0] == "merge_requests":
        return _GITLAB_MR_SUB.get(rest[2] if len(rest) > 2 else "", "pulls")
    if rest[0] == "repository":
        kind = _GITLAB_REPOSITORY_SUB.get(rest[1] if len(rest) > 1 else "", "other")
        if kind == "commits":
            return _COMMIT_SUB.get(rest[3] if len(rest) > 3 else "", "commits")
    return kind


def rate_limit_remaining(headers: Mapping[str, str]) -> int | None:
    """X-RateLimit-Remaining (GitHub) or RateLimit-Remaining (GitLab), when an answer carries a sane one."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        raw = str(lowered.get(name) or "").strip()
        if raw:
            try:
                value = float(raw)
            except ValueError:
                return None
            return int(value) if math.isfinite(value) and 0 <= value < 1e12 else None
    return None


class _CallMeter:
    """This process's platform calls not yet written to the store; bounded by platforms × ENDPOINTS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}
        self._remaining: dict[str, int] = {}

    def record(self, platform: str, path: str, remaining: int | None = None) -> None:
        platform = platform if platform in PLATFORMS else "other"
        endpoint = endpoint_class(path)
        with self._lock:
            self._calls[(platform, endpoint)] = self._calls.get((platform, endpoint), 0) + 1
            if remaining is not None:
                self._remaining[platform] = remaining

    def flush(self, conn: redis.Redis) -> None:
        with self._lock:
            calls, self._calls = self._calls, {}
            remaining, self._remaining = self._remaining, {}
        if not calls and not remaining:
            return
        try:
            with conn.pipeline(transaction=False) as pipe:
                for (platform, endpoint), count in calls.items():
                    pipe.hincrby(_COUNTERS, field(PLATFORM_CALLS, platform, endpoint), count)
                for platform, value in remaining.items():
                    pipe.hset(keys.METRIC_GAUGES, field(RATE_LIMIT_REMAINING, platform), value)
                pipe.execute()
        except redis.RedisError:
            with self._lock:  # kept for the next flush; a newer rate-limit reading wins
                for key, count in calls.items():
                    self._calls[key] = self._calls.get(key, 0) + count
                for platform, value in remaining.items():
                    self._remaining.setdefault(platform, value)


_meter = _CallMeter()


def platform_call(platform: str, path: str, headers: Mapping[str, str] | None = None,
                  remaining: int | None = None) -> None:
    """Count one request to a platform's API (by the class of its path) and keep the rate limit its
    answer reported. No I/O: written to the store by `flush`."""
    if remaining is None and headers is not None:
        remaining = rate_limit_remaining(headers)
    _meter.record(platform, path, remaining)


def response_hook(platform: str) -> Callable[..., None]:
    """A `requests` response hook that counts each answer as `platform_call` does:
    `session.hooks["response"].append(metrics.response_hook("github"))`."""

    def counted(response: Any, *args: Any, **kwargs: Any) -> None:
        platform_call(platform, str(getattr(response, "url", "") or ""), getattr(response, "headers", None) or {})

    return counted


def flush(conn: redis.Redis) -> None:
    """Write this process's recorded platform calls to the store (one round trip; never raises)."""
    _meter.flush(conn)


# ---- the scrape ----------------------------------------------------------------------------------


class StoreCollector(Collector):
    def __init__(self, conn: redis.Redis, queue_names: tuple[str, ...], clock: Callable[[], float] = time.time):
        self.conn = conn
        self.queue_names = queue_names
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        flush(self.conn)  # this process's own calls (a web process asks the platform for agent tokens)
        yield from self._counters()
        yield from self._gauges()
        yield from self._histograms()
        yield from self._queues()
        yield self._active_tokens()

    def _counters(self) -> Iterator[Metric]:
        families = {name: CounterMetricFamily(name, help_, labels=list(labels))
                    for name, (help_, labels) in COUNTERS.items()}
        for name, labels, value in _parsed(self.conn.hgetall(_COUNTERS), COUNTERS):
            families[name].add_metric(labels, float(value))
        yield from families.values()

    def _gauges(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(name, help_, labels=list(labels))
                    for name, (help_, labels) in GAUGES.items()}
        for name, labels, value in _parsed(self.conn.hgetall(keys.METRIC_GAUGES), GAUGES):
            families[name].add_metric(labels, float(value))
        yield from families.values()

    def _histograms(self) -> Iterator[Metric]:
        seen: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}
        for raw_field, raw_value in self.conn.hgetall(keys.METRIC_HISTOGRAMS).items():
            name, *rest = text(raw_field).split(_SEP)
            spec = HISTOGRAMS.get(name)
            if spec is None or len(rest) != len(spec.labels) + 1:
                continue
            seen.setdefault((name, tuple(rest[:-1])), {})[rest[-1]] = float(text(raw_value))
        for name, spec in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
            bounds = [floatToGoString(b) for b in spec.buckets] + ["+Inf"]
            for (found, labels), values in sorted(seen.items()):
                if found != name:
                    continue
                running, buckets = 0.0, []
                for bound in bounds:  # stored per bucket; shown cumulative
                    running += values.get(bound, 0.0)
                    buckets.append((bound, running))
                family.add_metric(list(labels), buckets, values.get("sum", 0.0))
            yield family

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("agentgate_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        oldest = GaugeMetricFamily("agentgate_queue_oldest_job_age_seconds",
                                   "Seconds the job at the head of the queue has waited (0 when none waits)",
                                   labels=["queue"])
        with self.conn.pipeline(transaction=False) as pipe:
            for queue in self.queue_names:
                pipe.llen(Queue.redis_queue_namespace_prefix + queue)
                pipe.lindex(Queue.redis_queue_namespace_prefix + queue, 0)  # RQ pops from the left
            heads = pipe.execute()
        lengths, firsts = heads[0::2], heads[1::2]
        with self.conn.pipeline(transaction=False) as pipe:
            for first in firsts:
                if first:
                    pipe.hget(Job.redis_job_namespace_prefix + text(first), "enqueued_at")
                else:
                    pipe.ping()  # keeps the replies in step with the queues
            stamps = pipe.execute()
        now = self.clock()
        for queue, length, first, stamp in zip(self.queue_names, lengths, firsts, stamps, strict=True):
            depth.add_metric([queue], float(length))
            age = 0.0
            if first and isinstance(stamp, bytes | str) and text(stamp):
                try:
                    age = max(0.0, now - utcparse(text(stamp)).timestamp())
                except ValueError:
                    age = 0.0
            oldest.add_metric([queue], age)
        yield depth
        yield oldest

    def _active_tokens(self) -> Metric:
        family = GaugeMetricFamily("agentgate_active_agent_tokens",
                                   "Agent tokens issued and not yet revoked", labels=["platform"])
        count = int(self.conn.zcard(keys.AGENT_TOKENS_ACTIVE))
        if count > ACTIVE_TOKENS_SPLIT_MAX:
            family.add_metric(["all"], float(count))
            return family
        ids = self.conn.zrange(keys.AGENT_TOKENS_ACTIVE, 0, ACTIVE_TOKENS_SPLIT_MAX - 1)
        with self.conn.pipeline(transaction=False) as pipe:
            for token_id in ids:
                pipe.hget(keys.agent_token(text(token_id)), "platform")  # type: ignore[arg-type]
            platforms = pipe.execute()
        by_platform = dict.fromkeys(sorted(PLATFORMS), 0)
        for platform in platforms:
            name = text(platform) if platform is not None else ""
            key = name if name in PLATFORMS else "other"  # a record gone or not ours: still in the set
            by_platform[key] = by_platform.get(key, 0) + 1
        for platform, n in by_platform.items():
            family.add_metric([platform], float(n))
        return family


def _parsed(raw: Mapping[bytes | str, bytes | str], known: Mapping[str, tuple[str, tuple[str, ...]]]
            ) -> Iterator[tuple[str, list[str], str]]:
    for raw_field, value in raw.items():
        name, *labels = text(raw_field).split(_SEP)
        if name in known and len(labels) == len(known[name][1]):
            yield name, labels, text(value)
