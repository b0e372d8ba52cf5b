"""The policy language's predicates and outcomes, decided by the pure core over plain facts."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, Commit, LabelApplied, PullRequestFacts, Review, TaskRef
from gatekeeper.core.verdict import Outcome
from gatekeeper.policy import InvalidPolicy, Policy, load_policy
from tests.policies import AGENT, HUMAN, actor
from tests.policies import policy as shared_policy

HEAD, OLD = "a" * 40, "b" * 40
BOT = actor("dependabot[bot]", "Bot")


def policy(text: str) -> Policy:
    return shared_policy(text, source="test.yml")


def pr(author=AGENT, base="main", files=("src/app.py",), reviews=(), head_ref="agent/x", **kw) -> PullRequestFacts:
    return PullRequestFacts(repo="o/r", number=7, author=author, head_sha=HEAD, head_ref=head_ref, base_ref=base,
                            base_sha="c" * 40, default_branch="main", head_repo=kw.pop("head_repo", "o/r"),
                            changed_files=tuple(ChangedFile(f) if isinstance(f, str) else f for f in files),
                            reviews=tuple(reviews), **kw)


def approval(login, sha=HEAD, permission="write", state="APPROVED") -> Review:
    return Review(actor(login, "User"), state, sha, permission)


def codes(verdict) -> list[str]:
    return [r.code for r in verdict.reasons]


def outcome(text: str, facts: PullRequestFacts) -> Outcome:
    return evaluate_pull_request(policy(text), facts).outcome


BLOCK_AGENTS = "rules:\n  - when: {actor: agent}\n    block: Agents may not\n"


# -- conditions ------------------------------------------------------------------------------------


def test_actor_kind_condition():
    """`actor: agent` holds for agents, not for bots or humans; `automated` holds for both bots and agents."""
    assert outcome(BLOCK_AGENTS, pr()) is Outcome.FAILURE
    assert outcome(BLOCK_AGENTS, pr(author=BOT, reviews=[approval("m")])) is Outcome.SUCCESS
    assert outcome(BLOCK_AGENTS, pr(author=HUMAN)) is Outcome.SUCCESS
    automated = "rules:\n  - when: {actor: automated}\n    block: stop bots\n"
    assert outcome(automated, pr(author=BOT)) is Outcome.FAILURE
    assert outcome(automated, pr(author=HUMAN)) is Outcome.SUCCESS


def test_actor_is_an_agent_when_an_agent_wrote_commits():
    """A human's PR whose commits an agent wrote counts as an agent's change."""
    facts = pr(author=HUMAN, commits=(Commit("c" * 40, "x", AGENT, AGENT),))
    assert outcome(BLOCK_AGENTS, facts) is Outcome.FAILURE


def test_login_condition_is_a_case_insensitive_glob():
    """`login` matches the author's login against globs, ignoring case."""
    text = "rules:\n  - when: {login: 'Dependabot*'}\n    block: stop\n"
    assert outcome(text, pr(author=BOT)) is Outcome.FAILURE
    assert outcome(text, pr(author=AGENT)) is not Outcome.FAILURE


def test_event_condition():
    """`event` holds for what is being decided: pull_request by default, merge_group for merge queues."""
    text = "rules:\n  - when: {event: merge_group}\n    block: not in the queue\n"
    p = policy(text)
    assert evaluate_pull_request(p, pr(author=HUMAN)).outcome is Outcome.SUCCESS
    assert evaluate_pull_request(p, pr(author=HUMAN), event="merge_group").outcome is Outcome.FAILURE


def test_branch_condition_matches_the_base_branch():
    """`branch` globs match the base branch; `release/**` covers nested release branches."""
    text = "rules:\n  - when: {branch: 'release/**'}\n    block: frozen\n"
    assert outcome(text, pr(author=HUMAN, base="release/1.2/hotfix")) is Outcome.FAILURE
    assert outcome(text, pr(author=HUMAN, base="main")) is Outcome.SUCCESS


def test_head_branch_condition_with_unless():
    """`unless` lifts a rule: agents outside their own branches are blocked, inside they are not."""
    text = ("rules:\n  - when: {actor: agent}\n    unless: {head_branch: ['agent/**', 'copilot/**']}\n"
            "    block: own branches only\n")
    assert outcome(text, pr(head_ref="feature/x", reviews=[approval("m")])) is Outcome.FAILURE
    assert outcome(text, pr(head_ref="copilot/fix-1", reviews=[approval("m")])) is Outcome.SUCCESS


def test_paths_condition_holds_when_some_path_matches():
    """`paths` holds when any changed path (or a renamed file's old path) matches."""
    text = "rules:\n  - when: {paths: ['db/**']}\n    block: migrations need a DBA\n"
    assert outcome(text, pr(author=HUMAN, files=("src/a.py", "db/001.sql"))) is Outcome.FAILURE
    assert outcome(text, pr(author=HUMAN, files=(ChangedFile("sql/001.sql", previous_path="db/001.sql"),))) \
        is Outcome.FAILURE
    assert outcome(text, pr(author=HUMAN, files=("src/a.py",))) is Outcome.SUCCESS


def test_only_paths_condition_needs_every_path_and_a_complete_list():
    """`only_paths` holds when every changed path matches, there is at least one, and the list is complete."""
    text = "rules:\n  - when: {only_paths: ['docs/**']}\n    block: docs freeze\n"
    assert outcome(text, pr(author=HUMAN, files=("docs/a.md", "docs/b.md"))) is Outcome.FAILURE
    assert outcome(text, pr(author=HUMAN, files=("docs/a.md", "src/a.py"))) is Outcome.SUCCESS
    assert outcome(text, pr(author=HUMAN, files=())) is Outcome.SUCCESS
    assert outcome(text, pr(author=HUMAN, files=("docs/a.md",), changed_files_complete=False)) is Outcome.SUCCESS


def test_labels_condition_is_any_of_case_insensitive():
    """`labels` holds when the PR carries any of them, compared without case."""
    text = "rules:\n  - when: {labels: [do-not-merge, hold]}\n    block: on hold\n"
    assert outcome(text, pr(author=HUMAN, labels=("bug", "HOLD"))) is Outcome.FAILURE
    assert outcome(text, pr(author=HUMAN, labels=("bug",))) is Outcome.SUCCESS


def test_title_and_body_patterns():
    """`title` and `body` are case-insensitive regexes searched anywhere in the text."""
    title = "rules:\n  - when: {title: '^\\s*wip\\b'}\n    block: wip\n"
    body = "rules:\n  - when: {body: 'skip-review'}\n    block: no skipping\n"
    assert outcome(title, pr(author=HUMAN, title="WIP: later")) is Outcome.FAILURE
    assert outcome(title, pr(author=HUMAN, title="Fix wiping")) is Outcome.SUCCESS
    assert outcome(body, pr(author=HUMAN, body="line one\nplease SKIP-REVIEW")) is Outcome.FAILURE
    assert outcome(body, pr(author=HUMAN, body="reviewed")) is Outcome.SUCCESS


def test_draft_and_fork_conditions():
    """`draft` and `fork` compare the PR's draft state and whether its head lives in another repository."""
    draft = "rules:\n  - when: {draft: true}\n    block: drafts wait\n"
    fork = "rules:\n  - when: {fork: true}\n    block: no forks\n"
    assert outcome(draft, pr(author=HUMAN, draft=True)) is Outcome.FAILURE
    assert outcome(draft, pr(author=HUMAN)) is Outcome.SUCCESS
    assert outcome(fork, pr(author=HUMAN, head_repo="someone/r")) is Outcome.FAILURE
    assert outcome(fork, pr(author=HUMAN)) is Outcome.SUCCESS


def test_all_conditions_of_a_rule_must_hold():
    """A rule's conditions are a conjunction."""
    text = "rules:\n  - when: {actor: agent, branch: 'release/**'}\n    block: stop\n"
    assert outcome(text, pr(base="release/1")) is Outcome.FAILURE
    assert outcome(text, pr(base="main", reviews=[approval("m")])) is Outcome.SUCCESS


# -- outcomes --------------------------------------------------------------------------------------


def test_block_fails_with_message_and_unblock():
    """`block` makes the verdict failure; its reason carries the message and what unblocks it."""
    verdict = evaluate_pull_request(policy(BLOCK_AGENTS), pr())
    blocking = [r for r in verdict.reasons if r.code == "rule:rule-1"]
    assert blocking[0].outcome is Outcome.FAILURE and blocking[0].message == "Agents may not"
    assert blocking[0].unblock == ("Change the pull request so that rule rule-1 no longer applies "
                                   "(the change is by an agent), or change the rule in test.yml")


def test_block_uses_the_written_unblock():
    """A rule's own `unblock` text is what reviewers see."""
    text = "rules:\n  - name: hold\n    when: {labels: [hold]}\n    block: {message: On hold, unblock: Remove hold}\n"
    verdict = evaluate_pull_request(policy(text), pr(author=HUMAN, labels=("hold",)))
    assert [(r.message, r.unblock) for r in verdict.deciding] == [("On hold", "Remove hold")]


def test_require_counts_approvals_from_named_reviewers():
    """`require` needs N approvals of the head from its reviewers (teams expand to members)."""
    text = ("teams:\n  security: [sam, sue]\nrules:\n  - name: sec\n    when: {paths: ['auth/**']}\n"
            "    require: {approvals: 1, reviewers: [team:security]}\n")
    facts = pr(author=HUMAN, files=("auth/login.py",), reviews=[approval("max")])
    verdict = evaluate_pull_request(policy(text), facts)
    assert verdict.outcome is Outcome.PENDING
    assert [r.unblock for r in verdict.deciding] == [
        "Needs 1 more approval of aaaaaaa from team:security (a human with write access other than octocat)"]
    assert outcome(text, replace(facts, reviews=(approval("Sue"),))) is Outcome.SUCCESS


def test_require_adds_to_the_base_requirement():
    """A require rule is a separate requirement: the base approval does not satisfy a rule needing two."""
    text = "rules:\n  - when: {actor: agent}\n    require: {approvals: 2}\n"
    assert outcome(text, pr(reviews=[approval("m")])) is Outcome.PENDING
    assert outcome(text, pr(reviews=[approval("m"), approval("n")])) is Outcome.SUCCESS


def test_allow_lifts_the_base_requirement():
    """An `allow` rule lifts the protected-branch approval requirement for what it matches."""
    text = "rules:\n  - when: {actor: agent, only_paths: ['docs/**']}\n    allow: Docs by agents are fine\n"
    verdict = evaluate_pull_request(policy(text), pr(files=("docs/a.md",)))
    assert verdict.outcome is Outcome.SUCCESS
    assert "rule:rule-1" in codes(verdict)
    assert outcome(text, pr(files=("docs/a.md", "src/a.py"))) is Outcome.PENDING


def test_allow_never_lifts_sensitive_paths():
    """Sensitive paths keep their approvals even when an allow rule or a trusted bot matches."""
    text = "rules:\n  - when: {actor: agent, only_paths: ['.github/**']}\n    allow: CI by agents\n"
    verdict = evaluate_pull_request(policy(text), pr(files=(".github/workflows/ci.yml",)))
    assert verdict.outcome is Outcome.PENDING
    assert "not-lifted" in codes(verdict)


def test_most_severe_outcome_wins():
    """block beats require beats allow, whatever their order."""
    text = ("rules:\n  - when: {actor: agent, only_paths: ['docs/**']}\n    allow: ok\n"
            "  - when: {actor: agent}\n    require: {approvals: 1}\n"
            "  - when: {labels: [hold]}\n    block: held\n")
    assert outcome(text, pr(files=("docs/a.md",))) is Outcome.PENDING
    assert outcome(text, pr(files=("docs/a.md",), labels=("hold",))) is Outcome.FAILURE


def test_pattern_timeout_fails_closed():
    """A pattern that runs out of time makes the verdict error, never a silent non-match."""
    text = "rules:\n  - when: {title: '(a|aa)+$'}\n    block: x\n"
    verdict = evaluate_pull_request(policy(text), pr(author=HUMAN, title="a" * 5000 + "!"))
    assert verdict.outcome is Outcome.ERROR
    assert "pattern-timeout" in codes(verdict)


def test_invalid_policy_is_error_on_every_pr():
    """An invalid policy yields error with each problem as a reason."""
    invalid = load_policy("version: 2\n", source=".agentgate.yml")
    assert isinstance(invalid, InvalidPolicy)
    verdict = evaluate_pull_request(invalid, pr(author=HUMAN))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.reasons[0].unblock == "Fix .agentgate.yml on the base branch (1 error(s))"


# -- approvals -------------------------------------------------------------------------------------


def test_approvals_counts_and_min_permission():
    """`approvals.required` and `min_permission` set what an automated PR into a protected branch needs."""
    text = "approvals: {required: 2, min_permission: maintain}\n"
    assert outcome(text, pr(reviews=[approval("m", permission="maintain")])) is Outcome.PENDING
    assert outcome(text, pr(reviews=[approval("m", permission="maintain"), approval("n", permission="write")])) \
        is Outcome.PENDING
    assert outcome(text, pr(reviews=[approval("m", permission="admin"), approval("n", permission="maintain")])) \
        is Outcome.SUCCESS


def test_approvals_from_restricts_who_counts():
    """`approvals.from` limits the base requirement to listed logins and teams."""
    text = "teams:\n  leads: [lee]\napprovals:\n  from: [team:leads, ana]\n"
    assert outcome(text, pr(reviews=[approval("max")])) is Outcome.PENDING
    assert outcome(text, pr(reviews=[approval("lee")])) is Outcome.SUCCESS
    assert outcome(text, pr(reviews=[approval("ana")])) is Outcome.SUCCESS


def test_requester_and_committers_cannot_approve_unless_allowed():
    """By default the requester and committers are excluded; the policy can let them count."""
    facts = pr(requesters=("rita",), reviews=[approval("rita")])
    assert outcome("", facts) is Outcome.PENDING
    assert outcome("approvals: {exclude_requesters: false}\n", facts) is Outcome.SUCCESS
    pushed = pr(commits=(Commit("c" * 40, "x", actor("cole"), None),), reviews=[approval("cole")])
    assert outcome("", pushed) is Outcome.PENDING
    assert outcome("approvals: {exclude_committers: false}\n", pushed) is Outcome.SUCCESS


def test_stale_after_push_can_be_turned_off():
    """Approvals of older commits count only when `stale_after_push: false`."""
    facts = pr(reviews=[approval("m", sha=OLD)])
    assert outcome("", facts) is Outcome.PENDING
    assert outcome("approvals: {stale_after_push: false}\n", facts) is Outcome.SUCCESS


def test_zero_required_approvals():
    """`approvals.required: 0` lets automated changes into protected branches pass without review."""
    verdict = evaluate_pull_request(policy("approvals: {required: 0}\n"), pr())
    assert verdict.outcome is Outcome.SUCCESS
    assert "no-approval-needed" in codes(verdict)


def test_protected_branches_and_sensitive_paths_are_configurable():
    """Unprotected bases need no approval; sensitive paths raise the count to `approvals.sensitive`."""
    text = "protected_branches: [trunk]\nsensitive_paths: {add: ['secrets/**']}\napprovals: {sensitive: 3}\n"
    assert outcome(text, pr(base="develop")) is Outcome.SUCCESS
    assert outcome(text, pr(base="trunk", files=("secrets/x",), reviews=[approval("a"), approval("b")])) \
        is Outcome.PENDING
    assert outcome(text, pr(base="trunk", files=("secrets/x",),
                            reviews=[approval("a"), approval("b"), approval("c")])) is Outcome.SUCCESS


# -- identities, limits, task ----------------------------------------------------------------------


def test_trusted_bot_within_its_paths_needs_its_approvals():
    """A trusted bot whose every changed path is within `only_paths` needs only its own approval count."""
    text = "identities:\n  trusted_bots:\n    - login: 'dependabot[bot]'\n      only_paths: ['**/*.lock']\n"
    verdict = evaluate_pull_request(policy(text), pr(author=BOT, files=("yarn.lock", "web/Gemfile.lock")))
    assert verdict.outcome is Outcome.SUCCESS and "trusted-bot" in codes(verdict)
    assert outcome(text, pr(author=BOT, files=("yarn.lock", "src/a.py"))) is Outcome.PENDING
    assert outcome(text, pr(author=AGENT, files=("yarn.lock",))) is Outcome.PENDING


def test_agent_file_and_line_limits():
    """Agents' changes beyond `limits.files` or `limits.lines` fail with a way to split them."""
    text = "limits: {files: 2, lines: 100}\n"
    many = pr(files=("a", "b", "c"), reviews=[approval("m")])
    verdict = evaluate_pull_request(policy(text), many)
    assert verdict.outcome is Outcome.FAILURE
    assert [r.unblock for r in verdict.deciding] == ["Split the change into pull requests of at most 2 files"]
    big = pr(files=(ChangedFile("a", additions=90, deletions=20),), reviews=[approval("m")])
    assert outcome(text, big) is Outcome.FAILURE
    assert outcome(text, pr(author=BOT, files=("a", "b", "c"), reviews=[approval("m")])) is Outcome.SUCCESS
    assert outcome(text, pr(files=("a",), changed_files_complete=False, reviews=[approval("m")])) \
        is Outcome.FAILURE


def _task(label="agent-approved", who=HUMAN, permission="write", state="open") -> TaskRef:
    return TaskRef(12, state, (label,), (LabelApplied(label, who, permission),))


def test_task_context_required():
    """With `task.required`, an agent's PR must reference an open issue a human with write access labelled."""
    text = "task: {required: true}\n"
    ok = pr(reviews=[approval("m")], tasks_checked=True, tasks=(_task(),))
    assert outcome(text, ok) is Outcome.SUCCESS
    assert outcome(text, replace(ok, tasks=())) is Outcome.FAILURE
    assert outcome(text, replace(ok, tasks=(_task(who=AGENT),))) is Outcome.PENDING
    assert outcome(text, replace(ok, tasks=(_task(permission="read"),))) is Outcome.PENDING
    assert outcome(text, replace(ok, tasks=(_task(state="closed"),))) is Outcome.PENDING
    assert outcome(text, replace(ok, tasks_checked=False)) is Outcome.ERROR
    assert outcome(text, pr(author=BOT, reviews=[approval("m")])) is Outcome.SUCCESS


def test_configured_agent_logins_are_passed_on():
    """`identities.agents` and `bots` reach the policy for the gatherer's classification."""
    p = policy("identities:\n  agents: [our-agent]\n  bots: [deploy-bot]\n")
    assert p.agents == ("our-agent",) and p.bots == ("deploy-bot",)


# -- property: stricter rules never loosen ---------------------------------------------------------

_kinds = st.sampled_from(["agent", "bot", "human", "automated"])
_paths = st.sampled_from(["src/a.py", "docs/a.md", ".github/workflows/ci.yml", "db/1.sql", "yarn.lock"])
_branches = st.sampled_from(["main", "develop", "release/1", "feature/x"])


@st.composite
def _conditions(draw, with_paths: bool = True) -> str:
    parts = []
    if draw(st.booleans()):
        parts.append(f"actor: {draw(_kinds)}")
    if with_paths and draw(st.booleans()):
        parts.append(f"paths: ['{draw(_paths)}']")
    if draw(st.booleans()):
        parts.append(f"branch: '{draw(_branches)}'")
    if draw(st.booleans()):
        parts.append("labels: [hold]")
    return "{" + ", ".join(parts) + "}"


@st.composite
def _rule(draw, effects=("allow", "require", "block")) -> str:
    effect = draw(st.sampled_from(effects))
    when = draw(_conditions(with_paths=effect != "allow"))
    if effect == "allow":
        when = when[:-1] + (", " if when != "{}" else "") + f"only_paths: ['{draw(_paths)}']}}"
        return f"  - when: {when}\n    allow: ok\n"
    if effect == "require":
        return f"  - when: {when}\n    require: {{approvals: {draw(st.integers(1, 3))}}}\n"
    return f"  - when: {when}\n    block: stop\n"


@st.composite
def _facts(draw) -> PullRequestFacts:
    author = draw(st.sampled_from([AGENT, BOT, HUMAN]))
    files = tuple(draw(st.lists(_paths, max_size=3, unique=True)))
    reviews = [approval(name) for name in draw(st.lists(st.sampled_from(["ann", "ben", "cat"]), unique=True))]
    return pr(author=author, base=draw(_branches), files=files, reviews=reviews,
              labels=tuple(draw(st.lists(st.sampled_from(["hold", "bug"]), unique=True))))


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(_rule(), max_size=4), extra=_rule(effects=("require", "block")), facts=_facts(),
       position=st.integers(0, 4))
def test_adding_block_or_require_never_loosens(rules, extra, facts, position):
    """Adding a block or require rule anywhere never makes any verdict more permissive."""
    before = policy("rules:\n" + "".join(rules) if rules else "")
    with_extra = [*rules]
    with_extra.insert(min(position, len(rules)), extra)
    after = policy("rules:\n" + "".join(with_extra))
    assert evaluate_pull_request(after, facts).outcome.severity >= evaluate_pull_request(before, facts).outcome.severity


def test_rule_reasons_name_the_paths_they_matched():
    """A rule with `paths` carries the changed paths it matched in its reason's data (the details page shows
    which files matched which rule, without parsing messages)."""
    rules = load_policy("version: 1\nrules:\n  - name: no-infra\n    when: {paths: ['infra/**']}\n"
                         "    block: infrastructure is off limits\n")
    verdict = evaluate_pull_request(rules, pr(files=("infra/a.tf", "src/x.py", "infra/b/c.tf")))
    [reason] = [r for r in verdict.reasons if r.code == "rule:no-infra"]
    assert reason.data["paths"] == ["infra/a.tf", "infra/b/c.tf"]
