"""Policy change preview: which open PRs' verdicts a proposed policy flips, and loosenings in words."""

from __future__ import annotations

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, PullRequestFacts, Review
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import DEFAULT_POLICY, load_policy
from gatekeeper.policy.preview import Flip, PolicyPreview, preview, render_markdown, widening
from tests.policies import AGENT, HUMAN, policy

HEAD = "a" * 40


def pr(number: int, author=AGENT, base="main", files=("src/app.py",), reviews=(), title="Change") -> PullRequestFacts:
    return PullRequestFacts(repo="o/r", number=number, author=author, head_sha=HEAD, head_ref="agent/x",
                            base_ref=base, base_sha="c" * 40, title=title,
                            changed_files=tuple(ChangedFile(f) for f in files), reviews=tuple(reviews))


OPEN_PRS = [pr(1, title="Agent fix"), pr(2, author=HUMAN, title="Human fix"),
            pr(3, base="release/1", files=(".github/workflows/ci.yml",), title="CI bump"),
            pr(4, reviews=[Review(HUMAN, "APPROVED", HEAD, "write")], title="Approved")]


def test_loosening_shows_the_prs_it_would_flip():
    """Dropping the approval requirement flips waiting agent PRs to success and says so plainly."""
    loose = policy("approvals: {required: 0}\n")
    result = preview(DEFAULT_POLICY, loose, OPEN_PRS)
    assert result.flips == (Flip("o/r", 1, "Agent fix", Outcome.PENDING, Outcome.SUCCESS, (
        "no longer: Needs 1 more approval of aaaaaaa from a human with write access other than "
        "copilot-swe-agent[bot]", "No approval is needed")),)
    assert result.unchanged == 3
    assert result.widening == ("agents may now merge into main, master, release/*, release/**, production with "
                               "0 approvals (was 1)",)


def test_tightening_lists_what_newly_blocks():
    """A new block rule shows each PR it would block with what would unblock it."""
    strict = policy("rules:\n  - name: no-ci\n    when: {paths: ['.github/**']}\n"
                    "    block: {message: No CI changes, unblock: Drop the CI change}\n")
    result = preview(DEFAULT_POLICY, strict, OPEN_PRS)
    assert [(f.number, f.before, f.after, f.why) for f in result.flips] == [
        (3, Outcome.PENDING, Outcome.FAILURE, ("Drop the CI change",))]
    assert result.widening == ()


def test_proposed_policy_does_not_govern_its_own_pr():
    """A PR whose head loosens .agentgate.yml is judged by the base policy: it changes a sensitive path."""
    own = pr(5, files=(".agentgate.yml",), reviews=[Review(HUMAN, "APPROVED", HEAD, "write")])
    base = policy("")
    verdict = evaluate_pull_request(base, own)
    assert verdict.outcome is Outcome.PENDING
    assert [r.message for r in verdict.reasons if r.code == "sensitive-paths"] == [
        "Changes sensitive paths: .agentgate.yml"]


def test_widening_statements():
    """Each loosening of what bots and agents may do is one plain statement."""
    base = policy("teams:\n  leads: [lee]\napprovals: {from: [team:leads]}\nlimits: {files: 10}\n"
                  "task: {required: true}\nrules:\n  - name: hold\n    when: {labels: [hold]}\n    block: held\n")
    proposed = policy(
        "protected_branches: {remove: [production]}\nsensitive_paths: {remove: ['k8s/**']}\n"
        "approvals: {sensitive: 1, min_permission: triage, exclude_requesters: false, stale_after_push: false}\n"
        "limits: {files: 20}\nchains: {trigger_labels: {remove: [deploy]}, remove_bot_labels: false}\n"
        "identities:\n  trusted_bots:\n    - login: 'dependabot[bot]'\n      only_paths: ['**/*.lock']\n"
        "rules:\n  - name: docs\n    when: {actor: agent, only_paths: ['docs/**']}\n    allow: docs are fine\n")
    assert widening(base, proposed) == [
        "bots and agents may now merge into production with 0 approvals (no longer a protected branch)",
        "changes to k8s/** are no longer sensitive (they needed 2 approvals)",
        "changes to sensitive paths now need 1 approval (was 2)",
        "approvals now count from people with triage access (was write)",
        "approvals now count from anyone with triage access (was only team:leads)",
        "the person who set an agent on a task may now approve the agent's work",
        "approvals now survive new pushes: commits pushed after an approval are not reviewed",
        "dependabot[bot] is now trusted for changes within **/*.lock with 0 approvals",
        "agents may now change up to 20 files (was 10)",
        "agents' pull requests no longer need an approved task",
        "removed: rule hold blocks when it is labelled hold",
        "added: rule docs lifts the approval requirement when the change is by an agent; every changed path "
        "matches docs/**",
        "bots may now apply the label deploy",
        "trigger labels applied by bots are no longer removed",
    ]
    assert widening(proposed, base) == []


def test_invalid_proposed_policy_is_reported():
    """A proposed policy that does not load is shown with its errors: merged, it would make every PR error."""
    invalid = load_policy("version: 1\napprovals: {required: many}\n", source=".agentgate.yml")
    result = preview(DEFAULT_POLICY, invalid, OPEN_PRS[:1])
    assert result.proposed_errors == (
        ".agentgate.yml:2:23: approvals.required: Input should be a valid integer, unable to parse string as an "
        "integer",)
    assert result.flips[0].after is Outcome.ERROR


def test_markdown_snapshot():
    """The comment an admin sees for a loosening policy change."""
    result = PolicyPreview(
        flips=(Flip("o/r", 1, "Agent | fix", Outcome.PENDING, Outcome.SUCCESS, ("no longer: Needs 1 more approval",)),),
        unchanged=3, widening=("agents may now merge into main with 0 approvals (was 1)",))
    assert render_markdown(result) == (
        "### Policy change preview\n"
        "\n"
        "**This change lets bots and agents do more:**\n"
        "\n"
        "- agents may now merge into main with 0 approvals (was 1)\n"
        "\n"
        "1 open pull request(s) would change verdict (3 unchanged):\n"
        "\n"
        "| PR | now | with this policy | why |\n"
        "|---|---|---|---|\n"
        "| #1 Agent \\| fix | ⏳ pending | ✅ success | no longer: Needs 1 more approval |\n")
    assert render_markdown(PolicyPreview((), 4, ())) == (
        "### Policy change preview\n\nNo open pull request would change verdict (4 checked).\n")


def test_markdown_names_what_the_preview_left_out():
    """A preview bounded by its budget says which open pull requests it did not re-evaluate, and why:
    the first ten by number, the rest counted."""
    result = preview(DEFAULT_POLICY, DEFAULT_POLICY, OPEN_PRS[:1], left_out=list(range(10, 22)),
                     left_out_why="at most 10 per preview")
    assert result.left_out == tuple(range(10, 22))
    assert render_markdown(result).endswith(
        "No open pull request would change verdict (1 checked).\n\n"
        "Not re-evaluated: #10, #11, #12, #13, #14, #15, #16, #17, #18, #19 and 2 more: at most 10 per preview.\n")
