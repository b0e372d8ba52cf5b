"""The one pipeline and its handlers against an in-memory forge (tests/memoryforge.py) and a real Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gatekeeper.core.facts import User
from gatekeeper.forges.port import Event
from gatekeeper.state import findings
from gatekeeper.state.queue import JobQueue
from gatekeeper.worker import handlers, jobs, pipeline, runtime
from tests.memoryforge import MemoryForge

AGENT = User("copilot-swe-agent[bot]", 1, bot=True, agent=True)
BOT = User("helper[bot]", 2, bot=True)
HEAD_A, HEAD_B = "a" * 40, "b" * 40


@pytest.fixture
def forge(settings, redis_conn):
    memory = MemoryForge()
    memory.branches["main"] = "0" * 40
    rt = runtime.Runtime(replace(settings, dry_run=True), redis_conn, lambda *args: memory,
                         JobQueue(redis_conn, settings.queue_name))
    runtime.configure(rt)
    yield memory
    runtime.configure(None)


def comment_event(body: str, author: User, number: int = 7) -> Event:
    return Event("memory", "d-1", "comment", "acme/widgets", 1, author, number,
                 {"action": "created", "is_pull_request": True, "comment_id": 5, "body": body,
                  "author": author.to_dict(), "created_at": "2026-12-01T10:00:00Z", "source": "comment",
                  "mentions": []})


def test_a_new_head_is_judged_with_its_own_files(forge):
    """Facts about a commit are keyed by that commit: a comment judged at head A reads A's files; the
    evaluation after a push to head B judges B's files (here a workflow, which needs two approvals)."""
    forge.add_pull(7, AGENT, HEAD_A, ["src/app.py"])
    rt = runtime.current()
    result = handlers.HANDLERS["comment"][0](handlers.Context(rt, forge, comment_event("/deploy", BOT)))
    assert result.findings and result.reevaluate == [7]
    forge.push(7, HEAD_B, [".github/workflows/deploy.yml"])
    assessed = pipeline.assess(rt, forge, forge.get_pull_request(7))
    assert [f.path for f in assessed.facts.changed_files] == [".github/workflows/deploy.yml"]
    [sensitive] = [r for r in assessed.verdict.reasons if r.code == "sensitive-paths"]
    assert sensitive.data["paths"] == [".github/workflows/deploy.yml"] and sensitive.data["needed"] == 2
    assert forge.reads.count(f"files 7@{HEAD_A[:7]}") == 1 and forge.reads.count(f"files 7@{HEAD_B[:7]}") == 1


def test_handle_records_findings_then_evaluates_through_the_queue(forge, redis_conn):
    """`jobs.handle` records the handler's findings, then the PR is evaluated (synchronously here) and
    its head fails with the finding; nothing was posted by the handler itself."""
    forge.add_pull(7, AGENT, HEAD_A, ["src/app.py"])
    rt = runtime.current()
    rt.queue = JobQueue(redis_conn, rt.settings.queue_name, is_async=False)
    jobs.handle(event=comment_event("/deploy production", BOT).to_dict())
    assert [f.kind for f in findings.load(redis_conn, "memory", "acme/widgets", 7)] == ["command"]
    assert forge.statuses[-1][:2] == (HEAD_A, "failure")
    assert "/deploy" in forge.comments[7]


def test_shared_head_shows_the_worst_verdict(forge, redis_conn):
    """Two open PRs at one head: the status posted is the worse of their verdicts, whichever was
    evaluated last."""
    forge.add_pull(7, AGENT, HEAD_A, ["src/app.py"], base_ref="main")
    forge.add_pull(8, AGENT, HEAD_A, ["src/app.py"], base_ref="feature/x")
    rt = runtime.current()
    pipeline.evaluate(rt, forge, 7, installation=1)
    pipeline.evaluate(rt, forge, 8, installation=1)
    assert [s[1] for s in forge.statuses] == ["pending", "pending"]  # never PR #8's success
    assert forge.statuses[-1][2].startswith("#7: ")  # and it says whose verdict it is
