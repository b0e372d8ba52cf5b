"""The decision core: facts in, verdict out. No I/O, no clock, no globals beyond the facts and policy.

How a pull request is judged, in order (every step adds reasons; the most severe reason wins):
1. Who made the change: an agent (it opened the PR, or wrote some of its commits), a bot, or a human.
2. Agents only: `limits` (files, lines) and `task` context.
3. Bots and agents into a protected branch (or the default branch) need `approvals.required` approvals,
   `approvals.sensitive` when sensitive paths change or the file list is incomplete. A trusted bot
   within its `only_paths`, or a matching `allow` rule, lifts this requirement unless sensitive paths
   change.
4. Every rule whose `when` holds and whose `unless` does not: `block` fails, `require` adds an approval
   requirement (its own count, from its own reviewers), `allow` is recorded (step 3).
5. Reviews are judged once (humans only, not the author, not requesters or committers when excluded,
   enough permission, of the current head unless `stale_after_push: false`); each requirement counts
   the approvals from its reviewers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from gatekeeper.core.approvals import judge_reviews, standing_reviews
from gatekeeper.core.facts import ActorKind, PullRequestFacts, permission_at_least
from gatekeeper.core.grants import TaskApproval, task_approval
from gatekeeper.core.identity import has_ai_trailer
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.model import Condition, InvalidPolicy, Policy, Rule
from gatekeeper.policy.pathindex import PathSummary
from gatekeeper.policy.patterns import (
    VERDICT_BUDGET_SECONDS,
    BudgetSpent,
    Pattern,
    PatternTimeout,
    RegexBudget,
)

DEFAULT_EVENT = "pull_request"
_ADDITIONS, _DELETIONS = attrgetter("additions"), attrgetter("deletions")


def evaluate_pull_request(policy: Policy | InvalidPolicy, facts: PullRequestFacts, *,
                          event: str = DEFAULT_EVENT) -> Verdict:
    """The verdict for one pull request. `event` is what is being decided (`pull_request`, or
    `merge_group` for a merge-queue entry), never the delivery that triggered it, so a verdict does
    not depend on which webhook arrived last."""
    if isinstance(policy, InvalidPolicy):
        return _invalid_policy(policy)
    return _Evaluation(policy, facts, event).run()


def _invalid_policy(policy: InvalidPolicy) -> Verdict:
    reasons = [
        Reason("invalid-policy", Outcome.ERROR, f"Invalid {policy.source}: {err}",
               f"Fix {policy.source} on the base branch ({len(policy.errors)} error(s))")
        for err in policy.errors
    ]
    return Verdict.of(reasons)


def actor_kind(facts: PullRequestFacts) -> ActorKind:
    """The kind a rule's `actor` condition sees: an agent if any agent wrote the change."""
    if facts.author.kind is ActorKind.AGENT or any(
            (c.author is not None and c.author.kind is ActorKind.AGENT)
            or (c.committer is not None and c.committer.kind is ActorKind.AGENT) for c in facts.commits) or any(
            p.kind is ActorKind.AGENT for p in facts.pushers):
        return ActorKind.AGENT
    return facts.author.kind


@dataclass
class _Requirement:
    code: str
    needed: int
    approvers: tuple[str, ...]  # lower-cased logins; empty: any qualified human
    approvers_shown: str
    label: str  # "" for the base requirement, else the rule's message
    paths: tuple[str, ...] = ()  # the changed paths the rule matched, for the details page


@dataclass
class _Evaluation:
    policy: Policy
    facts: PullRequestFacts
    event: str
    reasons: list[Reason] = field(default_factory=list)
    requirements: list[_Requirement] = field(default_factory=list)
    _paths: PathSummary | None = None

    # -- the steps ---------------------------------------------------------------------------------

    def run(self) -> Verdict:
        policy, facts = self.policy, self.facts
        kind = actor_kind(facts)
        automated, why = _automated_change(facts)
        base_needed: int | None = None
        sensitive_shown = ""
        if not automated:
            if any(has_ai_trailer(c.message) for c in facts.commits):
                self.add("ai-trailer", Outcome.SUCCESS,
                         "Some commits carry AI co-author trailers; a human opened and pushed them")
            self.add("human-author", Outcome.SUCCESS, f"Opened by {facts.author.login}, a human")
        else:
            self.add("automated-change", Outcome.SUCCESS, why)
            if kind is ActorKind.AGENT:
                self._limits()
                self._task()
            if not (facts.base_ref == facts.default_branch or policy.protected_branches.match(facts.base_ref)):
                self.add("unprotected-base", Outcome.SUCCESS,
                         f"Base branch {facts.base_ref} is not protected by policy")
            else:
                base_needed, sensitive_shown = self._base_requirement()
        waived = self._rules(kind)
        if base_needed is not None:
            if waived is not None and (sensitive_shown or not facts.changed_files_complete):
                self.add("not-lifted", Outcome.SUCCESS,
                         f"{waived[1].message}; not applied: sensitive paths still need their approvals")
            elif waived is not None:
                self.reasons.append(waived[1])
                base_needed = min(base_needed, waived[0])
            self._add_base(base_needed)
        counted = self._approvals() if self.requirements else ()
        return Verdict.of(self.reasons, approvals=counted)

    def add(self, code: str, outcome: Outcome, message: str, unblock: str | None = None, **data: Any) -> None:
        self.reasons.append(Reason(code, outcome, message, unblock, data=dict(data)))

    @property
    def paths(self) -> PathSummary:
        if self._paths is None:
            self._paths = self.policy.path_index.summarise(self.facts.changed_files)
        return self._paths

    def _limits(self) -> None:
        limits, files = self.policy.limits, self.facts.changed_files
        if limits.max_files is not None:
            if not self.facts.changed_files_complete:
                self.add("too-many-files", Outcome.FAILURE,
                         f"The platform listed only part of the {len(files)}+ changed files; agents may change "
                         f"at most {limits.max_files}",
                         f"Split the change into pull requests of at most {limits.max_files} files")
            elif len(files) > limits.max_files:
                self.add("too-many-files", Outcome.FAILURE,
                         f"{len(files)} changed files; agents may change at most {limits.max_files}",
                         f"Split the change into pull requests of at most {limits.max_files} files")
        if limits.max_lines is not None:
            lines = sum(map(_ADDITIONS, files)) + sum(map(_DELETIONS, files))
            if lines > limits.max_lines:
                self.add("too-many-lines", Outcome.FAILURE,
                         f"{lines} changed lines; agents may change at most {limits.max_lines}",
                         f"Split the change into pull requests of at most {limits.max_lines} changed lines")

    def _task(self) -> None:
        task, facts = self.policy.task, self.facts
        if not task.required:
            return
        labels = " or ".join(task.approved_labels)
        who = f"a human with {task.min_permission} access"
        if not facts.tasks_checked:
            self.add("task-unchecked", Outcome.ERROR, "The task this change resolves could not be checked",
                     "agentgate to read the referenced issues; it retries on the next event")
            return
        if not facts.tasks:
            self.add("task-missing", Outcome.FAILURE, "The pull request does not reference a task",
                     f"Reference an issue (e.g. 'Fixes #123') labelled {labels} by {who}")
            return
        # The same rule approves a task for a pull request and for an agent token (core/grants.py).
        approval = TaskApproval(tuple(task.approved_labels), task.min_permission)
        for ref in facts.tasks:
            approved = task_approval(ref, approval)
            if approved is not None:
                label, login = approved
                self.add("task-approved", Outcome.SUCCESS, f"Resolves #{ref.number}, labelled {label} by {login}")
                return
        numbers = ", ".join(f"#{t.number}" for t in facts.tasks)
        self.add("task-unapproved", Outcome.PENDING, f"No referenced task ({numbers}) is approved for agents",
                 f"{who[0].upper()}{who[1:]} to label {numbers.split(', ')[0]} {labels} (it must be open)")

    def _base_requirement(self) -> tuple[int, str]:
        policy, facts = self.policy, self.facts
        needed = policy.approvals
        shown = ""
        bit = policy.path_index.bit(policy.sensitive_paths)
        if self.paths.any_mask & bit:
            sensitive = self.paths.matching(bit)
            needed = max(needed, policy.sensitive_approvals)
            shown = ", ".join(sensitive[:3]) + (f" and {len(sensitive) - 3} more" if len(sensitive) > 3 else "")
            self.add("sensitive-paths", Outcome.SUCCESS, f"Changes sensitive paths: {shown}",
                     paths=list(sensitive), needed=needed)
        if not facts.changed_files_complete:
            # Fail closed: the platform capped the file list, so unseen files may be sensitive.
            needed = max(needed, policy.sensitive_approvals)
            self.add("files-truncated", Outcome.SUCCESS,
                     "The platform listed only part of the changed files; treated as sensitive")
        return needed, shown

    def _add_base(self, needed: int) -> None:
        if needed <= 0:
            self.add("no-approval-needed", Outcome.SUCCESS, "No approval is needed")
            return
        self.requirements.insert(0, _Requirement("needs-approval", needed, self.policy.approvers,
                                                 self.policy.approvers_shown, ""))

    def _trusted(self) -> tuple[int, Reason] | None:
        facts, index = self.facts, self.policy.path_index
        if not facts.author.kind.is_automated or not facts.changed_files or not facts.commits_complete:
            return None
        for bot in self.policy.trusted_bots:
            if (bot.actor.match(facts.author.login) and self.paths.all_mask & index.bit(bot.only_paths)
                    and _written_only_by(facts, bot.actor.match)):
                return bot.approvals, Reason(
                    "trusted-bot", Outcome.SUCCESS,
                    f"{facts.author.login} is trusted for changes within {', '.join(bot.only_paths.patterns)}"
                    f" ({bot.approvals} approval{'' if bot.approvals == 1 else 's'} needed)")
        return None

    def _rules(self, kind: ActorKind) -> tuple[int, Reason] | None:
        """Apply every matching rule; returns what lifts the base requirement, if anything.

        The rules' regex searches share one budget (`VERDICT_BUDGET_SECONDS`, see `RegexBudget`), so a
        policy of many slow patterns cannot hold a worker for long: the first search that runs out of
        its share makes the verdict `error`, and rules that would need a search after it are reported
        as not checked (fail closed), rather than each getting a timeout of its own."""
        self._subject(kind)
        waiver = self._trusted()
        skipped: list[str] = []
        for rule in self.policy.rules_by_kind[self.kind]:
            try:
                # _holds, inlined: this loop runs for every rule of every verdict.
                holds = True
                for check in rule.when.checks:
                    if not check(self):
                        holds = False
                        break
                if not holds or (rule.unless is not None and self._holds(rule.unless)):
                    continue
            except PatternTimeout as exc:
                self._budget.spent_by = rule.name
                self.add("pattern-timeout", Outcome.ERROR, f"Rule {rule.name}: {exc}",
                         f"Simplify the patterns of rule {rule.name} in {rule.origin or self.policy.source} "
                         "on the base branch", rule=rule.name, pattern=exc.pattern)
                continue
            except BudgetSpent:
                skipped.append(rule.name)
                continue
            code = f"rule:{rule.name}"
            matched = self._rule_paths(rule)
            if rule.effect == "block":
                self.add(code, Outcome.FAILURE, rule.message, rule.unblock or (
                    f"Change the pull request so that rule {rule.name} no longer applies "
                    f"({describe(rule.when)}), or change the rule in {rule.origin or self.policy.source}"),
                    paths=matched)
            elif rule.effect == "require":
                self.requirements.append(_Requirement(code, rule.approvals, rule.reviewers, rule.reviewers_shown,
                                                      rule.message, tuple(matched)))
            elif waiver is None or waiver[0] > 0:
                waiver = 0, Reason(code, Outcome.SUCCESS,
                                   f"{rule.message} (rule {rule.name} lifts the approval requirement)",
                                   data={"paths": matched} if matched else {})
        if skipped:
            more = f" and {len(skipped) - 1} more rule(s)" if len(skipped) > 1 else ""
            self.add("regex-budget", Outcome.ERROR,
                     f"Rule {skipped[0]}{more} not checked: rule {self._budget.spent_by} ran out of its share of "
                     f"the {VERDICT_BUDGET_SECONDS * 1000:.0f} ms this verdict may spend on regular expressions",
                     f"Simplify the patterns of rule {self._budget.spent_by} in the policy on the base branch",
                     rules=skipped, spent_by=self._budget.spent_by)
        return waiver

    def _rule_paths(self, rule: Rule) -> list[str]:
        """The changed paths a rule's `paths` / `only_paths` matched (at most 50), for the details page."""
        found: list[str] = []
        for globset in (rule.when.paths, rule.when.only_paths):
            if globset is not None:
                found += self.paths.matching(self.policy.path_index.bit(globset))
        return list(dict.fromkeys(found))[:50]

    def _holds(self, c: Condition) -> bool:
        for check in c.checks:
            if not check(self):
                return False
        return True

    # What a condition looks at (see Condition.checks), set once per evaluation.
    kind: str = ""
    draft: bool = False
    fork: bool = False
    login: str = ""
    base_ref: str = ""
    head_ref: str = ""
    labels: frozenset[str] = frozenset()
    title: str = ""
    body: str = ""

    _budget: RegexBudget = field(default_factory=lambda: RegexBudget(VERDICT_BUDGET_SECONDS, 0))

    def _subject(self, kind: ActorKind) -> None:
        facts = self.facts
        self.kind, self.draft, self.login = kind.value, facts.draft, facts.author.login
        self.fork = (facts.head_repo or "").lower() != facts.repo.lower()
        self.base_ref, self.head_ref, self.title, self.body = facts.base_ref, facts.head_ref, facts.title, facts.body
        self.labels = frozenset(label.lower() for label in facts.labels)
        # Planned from the policy alone, before any search runs.
        self._budget = RegexBudget(VERDICT_BUDGET_SECONDS, self.policy.searches_by_kind[self.kind])

    def search(self, pattern: Pattern, text: str) -> bool:
        """A rule's pattern searched within its share of the verdict's regex budget."""
        return self._budget.search(pattern, text)

    def any_path(self, globset: GlobSet) -> bool:
        paths = self._paths or self.paths
        return bool(paths.any_mask >> self.policy.path_index.bits[id(globset)] & 1)

    def all_paths(self, globset: GlobSet) -> bool:
        paths = self._paths or self.paths
        bit = self.policy.path_index.bits[id(globset)]
        return bool(self.facts.changed_files_complete and paths.all_mask >> bit & 1)

    # -- approvals ---------------------------------------------------------------------------------

    def _approvals(self) -> tuple[str, ...]:
        policy, facts = self.policy, self.facts
        for review in standing_reviews(facts.reviews).values():
            # A change request outlives new pushes until its author approves or it is dismissed; it
            # matters when it comes from someone whose approval could have counted.
            if review.state == "CHANGES_REQUESTED" and not review.reviewer.kind.is_automated and \
                    permission_at_least(review.permission, policy.min_permission):
                self.add("changes-requested", Outcome.PENDING, f"{review.reviewer.login} requested changes",
                         f"{review.reviewer.login} to approve the current head", reviewer=review.reviewer.login)
        counted: list[str] = []
        for check in judge_reviews(policy, facts):
            if check.counted:
                counted.append(check.reviewer)
            else:
                self.add("approval-not-counted", Outcome.SUCCESS, f"Approval not counted: {check.why_not}", None,
                         **check.to_dict())
        for requirement in self.requirements:
            self._requirement_reason(requirement, counted)
        return tuple(counted)

    def _requirement_reason(self, req: _Requirement, counted: list[str]) -> None:
        facts, policy = self.facts, self.policy
        mine = [login for login in counted if not req.approvers or login.lower() in req.approvers]
        head = facts.head_sha[:7]
        prefix = f"{req.label}: " if req.label else ""
        matched: dict[str, Any] = {"paths": list(req.paths)} if req.paths else {}
        if len(mine) >= req.needed:
            count = (f"{len(mine)}/{req.needed} required" if len(mine) == req.needed
                     else f"{len(mine)} approvals, {req.needed} required")
            by = f"pproved by {', '.join(mine)} ({count})"
            self.add("approved" if req.code == "needs-approval" else req.code, Outcome.SUCCESS,
                     f"{prefix}{'a' if prefix else 'A'}{by}", approvers=mine, needed=req.needed, **matched)
            return
        missing = req.needed - len(mine)
        who = f"a human with {policy.min_permission} access other than {facts.author.login}"
        if req.approvers:
            who = f"{req.approvers_shown} ({who})"
        target = f" into {facts.base_ref}" if not req.label else ""
        self.add(req.code, Outcome.PENDING,
                 f"{prefix}{len(mine)}/{req.needed} qualifying approvals of {head}{target}",
                 f"Needs {missing} more approval{'s' if missing > 1 else ''} of {head} from {who}",
                 approvers=mine, needed=req.needed, head=facts.head_sha, approvers_from=list(req.approvers),
                 **matched)


def _automated_change(facts: PullRequestFacts) -> tuple[bool, str]:
    author = facts.author
    if author.kind.is_automated:
        return True, f"Opened by {author.login}, {'an agent' if author.kind is ActorKind.AGENT else 'a bot'}" + (
            f" ({author.why})" if author.why else "")
    agent_commits = [c for c in facts.commits
                     if (c.author and c.author.kind is ActorKind.AGENT)
                     or (c.committer and c.committer.kind is ActorKind.AGENT)]
    if agent_commits:
        return True, f"{len(agent_commits)} commit(s) written by an agent, e.g. {agent_commits[0].sha[:7]}"
    agent_pushers = [p.login for p in facts.pushers if p.kind is ActorKind.AGENT]
    if agent_pushers:
        # Commits can name anyone as their author; who pushed them cannot be borrowed.
        return True, f"Commits pushed by {', '.join(agent_pushers)}, an agent"
    if not facts.commits_complete:
        # Fail closed: commits past the platform's cap could be an agent's.
        return True, "More commits than the platform lists; who wrote them all cannot be checked"
    return False, ""


def _written_only_by(facts: PullRequestFacts, match: Callable[[str], bool]) -> bool:
    """A trusted bot's waiver covers its own commits only: every commit authored by it, and any
    automated committer being it too (a human committer, e.g. the platform's web merge, is no agent)."""
    for commit in facts.commits:
        if commit.author is None or not match(commit.author.login):
            return False
        if commit.committer is not None and commit.committer.kind.is_automated and not match(commit.committer.login):
            return False
    return True


def describe(c: Condition) -> str:
    """A condition in words, for messages: what would have to change for a rule to stop applying."""
    parts: list[str] = []
    if c.kinds is not None:
        kinds = (f"a {k}" if k != "agent" else "an agent" for k in sorted(c.kinds))
        parts.append(f"the change is by {' or '.join(kinds)}")
    if c.logins is not None:
        parts.append(f"the author matches {', '.join(c.logins.patterns)}")
    if c.events is not None:
        parts.append(f"the event is {' or '.join(sorted(c.events))}")
    if c.branches is not None:
        parts.append(f"the base branch matches {', '.join(c.branches.patterns)}")
    if c.head_branches is not None:
        parts.append(f"the head branch matches {', '.join(c.head_branches.patterns)}")
    if c.paths is not None:
        parts.append(f"a changed path matches {', '.join(c.paths.patterns)}")
    if c.only_paths is not None:
        parts.append(f"every changed path matches {', '.join(c.only_paths.patterns)}")
    if c.labels is not None:
        parts.append(f"it is labelled {' or '.join(sorted(c.labels))}")
    if c.title is not None:
        parts.append(f"the title matches /{c.title.source}/")
    if c.body is not None:
        parts.append(f"the description matches /{c.body.source}/")
    if c.draft is not None:
        parts.append("it is a draft" if c.draft else "it is not a draft")
    if c.fork is not None:
        parts.append("it comes from a fork" if c.fork else "it does not come from a fork")
    return "; ".join(parts) or "always"


def rule_summary(rule: Rule) -> str:
    """One line for a rule: its outcome and when it applies."""
    outcome = {"block": "blocks", "allow": "lifts the approval requirement",
               "require": f"requires {rule.approvals} approval{'s' if rule.approvals != 1 else ''}"
                          + (f" from {rule.reviewers_shown}" if rule.reviewers_shown else "")}[rule.effect]
    unless = f", unless {describe(rule.unless)}" if rule.unless is not None else ""
    return f"rule {rule.name} {outcome} when {describe(rule.when)}{unless}"
