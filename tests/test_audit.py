"""The audit log: every verified delivery is recorded with its actor's kind; queried and exported by time,
repository, kind and actor (`agentgate audit`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gatekeeper.cli import main as cli
from gatekeeper.state import audit
from gatekeeper.web import create_app
from tests.conftest import TEST_REDIS_URL, github_fixture
from tests.test_receiver import post


def _deliver(client, fixture: str, event: str, delivery: str, **changes) -> None:
    payload = github_fixture(fixture) | {"installation": {"id": 1}}
    payload.update(changes)
    assert post(client, payload, event=event, delivery=delivery).status_code in (200, 202)


def test_deliveries_are_recorded_once_with_actor_kind(settings, redis_conn):
    """Each verified delivery is one entry (a redelivery adds none), with who acted and their kind."""
    client = create_app(settings, redis_conn).test_client()
    _deliver(client, "issue_comment.created.1", "issue_comment", "c1",
             sender={"login": "copilot-swe-agent[bot]", "type": "Bot"})
    _deliver(client, "issue_comment.created.1", "issue_comment", "c1",
             sender={"login": "copilot-swe-agent[bot]", "type": "Bot"})
    _deliver(client, "pull_request.labeled.1", "pull_request", "l1")
    _deliver(client, "ping.event.1", "ping", "p1")  # ping: not an action
    entries = list(audit.query(redis_conn))
    assert [(e.event, e.actor, e.actor_kind) for e in entries] == [
        ("issue_comment", "copilot-swe-agent[bot]", "agent"), ("pull_request", "Codertocat", "human")]
    assert entries[0].target == "#1" and entries[1].detail.startswith("label ")


def test_query_filters_and_time_range(redis_conn):
    """Agents' actions can be read apart from humans', by repository, actor and time."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    for minutes, login, kind, repo in [(0, "alice", "human", "o/a"), (1, "copilot", "agent", "o/a"),
                                       (2, "renovate[bot]", "bot", "o/b")]:
        entry = audit.AuditEntry(at=(now + timedelta(minutes=minutes)).isoformat(), platform="github",
                                 delivery=f"d{minutes}", event="issue_comment", action="created", repo=repo,
                                 actor=login, actor_kind=kind)
        stamp = int((now + timedelta(minutes=minutes)).timestamp() * 1000)
        redis_conn.xadd(audit.STREAM, entry.to_dict(), id=f"{stamp}-0")
    assert [e.actor for e in audit.query(redis_conn, kinds={"agent", "bot"})] == ["copilot", "renovate[bot]"]
    assert [e.actor for e in audit.query(redis_conn, repo="O/A")] == ["alice", "copilot"]
    later = now + timedelta(seconds=30)
    assert [e.actor for e in audit.query(redis_conn, since=later)] == ["copilot", "renovate[bot]"]
    assert [e.actor for e in audit.query(redis_conn, until=now + timedelta(seconds=30))] == ["alice"]
    assert [e.actor for e in audit.query(redis_conn, limit=1)] == ["alice"]


def test_cli_exports_jsonl_and_csv(redis_conn, monkeypatch, capsys):
    """`agentgate audit --kind automated --format jsonl|csv` exports the entries."""
    monkeypatch.setenv("AGENTGATE_REDIS_URL", TEST_REDIS_URL)
    entry = audit.AuditEntry(at="2026-11-25T12:00:00+00:00", platform="github", delivery="d", event="push",
                             action="", repo="o/r", actor="copilot", actor_kind="agent", target="main",
                             detail="1 commit(s) forced")
    audit.record(redis_conn, entry)
    assert cli.main(["audit", "--kind", "automated", "--format", "jsonl"]) == 0
    assert json.loads(capsys.readouterr().out) == entry.to_dict()
    assert cli.main(["audit", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("at,platform,delivery") and lines[1].endswith("main,1 commit(s) forced,")
    assert cli.main(["audit", "--kind", "human"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_reports_unreachable_redis(monkeypatch, capsys):
    """No Redis: a clear message and exit 2, no traceback."""
    monkeypatch.setenv("AGENTGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["audit"]) == 2
    assert "cannot read the audit log" in capsys.readouterr().err


def test_csv_cells_cannot_run_as_formulas():
    """Agent-written text (comments, labels) starting like a formula is quoted in CSV exports."""
    entry = audit.AuditEntry(at="t", platform="github", delivery="d", event="issue_comment", action="created",
                             repo="o/r", actor="bot", actor_kind="bot", detail='=HYPERLINK("http://x")')
    [csv_text] = ["".join(audit.export(iter([entry]), "csv"))]
    assert "'=HYPERLINK" in csv_text
    assert audit.printable("a\x1b[31mb\nc") == "a [31mb c"


def test_limit_zero_returns_nothing(redis_conn):
    """`--limit 0` means no rows."""
    audit.record(redis_conn, audit.AuditEntry(at="t", platform="github", delivery="d", event="push", action="",
                                              repo="o/r", actor="a", actor_kind="agent"))
    assert list(audit.query(redis_conn, limit=0)) == []
