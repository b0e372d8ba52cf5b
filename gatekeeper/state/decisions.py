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
RECENT_KEEP = 50


def save(conn: redis.Redis, record: DecisionRecord) -> str:
    is_new = not record.id
    record.id = record.id or new_id()
    pipe = conn.pipeline()
    pipe.set(keys.decision(record.id), record.to_json(), ex=DECISION_TTL_SECONDS)
    if is_new:
        pipe.lpush(RECENT_KEY, record.id)
        pipe.ltrim(RECENT_KEY, 0, RECENT_KEEP - 1)
    pipe.execute()
    return record.id


def recent(conn: redis.Redis, limit: int = 20) -> list[DecisionRecord]:
    """The latest decisions, for the dev page only (production pages are reached by link)."""
    found = (load(conn, text(raw)) for raw in conn.lrange(RECENT_KEY, 0, limit - 1))
    return [r for r in found if r is not None]


def load(conn: redis.Redis, decision_id: str) -> DecisionRecord | None:
    raw = conn.get(keys.decision(decision_id))
    if raw is None:
        return None
    return DecisionRecord(**json.loads(raw))
