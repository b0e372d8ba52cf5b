"""Chain findings per pull request, kept in the shared store until lifted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import redis

from gatekeeper.core.facts import RecordedFinding
from gatekeeper.state.store import key

TTL_SECONDS = 90 * 24 * 3600


def _key(repo: str, number: int) -> str:
    return key("findings", repo, number)


def record(conn: redis.Redis, repo: str, number: int, finding: RecordedFinding) -> bool:
    """Store a finding; False when the same finding (same id) was already recorded."""
    pipe = conn.pipeline()
    pipe.hsetnx(_key(repo, number), finding.id, json.dumps(asdict(finding)))
    pipe.expire(_key(repo, number), TTL_SECONDS)
    added, _ = pipe.execute()
    return bool(added)


def load(conn: redis.Redis, repo: str, number: int) -> list[RecordedFinding]:
    raw = conn.hgetall(_key(repo, number))
    found = [RecordedFinding(**json.loads(v)) for v in raw.values()]
    return sorted(found, key=lambda f: (f.at, f.id))


def lift(
    conn: redis.Redis, repo: str, number: int, matches: Callable[[RecordedFinding], bool]
) -> list[RecordedFinding]:
    lifted = [f for f in load(conn, repo, number) if matches(f)]
    if lifted:
        conn.hdel(_key(repo, number), *[f.id for f in lifted])
    return lifted
