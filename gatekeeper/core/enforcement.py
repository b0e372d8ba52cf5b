"""Pure rules for how chain findings weigh on a pull request, and the one comment that explains them."""

from __future__ import annotations

from collections.abc import Sequence

from gatekeeper.core.facts import PullRequestFacts, RecordedFinding, permission_at_least
from gatekeeper.core.verdict import Outcome, Reason, Verdict

COMMENT_MARKER = "<!-- agentgate:pr-comment -->"


def approved_after(finding: RecordedFinding, facts: PullRequestFacts, min_permission: str) -> str | None:
    """The human whose approval of the current head, given after the finding, approves the action."""
    for review in facts.reviews:
        who = review.reviewer
        if (review.state == "APPROVED" and not who.kind.is_automated and review.commit_sha == facts.head_sha
                and who.login.lower() != facts.author.login.lower()
                and who.login.lower() not in {r.lower() for r in facts.requesters}
                and permission_at_least(review.permission, min_permission)
                and (review.submitted_at or "") > finding.at):
            return who.login
    return None


def active(findings: Sequence[RecordedFinding], facts: PullRequestFacts, min_permission: str) -> list[RecordedFinding]:
    return [f for f in findings if approved_after(f, facts, min_permission) is None]


def with_findings(verdict: Verdict, findings: Sequence[RecordedFinding]) -> Verdict:
    """Add open findings to a verdict: each is a failure until a human repeats or approves the action."""
    if not findings:
        return verdict
    extra = [Reason(f"chain-{f.kind}", Outcome.FAILURE, f.message, f.unblock) for f in findings]
    return Verdict.of(list(verdict.reasons) + extra, summary=verdict.summary)


def findings_section(findings: Sequence[RecordedFinding], details_url: str, context: str) -> str:
    """The chain part of agentgate's one PR comment."""
    if not findings:
        return (f"**{context}**: the actions flagged earlier on this pull request were repeated or approved "
                f"by a human; nothing is blocked by them any more. [Details]({details_url})")
    lines = [f"**{context}** blocked actions on this pull request that a bot or agent took:", ""]
    for f in findings:
        lines.append(f"- {f.message}  \n  **To unblock:** {f.unblock}")
    lines += ["", f"The `{context}` status stays failing until then. [Details]({details_url})"]
    return "\n".join(lines)


def comment_body(sections: dict[str, str]) -> str:
    """The one comment agentgate keeps on a pull request: its sections in a fixed order."""
    order = ["chains", "policy-preview"]
    parts = [sections[name] for name in order if sections.get(name)]
    return "\n\n---\n\n".join([COMMENT_MARKER + "\n" + parts[0], *parts[1:]]) if parts else COMMENT_MARKER


# A check run is completed with a conclusion; waiting for a human is "action required".
CHECK_CONCLUSIONS = {"success": "success", "pending": "action_required", "failure": "failure", "error": "failure"}


def check_run_summary(verdict: Verdict, details_url: str) -> str:
    """The markdown a check run's page on GitHub shows: what would unblock it, then every reason."""
    lines: list[str] = []
    blocking = [r for r in verdict.reasons if r.outcome is not Outcome.SUCCESS]
    if blocking:
        lines += ["**What would unblock it**", ""]
        lines += [f"- {r.unblock or r.message}" for r in sorted(blocking, key=lambda r: -r.outcome.severity)]
        lines.append("")
    lines += ["**Every reason**", ""]
    lines += [f"- `{r.outcome.value}` {r.message} (`{r.code}`)" for r in verdict.reasons]
    lines += ["", f"[The decision, with the facts it used]({details_url})"]
    return "\n".join(lines)
