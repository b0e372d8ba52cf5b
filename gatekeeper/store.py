"""The one shared store: Redis in production, an embedded in-process Redis for `agentgate dev`.

Every piece of state (queue, delivery ids, token cache, decisions, metrics) lives here so any number
of web and worker processes can share it."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

KEY_PREFIX = "agentgate:"


def connect(url: str | None) -> redis.Redis:
    """A Redis client for `url`, or the embedded store when no URL is configured (dev only)."""
    if url:
        # Few, quick retries: the receiver must answer 503 fast rather than hang when Redis is gone.
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30,
                                    retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
    import fakeredis  # only dev mode needs it

    return fakeredis.FakeRedis(server=_embedded_server())


_EMBEDDED: Any = None


def _embedded_server() -> Any:
    # One embedded server per process: dev runs the receiver and the worker in the same process.
    global _EMBEDDED
    if _EMBEDDED is None:
        import fakeredis

        _EMBEDDED = fakeredis.FakeServer()
    return _EMBEDDED


def text(value: bytes | str) -> str:
    """A stored value as text (the client returns bytes; typing allows either)."""
    return value.decode() if isinstance(value, bytes) else value


def key(*parts: object) -> str:
    return KEY_PREFIX + ":".join(str(p) for p in parts)
