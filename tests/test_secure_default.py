"""The secure default (no .agentgate.yml), decided by the pure core over plain facts."""

from __future__ import annotations

from dataclasses import replace

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, Commit, PullRequestFacts, Review
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import DEFAULT_POLICY, ConfigError, InvalidPolicy
from tests.policies import actor

HEAD, OLD = "a" * 40, "b" * 40
AGENT = actor("copilot-swe-agent[bot]", "Bot")
BOT = actor("renovate[bot]", "Bot")
HUMAN = actor("octocat", "User")


def pr(author=AGENT, base="main", files=("src/app.py",), reviews=(), **kw) -> PullRequestFacts:
    return PullRequestFacts(repo="o/r", number=7, author=author, head_sha=HEAD, head_ref="agent/x", base_ref=base,
                            base_sha="c" * 40, default_branch="main",
                            changed_files=tuple(ChangedFile(f) for f in files), reviews=tuple(reviews), **kw)


def approval(login, sha=HEAD, permission="write", state="APPROVED", account_type="User") -> Review:
    return Review(actor(login, account_type), state, sha, permission)


def test_agent_pr_into_main_waits_for_a_human():
    """A bot or agent PR into the default branch is pending until a human approves the head."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr())
    assert verdict.outcome is Outcome.PENDING
    assert verdict.description() == (
        "Needs 1 more approval of aaaaaaa from a human with write access other than copilot-swe-agent[bot]")


def test_human_approval_of_head_passes():
    """One approval of the current head by a human with write access satisfies the default."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("maintainer")]))
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.description() == "Approved by maintainer (1/1 required)"


def test_bot_approval_never_counts():
    """An approval by a bot, even one with admin rights, does not count."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[
        approval("dependabot[bot]", permission="admin", account_type="Bot")]))
    assert verdict.outcome is Outcome.PENDING
    assert any("only humans' approvals count" in r.message for r in verdict.reasons)


def test_stale_approval_does_not_count():
    """An approval of an older commit is stale after a new push."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("maintainer", sha=OLD)]))
    assert verdict.outcome is Outcome.PENDING
    assert any("not the current head" in r.message for r in verdict.reasons)


def test_approval_without_write_access_does_not_count():
    """Approvals by people with read or triage access do not count."""
    for level in ("read", "triage", "none"):
        verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("visitor", permission=level)]))
        assert verdict.outcome is Outcome.PENDING


def test_dismissed_approval_does_not_count():
    """A dismissed approval no longer counts."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("maintainer"),
                                                               approval("maintainer", state="DISMISSED")]))
    assert verdict.outcome is Outcome.PENDING


def test_later_comment_keeps_approval():
    """As on GitHub, a comment after an approval does not withdraw it."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("maintainer"),
                                                               approval("maintainer", state="COMMENTED")]))
    assert verdict.outcome is Outcome.SUCCESS


def test_changes_requested_holds_the_pr():
    """A human's outstanding change request keeps the PR pending even with another approval."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("maintainer"),
                                                               approval("lead", sha=OLD, state="CHANGES_REQUESTED")]))
    assert verdict.outcome is Outcome.PENDING
    assert "lead to approve the current head" in verdict.description()


def test_author_cannot_approve_own_pr():
    """The agent itself (or whoever authored) never counts, even if the platform let it review."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(author=HUMAN, reviews=[approval("octocat")],
                                                       commits=(Commit("d" * 40, "x", author=AGENT),)))
    assert verdict.outcome is Outcome.PENDING


def test_requester_and_committer_approvals_do_not_count():
    """The human who set the agent on the task, or pushed into its branch, cannot approve its work."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("alice")], requesters=("alice",)))
    assert verdict.outcome is Outcome.PENDING
    pusher = Commit("e" * 40, "fixup", author=actor("bob"), committer=actor("bob"))
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(reviews=[approval("bob")], commits=(pusher,)))
    assert verdict.outcome is Outcome.PENDING


def test_human_pr_passes():
    """Pull requests by humans pass the default."""
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(author=HUMAN))
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.description() == "Opened by octocat, a human"


def test_human_pr_with_agent_written_commits_is_governed():
    """Commits authored by an agent make the change an agent's, whoever opened the PR."""
    commit = Commit("d" * 40, "feat", author=AGENT)
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(author=HUMAN, commits=(commit,)))
    assert verdict.outcome is Outcome.PENDING


def test_bot_pr_into_unprotected_branch_passes():
    """Only the default and protected branches (main, master, release/*, production) are guarded."""
    assert evaluate_pull_request(DEFAULT_POLICY, pr(author=BOT, base="feature/x")).outcome is Outcome.SUCCESS
    for base in ("master", "release/1.2", "production"):
        assert evaluate_pull_request(DEFAULT_POLICY, pr(author=BOT, base=base)).outcome is Outcome.PENDING


def test_default_branch_is_protected_whatever_its_name():
    """A repository whose default branch is `trunk` protects `trunk`."""
    facts = replace(pr(base="trunk"), default_branch="trunk")
    assert evaluate_pull_request(DEFAULT_POLICY, facts).outcome is Outcome.PENDING


def test_sensitive_paths_need_two_approvals():
    """Changes to CI workflows, CODEOWNERS, the policy, keys or deploy config need two human approvals."""
    for path in (".github/workflows/ci.yml", "CODEOWNERS", ".agentgate.yml", "certs/server.pem",
                 "deploy/k8s.yaml", ".github/actions/setup/action.yml"):
        one = evaluate_pull_request(DEFAULT_POLICY, pr(files=(path,), reviews=[approval("m1")]))
        assert one.outcome is Outcome.PENDING, path
        two = evaluate_pull_request(DEFAULT_POLICY, pr(files=(path,), reviews=[approval("m1"), approval("m2")]))
        assert two.outcome is Outcome.SUCCESS, path


def test_renaming_a_workflow_away_is_sensitive():
    """A rename touches both names: moving a workflow out of .github/ is still a workflow change."""
    facts = replace(pr(reviews=[approval("m1")]),
                    changed_files=(ChangedFile("old.yml", "renamed", previous_path=".github/workflows/x.yml"),))
    assert evaluate_pull_request(DEFAULT_POLICY, facts).outcome is Outcome.PENDING


def test_truncated_file_list_is_treated_as_sensitive():
    """When the platform capped the file list, unseen files may be sensitive: two approvals."""
    facts = replace(pr(reviews=[approval("m1")]), changed_files_complete=False)
    assert evaluate_pull_request(DEFAULT_POLICY, facts).outcome is Outcome.PENDING


def test_invalid_policy_is_error_with_every_message():
    """An invalid policy file is never ignored: error, and each parse error is a reason."""
    invalid = InvalidPolicy((ConfigError(".agentgate.yml", 3, 5, "unknown key 'foo'"),))
    verdict = evaluate_pull_request(invalid, pr(author=HUMAN))
    assert verdict.outcome is Outcome.ERROR
    assert ".agentgate.yml:3:5: unknown key 'foo'" in verdict.reasons[0].message


def test_description_fits_github_limit():
    """Status descriptions never exceed 140 characters."""
    long_login = "agent-" + "x" * 200 + "[bot]"
    verdict = evaluate_pull_request(DEFAULT_POLICY, pr(author=actor(long_login, "Bot")))
    assert len(verdict.description()) <= 140
