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

import redis

from gatekeeper.state import keys
from gatekeeper.state.store import text

STREAM = keys.AUDIT_STREAM
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
    # The human an agent acted for (an agent token's task approver): the composite identity.
    on_behalf_of: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def record_own(conn: redis.Redis, platform: str, repo: str, action: str, target: str, detail: str) -> None:
    """What agentgate itself did (a status, a removed label, a deployment review, its comment)."""
    try:
        record(conn, AuditEntry(at=datetime.now(UTC).isoformat(timespec="milliseconds"), platform=platform,
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
                    and (actor is None or _same_agent(entry.actor, actor))
                    and (event is None or entry.event == event)):
                yield entry
                found += 1
                if limit is not None and found >= limit:
                    return
        start = "(" + text(page[-1][0] or b"")


def _same_agent(recorded: str, wanted: str) -> bool:
    """`--actor copilot-swe-agent` finds the account `copilot-swe-agent[bot]` and the agent key
    `key:copilot-swe-agent` alike: one agent's actions and its tokens in one query. An OIDC agent is named
    by its whole principal (`oidc:ISSUER#SUB`)."""
    def bare(name: str) -> str:
        name = name.lower().removeprefix("key:")
        return name.removesuffix("[bot]")

    return recorded.lower() == wanted.lower() or bare(recorded) == bare(wanted)


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
