"""The one shared store: Redis in production, an embedded in-process Redis for `agentgate dev`.

Every piece of state (queue, delivery ids, token cache, decisions, metrics) lives here so any number
of web and worker processes can share it."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# Few, quick retries: the receiver must answer 503 fast rather than hang when Redis is gone.
_CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 30,
                                   "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)}


def connect(url: str | None) -> redis.Redis:
    """A Redis client for `url`, or the embedded store when no URL is configured (dev only).

    `redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]`
    asks Sentinel for the current primary of `service` (and follows a failover); any other URL is
    redis-py's own `from_url`."""
    if url and url.startswith("redis+sentinel://"):
        return _sentinel(url)
    if url:
        return redis.Redis.from_url(url, **_CLIENT_OPTIONS)
    import fakeredis  # only dev mode needs it

    return fakeredis.FakeRedis(server=_embedded_server())


def _sentinel(url: str) -> redis.Redis:
    from urllib.parse import parse_qs, unquote, urlsplit

    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a Sentinel URL names the service: redis+sentinel://host:26379/mymaster[/db]")
    hosts = []
    for hostport in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = hostport.rpartition(":")
        hosts.append((host or hostport, int(port) if host else 26379))
    # The URL's credentials are the primary's; Sentinel's own password, if any, is `?sentinel_password=`.
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    sentinel_password = next(iter(parse_qs(parts.query).get("sentinel_password", [])), None)
    sentinel = Sentinel(hosts, socket_timeout=2,
                        sentinel_kwargs={"password": sentinel_password} if sentinel_password else None)
    return sentinel.master_for(path[0], redis_class=redis.Redis, db=int(path[1]) if len(path) > 1 else 0,
                               username=username, password=password, **_CLIENT_OPTIONS)


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


