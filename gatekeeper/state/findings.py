"""Chain findings per pull request, kept in the shared store until a human lifts them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict

import redis

from gatekeeper.core.facts import Confirmation, RecordedFinding
from gatekeeper.state import keys


def record(conn: redis.Redis, platform: str, repo: str, number: int, finding: RecordedFinding) -> bool:
    """Store a finding; False when the same finding (same id) was already recorded."""
    name = keys.findings(platform, repo, number)
    pipe = conn.pipeline()
    pipe.hsetnx(name, finding.id, json.dumps(asdict(finding)))
    pipe.expire(name, keys.FINDINGS_TTL)
    added, _ = pipe.execute()
    return bool(added)


def load(conn: redis.Redis, platform: str, repo: str, number: int) -> list[RecordedFinding]:
    raw = conn.hgetall(keys.findings(platform, repo, number))
    found = [RecordedFinding(**json.loads(v)) for v in raw.values()]
    return sorted(found, key=lambda f: (f.at, f.id))


def lift(conn: redis.Redis, platform: str, repo: str, number: int, ids: Iterable[str]) -> None:
    """Forget findings a human settled (repeated the action, or approved the head after it)."""
    ids = list(ids)
    if ids:
        conn.hdel(keys.findings(platform, repo, number), *ids)


def confirm(conn: redis.Redis, platform: str, repo: str, number: int, confirmation: Confirmation) -> None:
    """Keep a human's repeat of an action; the next evaluation judges whether it lifts a finding."""
    name = keys.confirmations(platform, repo, number)
    pipe = conn.pipeline()
    pipe.hset(name, f"{confirmation.kind}:{confirmation.key}:{confirmation.login.lower()}:{confirmation.at}",
              json.dumps(asdict(confirmation)))
    pipe.expire(name, keys.FINDINGS_TTL)
    pipe.execute()


def confirmations(conn: redis.Redis, platform: str, repo: str, number: int) -> list[Confirmation]:
    return [Confirmation(**json.loads(v)) for v in conn.hgetall(keys.confirmations(platform, repo, number)).values()]
