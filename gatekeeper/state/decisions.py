"""Decision records: what the details page behind a status link shows."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import redis

from gatekeeper.state import keys
from gatekeeper.state.store import text

DECISION_TTL_SECONDS = keys.DECISION_TTL


@dataclass
class DecisionRecord:
    platform: str
    repo: str
    subject: str  # "pull request #12", "merge group ...", ...
    sha: str
    verdict: dict[str, Any]
    facts: dict[str, Any]
    policy_source: str
    trigger: dict[str, Any] = field(default_factory=dict)
    decided_at: str = ""
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a policy change preview

    def to_json(self) -> str:
        return json.dumps(self.__dict__, default=str, sort_keys=True)


def new_id() -> str:
    # Unguessable: the page shows facts about possibly private repositories to whoever has the link,
    # and only people who can see the status have it.
    return secrets.token_urlsafe(18)


RECENT_KEY = keys.RECENT_DECISIONS
RECENT_KEEP = 500  # the operator dashboard reads this far back (see state/dashboard.py)


def save(conn: redis.Redis, record: DecisionRecord) -> str:
    is_new = not record.id
    record.id = record.id or new_id()
    pipe = conn.pipeline()
    pipe.set(keys.decision(record.id), record.to_json(), ex=DECISION_TTL_SECONDS)
    if is_new:
        pipe.lpush(RECENT_KEY, record.id)
        pipe.ltrim(RECENT_KEY, 0, RECENT_KEEP - 1)
        number = pull_request_number(record)
        if number is not None:
            # A pull request's verdicts in order, for its details page. Only new decisions: a record
            # saved again (a preview added to it) is the same verdict, not another one.
            history = keys.decision_history(record.platform, record.repo, number)
            pipe.lpush(history, record.id)
            pipe.ltrim(history, 0, keys.DECISION_HISTORY_KEEP - 1)
            pipe.expire(history, DECISION_TTL_SECONDS)
    pipe.execute()
    return record.id


def pull_request_number(record: DecisionRecord) -> int | None:
    """The pull request a decision is about, or None for other subjects (merge groups, deployments)."""
    if not record.subject.startswith("pull request #") or not isinstance(record.facts, dict):
        return None
    number = record.facts.get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def history(conn: redis.Redis, platform: str, repo: str, number: int,
            limit: int = keys.DECISION_HISTORY_KEEP) -> list[DecisionRecord]:
    """A pull request's decisions, newest first, in one read (records past their lifetime are left out)."""
    ids = [text(raw) for raw in conn.lrange(keys.decision_history(platform, repo, number), 0, limit - 1)]
    return load_many(conn, ids)


def load_many(conn: redis.Redis, ids: list[str]) -> list[DecisionRecord]:
    """Records by id, in the order given, skipping those that expired or cannot be read."""
    if not ids:
        return []
    found = []
    for raw in conn.mget([keys.decision(i) for i in ids]):
        record = _parse(raw)
        if record is not None:
            found.append(record)
    return found


def _parse(raw: bytes | str | None) -> DecisionRecord | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return DecisionRecord(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None  # a record from a version with other fields: not shown, never an error page


def recent(conn: redis.Redis, limit: int = 20) -> list[DecisionRecord]:
    """The latest decisions, for the dev page only (production pages are reached by link)."""
    found = (load(conn, text(raw)) for raw in conn.lrange(RECENT_KEY, 0, limit - 1))
    return [r for r in found if r is not None]


def load(conn: redis.Redis, decision_id: str) -> DecisionRecord | None:
    raw = conn.get(keys.decision(decision_id))
    if raw is None:
        return None
    return DecisionRecord(**json.loads(raw))
