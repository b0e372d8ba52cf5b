"""The one approval rule (core/approvals.py), used by the verdict and by chain findings alike."""

from __future__ import annotations

from dataclasses import replace

from gatekeeper.core import enforcement
from gatekeeper.core.chains import judge_comment, judge_label, label_key
from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import Commit, Confirmation, PullRequestFacts, RecordedFinding, Review
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import DEFAULT_POLICY
from tests.policies import AGENT, actor, policy

HEAD = "a" * 40
BOT = actor("ci-helper[bot]", "Bot")
T0, T1, T2 = "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z"


def facts(**changes) -> PullRequestFacts:
    base = PullRequestFacts(repo="acme/widgets", number=7, author=AGENT, head_sha=HEAD, head_ref="agent/x",
                            base_ref="main", base_sha="b" * 40, head_repo="acme/widgets")
    return replace(base, **changes)


def approval(login: str, at: str = T2, sha: str = HEAD, permission: str = "write") -> Review:
    return Review(actor(login, "User"), "APPROVED", sha, permission, at)


def finding(kind="command", key="deploy", at=T1) -> RecordedFinding:
    return RecordedFinding(id=f"{kind}-{key}-{at}", kind=kind, actor=BOT.login, actor_kind="bot", subject=key,
                           message=f"{BOT.login} did {key}", unblock="a human", at=at, key=key)


def settle(f: PullRequestFacts, found: list[RecordedFinding], confirmations=(), p=DEFAULT_POLICY):
    return enforcement.settle(p, f, found, [(c, actor(c.login, "User")) for c in confirmations])


def test_approval_of_the_head_after_the_action_lifts_it():
    """A counting approval of the current head given after the action lifts its finding; one given
    before it (the action was edited in afterwards) does not."""
    assert settle(facts(reviews=(approval("maintainer", at=T2),)), [finding(at=T1)]).open == []
    assert len(settle(facts(reviews=(approval("maintainer", at=T0),)), [finding(at=T1)]).open) == 1


def test_a_committers_approval_lifts_nothing():
    """Someone who wrote commits of the PR cannot approve its chain findings either (one rule)."""
    carol = actor("carol", "User")
    f = facts(commits=(Commit("c" * 40, "fix", carol, carol),), reviews=(approval("carol"),))
    assert len(settle(f, [finding()]).open) == 1
    verdict = evaluate_pull_request(DEFAULT_POLICY, f)
    assert verdict.outcome is Outcome.PENDING and verdict.approvals == ()


def test_the_requester_cannot_lift_by_approving_or_repeating():
    """The human who set the agent on the task can neither approve its findings nor repeat its command."""
    f = facts(requesters=("alice",), reviews=(approval("alice"),))
    assert len(settle(f, [finding()], [Confirmation("command", "deploy", "alice", T2, "admin")]).open) == 1


def test_a_repeat_needs_the_policys_permission():
    """A human's repeat counts at the policy's `min_permission`, not at a fixed `write`."""
    strict = policy("approvals: {min_permission: admin}\n")
    repeat = Confirmation("command", "deploy", "maintainer", T2, "write")
    assert len(settle(facts(), [finding()], [repeat], strict).open) == 1
    assert settle(facts(), [finding()], [replace(repeat, permission="admin")], strict).open == []
    assert settle(facts(), [finding()], [repeat]).open == []


def test_a_repeat_must_be_the_same_action_after_it():
    """Another verb, another label, a repeat before the bot's action, or an unscanned comment: not lifted."""
    [command] = judge_comment(DEFAULT_POLICY, BOT, "/dеploy now", ["src/app.py"])  # a Cyrillic е
    stored = finding(key=command.key)
    assert settle(facts(), [stored], [Confirmation("command", "deploy", "maintainer", T2, "write")]).open == []
    assert settle(facts(), [stored], [Confirmation("command", "merge", "maintainer", T2, "write")]).open
    assert settle(facts(), [stored], [Confirmation("command", "deploy", "maintainer", T0, "write")]).open
    [label] = judge_label(DEFAULT_POLICY, BOT, "auto-merge", ["src/app.py"])
    labelled = finding("label", label.key)
    assert settle(facts(), [labelled], [Confirmation("label", label_key("Auto-Merge"), "m", T2, "write")]).open == []
    unscanned = finding(key="(unscanned)")
    assert settle(facts(), [unscanned], [Confirmation("command", "(unscanned)", "m", T2, "admin")]).open


def test_bots_never_confirm():
    """A bot repeating a bot's command lifts nothing."""
    repeat = Confirmation("command", "deploy", "other[bot]", T2, "admin")
    assert enforcement.settle(DEFAULT_POLICY, facts(), [finding()], [(repeat, actor("other[bot]", "Bot"))]).open
