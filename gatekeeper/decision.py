"""The decision core: facts in, verdict out. No I/O, no clock, no globals beyond the facts and policy."""

from __future__ import annotations

from dataclasses import dataclass

from gatekeeper.facts import ActorKind, PullRequestFacts, Review, permission_at_least
from gatekeeper.identity import has_ai_trailer
from gatekeeper.policy.model import InvalidPolicy, Policy
from gatekeeper.verdict import Outcome, Reason, Verdict


def evaluate_pull_request(policy: Policy | InvalidPolicy, facts: PullRequestFacts) -> Verdict:
    if isinstance(policy, InvalidPolicy):
        return _invalid_policy(policy)
    reasons: list[Reason] = []
    automated, why = _automated_change(facts)
    if not automated:
        if any(has_ai_trailer(c.message) for c in facts.commits):
            reasons.append(Reason("ai-trailer", Outcome.SUCCESS,
                                  "Some commits carry AI co-author trailers; a human opened and pushed them"))
        reasons.append(Reason("human-author", Outcome.SUCCESS, f"Opened by {facts.author.login}, a human"))
        return Verdict.of(reasons)
    reasons.append(Reason("automated-change", Outcome.SUCCESS, why))
    if not _is_protected(policy, facts):
        reasons.append(Reason("unprotected-base", Outcome.SUCCESS,
                              f"Base branch {facts.base_ref} is not protected by policy"))
        return Verdict.of(reasons)
    reasons.extend(_approval_reasons(policy, facts))
    return Verdict.of(reasons)


def _invalid_policy(policy: InvalidPolicy) -> Verdict:
    reasons = [
        Reason("invalid-policy", Outcome.ERROR, f"Invalid {policy.source}: {err}",
               f"Fix {policy.source} on the base branch ({len(policy.errors)} error(s))")
        for err in policy.errors
    ]
    return Verdict.of(reasons)


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
    return False, ""


def _is_protected(policy: Policy, facts: PullRequestFacts) -> bool:
    return facts.base_ref == facts.default_branch or policy.protected_branches.match(facts.base_ref)


@dataclass(frozen=True)
class _Judged:
    review: Review
    counts: bool
    why_not: str = ""


def _latest_decisive_reviews(reviews: tuple[Review, ...]) -> dict[str, Review]:
    """Each reviewer's standing review, as GitHub computes it: a later comment does not undo an
    approval, but a later change request or a dismissal does."""
    standing: dict[str, Review] = {}
    for review in reviews:  # the platforms list reviews oldest first
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            standing[review.reviewer.login.lower()] = review
    return standing


def _judge(policy: Policy, facts: PullRequestFacts, review: Review) -> _Judged:
    who = review.reviewer
    login = who.login.lower()
    committers = {a.login.lower() for c in facts.commits for a in (c.author, c.committer) if a}
    if who.kind.is_automated:
        return _Judged(review, False, f"{who.login} is a {who.kind.value}; only humans' approvals count")
    if login == facts.author.login.lower():
        return _Judged(review, False, f"{who.login} authored the pull request")
    if policy.exclude_requesters and login in {r.lower() for r in facts.requesters}:
        return _Judged(review, False, f"{who.login} set the agent on this task")
    if policy.exclude_committers and login in committers:
        return _Judged(review, False, f"{who.login} pushed commits to this pull request")
    if not permission_at_least(review.permission, policy.min_permission):
        return _Judged(review, False,
                       f"{who.login} has {review.permission} access; {policy.min_permission} is needed")
    if review.commit_sha != facts.head_sha:
        return _Judged(review, False,
                       f"{who.login} approved {review.commit_sha[:7]}, not the current head {facts.head_sha[:7]}")
    return _Judged(review, True)


def _approval_reasons(policy: Policy, facts: PullRequestFacts) -> list[Reason]:
    reasons: list[Reason] = []
    paths = [p for f in facts.changed_files for p in f.paths]
    sensitive = policy.sensitive_paths.matching(paths)
    needed = policy.approvals
    if sensitive:
        needed = max(needed, policy.sensitive_approvals)
        shown = ", ".join(sensitive[:3]) + (f" and {len(sensitive) - 3} more" if len(sensitive) > 3 else "")
        reasons.append(Reason("sensitive-paths", Outcome.SUCCESS, f"Changes sensitive paths: {shown}"))
    if not facts.changed_files_complete:
        # Fail closed: the platform capped the file list, so unseen files may be sensitive.
        needed = max(needed, policy.sensitive_approvals)
        reasons.append(Reason("files-truncated", Outcome.SUCCESS,
                              "The platform listed only part of the changed files; treated as sensitive"))

    standing = _latest_decisive_reviews(facts.reviews)
    counted: list[str] = []
    for review in standing.values():
        if review.state == "CHANGES_REQUESTED":
            # A change request outlives new pushes (as on GitHub) until its author approves or it is
            # dismissed; it matters when it comes from someone whose approval could have counted.
            if not review.reviewer.kind.is_automated and permission_at_least(
                    review.permission, policy.min_permission):
                reasons.append(Reason("changes-requested", Outcome.PENDING,
                                      f"{review.reviewer.login} requested changes",
                                      f"{review.reviewer.login} to approve the current head"))
            continue
        if review.state != "APPROVED":
            continue
        judged = _judge(policy, facts, review)
        if judged.counts:
            counted.append(review.reviewer.login)
        else:
            reasons.append(Reason("approval-not-counted", Outcome.SUCCESS,
                                  f"Approval not counted: {judged.why_not}"))

    who = f"a human with {policy.min_permission} access other than {facts.author.login}"
    if len(counted) >= needed:
        reasons.append(Reason("approved", Outcome.SUCCESS,
                              f"Approved by {', '.join(counted)} ({len(counted)}/{needed} required)"))
    else:
        missing = needed - len(counted)
        reasons.append(Reason(
            "needs-approval", Outcome.PENDING,
            f"{len(counted)}/{needed} qualifying approvals of {facts.head_sha[:7]} into {facts.base_ref}",
            f"Needs {missing} more approval{'s' if missing > 1 else ''} of {facts.head_sha[:7]} from {who}",
        ))
    return reasons
