"""The one rule for whose approval counts, used by the verdict and by chain findings alike.

An approval counts when it was given by a human (never a bot or agent), who is not the author of the
pull request, not a person who set the agent on the task (`exclude_requesters`), not someone who
wrote or committed its commits (`exclude_committers`), with at least `min_permission` on the
repository, for the current head (unless `stale_after_push: false`), and not dismissed or superseded
by a later change request of the same reviewer. A human repeating an action a bot took (a command, a
label) is judged by the same rule, since repeating it is approving it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatekeeper.core.chains import UNSCANNED
from gatekeeper.core.facts import Actor, Confirmation, PullRequestFacts, RecordedFinding, Review, permission_at_least
from gatekeeper.policy.model import Policy


@dataclass(frozen=True)
class ApprovalCheck:
    """One standing review as judged: shown on the details page, so reviewers see why theirs did not count."""

    reviewer: str
    state: str
    commit_sha: str | None
    counted: bool
    why_not: str = ""
    submitted_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"reviewer": self.reviewer, "state": self.state, "commit": self.commit_sha, "counted": self.counted,
                "why_not": self.why_not, "submitted_at": self.submitted_at}


def standing_reviews(reviews: tuple[Review, ...]) -> dict[str, Review]:
    """Each reviewer's standing review: a later comment does not undo an approval, but a later change
    request or a dismissal does. Reviews are listed oldest first."""
    standing: dict[str, Review] = {}
    for review in reviews:
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            standing[review.reviewer.login.lower()] = review
    return standing


def _committers(facts: PullRequestFacts) -> set[str]:
    return {a.login.lower() for c in facts.commits for a in (c.author, c.committer) if a}


def why_person_cannot_approve(policy: Policy, facts: PullRequestFacts, who: Actor, permission: str) -> str:
    """Empty when this person's approval (or repeat of an action) may count; otherwise why not."""
    login = who.login.lower()
    if who.kind.is_automated:
        return f"{who.login} is a {who.kind.value}; only humans' approvals count"
    if login == facts.author.login.lower():
        return f"{who.login} authored the pull request"
    if policy.exclude_requesters and login in {r.lower() for r in facts.requesters}:
        return f"{who.login} set the agent on this task"
    if policy.exclude_committers and login in _committers(facts):
        return f"{who.login} wrote or committed commits of this pull request"
    if not permission_at_least(permission, policy.min_permission):
        return f"{who.login} has {permission} access; {policy.min_permission} is needed"
    return ""


def why_not_counted(policy: Policy, facts: PullRequestFacts, review: Review) -> str:
    """Empty when the approval counts; otherwise why it does not."""
    person = why_person_cannot_approve(policy, facts, review.reviewer, review.permission)
    if person:
        return person
    if review.commit_sha is None:
        return f"{review.reviewer.login}'s approval was given before the latest push"
    if policy.stale_after_push and review.commit_sha != facts.head_sha:
        return (f"{review.reviewer.login} approved {review.commit_sha[:7]}, not the current head "
                f"{facts.head_sha[:7]}")
    return ""


def judge_reviews(policy: Policy, facts: PullRequestFacts) -> list[ApprovalCheck]:
    """Every standing approval, counted or not and why."""
    checks = []
    for review in standing_reviews(facts.reviews).values():
        if review.state != "APPROVED":
            continue
        why = why_not_counted(policy, facts, review)
        checks.append(ApprovalCheck(review.reviewer.login, review.state, review.commit_sha, not why, why,
                                    review.submitted_at))
    return checks


def approval_after(policy: Policy, facts: PullRequestFacts, at: str) -> str | None:
    """The human whose counting approval of the current head was given after `at` (a finding's time):
    approving the head after seeing the action approves the action. Always of the current head, even
    when the policy keeps approvals across pushes: the action happened on this head's watch."""
    for review in standing_reviews(facts.reviews).values():
        if (review.state == "APPROVED" and review.commit_sha == facts.head_sha
                and not why_not_counted(policy, facts, review) and (review.submitted_at or "") > at):
            return review.reviewer.login
    return None


def confirmation_lifts(policy: Policy, facts: PullRequestFacts, finding: RecordedFinding,
                       confirmation: Confirmation, confirmer: Actor) -> bool:
    """Whether a human's repeat of the action lifts this finding: the same action, after it, by a
    person whose approval would count."""
    return (confirmation.kind == finding.kind and finding.key not in ("", UNSCANNED)
            and confirmation.key == finding.key
            and confirmation.at >= finding.at
            and not why_person_cannot_approve(policy, facts, confirmer, confirmation.permission))
