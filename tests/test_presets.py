"""The presets in rules/: valid, shipped identically as package data, and default.yml is the built-in default."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gatekeeper.cli.main import main
from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, Commit, PullRequestFacts, Review
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import DEFAULT_POLICY, Policy, load_policy
from gatekeeper.policy.presets import PRESET_NAMES, preset_text
from tests.policies import actor

RULES = Path(__file__).parent.parent / "rules"
HEAD = "a" * 40
AGENT = actor("copilot-swe-agent[bot]", "Bot")
BOT = actor("dependabot[bot]", "Bot")
HUMAN = actor("octocat", "User")


def load(name: str) -> Policy:
    loaded = load_policy((RULES / f"{name}.yml").read_text(), source=f"rules/{name}.yml")
    assert isinstance(loaded, Policy), loaded
    return loaded


def pr(author=AGENT, base="main", files=("src/app.py",), reviews=(), head_ref="agent/x", **kw) -> PullRequestFacts:
    return PullRequestFacts(repo="o/r", number=7, author=author, head_sha=HEAD, head_ref=head_ref, base_ref=base,
                            base_sha="c" * 40, default_branch="main", head_repo="o/r",
                            changed_files=tuple(ChangedFile(f) for f in files), reviews=tuple(reviews), **kw)


def approval(login, sha=HEAD, permission="write", state="APPROVED", account_type="User") -> Review:
    return Review(actor(login, account_type), state, sha, permission)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_check_config_passes_on_each_preset(name, capsys):
    """`agentgate check-config` accepts every shipped preset."""
    assert main(["check-config", str(RULES / f"{name}.yml")]) == 0
    assert capsys.readouterr().out == f"{RULES / f'{name}.yml'}: ok\n"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_packaged_presets_are_the_rules_files(name):
    """What `extends: preset:NAME` resolves is byte for byte the file in rules/ (copy rules/*.yml to
    gatekeeper/presets/ after editing)."""
    assert preset_text(name) == (RULES / f"{name}.yml").read_text()


def test_default_yml_compiles_to_the_built_in_default():
    """rules/default.yml is the built-in secure default written out."""
    assert load("default") == replace(DEFAULT_POLICY, source="rules/default.yml")


CASES = [
    pr(),
    pr(reviews=[approval("maintainer")]),
    pr(reviews=[approval("maintainer", sha="b" * 40)]),
    pr(reviews=[approval("maintainer", permission="read")]),
    pr(reviews=[approval("dependabot[bot]", permission="admin", account_type="Bot")]),
    pr(files=(".github/workflows/ci.yml",), reviews=[approval("a")]),
    pr(files=(".github/workflows/ci.yml",), reviews=[approval("a"), approval("b")]),
    pr(files=("deploy/prod.yaml", "src/x.py"), changed_files_complete=False, reviews=[approval("a")]),
    pr(base="feature/x"),
    pr(base="release/2.0"),
    pr(author=BOT, base="production"),
    pr(author=HUMAN),
    pr(author=HUMAN, commits=(Commit("c" * 40, "x\n\nCo-authored-by: Claude <noreply@anthropic.com>", HUMAN),)),
    pr(author=HUMAN, commits=(Commit("c" * 40, "x", AGENT, AGENT),)),
    pr(requesters=("rita",), reviews=[approval("rita")]),
    pr(reviews=[approval("a", state="CHANGES_REQUESTED"), approval("b")]),
    pr(reviews=[approval("a"), approval("a", state="DISMISSED")]),
    pr(files=("keys/server.pem",), reviews=[approval("octocat")]),
]


@pytest.mark.parametrize("facts", CASES, ids=range(len(CASES)))
def test_default_yml_decides_like_no_file(facts):
    """No file, `version: 1` alone and rules/default.yml give the very same verdict."""
    expected = evaluate_pull_request(DEFAULT_POLICY, facts)
    assert evaluate_pull_request(load("default"), facts) == expected
    assert evaluate_pull_request(load_policy("version: 1\n", source="x"), facts) == expected
    assert evaluate_pull_request(load_policy(None, source="x"), facts) == expected


def test_coding_agents_keeps_agents_on_their_own_branches():
    """coding-agents: an agent's head branch must be its own (agent/, copilot/, claude/...)."""
    p = load("coding-agents")
    assert evaluate_pull_request(p, pr(head_ref="main-fix", reviews=[approval("m")])).outcome is Outcome.FAILURE
    assert evaluate_pull_request(p, pr(head_ref="copilot/fix-12", reviews=[approval("m")])).outcome \
        is Outcome.SUCCESS


def test_coding_agents_workflow_changes_need_a_human_anywhere():
    """coding-agents: an agent's workflow change needs a human approval even on an unprotected branch."""
    p = load("coding-agents")
    facts = pr(base="feature/x", files=(".github/workflows/ci.yml",))
    assert evaluate_pull_request(p, facts).outcome is Outcome.PENDING
    assert evaluate_pull_request(p, replace(facts, reviews=(approval("m"),))).outcome is Outcome.SUCCESS


def test_coding_agents_requester_cannot_approve():
    """coding-agents: the person who set the agent on the task cannot be its approver."""
    p = load("coding-agents")
    assert evaluate_pull_request(p, pr(requesters=("rita",), reviews=[approval("rita")])).outcome \
        is Outcome.PENDING


def test_dependency_bots_lockfile_only_needs_no_approval():
    """dependency-bots: a lockfile-only update by dependabot passes; a manifest change needs approval;
    anything else is blocked."""
    p = load("dependency-bots")
    assert evaluate_pull_request(p, pr(author=BOT, files=("package-lock.json",))).outcome is Outcome.SUCCESS
    assert evaluate_pull_request(p, pr(author=BOT, files=("package.json", "package-lock.json"))).outcome \
        is Outcome.PENDING
    assert evaluate_pull_request(p, pr(author=BOT, files=("src/index.js",))).outcome is Outcome.FAILURE
    assert p.chains.allow[0].labels == ("automerge",)


def test_strict_extends_coding_agents_and_raises_the_bar():
    """strict: two approvals, task context, limits, and the coding-agents rules underneath."""
    p = load("strict")
    assert p.layers == ("preset:coding-agents", "rules/strict.yml")
    assert p.approvals == 2 and p.task.required and p.limits.max_files == 50
    assert "develop" in p.protected_branches.patterns and "main" in p.protected_branches.patterns
    assert [r.name for r in p.rules][:3] == ["agents-use-their-own-branches", "agent-workflow-changes-need-a-human",
                                             "agents-stay-in-this-repository"]
    human_pr = pr(author=HUMAN, title="WIP: not yet")
    assert evaluate_pull_request(p, human_pr).outcome is Outcome.SUCCESS
    assert evaluate_pull_request(p, replace(human_pr, author=BOT)).outcome is Outcome.FAILURE
