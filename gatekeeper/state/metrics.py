"""Prometheus metrics kept in the shared store, so one scrape of any web process sees every process."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatekeeper.state import keys
from gatekeeper.state.store import text

_COUNTERS = keys.METRIC_COUNTERS

# name -> (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "agentgate_webhooks": ("Webhook deliveries by platform, event and result", ("platform", "event", "result")),
    "agentgate_verdicts": ("Verdicts reached, by outcome", ("platform", "outcome")),
    "agentgate_platform_calls": ("Calls made to platform APIs", ("platform",)),
    "agentgate_job_failures": ("Jobs that raised and will be retried or failed", ("job",)),
}


def field(name: str, *labels: str) -> str:
    """The hash field of one counter: its name and label values. Callers pass only values they
    validated (never a header as sent): each distinct value is a new field and a new /metrics series."""
    return "\x1f".join((name, *labels))


def incr(conn: redis.Redis, name: str, *labels: str, by: int = 1) -> None:
    try:
        conn.hincrby(_COUNTERS, field(name, *labels), by)
    except redis.RedisError:
        pass  # metrics must never break the path they measure


class StoreCollector(Collector):
    def __init__(self, conn: redis.Redis, queue_names: tuple[str, ...]):
        self.conn = conn
        self.queue_names = queue_names

    def collect(self) -> Iterator[Metric]:
        families = {name: CounterMetricFamily(name, help_, labels=list(labels))
                    for name, (help_, labels) in COUNTERS.items()}
        for field, value in self.conn.hgetall(_COUNTERS).items():
            name, *labels = text(field).split("\x1f")
            if name in families and len(labels) == len(COUNTERS[name][1]):
                families[name].add_metric(labels, float(value))
        yield from families.values()
        depth = GaugeMetricFamily("agentgate_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        for queue in self.queue_names:
            depth.add_metric([queue], float(self.conn.llen(f"rq:queue:{queue}")))
        yield depth
