"""Handlers for every event but a plain re-evaluation: comments, assignments, task changes, labels,
workflow runs, pushes, deployments, merge groups and foreign statuses.

A handler reads what it needs through the port and returns a `Result`: the chain findings to record,
humans' confirmations, the pull requests to re-evaluate and the actions to take. It never acts on the
platform itself, and never evaluates a pull request itself: `jobs.handle` records, acts, and queues
one evaluation per pull request through its waiting slot. Judgement is in `core.chains` (pure)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gatekeeper.core import chains
from gatekeeper.core.facts import Actor, Confirmation, RecordedFinding, User
from gatekeeper.core.identity import bare, classify, has_ai_trailer
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.forges.port import EVALUATE, Capability, Event, Forge, ForgeError, PullRequest
from gatekeeper.policy import DEFAULT_POLICY, Policy
from gatekeeper.state import findings, keys, tokens
from gatekeeper.worker import actions, gather
from gatekeeper.worker.pipeline import assess
from gatekeeper.worker.runtime import Runtime

log = logging.getLogger(__name__)


# ---- what a handler returns ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoveLabel:
    number: int
    label: str
    applied_by: str


@dataclass(frozen=True)
class AnswerDeployment:
    run_id: int
    environment: str
    state: str  # approved | rejected
    reason: Reason
    facts: dict[str, Any]
    policy: Policy


@dataclass(frozen=True)
class PostVerdict:
    """A verdict on a commit that is no pull request's head (a push, a merge group, a forged status)."""

    sha: str
    subject: str
    verdict: Verdict
    facts: dict[str, Any]
    policy: Policy | None = None
    status: bool = True  # False: a decision record only (a workflow run outside any PR)


@dataclass(frozen=True)
class RestoreComment:
    """Put agentgate's comment back as agentgate wrote it (someone holding its App's token edited it)."""

    number: int


HandlerAction = RemoveLabel | AnswerDeployment | PostVerdict | RestoreComment


@dataclass(frozen=True)
class RevokeTokens:
    """Revoke the agent tokens of a task: every one (`label` None) or those `label` approved; `kind` says
    whether the task closed is an issue or a pull request."""

    task: int
    reason: str
    label: str | None = None
    kind: str = "issue"


@dataclass
class Result:
    info: dict[str, Any] = field(default_factory=dict)
    findings: list[tuple[int, RecordedFinding]] = field(default_factory=list)
    confirmations: list[tuple[int, Confirmation]] = field(default_factory=list)
    reevaluate: list[int] = field(default_factory=list)
    forget_status: list[str] = field(default_factory=list)  # heads whose status must be posted again
    # Agent tokens to revoke: a task's, or only those its `label` approved.
    revoke_tokens: list[RevokeTokens] = field(default_factory=list)
    revoke_repo: bool = False  # every agent token of the repository (agentgate was removed from it)
    actions: list[HandlerAction] = field(default_factory=list)


@dataclass
class Context:
    rt: Runtime
    forge: Forge
    event: Event
    retrying: bool = False  # the job will run again if this attempt fails

    @property
    def conn(self):  # type: ignore[no-untyped-def]
        return self.rt.conn


Handler = Callable[[Context], Result]
# Each handler with the capabilities it reads with: most share the evaluation's credential.
HANDLERS: dict[str, tuple[Handler, frozenset[Capability]]] = {}

# What each action needs beyond reading; handlers read with the evaluation's own credential (shared
# with evaluations), and an action gets a credential for exactly what it does.
ACTION_CAPABILITIES: dict[type, frozenset[Capability]] = {
    RemoveLabel: EVALUATE | {Capability.LABELS},
    AnswerDeployment: EVALUATE | {Capability.DEPLOYMENTS},
    PostVerdict: EVALUATE,
    RestoreComment: EVALUATE,
}


def handler(kind: str, reads: frozenset[Capability] = EVALUATE) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = (fn, reads)
        return fn

    return register


def now() -> str:
    # The platforms' own timestamp format, so findings, confirmations and reviews compare as strings.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finding_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]


def stored(finding: chains.ChainFinding, fid: str, at: str, subject: str = "") -> RecordedFinding:
    return RecordedFinding(id=fid, kind=finding.kind, actor=finding.actor.login, actor_kind=finding.actor.kind.value,
                           subject=subject or finding.subject, message=finding.reason.message,
                           unblock=finding.reason.unblock or "A human with write access approves the current head",
                           at=at or now(), key=finding.key)


def _governing(ctx: Context, number: int) -> tuple[PullRequest, Policy, Callable[[User | None], Actor]]:
    """The PR and the policy on its base branch (the secure default when that file is invalid)."""
    pr = ctx.forge.get_pull_request(number)
    policy = gather.governing_policy(ctx.conn, ctx.forge, pr)
    return pr, gather.usable(policy), gather.identities(policy, ctx.forge)


def _open_pulls_at(forge: Forge, sha: str | None) -> list[PullRequest]:
    if not sha:
        return []
    return [p for p in forge.pulls_for_commit(sha) if p.state == "open" and p.head_sha == sha]


# ---- comments and review bodies -----------------------------------------------------------------------

def _our_comment(ctx: Context, number: int, comment_id: object, body: str) -> bool:
    """Whether a comment in agentgate's name is one agentgate wrote: its remembered comment, or the body it
    is posting right now. On GitHub agent tokens come from agentgate's own App, so an agent's comment bears
    the same login and must be judged like any bot's."""
    ev = ctx.event
    digest = hashlib.sha256(body.encode()).hexdigest()
    stored = ctx.conn.get(keys.comment(ev.platform, ev.repo, number))
    written = ctx.conn.get(keys.comment_body(ev.platform, ev.repo, number))
    if (stored is not None and comment_id is not None and stored.decode() == str(comment_id)
            and written is not None and written.decode() == digest):
        return True  # our comment, saying what we last wrote in it
    posting = ctx.conn.get(keys.comment_posting(ev.platform, ev.repo, number))
    return posting is not None and posting.decode() == digest


@handler("comment")
def on_comment(ctx: Context) -> Result:
    ev, data = ctx.event, ctx.event.data
    number, action = ev.subject, str(data["action"])
    author = ev.user("author")
    mentions = [User.from_dict(m) for m in data.get("mentions") or []]
    if not data.get("is_pull_request"):
        return _remember_mentions(ctx, number, author, [m for m in mentions if m], None)
    if action == "deleted":
        return Result({"ignored": "deleted comment"})  # what it triggered already happened; the finding stays
    edited = action == "edited"
    # An edit is a new action: it counts from the moment of the edit, never from the comment's creation.
    at = (str(data.get("edited_at") or "") or now()) if edited else (str(data.get("created_at") or "") or now())
    comment_id, kind = data.get("comment_id"), str(data.get("source") or "comment")
    if edited and (ev.actor is None or author is None or chains.is_tampering(author.login, ev.actor.login)):
        # Someone changed another's words (a review, a command): tampering, whoever they are.
        editor, writer = classify(ev.actor), classify(author)
        finding = chains.ChainFinding("tampering", editor, f"{kind} {comment_id}", Reason(
            "chain-tampering", Outcome.FAILURE, f"{editor.login} edited a {kind.replace('_', ' ')} written by "
                                                f"{writer.login}",
            "A human with write access approves the current head after checking the edited comment"))
        return Result(findings=[(number, stored(finding, finding_id("tamper", kind, comment_id, at), at))],
                      reevaluate=[number])
    pr, policy, who = _governing(ctx, number)
    writer = who(author)
    result = _remember_mentions(ctx, number, author, [m for m in mentions if m], who) if not edited else Result()
    body = str(data.get("body") or "")
    if writer.kind.is_automated:
        if author is not None and ctx.forge.is_own(author) and _our_comment(ctx, number, comment_id, body):
            return Result({"ignored": "our own comment"})  # it quotes commands when it explains them
        stored_id = ctx.conn.get(keys.comment(ev.platform, ev.repo, number))
        if (edited and author is not None and ctx.forge.is_own(author) and stored_id is not None
                and stored_id.decode() == str(comment_id)):
            # Our comment, rewritten by someone holding our App's token: readers must not take their words
            # for the gate's. Put it back (and judge the words, below, like any bot's).
            result.actions.append(RestoreComment(number))
        paths, complete = gather.changed_paths(ctx.conn, ctx.forge, pr)
        hits = chains.judge_comment(policy, writer, body, paths, paths_complete=complete)
        for hit in hits:
            fid = finding_id("command", kind, comment_id, hit.subject, at if edited else "")
            result.findings.append((number, stored(hit, fid, at)))
        if hits:
            result.reevaluate.append(number)
        result.info["findings"] = len(hits)
        return result
    # A human repeating a bot's command takes responsibility for it, if their approval would count.
    confirms = [Confirmation("command", hit.command, writer.login, at)
                for hit in chains.find_commands(body, policy.chains) if hit.command != chains.UNSCANNED]
    if confirms and findings.load(ctx.conn, ctx.forge.platform, ctx.forge.repo, number):
        result.confirmations += [(number, c) for c in confirms]
        result.reevaluate.append(number)
    return result


def _remember_mentions(ctx: Context, number: int, writer: User | None, mentioned: list[User],
                       who: Callable[[User | None], Actor] | None) -> Result:
    """A human who summons an agent (`@copilot fix this`) is its requester for this thread and, while the
    task is open, for the agent's work in this repository."""
    if writer is None or not mentioned:
        return Result()
    if who is None:
        # Classified under the repository's own identities: an agent it names can be summoned too.
        policy_here = gather.default_branch_policy(ctx.conn, ctx.forge, ctx.event.default_branch)
        who = gather.identities(policy_here, ctx.forge)
    if who(writer).kind.is_automated:
        return Result()
    summoned = [m for m in mentioned if who(m).kind.is_automated]
    for agent in summoned:
        gather.remember_requester(ctx.conn, ctx.forge.platform, ctx.forge.repo, number, writer.login)
        gather.remember_agent_requester(ctx.conn, ctx.forge.platform, ctx.forge.repo, bare(agent.login), number,
                                        writer.login)
    return Result({"requester": writer.login} if summoned else {})


# ---- pushes to a pull request, dismissed reviews -------------------------------------------------------

@handler("pushed")
def on_pushed(ctx: Context) -> Result:
    """Remember who pushed to the PR's branch, then evaluate it (no platform call)."""
    ev = ctx.event
    if ev.actor is not None:
        gather.remember_pusher(ctx.conn, ev.platform, ev.repo, ev.subject, ev.actor)
    return Result({"pusher": ev.actor.login if ev.actor else None}, reevaluate=[ev.subject])


@handler("review_dismissed")
def on_review_dismissed(ctx: Context) -> Result:
    """A bot or agent dismissing someone else's review (a change request that held the PR) is tampering."""
    ev = ctx.event
    author = ev.user("author")
    if ev.actor is None or author is None or not chains.is_tampering(author.login, ev.actor.login):
        return Result()
    # agentgate never dismisses reviews: a dismissal in its name is an agent holding one of its tokens.
    _, _, who = _governing(ctx, ev.subject)
    dismisser = who(ev.actor)
    if not dismisser.kind.is_automated:
        return Result()  # a maintainer dismissing a review is the human in the loop
    at = now()
    finding = chains.ChainFinding("tampering", dismisser, f"review {ev.data.get('review_id')}", Reason(
        "chain-tampering", Outcome.FAILURE,
        f"{dismisser.login} ({dismisser.kind.value}) dismissed {author.login}'s review",
        f"{author.login} or another human with write access reviews the current head"))
    return Result(findings=[(ev.subject, stored(finding, finding_id("dismissed", ev.data.get("review_id")), at))],
                  reevaluate=[ev.subject])


# ---- who set an agent on a task -----------------------------------------------------------------------

@handler("assigned")
def on_assigned(ctx: Context) -> Result:
    ev = ctx.event
    gather.forget_issue_events(ctx.conn, ev.platform, ev.repo, ev.subject)
    # Classified under the repository's own identities: an agent it names is an agent here too.
    default_policy = gather.default_branch_policy(ctx.conn, ctx.forge, ev.default_branch)
    who = gather.identities(default_policy, ctx.forge)
    person, agent = who(ev.actor), who(ev.user("assignee"))
    if not agent.kind.is_automated or person.kind.is_automated or ev.actor is None:
        return Result({"ignored": "not an agent assignment by a human"})
    gather.remember_requester(ctx.conn, ev.platform, ev.repo, ev.subject, person.login)
    gather.remember_agent_requester(ctx.conn, ev.platform, ev.repo, bare(agent.login), ev.subject, person.login)
    result = Result({"requester": person.login})
    if ev.data.get("is_pull_request"):
        result.reevaluate.append(ev.subject)
    return result


@handler("task")
def on_task_changed(ctx: Context) -> Result:
    """An issue that PRs resolve was labelled, unlabelled, closed or reopened: re-evaluate those PRs."""
    ev = ctx.event
    action = ev.data.get("action")
    gather.forget_issue_events(ctx.conn, ev.platform, ev.repo, ev.subject)
    revoke: list[RevokeTokens] = []
    kind = "pull_request" if ev.data.get("is_pull_request") else "issue"
    if action == "closed":
        agents = gather.agents_with_requesters(ctx.conn, ev.platform, ev.repo)
        gather.forget_task_requesters(ctx.conn, ev.platform, ev.repo, ev.subject, agents)
        revoke.append(RevokeTokens(ev.subject, "the task was closed", None, kind))
    elif action == "unlabeled":
        label = ev.data.get("label")
        # Unknown which label went: every token of the task goes (fail closed; the agent can ask again).
        revoke.append(RevokeTokens(ev.subject, f"the label {label} was removed from the task" if label
                                   else "a label was removed from the task", str(label) if label else None, kind))
    if ev.data.get("is_pull_request"):
        return Result({"revoke": len(revoke)}, revoke_tokens=revoke)  # the PR itself is evaluated by its own event
    pulls = gather.task_pulls(ctx.conn, ev.platform, ev.repo, ev.subject)
    return Result({"pull_requests": pulls}, reevaluate=pulls, revoke_tokens=revoke)


# ---- labels --------------------------------------------------------------------------------------------

@handler("label")
def on_label(ctx: Context) -> Result:
    """Judge a label change, then re-evaluate: rules read labels even when no chain is involved."""
    ev, data = ctx.event, ctx.event.data
    number, label, action = ev.subject, data.get("label"), str(data.get("action"))
    if (ev.actor is not None and ev.actor.bot and ctx.forge.is_own(ev.actor) and action == "unlabeled" and label
            and ctx.conn.delete(keys.label_removal(ev.platform, ev.repo, number, str(label)))):
        return Result({"ignored": "our own label change"})  # we removed a bot's label; that evaluation is done
    result = Result(reevaluate=[number])
    if not label:
        return result
    pr, policy, who = _governing(ctx, number)
    actor = who(ev.actor)
    at = str(data.get("at") or "") or now()
    if action == "labeled" and actor.kind.is_automated:
        paths, complete = gather.changed_paths(ctx.conn, ctx.forge, pr)
        hits = chains.judge_label(policy, actor, label, paths, paths_complete=complete)
        for hit in hits:
            result.findings.append((number, stored(hit, finding_id("label", number, label, at), at, label)))
        if hits and policy.chains.remove_bot_labels:
            result.actions.append(RemoveLabel(number, label, actor.login))
    elif action == "labeled":
        # A human applying the same label approves the action, if their approval would count.
        result.confirmations.append((number, Confirmation("label", chains.label_key(label), actor.login, at)))
    if action == "unlabeled":
        # A pull request can be an agent's task: removing the label that approved it revokes its tokens.
        result.revoke_tokens.append(RevokeTokens(number, f"the label {label} was removed from the task", label,
                                                 "pull_request"))
    if action == "unlabeled" and actor.kind.is_automated:
        for hit in chains.judge_label_removal(policy, actor, label):
            result.findings.append((number, stored(hit, finding_id("unlabel", number, label, at), at, label)))
    return result


# ---- workflow runs -------------------------------------------------------------------------------------

@handler("workflow_run")
def on_workflow_run(ctx: Context) -> Result:
    ev, data = ctx.event, ctx.event.data
    forge = ctx.forge
    run_id, path, name = int(data["run_id"]), str(data.get("path") or ""), str(data.get("name") or "")
    head_sha, head_branch = data.get("head_sha"), data.get("head_branch")
    # The PRs the platform names for the run, else every open PR at its commit. (Other PRs at a named
    # PR's head share its status, which is the worst of theirs.)
    named = [int(n) for n in data.get("pull_numbers") or []]
    prs = {n: forge.get_pull_request(n) for n in named} if named else \
        {p.number: p for p in _open_pulls_at(forge, head_sha)}
    policy_or_invalid = gather.default_branch_policy(ctx.conn, forge, ev.default_branch)
    policy, who = gather.usable(policy_or_invalid), gather.identities(policy_or_invalid, ctx.forge)
    starter = who(ev.user("triggering_actor") or ev.user("run_actor"))
    if not starter.kind.is_automated:
        # A human starting or re-running the workflow takes responsibility for it.
        confirms = [(n, Confirmation("workflow_run", path or name, starter.login, now())) for n in prs]
        return Result({"findings": 0}, confirmations=confirms, reevaluate=list(prs) if confirms else [])
    # The run's own workflow changed by the change it runs for: any of its pull requests, or, with
    # none, the file at the run's commit against the default branch.
    paths = [p for pr in prs.values() for p in gather.changed_paths(ctx.conn, forge, pr)[0]]
    workflow_changed = False
    if not prs and path and head_sha:
        workflow_changed = forge.get_file(path, head_sha) != forge.get_file(path, ev.default_branch or "main")
    head_is_branch = True
    if data.get("event") == "push" and head_branch:
        # A tag push names the tag here: only a real branch at this commit is a branch push.
        head_is_branch = forge.branch_sha(str(head_branch)) == head_sha
    hits = chains.judge_workflow_run(policy, starter, starter, str(data.get("event") or ""), name, path, run_id,
                                     head_branch=head_branch, default_branch=ev.default_branch, changed_paths=paths,
                                     head_is_branch=head_is_branch, workflow_changed=workflow_changed)
    result = Result({"findings": len(hits), "pull_requests": sorted(prs)})
    if not hits:
        return result
    at = now()
    for number in prs:
        for hit in hits:
            result.findings.append((number, stored(hit, finding_id("run", run_id), at)))
        result.reevaluate.append(number)
    if not prs:
        # Nothing to block: a run outside any PR can only be reported (see the README's chain table).
        result.actions.append(PostVerdict(head_sha or "", f"workflow run {run_id}",
                                          Verdict.of([h.reason for h in hits]),
                                          {"findings": [h.reason.to_dict() for h in hits]}, policy, status=False))
    return result


# ---- pushes --------------------------------------------------------------------------------------------

# Bots whose pushes to protected branches are the platform's own merge machinery.
PLATFORM_MERGERS = frozenset({"github-merge-queue[bot]", "github-actions[bot]"})


@handler("push")
def on_push(ctx: Context) -> Result:
    ev, data = ctx.event, ctx.event.data
    forge, conn = ctx.forge, ctx.conn
    ref, after, before = str(data["ref"]), data.get("after"), data.get("before")
    result = Result()
    if after:
        gather.remember_branch_head(conn, ev.platform, ev.repo, ref, str(after))
    if data.get("policy_changed") and after:
        # A new policy on a branch applies to the open PRs into it now, not at their next push.
        result.reevaluate += [p.number for p in forge.list_open_pulls(100) if p.base_ref == ref]
    zero = "0" * 40
    # The policy before the push: the pushed commits must not get to define their own rules.
    policy_sha = before if before and before != zero else gather.branch_head(conn, forge, ev.default_branch or "main")
    policy_or_invalid = gather.policy_at(conn, forge, policy_sha) if policy_sha else DEFAULT_POLICY
    policy, who = gather.usable(policy_or_invalid), gather.identities(policy_or_invalid, ctx.forge)
    pusher = who(ev.actor)
    protected = ref == ev.default_branch or policy.protected_branches.match(ref)
    if not protected or not after or not pusher.kind.is_automated or pusher.login in PLATFORM_MERGERS:
        result.info["ignored"] = "not an automated push to a protected branch"
        return result
    # agentgate never pushes: a push in its name is an agent holding one of its tokens, judged like any.
    # Merging a pull request agentgate passed at that very head is how changes should arrive; anything
    # else, including a bot merging an unapproved PR with bypass rights, went around review.
    for merged in forge.pulls_for_commit(after):
        if merged.merged and merged.base_ref == ref and merged.merge_commit_sha == after and _passed(ctx, merged):
            result.info["ignored"] = f"merge of pull request #{merged.number}, which agentgate passed"
            return result
    reason = Reason("chain-push", Outcome.FAILURE,
                    f"{pusher.login} ({pusher.kind.value}) pushed {after[:7]} directly to protected branch {ref}"
                    f"{' with --force' if data.get('forced') else ''}, bypassing review",
                    f"Revert {after[:7]} or have a human with write access review it in a pull request",
                    data={"pusher": pusher.login, "ref": ref, "sha": after})
    result.actions.append(PostVerdict(after, f"push to {ref}", Verdict.of([reason]),
                                      {"pusher": data.get("pusher"), "sender": pusher.login,
                                       "forced": data.get("forced"), "commits": data.get("commits")}, policy))
    log.warning("%s: %s", ev.repo, reason.message)
    return result


def _passed(ctx: Context, pr: PullRequest) -> bool:
    """Whether agentgate's own verdict on this PR at that head was success."""
    verdict = actions.head_verdicts(ctx.conn, ctx.forge, pr.head_sha).get(pr.number)
    return verdict is not None and verdict.outcome == Outcome.SUCCESS.value


# ---- deployments ---------------------------------------------------------------------------------------

@handler("deployment", EVALUATE | {Capability.DEPLOYMENTS})  # the run's actors are read with actions: read
def on_deployment(ctx: Context) -> Result:
    ev, data = ctx.event, ctx.event.data
    forge = ctx.forge
    environment, run_id = data.get("environment"), data.get("run_id")
    if not run_id or not environment:
        log.error("%s: deployment protection request without a usable run id or environment", ev.repo)
        return Result({"ignored": "no run id"})
    sha = data.get("sha")
    try:
        policy_or_invalid = gather.default_branch_policy(ctx.conn, forge, ev.default_branch)
        policy, who = gather.usable(policy_or_invalid), gather.identities(policy_or_invalid, ctx.forge)
        # Whoever started, re-ran or created it: the most automated of them is the requester.
        run = forge.get_workflow_run(int(run_id))
        users = [run.triggering_actor, run.actor] if run else []
        people = [who(u) for u in (*users, ev.actor, ev.user("creator")) if u]
        requester = next((p for p in people if p.kind.is_automated), people[0] if people else None)
        # Every open PR at the deployed commit, and those the platform names: a second PR of the same
        # commit into another branch changes nothing.
        numbers = sorted({*(int(n) for n in data.get("pull_numbers") or []),
                          *(p.number for p in _open_pulls_at(forge, sha))})
        outcome, agent_involved, approved = _deployed_change(ctx, numbers, sha, who)
    except ForgeError as exc:
        if not ctx.retrying:
            # Fail closed: a deployment we could not evaluate is rejected, and says why.
            reason = Reason("deployment-unevaluated", Outcome.FAILURE,
                            f"agentgate could not evaluate this deployment: {exc}", "Re-run the deployment")
            return Result(actions=[AnswerDeployment(int(run_id), str(environment), "rejected", reason, {},
                                                    DEFAULT_POLICY)])
        raise
    state, reason = chains.judge_deployment(policy, str(environment), requester, outcome, agent_involved, approved)
    facts = {"environment": environment, "event": data.get("event"), "ref": data.get("ref"), "run_id": run_id,
             "requester": requester.login if requester else None,
             "requester_kind": requester.kind.value if requester else None, "pull_requests": numbers,
             "pr_outcome": outcome.value if outcome else None, "human_approved": approved}
    return Result({"state": state}, actions=[AnswerDeployment(int(run_id), str(environment), state, reason, facts,
                                                              policy)])


def _deployed_change(ctx: Context, numbers: list[int], sha: str | None, who: Callable[[User | None], Actor]
                     ) -> tuple[Outcome | None, bool, bool]:
    """The verdict of what is deployed, whether an agent or bot had a hand in it, and whether a human's
    approval of it counted (for every pull request it comes from)."""
    forge = ctx.forge
    if numbers:
        outcomes, involved, approved = [], False, True
        for number in numbers:
            result = assess(ctx.rt, forge, forge.get_pull_request(number))
            outcomes.append(result.verdict.outcome)
            automated = result.facts.author.kind.is_automated or any(
                a is not None and a.kind.is_automated for c in result.facts.commits for a in (c.author, c.committer))
            involved = involved or automated
            approved = approved and (not automated or bool(result.verdict.approvals))
        return max(outcomes, key=lambda o: o.severity), involved, approved
    if not sha:
        return None, True, False
    # No open PR: a merged one agentgate passed with a human's approval of its head is fine; otherwise
    # look at who wrote the commit.
    for merged in forge.pulls_for_commit(sha):
        if merged.merged and ctx.conn.exists(keys.approved_head(forge.platform, forge.repo, merged.number,
                                                                 merged.head_sha)):
            return Outcome.SUCCESS, True, True
    commit = forge.get_commit(sha)
    if commit is None:
        return None, True, False  # unknown commit: fail closed
    automated = any(who(u).kind.is_automated for u in (commit.author, commit.committer) if u) \
        or has_ai_trailer(commit.message)
    return (None if automated else Outcome.SUCCESS), automated, not automated


# ---- merge queue ---------------------------------------------------------------------------------------

@handler("merge_group")
def on_merge_group(ctx: Context) -> Result:
    """A merge group gets a verdict like any head: every PR in it must pass, or the group fails."""
    data = ctx.event.data
    numbers = [int(n) for n in data.get("pull_numbers") or []]
    head_sha, head_ref = str(data["head_sha"]), str(data.get("head_ref") or "")
    reasons: list[Reason] = []
    try:
        for number in numbers:
            result = assess(ctx.rt, ctx.forge, ctx.forge.get_pull_request(number), event="merge_group")
            for r in result.verdict.deciding:
                reasons.append(Reason(r.code, r.outcome, f"#{number}: {r.message}",
                                      f"#{number}: {r.unblock}" if r.unblock else None, data={"pull_request": number,
                                                                                               **r.data}))
    except ForgeError as exc:
        # A required check that never reports stalls the queue: say something, then retry.
        actions.post_unevaluated(ctx.conn, ctx.forge, ctx.rt.settings.status_context, head_sha, str(exc),
                                 ctx.rt.settings.public_url, ctx.retrying)
        raise
    if not numbers:
        reasons.append(Reason("merge-group-unknown", Outcome.ERROR,
                              "Could not tell which pull requests this merge group contains",
                              "Re-queue the pull requests; agentgate reads them from the merge group's ref"))
    # A queued PR was evaluated at its own head; pending (awaiting approval) must not merge either.
    reasons = [Reason(r.code, Outcome.FAILURE if r.outcome is Outcome.PENDING else r.outcome, r.message, r.unblock,
                      data=r.data) for r in reasons]
    verdict = Verdict.of(reasons, summary=f"All {len(numbers)} queued pull request(s) satisfy the policy")
    return Result({"outcome": verdict.outcome.value, "pull_requests": numbers}, actions=[PostVerdict(
        head_sha, f"merge group {head_ref.rsplit('/', 1)[-1]}", verdict,
        {"pull_requests": numbers, "base_ref": data.get("base_ref")})])


# ---- statuses ------------------------------------------------------------------------------------------

@handler("status")
def on_status(ctx: Context) -> Result:
    ev, data = ctx.event, ctx.event.data
    context, sha = data.get("context"), data.get("sha")
    if context != ctx.rt.settings.status_context or not sha:
        return Result({"ignored": f"context {context}"})
    if ev.actor is not None and ctx.forge.is_own(ev.actor):
        return Result({"ignored": "our own status"})
    actor = classify(ev.actor)  # whoever it is: only agentgate may post its status
    reason = Reason("chain-forged-status", Outcome.FAILURE,
                    f"{actor.login} posted an '{context}' status ({data.get('state')}) that only agentgate may post",
                    "A human with write access approves the current head; agentgate re-evaluated it",
                    data={"actor": actor.login, "state": data.get("state")})
    numbers = [p.number for p in _open_pulls_at(ctx.forge, sha)]
    # Always re-post over the forged one, even if the verdict is the same as last time.
    result = Result({"pull_requests": numbers}, forget_status=[sha])
    if not numbers:
        result.actions.append(PostVerdict(sha, f"commit {sha[:7]}", Verdict.of([reason]),
                                          {"forged_by": actor.login, "state": data.get("state"),
                                           "description": data.get("description")}))
        return result
    # Anyone but agentgate posting its status is tampering with the gate, a human included: the PR
    # fails until a human with write access approves its head afresh.
    finding = chains.ChainFinding("forged_status", actor, f"status on {sha[:7]}", reason)
    at = now()
    for number in numbers:
        result.findings.append((number, stored(finding, finding_id("status", sha, actor.login, data.get("state"),
                                                                   ev.delivery), at)))
        result.reevaluate.append(number)
    return result


# ---- the App removed from a repository ---------------------------------------------------------------

@handler("uninstalled", frozenset())
def on_uninstalled(ctx: Context) -> Result:
    """agentgate no longer serves this repository: forget the tokens it held there and revoke every agent
    token it issued for it (the platform revokes its own installation tokens; GitLab's are not)."""
    ev = ctx.event
    dropped = tokens.forget_own_tokens(ctx.conn, ev.platform, ev.repo)
    return Result({"own_tokens_dropped": dropped}, revoke_repo=True)
