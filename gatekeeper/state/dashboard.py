"""What the operator dashboard reads: bounded queries over decisions, the audit log and the counters.

Every read has a ceiling (the last `decisions.RECENT_KEEP` decisions, the last `AUDIT_SCANNED` audit
entries within `DAYS` days), so the page costs the same on a busy installation as on a quiet one; the
page says how far back each panel reaches instead of pretending to be complete."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from gatekeeper.state import decisions, keys
from gatekeeper.state.audit import STREAM, AuditEntry
from gatekeeper.state.metrics import COUNTERS
from gatekeeper.state.store import text

DAYS = 14  # the verdicts-per-day chart
AUDIT_SCANNED = 2000  # newest audit entries read for tokens and agentgate's own stops
AUDIT_PAGE = 500
RECENT_SHOWN = 25
ROWS_SHOWN = 50  # at most this many rows in any other list
OUTCOMES = ("success", "pending", "failure", "error")
HELD = ("failure", "pending")  # a verdict that keeps a change out
TOKEN_ACTIONS = ("grant", "refuse", "revoke")
# Receiver answers that mean a delivery was not taken (see web/receiver.py): the platform shows them as
# failed, and only a redelivery (or recovery's sweep of the delivery log) brings them back.
FAILED_RESULTS = frozenset({"bad-signature", "bad-token", "malformed", "unavailable"})
_AUTOMATED = ("agent", "bot")
_OWN_STOPS = {"remove_label": "label removed", "deployment_rejected": "deployment rejected"}


@dataclass(frozen=True)
class DecisionSummary:
    id: str
    platform: str
    repo: str
    subject: str
    number: int | None
    sha: str
    outcome: str
    description: str
    decided_at: str
    author: str  # the automated actor behind the change when there is one, else its author
    author_kind: str  # human | bot | agent | "" (not a pull request)


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD, UTC
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class BlockedAgent:
    login: str
    kind: str
    pulls: tuple[DecisionSummary, ...]

    @property
    def failure(self) -> int:
        return sum(p.outcome == "failure" for p in self.pulls)

    @property
    def pending(self) -> int:
        return sum(p.outcome == "pending" for p in self.pulls)


@dataclass(frozen=True)
class ChainStop:
    at: str
    platform: str
    repo: str
    subject: str  # where: "pull request #12", "deployment to production", a label's PR
    actor: str
    actor_kind: str
    what: str  # the finding's code, or agentgate's own action
    message: str
    decision_id: str = ""


@dataclass(frozen=True)
class TokenEvent:
    at: str
    action: str  # grant | refuse | revoke
    agent: str
    repo: str
    task: str
    detail: str
    platform: str
    on_behalf_of: str = ""  # the human whose approved task the agent works on


@dataclass(frozen=True)
class DeliveryCount:
    platform: str
    event: str
    result: str
    count: int

    @property
    def failed(self) -> bool:
        return self.result in FAILED_RESULTS


@dataclass(frozen=True)
class Overview:
    now: str
    recent: list[DecisionSummary]
    decisions_scanned: int
    decisions_cap: int
    oldest_decision: str  # decided_at of the oldest decision read ("" when none)
    per_day: list[DayCount]  # DAYS entries, oldest first
    blocked: list[BlockedAgent]
    chains: list[ChainStop]
    tokens: list[TokenEvent]
    token_totals: dict[str, int]
    audit_scanned: int
    oldest_audit: str
    deliveries: list[DeliveryCount]
    job_failures: dict[str, int] = field(default_factory=dict)
    # Failed deliveries recovery found in the platforms' own delivery logs (and redelivered), by platform.
    delivery_log_failures: dict[str, int] = field(default_factory=dict)

    @property
    def per_day_complete(self) -> bool:
        """False when the decision cap was reached inside the chart's window: older days lack some."""
        if self.decisions_scanned < self.decisions_cap or not self.per_day:
            return True
        return self.oldest_decision[:10] < self.per_day[0].day

    @property
    def deliveries_failed(self) -> int:
        return sum(d.count for d in self.deliveries if d.failed)

    @property
    def deliveries_total(self) -> int:
        return sum(d.count for d in self.deliveries)


def overview(conn: redis.Redis, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    summaries, records = _recent_decisions(conn)
    entries = _audit_newest(conn, now - timedelta(days=DAYS))
    tokens = [t for t in (_token_event(e) for e in entries) if t is not None]
    totals = Counter(t.action for t in tokens)
    webhooks, job_failures, log_failures = _counters(conn)
    return Overview(
        now=now.isoformat(timespec="seconds"),
        recent=summaries[:RECENT_SHOWN],
        decisions_scanned=len(summaries),
        decisions_cap=decisions.RECENT_KEEP,
        oldest_decision=summaries[-1].decided_at if summaries else "",
        per_day=per_day(summaries, now.date()),
        blocked=_blocked(conn, summaries),
        chains=sorted(_chain_stops(summaries, records) + _own_stops(entries), key=lambda c: c.at,
                      reverse=True)[:ROWS_SHOWN],
        tokens=tokens[:ROWS_SHOWN],
        token_totals={a: totals.get(a, 0) for a in TOKEN_ACTIONS},
        audit_scanned=len(entries),
        oldest_audit=entries[-1].at if entries else "",
        deliveries=webhooks,
        job_failures=job_failures,
        delivery_log_failures=log_failures,
    )


# -- decisions ---------------------------------------------------------------------------------------

def _recent_decisions(conn: redis.Redis) -> tuple[list[DecisionSummary], list[decisions.DecisionRecord]]:
    """The newest decisions (up to the list's cap), newest first, in one round trip per 100."""
    ids = [text(raw) for raw in conn.lrange(decisions.RECENT_KEY, 0, decisions.RECENT_KEEP - 1)]
    records: list[decisions.DecisionRecord] = []
    for start in range(0, len(ids), 100):
        records += decisions.load_many(conn, ids[start:start + 100])
    # Newest decided first (the list is in order of saving, which a slow job can shuffle a little).
    records.sort(key=lambda r: str(r.decided_at or ""), reverse=True)
    return [summarise(r) for r in records], records


def summarise(record: decisions.DecisionRecord) -> DecisionSummary:
    verdict = record.verdict if isinstance(record.verdict, dict) else {}
    facts = record.facts if isinstance(record.facts, dict) else {}
    author, kind = _actor_behind(facts)
    return DecisionSummary(
        id=record.id, platform=str(record.platform), repo=str(record.repo), subject=str(record.subject),
        number=decisions.pull_request_number(record), sha=str(record.sha or ""),
        outcome=str(verdict.get("outcome") or "error"), description=str(verdict.get("description") or ""),
        decided_at=str(record.decided_at or ""), author=author, author_kind=kind)


def _actor_behind(facts: dict[str, Any]) -> tuple[str, str]:
    """Who a change is held against: its author when automated; else an agent or bot that pushed to it
    or wrote its commits (a human's pull request an agent pushed to is that agent's change)."""
    author = facts.get("author")
    if not isinstance(author, dict):
        return "", ""
    login, kind = str(author.get("login") or ""), str(author.get("kind") or "")
    if kind in _AUTOMATED:
        return login, kind
    others = [p for p in facts.get("pushers") or [] if isinstance(p, dict)]
    for commit in facts.get("commits") or []:
        if isinstance(commit, dict):
            others += [a for a in (commit.get("author"), commit.get("committer")) if isinstance(a, dict)]
    for kind_wanted in _AUTOMATED:  # an agent before a bot
        for other in others:
            if other.get("kind") == kind_wanted and other.get("login"):
                return str(other["login"]), kind_wanted
    return login, kind


def per_day(summaries: list[DecisionSummary], today: date, days: int = DAYS) -> list[DayCount]:
    """Decisions per UTC day and outcome, for the `days` days ending today, oldest first."""
    first = today - timedelta(days=days - 1)
    counts: dict[str, Counter[str]] = {(first + timedelta(days=n)).isoformat(): Counter() for n in range(days)}
    for s in summaries:
        day = s.decided_at[:10]
        if day in counts:
            counts[day][s.outcome if s.outcome in OUTCOMES else "error"] += 1
    return [DayCount(day, {o: c.get(o, 0) for o in OUTCOMES}) for day, c in counts.items()]


def _blocked(conn: redis.Redis, summaries: list[DecisionSummary]) -> list[BlockedAgent]:
    """Agents' and bots' open pull requests whose latest verdict holds them (failure or pending).

    A closed pull request drops out of its head's verdicts (see worker/pipeline), so a PR counts only
    while that entry is there: a merged or abandoned PR is not shown as blocked for ever."""
    latest: dict[tuple[str, str, int], DecisionSummary] = {}
    for s in summaries:  # newest first: the first seen is the PR's current verdict
        if s.number is not None:
            latest.setdefault((s.platform, s.repo.lower(), s.number), s)
    held = [s for s in latest.values() if s.outcome in HELD and s.author_kind in _AUTOMATED and s.author]
    if not held:
        return []
    pipe = conn.pipeline(transaction=False)
    for s in held:
        pipe.hexists(keys.verdicts(s.platform, s.repo, s.sha), str(s.number))
    still_open = [s for s, there in zip(held, pipe.execute(), strict=True) if there]
    by_agent: dict[tuple[str, str], list[DecisionSummary]] = {}
    for s in still_open:
        by_agent.setdefault((s.author.lower(), s.author_kind), []).append(s)
    agents = [BlockedAgent(pulls[0].author, kind, tuple(pulls)) for (_, kind), pulls in by_agent.items()]
    return sorted(agents, key=lambda a: (-len(a.pulls), a.login.lower()))


def _chain_stops(summaries: list[DecisionSummary], records: list[decisions.DecisionRecord]) -> list[ChainStop]:
    """Chain findings in the decisions read (each once, from the newest decision carrying it) and
    deployments refused."""
    seen: set[tuple[str, ...]] = set()
    stops: list[ChainStop] = []
    for summary, record in zip(summaries, records, strict=True):
        verdict = record.verdict if isinstance(record.verdict, dict) else {}
        for reason in verdict.get("reasons") or []:
            if not isinstance(reason, dict):
                continue
            code = str(reason.get("code") or "")
            is_chain = code.startswith("chain-") and reason.get("outcome") == "failure"
            is_deploy = summary.subject.startswith("deployment to ") and reason.get("outcome") == "failure"
            if not (is_chain or is_deploy):
                continue
            raw_data = reason.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            actor = str(data.get("actor") or data.get("pusher") or "")
            message = str(reason.get("message") or "")
            at = str(data.get("at") or summary.decided_at)
            identity = (summary.platform, summary.repo.lower(), summary.subject, code, actor, at, message)
            if identity in seen:
                continue
            seen.add(identity)
            stops.append(ChainStop(at=at, platform=summary.platform, repo=summary.repo, subject=summary.subject,
                                    actor=actor, actor_kind=str(data.get("actor_kind") or ""), what=code,
                                    message=message, decision_id=summary.id))
    return stops


def _own_stops(entries: list[AuditEntry]) -> list[ChainStop]:
    """What agentgate undid or refused itself, from its own audit entries."""
    return [ChainStop(at=e.at, platform=e.platform, repo=e.repo, subject=e.target, actor="", actor_kind="",
                      what=_OWN_STOPS[e.action], message=e.detail)
            for e in entries if e.event == "agentgate" and e.action in _OWN_STOPS]


# -- the audit log -------------------------------------------------------------------------------------

def _audit_newest(conn: redis.Redis, since: datetime) -> list[AuditEntry]:
    """The newest entries, newest first, back to `since` and at most AUDIT_SCANNED of them."""
    names = set(AuditEntry.__dataclass_fields__)
    floor = f"{int(since.timestamp() * 1000)}-0"
    top = "+"
    found: list[AuditEntry] = []
    while len(found) < AUDIT_SCANNED:
        page = conn.xrevrange(STREAM, max=top, min=floor, count=min(AUDIT_PAGE, AUDIT_SCANNED - len(found)))
        if not page:
            break
        for _, raw in page:
            values = {text(k): text(v) for k, v in (raw or {}).items()}
            try:
                found.append(AuditEntry(**{k: v for k, v in values.items() if k in names}))
            except TypeError:
                continue  # an entry missing fields (another version wrote it): skipped, not an error
        top = "(" + text(page[-1][0] or b"")
    return found


def _token_event(entry: AuditEntry) -> TokenEvent | None:
    if entry.event != "token" or entry.action not in TOKEN_ACTIONS:
        return None
    return TokenEvent(at=entry.at, action=entry.action, agent=entry.actor, repo=entry.repo, task=entry.target,
                      detail=entry.detail, platform=entry.platform,
                      on_behalf_of=str(getattr(entry, "on_behalf_of", "") or ""))


# -- counters --------------------------------------------------------------------------------------------

def _counters(conn: redis.Redis) -> tuple[list[DeliveryCount], dict[str, int], dict[str, int]]:
    """Deliveries by platform, event and result (failed ones first), job failures by job, and failed
    deliveries found in the platforms' delivery logs by platform."""
    webhooks: list[DeliveryCount] = []
    singles: dict[str, dict[str, int]] = {"agentgate_job_failures": {}, "agentgate_failed_deliveries": {}}
    wanted = {name: len(COUNTERS[name][1]) for name in ("agentgate_webhooks", *singles) if name in COUNTERS}
    for raw_field, raw_value in conn.hgetall(keys.METRIC_COUNTERS).items():
        name, *labels = text(raw_field).split("\x1f")
        if wanted.get(name) != len(labels):
            continue
        try:
            value = int(float(raw_value))
        except ValueError:
            continue
        if name == "agentgate_webhooks":
            webhooks.append(DeliveryCount(labels[0], labels[1], labels[2], value))
        else:
            singles[name][labels[0]] = singles[name].get(labels[0], 0) + value
    webhooks.sort(key=lambda d: (not d.failed, -d.count, d.platform, d.event, d.result))
    return webhooks, singles["agentgate_job_failures"], singles["agentgate_failed_deliveries"]


def to_json(view: Overview) -> str:
    """The same overview for scripts (`/dashboard?format=json`)."""
    def plain(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return {k: plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
        if isinstance(obj, list | tuple):
            return [plain(x) for x in obj]
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        return obj
    data = plain(view)
    data["deliveries_failed"] = view.deliveries_failed
    return json.dumps(data, sort_keys=True)
