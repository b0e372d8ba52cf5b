"""The audit log: every action a delivery reports, with who did it and what kind of actor they are, so
agents' actions can be queried and exported apart from humans'.

Kept in a Redis stream (entry ids are millisecond timestamps, so time ranges are cheap to read) and
capped in length; export it regularly (`agentgate audit --format jsonl`) for longer retention."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import redis

from gatekeeper.core.identity import classify_github_user
from gatekeeper.state.store import key, text

STREAM = key("audit")
MAX_ENTRIES = 1_000_000  # approximate cap (XADD MAXLEN ~)
SNIPPET = 200


@dataclass(frozen=True)
class AuditEntry:
    at: str  # ISO 8601 UTC, when agentgate received it
    platform: str
    delivery: str
    event: str
    action: str
    repo: str
    actor: str
    actor_kind: str  # human | bot | agent
    via_app: str = ""
    target: str = ""  # "#12", a SHA, a ref, an environment
    detail: str = ""  # a label, a command line, a review state...

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def entry_from_github(event: str, payload: dict[str, Any], delivery: str, now: datetime) -> AuditEntry:
    """Who did what, from a verified GitHub payload. Pure; the actor's kind as identity.py decides it."""
    sender = payload.get("sender") or {}
    comment = payload.get("comment") or {}
    via = comment.get("performed_via_github_app") or (payload.get("deployment") or {}).get("performed_via_github_app")
    actor = classify_github_user(sender, via_app=via) if sender else None
    return AuditEntry(
        at=now.astimezone(UTC).isoformat(timespec="milliseconds"),
        platform="github", delivery=delivery, event=event, action=str(payload.get("action") or ""),
        repo=str((payload.get("repository") or {}).get("full_name") or ""),
        actor=actor.login if actor else "", actor_kind=actor.kind.value if actor else "",
        via_app=actor.via_app or "" if actor else "", target=_target(event, payload),
        detail=_detail(event, payload)[:SNIPPET],
    )


def _target(event: str, payload: dict[str, Any]) -> str:
    for name in ("pull_request", "issue"):
        if isinstance(payload.get(name), dict) and payload[name].get("number") is not None:
            return f"#{payload[name]['number']}"
    if event == "push":
        return str(payload.get("ref") or "")
    if event == "deployment_protection_rule":
        return str(payload.get("environment") or "")
    for name in ("workflow_run", "merge_group", "check_suite"):
        if isinstance(payload.get(name), dict):
            return str(payload[name].get("head_sha") or "")
    return str(payload.get("sha") or "")


def _detail(event: str, payload: dict[str, Any]) -> str:
    if isinstance(payload.get("label"), dict):
        return f"label {payload['label'].get('name', '')}"
    if isinstance(payload.get("review"), dict):
        return f"review {payload['review'].get('state', '')}"
    if isinstance(payload.get("comment"), dict):
        return " ".join(str(payload["comment"].get("body") or "").split())
    if isinstance(payload.get("workflow_run"), dict):
        run = payload["workflow_run"]
        return f"workflow {run.get('name', '')} via {run.get('event', '')}"
    if event == "status":
        return f"{payload.get('context', '')}: {payload.get('state', '')}"
    if event == "push":
        return f"{len(payload.get('commits') or [])} commit(s){' forced' if payload.get('forced') else ''}"
    return ""


def record_own(conn: redis.Redis, repo: str, action: str, target: str, detail: str) -> None:
    """What agentgate itself did (a status, a removed label, a deployment review, its comment)."""
    try:
        record(conn, AuditEntry(at=datetime.now(UTC).isoformat(timespec="milliseconds"), platform="github",
                                delivery="", event="agentgate", action=action, repo=repo, actor="agentgate",
                                actor_kind="bot", target=target, detail=detail[:SNIPPET]))
    except redis.RedisError:
        pass  # the action happened; losing its log line must not undo or repeat it


def record(conn: redis.Redis, entry: AuditEntry) -> None:
    conn.xadd(STREAM, entry.to_dict(), maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]


def query(conn: redis.Redis, *, since: datetime | None = None, until: datetime | None = None,
          repo: str | None = None, kinds: set[str] | None = None, actor: str | None = None,
          event: str | None = None, limit: int | None = None) -> Iterator[AuditEntry]:
    """Entries oldest first, read in pages by time range, filtered."""
    start = f"{int(since.timestamp() * 1000)}-0" if since else "-"
    end = f"{int(until.timestamp() * 1000)}-18446744073709551615" if until else "+"
    names = {f.name for f in fields(AuditEntry)}
    found = 0
    if limit is not None and limit <= 0:
        return
    while True:
        page = conn.xrange(STREAM, min=start, max=end, count=1000)
        if not page:
            return
        for _, raw in page:
            values = {text(k): text(v) for k, v in (raw or {}).items()}
            entry = AuditEntry(**{k: v for k, v in values.items() if k in names})
            if ((repo is None or entry.repo.lower() == repo.lower())
                    and (kinds is None or entry.actor_kind in kinds)
                    and (actor is None or entry.actor.lower() == actor.lower())
                    and (event is None or entry.event == event)):
                yield entry
                found += 1
                if limit is not None and found >= limit:
                    return
        start = "(" + text(page[-1][0] or b"")


def export(entries: Iterator[AuditEntry], fmt: str) -> Iterator[str]:
    """Lines of JSON (one entry each) or CSV with a header."""
    if fmt == "jsonl":
        for entry in entries:
            yield json.dumps(entry.to_dict(), sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(AuditEntry)], lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: _cell(v) for k, v in entry.to_dict().items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _cell(value: str) -> str:
    """A CSV cell that a spreadsheet will not run: details are written by agents (comments, labels)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def printable(value: str) -> str:
    """For a terminal: no control characters from agent-written text."""
    return "".join(ch if ch.isprintable() else " " for ch in value)
