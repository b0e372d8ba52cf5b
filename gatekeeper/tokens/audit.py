"""Agent tokens in the audit log: every grant, refusal and revocation names the agent, the human it acts
for, the repository, the task and the permissions, and the token only as its SHA-256."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis

from gatekeeper.core.grants import AgentIdentity
from gatekeeper.state import audit
from gatekeeper.state.tokens import TokenRecord

log = logging.getLogger(__name__)


def permissions_text(permissions: dict[str, str]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(permissions.items()))


def _write(conn: redis.Redis, entry: audit.AuditEntry) -> None:
    try:
        audit.record(conn, entry)
    except redis.RedisError:
        log.warning("could not write the audit entry for agent token %s", entry.delivery or "(refused)")


def record_token(conn: redis.Redis, action: str, record: TokenRecord, note: str = "") -> None:
    detail = f"permissions={permissions_text(record.permissions)} sha256={record.sha256}"
    if note:
        detail += f" ({note})"
    _write(conn, audit.AuditEntry(
        at=datetime.now(UTC).isoformat(timespec="milliseconds"), platform=record.platform, delivery=record.id,
        event="token", action=action, repo=record.repo, actor=record.agent, actor_kind="agent",
        target=f"#{record.task}", detail=detail[:audit.SNIPPET * 2], on_behalf_of=record.requester))


def record_refusal(conn: redis.Redis, platform: str, repo: str, task: int, agent: AgentIdentity,
                   permissions: dict[str, str] | None, code: str, reason: str) -> None:
    asked = permissions_text(permissions) if permissions is not None else "(the grant)"
    _write(conn, audit.AuditEntry(
        at=datetime.now(UTC).isoformat(timespec="milliseconds"), platform=platform, delivery="", event="token",
        action="refuse", repo=repo, actor=agent.principal, actor_kind="agent", target=f"#{task}",
        detail=f"{code}: {reason} permissions={asked}"[:audit.SNIPPET * 2]))
