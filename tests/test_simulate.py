"""`agentgate simulate`: a policy's verdict for a webhook payload, with no platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.cli.main import main
from gatekeeper.cli.simulate import ReviewSpec, SimulationError, facts_from_github
from gatekeeper.core.facts import ActorKind
from gatekeeper.policy import DEFAULT_POLICY

FIXTURES = Path(__file__).parent / "fixtures" / "github"
RULES = Path(__file__).parent.parent / "rules"


def payload(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def agent_payload(tmp_path: Path) -> Path:
    """The documented pull_request.opened example, opened by Copilot instead of a person."""
    data = payload("pull_request.opened.1")
    data["pull_request"]["user"] = {"login": "Copilot", "type": "Bot", "id": 198982749}
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    return path


def test_facts_from_a_real_pull_request_payload():
    """The payload's author, refs, head SHA, labels and file count become facts."""
    data = payload("pull_request.opened.2")
    facts = facts_from_github("pull_request", data, DEFAULT_POLICY, files=["README.md"], labels=["extra"])
    pr = data["pull_request"]
    assert (facts.repo, facts.number, facts.head_sha, facts.base_ref, facts.default_branch) == (
        "Codertocat/Hello-World", 2, pr["head"]["sha"], "master", "master")
    assert facts.author.login == "Codertocat" and facts.author.kind is ActorKind.HUMAN
    assert facts.labels == ("bug", "extra")
    assert facts.changed_files_complete is True


def test_review_payload_adds_its_review():
    """A pull_request_review payload contributes its review, with permission read from the association."""
    data = payload("pull_request_review.submitted.1")
    facts = facts_from_github("pull_request_review", data, DEFAULT_POLICY)
    assert [(r.reviewer.login, r.state, r.permission) for r in facts.reviews] == [("Codertocat", "COMMENTED", "admin")]
    assert facts.changed_files_complete is False  # no files given: unknown files may be sensitive


def test_review_spec_parsing():
    """--review LOGIN:STATE[:SHA][:PERMISSION]; SHA defaults to the head and PERMISSION to write."""
    assert ReviewSpec.parse("alice:approved") == ReviewSpec("alice", "APPROVED", None, "write")
    assert ReviewSpec.parse("bob:changes_requested:abc123") == ReviewSpec("bob", "CHANGES_REQUESTED", "abc123", "write")
    assert ReviewSpec.parse("carol:approved:abc123:read") == ReviewSpec("carol", "APPROVED", "abc123", "read")
    assert ReviewSpec.parse("dan:approved:admin") == ReviewSpec("dan", "APPROVED", None, "admin")
    with pytest.raises(SimulationError):
        ReviewSpec.parse("eve:loved")


def test_unsupported_event_is_an_error():
    """Only pull_request and pull_request_review payloads describe a pull request."""
    with pytest.raises(SimulationError):
        facts_from_github("push", payload("push.event.1"), DEFAULT_POLICY)


def test_simulate_cli_prints_verdict_and_every_reason(tmp_path, capsys):
    """The text output starts with the outcome and lists each reason with what unblocks it."""
    code = main(["simulate", "--policy", str(RULES / "coding-agents.yml"), "--event", "pull_request",
                 "--payload", str(agent_payload(tmp_path)), "--files", "src/app.py", ".github/workflows/ci.yml"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("failure: ")
    assert "  [failure] rule:agents-use-their-own-branches: Agents push only to their own branches" in out
    assert "  [pending] needs-approval: 0/2 qualifying approvals of ec26c3e into master" in out


def test_simulate_cli_json_with_reviews_and_files_from(tmp_path, capsys):
    """--json prints the verdict and facts; --files-from and --review feed the facts."""
    files = tmp_path / "files.txt"
    files.write_text("src/app.py\n\n")
    policy = tmp_path / "p.yml"
    policy.write_text("version: 1\n")
    code = main(["simulate", "--policy", str(policy), "--event", "pull_request", "--payload",
                 str(agent_payload(tmp_path)), "--files-from", str(files), "--review", "maintainer:approved",
                 "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["verdict"]["outcome"] == "success"
    assert result["facts"]["changed_files"][0]["path"] == "src/app.py"
    assert result["verdict"]["reasons"][-1]["message"] == "Approved by maintainer (1/1 required)"


def test_simulate_cli_invalid_policy_exits_1(tmp_path, capsys):
    """An invalid policy simulates as `error` and exits 1."""
    policy = tmp_path / "p.yml"
    policy.write_text("version: 3\n")
    code = main(["simulate", "--policy", str(policy), "--event", "pull_request", "--payload",
                 str(FIXTURES / "pull_request.opened.1.json")])
    assert code == 1
    assert capsys.readouterr().out.startswith("error: ")


def test_simulate_cli_bad_input_exits_2(tmp_path, capsys):
    """Unreadable inputs and unsupported events exit 2 with the reason on stderr."""
    code = main(["simulate", "--policy", str(RULES / "default.yml"), "--event", "push", "--payload",
                 str(FIXTURES / "push.event.1.json")])
    assert code == 2
    assert "event 'push' is not supported" in capsys.readouterr().err


def test_simulate_a_token_request(tmp_path, capsys):
    """`agentgate simulate --token-claims` says what the `tokens` section grants, or why not, with no
    issuer or platform: exit 0 granted, 1 refused."""
    from gatekeeper.cli.main import main

    policy = tmp_path / "p.yml"
    policy.write_text("version: 1\ntokens:\n  - agents:\n      - issuer: https://token.actions.githubusercontent.com\n"
                      "        subject: 'repo:acme/agent-runner:*'\n    permissions: {contents: write}\n    ttl: 15m\n")
    claims = tmp_path / "c.json"
    claims.write_text('{"iss": "https://token.actions.githubusercontent.com", '
                      '"sub": "repo:acme/agent-runner:ref:refs/heads/main"}')
    base = ["simulate", "--policy", str(policy), "--token-claims", str(claims)]
    assert main([*base, "--task-label", "agent-approved:alice"]) == 0
    assert "contents: write for 15 min" in capsys.readouterr().out
    assert main([*base, "--task-label", "agent-approved:alice", "--permissions", "workflows=write"]) == 1
    assert "workflows: write" in capsys.readouterr().out
    assert main([*base, "--task-label", "agent-approved:bob:read"]) == 1
    claims.write_text('{"iss": "https://token.actions.githubusercontent.com", '
                      '"sub": "repo:evil/fork:ref:refs/heads/x"}')
    assert main([*base, "--task-label", "agent-approved:alice"]) == 1
    assert "no `tokens` rule names this agent" in capsys.readouterr().out
