"""Pure rules for how chain findings weigh on a pull request, and the one comment that explains them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gatekeeper.core.approvals import approval_after, confirmation_lifts
from gatekeeper.core.facts import Actor, Confirmation, PullRequestFacts, RecordedFinding
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.policy.model import Policy

COMMENT_MARKER = "<!-- agentgate:pr-comment -->"


@dataclass(frozen=True)
class Settled:
    open: list[RecordedFinding]
    lifted: dict[str, str]  # finding id -> who lifted it and how


def settle(policy: Policy, facts: PullRequestFacts, findings: Sequence[RecordedFinding],
           confirmations: Sequence[tuple[Confirmation, Actor]]) -> Settled:
    """Which findings still block: a finding is lifted by a counting approval of the current head given
    after it, or by a qualifying human repeating the very action after it (the one approval rule)."""
    still: list[RecordedFinding] = []
    lifted: dict[str, str] = {}
    for finding in findings:
        approver = approval_after(policy, facts, finding.at)
        if approver is not None:
            lifted[finding.id] = f"{approver} approved the head after it"
            continue
        confirmer = next((who for c, who in confirmations if confirmation_lifts(policy, facts, finding, c, who)), None)
        if confirmer is not None:
            lifted[finding.id] = f"{confirmer.login} repeated it"
            continue
        still.append(finding)
    return Settled(still, lifted)


def with_findings(verdict: Verdict, findings: Sequence[RecordedFinding]) -> Verdict:
    """Add open findings to a verdict: each is a failure until a human repeats or approves the action."""
    if not findings:
        return verdict
    extra = [Reason(f"chain-{f.kind}", Outcome.FAILURE, f.message, f.unblock,
                    data={"actor": f.actor, "actor_kind": f.actor_kind, "subject": f.subject, "at": f.at})
             for f in findings]
    return Verdict.of(list(verdict.reasons) + extra, summary=verdict.summary, approvals=verdict.approvals)


def _one_line(text: str) -> str:
    """Platform text (a workflow's name, a label) on one line: nothing in it can start a line of agentgate's
    comment, where a command bot might read a line such as `/deploy` as agentgate's own command."""
    return " ".join(str(text).split())


def findings_section(findings: Sequence[RecordedFinding], details_url: str, context: str) -> str:
    """The chain part of agentgate's one PR comment."""
    if not findings:
        return (f"**{context}**: the actions flagged earlier on this pull request were repeated or approved "
                f"by a human; nothing is blocked by them any more. [Details]({details_url})")
    lines = [f"**{context}** blocked actions on this pull request that a bot or agent took:", ""]
    for f in findings:
        lines.append(f"- {_one_line(f.message)}  \n  **To unblock:** {_one_line(f.unblock)}")
    lines += ["", f"The `{context}` status stays failing until then. [Details]({details_url})"]
    return "\n".join(lines)


def comment_body(sections: dict[str, str]) -> str:
    """The one comment agentgate keeps on a pull request: its sections in a fixed order."""
    order = ["chains", "policy-preview"]
    parts = [sections[name] for name in order if sections.get(name)]
    return "\n\n---\n\n".join([COMMENT_MARKER + "\n" + parts[0], *parts[1:]]) if parts else COMMENT_MARKER


def reasons_markdown(verdict: Verdict, details_url: str) -> str:
    """Every reason as markdown (a check run's page shows it): what would unblock it, then each reason."""
    lines: list[str] = []
    blocking = [r for r in verdict.reasons if r.outcome is not Outcome.SUCCESS]
    if blocking:
        lines += ["**What would unblock it**", ""]
        lines += [f"- {_one_line(r.unblock or r.message)}"
                  for r in sorted(blocking, key=lambda r: -r.outcome.severity)]
        lines.append("")
    lines += ["**Every reason**", ""]
    lines += [f"- `{r.outcome.value}` {_one_line(r.message)} (`{r.code}`)" for r in verdict.reasons]
    lines += ["", f"[The decision, with the facts it used]({details_url})"]
    return "\n".join(lines)
