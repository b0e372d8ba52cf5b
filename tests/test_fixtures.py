"""Every committed GitHub example payload of a handled event parses and routes without error."""

from __future__ import annotations

import json

import pytest

from gatekeeper.forges.github.webhooks import parse
from tests.conftest import GITHUB_FIXTURES

FIXTURES = sorted(GITHUB_FIXTURES.glob("*.json"))
EXPECT_EVALUATION = {
    ("pull_request", "opened"), ("pull_request", "reopened"), ("pull_request", "synchronize"),
    ("pull_request", "ready_for_review"), ("pull_request_review", "submitted"),
    ("pull_request_review", "dismissed"),
}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_routes(path):
    """Routing a real example payload never raises, and PR-changing actions queue an evaluation."""
    event, action, _ = path.stem.split(".")
    payload = json.loads(path.read_text())
    payload["installation"] = {"id": 1}
    events = parse(event, payload, "delivery-1")
    if (event, action) in EXPECT_EVALUATION:
        # A push is recorded (who pushed) by a handler that then evaluates; the rest evaluate directly.
        evaluations = [e for e in events if e.evaluates_only or e.kind == "pushed"]
        assert len(evaluations) == 1
        assert evaluations[0].repo == payload["repository"]["full_name"]
        assert evaluations[0].subject == payload["pull_request"]["number"]
    for ev in events:
        json.dumps(ev.to_dict())  # JSON values only


def test_fixture_set_covers_handled_events():
    """The fixture set holds GitHub's examples for every event the receiver routes."""
    events = {p.stem.split(".")[0] for p in FIXTURES}
    assert {"pull_request", "pull_request_review", "issue_comment", "workflow_run", "merge_group",
            "status", "push", "check_suite", "check_run"} <= events


PR_FIXTURES = [p for p in FIXTURES if p.stem.split(".")[0] in ("pull_request", "pull_request_review")]


@pytest.mark.parametrize("path", PR_FIXTURES, ids=lambda p: p.stem)
def test_pull_request_fixture_becomes_facts(path):
    """Every pull_request and pull_request_review example becomes platform-neutral facts: the author's
    kind, the head SHA, base and head refs and labels are read from the payload as GitHub sends them."""
    from gatekeeper.cli.simulate import facts_from_github
    from gatekeeper.core.facts import ActorKind
    from gatekeeper.policy import DEFAULT_POLICY

    payload = json.loads(path.read_text())
    pr = payload["pull_request"]
    facts = facts_from_github(path.stem.split(".")[0], payload, DEFAULT_POLICY)
    assert facts.repo == payload["repository"]["full_name"]
    assert facts.number == pr["number"]
    assert facts.head_sha == pr["head"]["sha"] and facts.base_ref == pr["base"]["ref"]
    assert facts.labels == tuple(label["name"] for label in pr.get("labels") or [])
    expected = ActorKind.BOT if pr["user"]["type"] == "Bot" else ActorKind.HUMAN
    assert facts.author.login == pr["user"]["login"] and facts.author.kind in (expected, ActorKind.AGENT)
