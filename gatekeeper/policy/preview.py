"""What a proposed policy would change, before it merges: verdicts that flip, and loosenings in words.

Pure. The worker evaluates a pull request that changes `.agentgate.yml` under its base policy as
always (the proposed file governs nothing until it merges); separately it loads the proposed file,
gathers the facts of the repository's open pull requests, and renders `preview(...)` on the details
page and in the PR's comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gatekeeper.core.decide import evaluate_pull_request, rule_summary
from gatekeeper.core.facts import PERMISSIONS, PullRequestFacts
from gatekeeper.core.verdict import Outcome, Verdict
from gatekeeper.policy.model import InvalidPolicy, Policy, Rule


@dataclass(frozen=True)
class Flip:
    """A pull request whose verdict the proposed policy changes."""

    repo: str
    number: int
    title: str
    before: Outcome
    after: Outcome
    why: tuple[str, ...]

    @property
    def loosens(self) -> bool:
        return self.after.severity < self.before.severity


@dataclass(frozen=True)
class PolicyPreview:
    flips: tuple[Flip, ...]
    unchanged: int
    widening: tuple[str, ...]
    proposed_errors: tuple[str, ...] = ()
    # Open pull requests the preview did not re-evaluate (it works within a budget), and why.
    left_out: tuple[int, ...] = ()
    left_out_why: str = ""


def preview(base: Policy | InvalidPolicy, proposed: Policy | InvalidPolicy,
            prs: Sequence[PullRequestFacts], *, left_out: Sequence[int] = (), left_out_why: str = "") -> PolicyPreview:
    """`left_out`: open pull requests that were not read (and `left_out_why`), so the preview never
    reads as if it covered every open pull request when it did not."""
    flips: list[Flip] = []
    for facts in prs:
        before, after = evaluate_pull_request(base, facts), evaluate_pull_request(proposed, facts)
        if before.outcome != after.outcome:
            flips.append(Flip(facts.repo, facts.number, facts.title, before.outcome, after.outcome,
                              _why(before, after)))
    errors = tuple(str(e) for e in proposed.errors) if isinstance(proposed, InvalidPolicy) else ()
    return PolicyPreview(tuple(flips), len(prs) - len(flips), tuple(widening(base, proposed)), errors,
                         tuple(left_out), left_out_why)


def _why(before: Verdict, after: Verdict) -> tuple[str, ...]:
    if after.outcome.severity > before.outcome.severity:
        return tuple(r.unblock or r.message for r in after.deciding)
    old = {(r.code, r.message) for r in before.reasons}
    gone = {(r.code, r.message) for r in before.deciding} - {(r.code, r.message) for r in after.reasons}
    lines = [f"no longer: {r.unblock or r.message}" for r in before.deciding if (r.code, r.message) in gone]
    lines += [r.unblock or r.message for r in after.deciding if (r.code, r.message) not in old]
    return tuple(lines)


def widening(base: Policy | InvalidPolicy, proposed: Policy | InvalidPolicy) -> list[str]:
    """Every way the proposed policy lets bots and agents do more than the base one, in plain words."""
    if isinstance(proposed, InvalidPolicy):
        return []
    if isinstance(base, InvalidPolicy):
        return ["the current policy is invalid (every pull request is `error`); the proposed one decides again"]
    out: list[str] = []
    protected = ", ".join(proposed.protected_branches.patterns) or "the default branch"
    for pattern in _removed(base.protected_branches.patterns, proposed.protected_branches.patterns):
        out.append(f"bots and agents may now merge into {pattern} with 0 approvals (no longer a protected branch)")
    if proposed.approvals < base.approvals:
        out.append(f"agents may now merge into {protected} with {proposed.approvals} approval"
                   f"{'' if proposed.approvals == 1 else 's'} (was {base.approvals})")
    for pattern in _removed(base.sensitive_paths.patterns, proposed.sensitive_paths.patterns):
        out.append(f"changes to {pattern} are no longer sensitive (they needed {base.sensitive_approvals} approvals)")
    if proposed.sensitive_approvals < base.sensitive_approvals:
        out.append(f"changes to sensitive paths now need {proposed.sensitive_approvals} approval"
                   f"{'' if proposed.sensitive_approvals == 1 else 's'} (was {base.sensitive_approvals})")
    if PERMISSIONS.index(proposed.min_permission) < PERMISSIONS.index(base.min_permission):
        out.append(f"approvals now count from people with {proposed.min_permission} access (was {base.min_permission})")
    if base.approvers and not proposed.approvers:
        out.append(f"approvals now count from anyone with {proposed.min_permission} access (was only "
                   f"{base.approvers_shown})")
    elif base.approvers and set(proposed.approvers) - set(base.approvers):
        out.append(f"{', '.join(sorted(set(proposed.approvers) - set(base.approvers)))} may now approve")
    if base.exclude_requesters and not proposed.exclude_requesters:
        out.append("the person who set an agent on a task may now approve the agent's work")
    if base.exclude_committers and not proposed.exclude_committers:
        out.append("people who pushed commits to a pull request may now approve it")
    if base.stale_after_push and not proposed.stale_after_push:
        out.append("approvals now survive new pushes: commits pushed after an approval are not reviewed")
    for login in _removed(base.agents, proposed.agents):
        out.append(f"{login} is no longer treated as an agent")
    for login in _removed(base.bots, proposed.bots):
        out.append(f"{login} is no longer treated as a bot")
    old_trust = {(b.actor.patterns, b.only_paths.patterns): b.approvals for b in base.trusted_bots}
    for bot in proposed.trusted_bots:
        key = (bot.actor.patterns, bot.only_paths.patterns)
        if key not in old_trust or bot.approvals < old_trust[key]:
            out.append(f"{', '.join(bot.actor.patterns)} is now trusted for changes within "
                       f"{', '.join(bot.only_paths.patterns)} with {bot.approvals} approvals")
    out.extend(_limit_widening("files", base.limits.max_files, proposed.limits.max_files))
    out.extend(_limit_widening("lines", base.limits.max_lines, proposed.limits.max_lines))
    if base.task.required and not proposed.task.required:
        out.append("agents' pull requests no longer need an approved task")
    elif proposed.task.required:
        for label in _removed(proposed.task.approved_labels, base.task.approved_labels):
            out.append(f"the label {label} now approves a task for agents")
        if PERMISSIONS.index(proposed.task.min_permission) < PERMISSIONS.index(base.task.min_permission):
            out.append(f"people with {proposed.task.min_permission} access may now approve tasks for agents")
    out.extend(_rule_widening(base.rules, proposed.rules))
    chains_base, chains_new = base.chains, proposed.chains
    for pattern in _removed(chains_base.command_patterns, chains_new.command_patterns):
        out.append(f"bots may now comment commands matching {pattern}")
    for label in _removed(chains_base.trigger_labels, chains_new.trigger_labels):
        out.append(f"bots may now apply the label {label}")
    for env in _removed(chains_base.protected_environments.patterns, chains_new.protected_environments.patterns):
        out.append(f"agents may now deploy to {env}")
    if chains_base.remove_bot_labels and not chains_new.remove_bot_labels:
        out.append("trigger labels applied by bots are no longer removed")
    for allow in chains_new.allow:
        if allow not in chains_base.allow:
            what = ", ".join([*allow.labels, *(f"/{c}" for c in allow.commands)]) or "nothing"
            out.append(f"{', '.join(allow.actor.patterns)} may now trigger {what}")
    return out


def _removed(before: Iterable[str], after: Iterable[str]) -> list[str]:
    kept = set(after)
    return [item for item in before if item not in kept]


def _limit_widening(what: str, before: int | None, after: int | None) -> list[str]:
    if before is None or (after is not None and after <= before):
        return []
    return [f"agents may now change {'any number of' if after is None else f'up to {after}'} {what} (was {before})"]


def _rule_key(rule: Rule) -> tuple[object, ...]:
    return (rule.effect, rule.when, rule.unless, rule.approvals, rule.reviewers)


def _rule_widening(before: tuple[Rule, ...], after: tuple[Rule, ...]) -> list[str]:
    out = []
    after_keys = {_rule_key(r) for r in after}
    before_keys = {_rule_key(r) for r in before}
    for rule in before:
        if rule.effect != "allow" and _rule_key(rule) not in after_keys:
            out.append(f"removed: {rule_summary(rule)}")
    for rule in after:
        if rule.effect == "allow" and _rule_key(rule) not in before_keys:
            out.append(f"added: {rule_summary(rule)}")
    return out


_LEFT_OUT_SHOWN = 10  # pull requests named in "Not re-evaluated: ..."; the rest are counted
_ICON = {Outcome.SUCCESS: "✅ success", Outcome.PENDING: "⏳ pending", Outcome.FAILURE: "⛔ failure",
         Outcome.ERROR: "❗ error"}


def render_markdown(result: PolicyPreview) -> str:
    lines = ["### Policy change preview", ""]
    if result.proposed_errors:
        lines += ["The proposed `.agentgate.yml` is **invalid**; once merged, every pull request would be `error`:",
                  "", *(f"- `{e}`" for e in result.proposed_errors), ""]
    if result.widening:
        lines += ["**This change lets bots and agents do more:**", "", *(f"- {w}" for w in result.widening), ""]
    if result.flips:
        lines += [f"{len(result.flips)} open pull request(s) would change verdict "
                  f"({result.unchanged} unchanged):", "", "| PR | now | with this policy | why |", "|---|---|---|---|"]
        for flip in result.flips:
            why = "<br>".join(w.replace("|", "\\|") for w in flip.why)
            title = flip.title.replace("|", "\\|")
            lines.append(f"| #{flip.number} {title} | {_ICON[flip.before]} | {_ICON[flip.after]} | {why} |")
    else:
        lines.append(f"No open pull request would change verdict ({result.unchanged} checked).")
    if result.left_out:
        shown = ", ".join(f"#{n}" for n in result.left_out[:_LEFT_OUT_SHOWN])
        more = len(result.left_out) - _LEFT_OUT_SHOWN
        why = f": {result.left_out_why}" if result.left_out_why else ""
        lines += ["", f"Not re-evaluated: {shown}{f' and {more} more' if more > 0 else ''}{why}."]
    return "\n".join(lines) + "\n"
