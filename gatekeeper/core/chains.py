"""Chains: a bot or agent steering another bot through comments, labels, workflow runs or deployments.

Pure judgement, no I/O and no clock: the worker gathers who did what, these functions say whether it
is a chain the policy forbids and what would lift it. Rules, in short:

- A **command** meant for another bot (`/deploy`, `@somebot merge`, `bors r+`, per
  `chains.command_patterns`) in a bot's or agent's comment is a finding; humans' commands are not.
- A **trigger label** (`chains.trigger_labels`) applied by a bot or agent is a finding.
- A **workflow run** a bot or agent triggered is a finding when its event runs trusted workflow code
  with the repository's secrets on the bot's say-so (see `CI_EVENTS` for the events that do not).
- A **deployment** to a protected environment is rejected when a bot or agent requested it, or when it
  ships an agent's change whose pull request verdict is not success (unknown counts as not success).
- A permitted chain (`chains.allow`) lifts a command or label finding; a human repeating the command or
  re-applying the label lifts it later (`human_confirms`).

Commands and labels are compared after `normalize_command_text`, so zero-width characters, bidi
controls, fullwidth forms and look-alike letters do not slip a command or label past these rules.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import regex

from gatekeeper.core.facts import Actor, ActorKind
from gatekeeper.core.text import command_readings, normalize_command_text, scannable_lines
from gatekeeper.core.verdict import Outcome, Reason
from gatekeeper.policy.model import CI_EVENTS as model_CI_EVENTS
from gatekeeper.policy.model import ChainAllow, ChainPolicy, Policy
from gatekeeper.policy.patterns import BudgetSpent, RegexBudget

__all__ = [
    "CI_EVENTS",
    "MAX_BODY_CHARS",
    "UNSCANNED",
    "ChainFinding",
    "CommandHit",
    "chain_reasons",
    "find_commands",
    "judge_label_removal",
    "label_key",
    "verb_key",
    "is_tampering",
    "judge_comment",
    "judge_deployment",
    "judge_label",
    "judge_workflow_run",
    "normalize_command_text",
]

# Comments are scanned up to 64 KiB (the largest body some platforms allow); anything longer is
# reported as unscanned, which a bot's comment makes a finding.
MAX_BODY_CHARS = 65_536
# Commands start their line, so a pattern never needs more of it; this bounds each regex's work.
MAX_LINE_CHARS = 1_024
# A hostile configured pattern must not hang the worker: a search that runs out counts as unscanned.
REGEX_TIMEOUT_SECONDS = 0.1
# ... and all the searches of one comment (every pattern, line and reading) share this much, so that a
# 64 KB comment cannot multiply that timeout by its thousands of lines (see patterns.RegexBudget). At
# the least share a search gets, it pays for 10,000 searches: 2,000 distinct lines with the 5 built-in
# patterns (a 64 KB comment of lines of 32 characters or more); lines past those count as unscanned.
COMMENT_BUDGET_SECONDS = 10 * REGEX_TIMEOUT_SECONDS
# The verb of a CommandHit standing for text that could not be checked (too long, or a regex timed out).
UNSCANNED = "(unscanned)"

# Events whose runs are the repository's ordinary CI, not a chain, even when a bot or agent triggered
# them: the workflow and its inputs are the pull request's or branch's own code, in the pull request's
# context (fork runs get no secrets and a read-only token), and nothing the bot said chose what runs.
# - pull_request, pull_request_review, pull_request_review_comment: CI of the PR's own code. When the
#   PR changes the very workflow that ran, that is a finding after all (see judge_workflow_run).
# - merge_group: the queue's CI; its actor is the platform's merge-queue bot, and the merge itself is
#   gated by agentgate's verdict on the merge-group SHA.
# - schedule: cron, started by nobody; the schedule itself was reviewed when it landed.
# - dynamic: the platform running an agent itself (Copilot coding agent, Dependabot updates); that is
#   the agent working, and everything it produces is judged as a pull request.
# - push to a branch that is neither protected nor the default: CI of the agent's own branch.
# Every other event counts, including ones not listed anywhere (fail closed): workflow_dispatch and
# repository_dispatch (a bot picked the workflow and its inputs), issue_comment, issues, discussion*,
# pull_request_target, workflow_run, check_run/check_suite, release, create, deployment*, and a push
# to a protected or the default branch: those run trusted workflow code with the repository's secrets
# and a write-capable token because of what the bot did.
CI_EVENTS = frozenset(model_CI_EVENTS)  # the default; a policy may change it (`chains.ci_events`)


@dataclass(frozen=True)
class CommandHit:
    """A command found in a comment. `command` is its normalised verb: "deploy", "merge", "r+"."""

    command: str
    line: str  # the normalised line it was found on (or what went unscanned)
    pattern: str  # the policy pattern that matched ("" for UNSCANNED)
    text: str = ""  # the matched command as normalised: "/deploy", "@somebot merge", "bors r+"
    disguised: bool = False  # the raw line differed: hidden or look-alike characters were folded


@dataclass(frozen=True)
class ChainFinding:
    """One chain link the policy forbids. Its reason's outcome is FAILURE and its unblock says what lifts it."""

    kind: str  # "command" | "label" | "workflow_run" | "deployment" (the worker adds others)
    actor: Actor
    subject: str  # "/deploy", "automerge", "workflow Deploy (run 42)", "environment production"
    reason: Reason
    key: str = ""  # what a human's action is compared with: the verb, the label key, the workflow path


# --- comments ------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[regex.Pattern[str], ...]:
    # An invalid pattern raises regex.error: the policy loader rejects those, and skipping one here
    # would let its commands through.
    return tuple(regex.compile(p, regex.IGNORECASE) for p in patterns)


def _verb_key(command: str) -> str:
    """A command verb as compared everywhere: normalised, casefolded, single-spaced, no leading `/`."""
    return " ".join(normalize_command_text(command).casefold().split()).lstrip("/")


def _verb(matched: str, match: regex.Match[str]) -> str:
    """The verb of a matched command: the pattern's `verb` group when it has one; otherwise the text
    after a leading `/` (`/azp run` -> "azp run"), or after the addressee (`@somebot merge` -> "merge",
    `bors r+` -> "r+")."""
    if "verb" in match.re.groupindex and match.group("verb"):
        return _verb_key(match.group("verb"))
    text = " ".join(matched.casefold().split())
    if text.startswith("/"):
        return text[1:]
    addressee, _, rest = text.partition(" ")
    return rest or addressee.lstrip("@")


def find_commands(body: str, chains: ChainPolicy) -> list[CommandHit]:
    """Commands for other bots in a comment body, in order, at most one per line.

    Rules: only lines that can carry a command are read (`normalize.scannable_lines`: no block quotes,
    no closed fenced code); each is normalised (`command_readings`), trimmed and single-spaced, cut to
    MAX_LINE_CHARS, and searched case-insensitively with every pattern in `chains.command_patterns`.
    When several patterns or readings match a line, the longest match is its command
    (`@dependabot squash and merge` is "squash and merge", not "squash").
    All the searches share one budget (COMMENT_BUDGET_SECONDS, see patterns.RegexBudget; a line read
    twice is searched once). Fail closed: text past MAX_BODY_CHARS yields an UNSCANNED hit, and so does
    the first search that runs out of its share or that the budget no longer pays for: the scan stops
    there, and that line and every line after it count as unscanned.
    """
    patterns = _compiled(tuple(chains.command_patterns))
    lines: list[tuple[str, list[str]]] = []  # (the line as shown, its readings)
    for raw in scannable_lines(body[:MAX_BODY_CHARS]):
        readings = [" ".join(reading.split())[:MAX_LINE_CHARS] for reading in command_readings(raw)]
        lines.append((" ".join(raw.split())[:MAX_LINE_CHARS], [r for r in readings if r]))
    distinct = {reading for _, readings in lines for reading in readings}
    budget = RegexBudget(COMMENT_BUDGET_SECONDS, len(patterns) * len(distinct), cap=REGEX_TIMEOUT_SECONDS)
    searched: dict[str, list[_Match]] = {}
    hits: list[CommandHit] = []
    for index, (shown, readings) in enumerate(lines):
        best: CommandHit | None = None
        for line in readings:
            found = searched.get(line)
            stopped: _Stopped | None = None
            if found is None:
                try:
                    found = searched[line] = _search(patterns, line, budget)
                except _Stopped as exc:
                    found, stopped = exc.found, exc
            for length, text, verb, source in found:
                if best is None or length > len(best.text):
                    best = CommandHit(verb, line, source, text, disguised=line != shown)
            if stopped is not None:
                hits.extend([best] if best is not None else [])
                after = len(lines) - index - 1
                shown_line = line if len(line) <= 80 else line[:79] + "…"  # it is quoted in a reason
                what = shown_line + (f" (and the {after} line{'s' if after > 1 else ''} after it)" if after else "")
                hits.append(CommandHit(UNSCANNED, what + stopped.why, stopped.pattern, line))
                return _with_oversize(hits, body)
        if best is not None:
            hits.append(best)
    return _with_oversize(hits, body)


# A pattern's match on a line: (length of the match, its text single-spaced, its verb, the pattern).
_Match = tuple[int, str, str, str]


class _Stopped(Exception):
    """The scan stops at a search: it ran out of its share, or the budget pays for no more. `found`
    holds the line's matches before it."""

    def __init__(self, pattern: str, found: list[_Match], why: str) -> None:
        super().__init__(pattern)
        self.pattern, self.found, self.why = pattern, found, why


def _search(patterns: tuple[regex.Pattern[str], ...], line: str, budget: RegexBudget) -> list[_Match]:
    found: list[_Match] = []
    for pattern in patterns:
        try:
            share = budget.take()
        except BudgetSpent:
            raise _Stopped("", found, ": more lines than one comment's check reads") from None
        try:
            match = pattern.search(line, timeout=share)
        except TimeoutError:
            match = _search_again(pattern, line, budget, share, found)
        if match:
            text = " ".join(match.group(0).split())
            found.append((len(match.group(0)), text, _verb(text, match), pattern.pattern))
    return found


def _search_again(pattern: regex.Pattern[str], line: str, budget: RegexBudget, share: float,
                  found: list[_Match]) -> regex.Match[str] | None:
    """A search that ran out of its share, tried once more while the budget allows (see RegexBudget)."""
    again = budget.retry(share)
    if again is not None:
        try:
            return pattern.search(line, timeout=again)
        except TimeoutError:
            pass
    budget.spent_by = line
    raise _Stopped(pattern.pattern, found, "")


def _with_oversize(hits: list[CommandHit], body: str) -> list[CommandHit]:
    if len(body) > MAX_BODY_CHARS:
        hits.append(CommandHit(UNSCANNED, f"{len(body) - MAX_BODY_CHARS} characters past the first "
                                          f"{MAX_BODY_CHARS}", ""))
    return hits


def _kind_phrase(actor: Actor) -> str:
    return "an agent" if actor.kind is ActorKind.AGENT else "a bot"


def _login_matches(patterns: Sequence[str], login: str) -> bool:
    """Logins compared case-insensitively as globs, with a `[bot]` suffix taken literally (as a glob it
    would be a character class): "dependabot[bot]" matches only the app's bot account, "renovate*"
    matches "renovate[bot]", "*[bot]" any app."""
    name = login.casefold()
    name_is_app = name.endswith("[bot]")
    bare_name = name.removesuffix("[bot]")
    for pattern in patterns:
        wanted = pattern.casefold()
        if wanted.endswith("[bot]"):
            if not name_is_app:
                continue
            wanted = wanted.removesuffix("[bot]")
        if fnmatch.fnmatchcase(bare_name, wanted):
            return True
    return False


def _paths_allowed(entry: ChainAllow, changed_paths: Sequence[str], paths_complete: bool) -> bool:
    if entry.only_paths is None:
        return True
    # Fail closed: no paths (not a pull request, or not fetched) or a capped list proves nothing.
    return paths_complete and bool(changed_paths) and all(entry.only_paths.match(p) for p in changed_paths)


def _allowed(chains: ChainPolicy, actor: Actor, changed_paths: Sequence[str], paths_complete: bool, *,
             command: str | None = None, label: str | None = None) -> ChainAllow | None:
    for entry in chains.allow:
        if not _login_matches(entry.actor.patterns, actor.login):
            continue
        if command is not None and not any(c == "*" or _verb_key(c) == command for c in entry.commands):
            continue
        if label is not None and not any(x == "*" or _label_key(x) == label for x in entry.labels):
            continue
        if _paths_allowed(entry, changed_paths, paths_complete):
            return entry
    return None


def judge_comment(policy: Policy, actor: Actor, body: str, changed_paths: Sequence[str], *,
                  paths_complete: bool = True) -> list[ChainFinding]:
    """A bot's or agent's comment carrying a command for another bot is a FAILURE finding per command.

    Rules: humans' comments yield nothing (they are the humans in the loop). A command is permitted
    when an entry of `chains.allow` matches the actor's login, lists the verb (or "*") in `commands`,
    and, when it sets `only_paths`, every changed path matches it; with `only_paths` set, an empty or
    incomplete (`paths_complete=False`) path list permits nothing. An UNSCANNED hit (an oversized
    comment, a pattern that timed out) is a finding too, permitted only by `commands: ["*"]`.
    """
    if not actor.kind.is_automated:
        return []
    findings: list[ChainFinding] = []
    seen: set[str] = set()
    for hit in find_commands(body, policy.chains):
        if hit.command in seen:
            continue  # one finding per command verb in a comment
        seen.add(hit.command)
        if _allowed(policy.chains, actor, changed_paths, paths_complete, command=hit.command):
            continue
        who = f"{actor.login} ({_kind_phrase(actor)})"
        if hit.command == UNSCANNED:
            reason = Reason("chain-comment-unscanned", Outcome.FAILURE,
                            f"{who} posted a comment agentgate could not fully check for commands ({hit.line})",
                            f"A human deletes {actor.login}'s oversized comment")
            findings.append(ChainFinding("command", actor, "unscanned comment", reason, UNSCANNED))
            continue
        subject = hit.text if len(hit.text) <= 60 else hit.text[:59] + "…"
        disguise = " written with hidden or look-alike characters" if hit.disguised else ""
        reason = Reason("chain-command", Outcome.FAILURE,
                        f"{who} commented `{subject}`{disguise}, a command another bot may act on",
                        f"A human with write access comments `{subject}` to confirm it, or approves the current head")
        findings.append(ChainFinding("command", actor, subject, reason, hit.command))
    return findings


# --- labels --------------------------------------------------------------------------------------------


def _label_key(label: str) -> str:
    """Labels compared normalised and casefolded, ignoring spaces, `-`, `_` and `.`: a bot applying
    "Auto\u200bmerge", "ＡＵＴＯＭＥＲＧＥ" or "auto_merge" applies "automerge"."""
    folded = normalize_command_text(label).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and ch not in "-_.")


def judge_label(policy: Policy, actor: Actor, label: str, changed_paths: Sequence[str], *,
                paths_complete: bool = True) -> list[ChainFinding]:
    """A trigger label (`chains.trigger_labels`) applied by a bot or agent is a FAILURE finding.

    Rules: labels applied by humans yield nothing. Permitted when an entry of `chains.allow` matches the
    actor's login, lists the label (or "*") in `labels`, and, when it sets `only_paths`, every changed
    path matches (an empty or incomplete list permits nothing). The worker removes the label when
    `chains.remove_bot_labels`.
    """
    if not actor.kind.is_automated:
        return []
    key = _label_key(label)
    if not key or key not in {_label_key(t) for t in policy.chains.trigger_labels}:
        return []
    if _allowed(policy.chains, actor, changed_paths, paths_complete, label=key):
        return []
    removal = " (agentgate removes it)" if policy.chains.remove_bot_labels else ""
    reason = Reason("chain-label", Outcome.FAILURE,
                    f"{actor.login} ({_kind_phrase(actor)}) applied the trigger label `{label}`{removal}",
                    f"A human with write access re-applies `{label}` to confirm it, or approves the current head")
    return [ChainFinding("label", actor, label, reason, key)]


# --- workflow runs -------------------------------------------------------------------------------------


def _workflow_allowed(chains: ChainPolicy, actor: Actor, workflow_name: str, workflow_path: str) -> bool:
    for entry in chains.allow:
        workflows = entry.workflows
        if workflows is not None and _login_matches(entry.actor.patterns, actor.login) and (
                workflows.match(workflow_path) or workflows.match(workflow_name)):
            return True
    return False


def judge_workflow_run(policy: Policy, triggering_actor: Actor | None, actor: Actor, event: str,
                       workflow_name: str, workflow_path: str, run_id: int, *, head_branch: str | None = None,
                       default_branch: str | None = None, changed_paths: Sequence[str] = (),
                       head_is_branch: bool = True, workflow_changed: bool = False) -> list[ChainFinding]:
    """A workflow run a bot or agent triggered is a FAILURE finding when its event is not ordinary CI.

    Rules: who triggered the run is `triggering_actor` (on a re-run, the person who re-ran it), else
    `actor`; a human re-running a bot's run is that human's action, so it yields nothing. Events in
    CI_EVENTS are ordinary CI, as is a push to a branch that is neither protected nor the default; a
    push whose branch is unknown, or whose ref is a tag rather than a branch (`head_is_branch=False`),
    counts (fail closed: a tag push runs release workflows). A run of CI whose workflow file the change
    itself alters (`workflow_path` among `changed_paths` of any of its pull requests, or
    `workflow_changed` when the caller compared the file itself) counts even for CI events: it ran the
    bot's own workflow with the repository's secrets. Every other event counts (see CI_EVENTS).
    """
    starter = triggering_actor or actor
    if not starter.kind.is_automated:
        return []
    changed_workflow = workflow_changed or (bool(workflow_path) and workflow_path in changed_paths)
    if event == "push" and head_branch is not None and head_is_branch:
        protected = head_branch == default_branch or policy.protected_branches.match(head_branch)
        ordinary = not protected
    else:
        ordinary = event in policy.chains.ci_events
    if ordinary and not changed_workflow:
        return []
    if _workflow_allowed(policy.chains, starter, workflow_name, workflow_path):
        return []
    subject = f"workflow {workflow_name} (run {run_id})"
    if changed_workflow:
        what = f"ran {workflow_path}, which its own pull request changes, with the repository's secrets"
    elif event == "push":
        what = f"pushed to {head_branch or 'an unknown branch'}, starting {subject}"
    else:
        what = f"triggered {subject} through `{event}`, which runs with the repository's secrets"
    reason = Reason("chain-workflow-run", Outcome.FAILURE, f"{starter.login} ({_kind_phrase(starter)}) {what}",
                    f"A human with write access re-runs {subject} or approves the current head")
    return [ChainFinding("workflow_run", starter, subject, reason, workflow_path or workflow_name)]


# --- deployments ---------------------------------------------------------------------------------------


def _protected_environment(chains: ChainPolicy, environment: str) -> bool:
    # Environment names are compared case-insensitively; folding look-alikes only ever protects more.
    names = {environment, environment.casefold(), normalize_command_text(environment).casefold()}
    return any(chains.protected_environments.match(n) for n in names)


def judge_deployment(policy: Policy, environment: str, requester: Actor | None, pr_outcome: Outcome | None,
                     agent_involved: bool, human_approved: bool = False) -> tuple[str, Reason]:
    """("approved" | "rejected", reason) for a deployment protection request.

    Rules: environments not matching `chains.protected_environments` (case-insensitively) are approved.
    A protected one is rejected when the run's requester is unknown (fail closed) or a bot or agent,
    or when an agent is involved in the change and its pull request verdict is not SUCCESS, including
    unknown (None: it could not be evaluated), or no human's approval of that change counted
    (`human_approved`: a verdict that needed no approval, e.g. into an unguarded branch, is not one).
    Otherwise approved. A rejection's unblock says what to do.
    """
    env = f"environment {environment}"
    if not _protected_environment(policy.chains, environment):
        return "approved", Reason("deployment-unprotected", Outcome.SUCCESS,
                                  f"{env} is not protected by policy")
    if requester is None:
        return "rejected", Reason("deployment-unknown-requester", Outcome.FAILURE,
                                  f"Deployment to protected {env}: could not tell who started it",
                                  f"A human with write access re-runs the deployment to {environment}")
    if requester.kind.is_automated:
        return "rejected", Reason("deployment-automated-requester", Outcome.FAILURE,
                                  f"Deployment to protected {env} was started by {requester.login} "
                                  f"({_kind_phrase(requester)})",
                                  f"A human with write access re-runs the deployment to {environment}")
    if agent_involved and pr_outcome is not Outcome.SUCCESS:
        state = "could not be evaluated" if pr_outcome is None else f"is {pr_outcome.value}"
        return "rejected", Reason(
            "deployment-unapproved-change", Outcome.FAILURE,
            f"Deployment to protected {env} ships an agent's change whose agentgate verdict {state}",
            f"Get the pull request to agentgate success (human approval of its head), then re-run the "
            f"deployment to {environment}")
    if agent_involved and not human_approved:
        return "rejected", Reason(
            "deployment-unapproved-change", Outcome.FAILURE,
            f"Deployment to protected {env} ships an agent's change that no qualifying human approved",
            f"A human with write access approves the head of the agent's pull request, then re-run the "
            f"deployment to {environment}")
    why = "an agent's change a human approved" if agent_involved else "no agent's change"
    return "approved", Reason("deployment-approved", Outcome.SUCCESS,
                              f"Deployment to {env} requested by {requester.login}, a human; {why}")


# --- lifting, tampering, reasons -----------------------------------------------------------------------


def verb_key(command: str) -> str:
    """A command as a human's repeat is compared with a finding's key."""
    return _verb_key(command)


def label_key(label: str) -> str:
    """A label as a human's re-application is compared with a finding's key."""
    return _label_key(label)


def judge_label_removal(policy: Policy, actor: Actor, label: str) -> list[ChainFinding]:
    """A bot or agent removing a label a rule reads (a `hold` a `block` rule waits on) is a FAILURE
    finding: only a human may lift a hold. Humans' removals yield nothing."""
    if not actor.kind.is_automated or label.lower() not in policy.rule_labels:
        return []
    reason = Reason("chain-label-removed", Outcome.FAILURE,
                    f"{actor.login} ({_kind_phrase(actor)}) removed the label `{label}`, which a policy rule reads",
                    f"A human with write access re-applies `{label}`, or removes it and approves the current head")
    return [ChainFinding("label_removed", actor, label, reason, _label_key(label))]


def is_tampering(original_author: str, editor: str) -> bool:
    """An approval or command edited by someone other than its author (the delivery's sender differs
    from the comment's or review's author) is tampering. Logins compare case-insensitively; an unknown
    (empty) editor or author counts as someone else (fail closed)."""
    author, who = original_author.strip().casefold(), editor.strip().casefold()
    return not author or not who or author != who


def chain_reasons(findings: Sequence[ChainFinding]) -> list[Reason]:
    """The reasons a pull request verdict appends for its findings, each once, in order."""
    reasons: list[Reason] = []
    for finding in findings:
        if finding.reason not in reasons:
            reasons.append(finding.reason)
    return reasons
