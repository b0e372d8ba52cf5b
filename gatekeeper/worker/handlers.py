"""Worker jobs for the whole action path: comments, labels, workflow runs, deployments, merge queues,
pushes and foreign statuses. Judgement is in `chains` (pure); here are the I/O and the actions."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime
from typing import Any

from rq import Queue, get_current_job

from gatekeeper.core import chains
from gatekeeper.core.facts import Actor, ActorKind, RecordedFinding
from gatekeeper.core.identity import KNOWN_AGENTS, classify, has_ai_trailer
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.forges.github.auth import (
    DEPLOY_PERMISSIONS,
    EVALUATE_PERMISSIONS,
    LABEL_PERMISSIONS,
    InstallationTokens,
    app_slug,
)
from gatekeeper.forges.port import Forge, ForgeError
from gatekeeper.policy import DEFAULT_POLICY, InvalidPolicy, Policy
from gatekeeper.state import audit, findings, metrics
from gatekeeper.state.queue import JOB_TIMEOUT, RETRY
from gatekeeper.state.store import key
from gatekeeper.state.store import text as store_text
from gatekeeper.worker import gather, runtime
from gatekeeper.worker import pipeline as jobs

log = logging.getLogger(__name__)

# Bots whose pushes to protected branches are the platform's own merge machinery.
PLATFORM_MERGERS = frozenset({"github-merge-queue[bot]", "github-actions[bot]"})
_CALLBACK_RUN = re.compile(r"/actions/runs/(\d+)/deployment_protection_rule/?$")
_MERGE_GROUP_PR = re.compile(r"/pr-(\d+)-[0-9a-f]{7,40}$")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9-]+(?:\[bot\])?)", re.IGNORECASE)


def _who(user: dict[str, Any] | None, policy: Policy | InvalidPolicy | None = None) -> Actor:
    user = user or {}
    agents = policy.agents if isinstance(policy, Policy) else ()
    bots = policy.bots if isinstance(policy, Policy) else ()
    return classify(user.get("login"), account_type=user.get("type"), via_app=user.get("via_app"),
                    agents=agents, bots=bots, account_id=user.get("id"))


def _usable(policy: Policy | InvalidPolicy) -> Policy:
    # Chains are judged even under an invalid policy, with the secure default: failing open here would
    # let a broken policy file switch the chain rules off. The PR itself already shows `error`.
    return policy if isinstance(policy, Policy) else DEFAULT_POLICY


def _now() -> str:
    # GitHub's own timestamp format, so findings and reviews compare as strings.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finding_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]


def _record(rt: runtime.Runtime, repo: str, number: int, finding: chains.ChainFinding, fid: str, at: str,
            extra_subject: str = "") -> bool:
    stored = RecordedFinding(id=fid, kind=finding.kind, actor=finding.actor.login, actor_kind=finding.actor.kind.value,
                             subject=extra_subject or finding.subject, message=finding.reason.message,
                             unblock=finding.reason.unblock or "A human with write access approves the current head",
                             at=at or _now(), key=finding.key)
    added = findings.record(rt.conn, repo, number, stored)
    if added:
        metrics.incr(rt.conn, "agentgate_verdicts", "github", f"chain-{finding.kind}")
        log.warning("%s#%s chain finding: %s", repo, number, finding.reason.message)
    return added


def _base_policy(rt: runtime.Runtime, forge: Forge, number: int) -> tuple[Policy, jobs.KnownPull]:
    """The policy on the PR's base branch, where the agent cannot have changed it (the secure default
    when that file is invalid), and the PR and policy as read, for the evaluation that follows."""
    pr = forge.get_pull_request(number)
    policy = gather.policy_for_pull(rt.conn, forge, pr)
    return _usable(policy), (pr, policy)


def _changed_paths(forge: Forge, number: int) -> tuple[list[str], bool]:
    files, complete = forge.list_changed_files(number)
    paths = [p for f in files for p in ((f.filename, f.previous_filename) if f.previous_filename else (f.filename,))]
    return paths, complete


def _as_chain(stored: RecordedFinding) -> chains.ChainFinding:
    actor = Actor(stored.actor, ActorKind(stored.actor_kind))
    return chains.ChainFinding(stored.kind, actor, stored.subject,
                               Reason(f"chain-{stored.kind}", Outcome.FAILURE, stored.message, stored.unblock),
                               key=stored.key)


def _lift_confirmed(
    rt: runtime.Runtime, forge: Forge, number: int, human: Actor, **action: str
) -> list[RecordedFinding]:
    """Lift the findings a human's own repeat of the action confirms (a maintainer's, not anyone's)."""
    level = gather.permission(rt.conn, forge, human.login)
    return findings.lift(rt.conn, forge.repo, number,
                         lambda f: chains.human_confirms(_as_chain(f), human, permission=level, **action))


def _reevaluate(rt: runtime.Runtime, forge: Forge, number: int, trigger: str, sender: Any, delivery: str,
                force: bool = False, known: jobs.KnownPull | None = None) -> dict[str, Any]:
    return jobs.evaluate_with(rt, forge, "github", number, trigger, sender, delivery, force, known)


# ---- comments ------------------------------------------------------------------------------------------

def on_comment(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, action: str, number: int,
               is_pull_request: bool, comment_id: int, body: str, author: Any, created_at: str | None, kind: str,
               delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    writer, editor = _who(author), _who(sender)
    if action == "created" and not writer.kind.is_automated:
        _remember_mentions(rt, repo, number, writer, body)
    if not is_pull_request:
        return {"ignored": "comment on an issue"}
    if action == "deleted":
        return {"ignored": "deleted comment"}  # what it triggered already happened; the finding stays
    policy, known = _base_policy(rt, forge, number)
    writer, editor = _who(author, policy), _who(sender, policy)
    if action == "edited" and editor.login.lower() != writer.login.lower():
        finding = chains.ChainFinding("tampering", editor, f"comment {comment_id}", Reason(
            "chain-tampering", Outcome.FAILURE,
            f"{editor.login} edited a {kind.replace('_', ' ')} written by {writer.login}",
            "A human with write access approves the current head after checking the edited comment"))
        _record(rt, repo, number, finding, _finding_id("tamper", comment_id, created_at), created_at or "")
        return _reevaluate(rt, forge, number, f"{kind}.edited", sender, delivery_id, known=known)
    if writer.kind.is_automated:
        if _is_self(rt, installation_id, writer):
            return {"ignored": "our own comment"}  # it quotes commands when it explains them
        paths, complete = _changed_paths(forge, number)
        hits = chains.judge_comment(policy, writer, body, paths, paths_complete=complete)
        for finding in hits:
            _record(rt, repo, number, finding, _finding_id("command", comment_id, finding.subject), created_at or "")
        if hits:
            # Also when the findings were recorded by an earlier attempt of this job that failed later.
            return _reevaluate(rt, forge, number, f"{kind}.{action}", sender, delivery_id, known=known)
        return {"findings": 0}
    # A human repeating a command a bot gave takes responsibility for it: that lifts the finding.
    lifted = [f for hit in chains.find_commands(body, policy.chains)
              for f in _lift_confirmed(rt, forge, number, writer, command=hit.command)]
    if lifted:
        return _reevaluate(rt, forge, number, f"{kind}.{action}", sender, delivery_id, known=known)
    return {"findings": 0}


def _remember_mentions(rt: runtime.Runtime, repo: str, number: int, writer: Actor, body: str) -> None:
    """A human who summons an agent (`@copilot fix this`) is its requester for this thread."""
    for login in _MENTION.findall(body or ""):
        bare = login.lower().removesuffix("[bot]")
        if bare in KNOWN_AGENTS:
            gather.remember_requester(rt.conn, repo, number, writer.login)


def on_assigned(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, number: int,
                assignee: Any, delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    gather.forget_issue_events(rt.conn, repo, number)
    person, agent = _who(sender), _who(assignee)
    if agent.kind.is_automated and not person.kind.is_automated:
        gather.remember_requester(rt.conn, repo, number, person.login)
        return {"requester": person.login}
    return {"ignored": "not an agent assignment by a human"}


def on_task_changed(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                    default_branch: str | None = None, number: int, action: str,
                    delivery_id: str = "") -> dict[str, Any]:
    """An issue that PRs resolve was labelled, unlabelled, closed or reopened: re-evaluate those PRs."""
    rt = runtime.current()
    gather.forget_issue_events(rt.conn, repo, number)
    pulls = gather.task_pulls(rt.conn, repo, number)
    if not pulls:
        return {"ignored": f"no pull request resolves #{number}"}
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    for pull in pulls:
        _reevaluate(rt, forge, pull, f"issues.{action}", sender, delivery_id)
    return {"pull_requests": pulls}


def on_tampering(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, number: int, what: str,
                 author: str, delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    editor = _who(sender)
    finding = chains.ChainFinding("tampering", editor, what, Reason(
        "chain-tampering", Outcome.FAILURE, f"{editor.login} edited {what}; only its author may change it",
        f"{author} or another human with write access submits a fresh review of the current head"))
    _record(rt, repo, number, finding, _finding_id("tamper", what, delivery_id), "")
    return _reevaluate(rt, forge, number, "pull_request_review.edited", sender, delivery_id)


# ---- labels --------------------------------------------------------------------------------------------

def on_label(*, platform: str, repo: str, installation_id: int | None, sender: Any,
             default_branch: str | None = None, action: str, number: int,
             label: str | None, at: str | None = None, delivery_id: str = "") -> dict[str, Any]:
    """Judge a label change, then re-evaluate: rules may read labels even when no chain is involved."""
    rt = runtime.current()
    forge = rt.forge(platform, installation_id, repo, LABEL_PERMISSIONS)
    trigger = f"pull_request.{action}"
    who = _who(sender)
    if who.kind.is_automated and _is_self(rt, installation_id, who):
        return {"ignored": "our own label change"}  # we removed a bot's label; that evaluation is done
    known = None
    if action == "labeled" and label:
        policy, known = _base_policy(rt, forge, number)
        who = _who(sender, policy)
        if who.kind.is_automated:
            paths, complete = _changed_paths(forge, number)
            hits = chains.judge_label(policy, who, label, paths, paths_complete=complete)
            for finding in hits:
                _record(rt, repo, number, finding, _finding_id("label", number, label, at or delivery_id),
                        at or "", extra_subject=label)
            if hits and policy.chains.remove_bot_labels:
                forge.remove_label(number, label)
                audit.record_own(rt.conn, repo, "remove_label", f"#{number}", f"{label} (applied by {who.login})")
        else:
            # A human applying the same label approves the action.
            _lift_confirmed(rt, forge, number, who, label=label)
    return _reevaluate(rt, forge, number, trigger, sender, delivery_id, known=known)


# ---- workflow runs -------------------------------------------------------------------------------------

def on_workflow_run(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, action: str,
                    run_id: int, name: str, path: str, event: str, head_sha: str | None, head_branch: str | None,
                    triggering_actor: Any, actor: Any, pull_numbers: list[int],
                    delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    if action != "requested":
        return {"ignored": f"workflow_run.{action}"}  # judged once, when it was requested
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    numbers = list(pull_numbers) or ([p["number"] for p in forge.pulls_for_commit(head_sha)
                                      if p.get("state") == "open"] if head_sha else [])
    policy = _default_branch_policy(rt, forge, default_branch)
    paths = _changed_paths(forge, numbers[0])[0] if len(numbers) == 1 else []
    hits = chains.judge_workflow_run(policy, _who(triggering_actor, policy) if triggering_actor else None,
                                     _who(actor, policy), event, name, path, run_id, head_branch=head_branch,
                                     default_branch=default_branch, changed_paths=paths)
    if not hits:
        return {"findings": 0}
    for number in numbers:
        for finding in hits:
            _record(rt, repo, number, finding, _finding_id("run", run_id), "")
        _reevaluate(rt, forge, number, "workflow_run.requested", sender, delivery_id)
    if not numbers:
        # Nothing to block: a run outside any PR can only be reported (see the README's chain table).
        _report(rt, repo, f"workflow run {run_id}", head_sha or "", hits, delivery_id)
    return {"findings": len(hits), "pull_requests": numbers}


def _default_branch_policy(rt: runtime.Runtime, forge: Forge, default_branch: str | None) -> Policy:
    """The policy on the default branch: for actions outside a PR, never one an agent's branch carries."""
    sha = forge.branch_sha(default_branch or "main")
    return _usable(gather.policy_at(rt.conn, forge, sha) if sha else DEFAULT_POLICY)


def _report(rt: runtime.Runtime, repo: str, subject: str, sha: str, hits: list[chains.ChainFinding],
            delivery: str) -> str:
    verdict = Verdict.of([h.reason for h in hits])
    return jobs.save_decision(rt.conn, "github", repo, subject, sha, verdict,
                              {"findings": [h.reason.to_dict() for h in hits]}, None, {"delivery": delivery})


# ---- pushes --------------------------------------------------------------------------------------------

def on_push(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, ref: str, after: str | None,
            before: str | None, forced: bool, pusher: str | None,
            commits: list[dict[str, Any]], policy_changed: bool = False,
            delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    if policy_changed and after:
        _reevaluate_open_pulls(rt, forge, platform, installation_id, ref, after)
    zero = "0" * 40
    # The policy before the push: the pushed commits must not get to define their own rules.
    policy_sha = before if before and before != zero else forge.branch_sha(default_branch or "main")
    policy = _usable(gather.policy_at(rt.conn, forge, policy_sha) if policy_sha else DEFAULT_POLICY)
    who = _who(sender, policy)
    protected = ref == default_branch or policy.protected_branches.match(ref)
    if not protected or not after or not who.kind.is_automated or who.login in PLATFORM_MERGERS:
        return {"ignored": "not an automated push to a protected branch"}
    if _is_self(rt, installation_id, who):
        return {"ignored": "our own push"}
    # Merging a pull request that agentgate passed is how changes should arrive; anything else, including
    # a bot merging an unapproved PR with bypass rights, went around review.
    for merged in forge.pulls_for_commit(after):
        if (merged.get("merged_at") and merged.get("base_ref") == ref and merged.get("merge_commit_sha") == after
                and _last_outcome(rt, repo, merged.get("head_sha") or "") == "success"):
            return {"ignored": f"merge of pull request #{merged['number']}, which agentgate passed"}
    reason = Reason("chain-push", Outcome.FAILURE,
                    f"{who.login} ({who.kind.value}) pushed {after[:7]} directly to protected branch {ref}"
                    f"{' with --force' if forced else ''}, bypassing review",
                    f"Revert {after[:7]} or have a human with write access review it in a pull request")
    verdict = Verdict.of([reason])
    decision_id = jobs.save_decision(rt.conn, platform, repo, f"push to {ref}", after, verdict,
                                     {"pusher": pusher, "sender": sender, "forced": forced, "commits": commits},
                                     policy, {"event": "push", "delivery": delivery_id})
    target = f"{rt.settings.public_url}/decisions/{decision_id}"
    jobs.post_status(rt.conn, forge, after, "failure", verdict.description(), target, rt.settings.status_context,
                     force=True)
    log.warning("%s: %s", repo, reason.message)
    return {"decision": decision_id, "outcome": "failure"}


def _reevaluate_open_pulls(rt: runtime.Runtime, forge: Forge, platform: str, installation_id: int | None,
                           branch: str, after: str) -> None:
    """A new policy on a branch applies to the open PRs into it now, not at their next push: one job each,
    so workers share them and each retries on its own."""
    queue = Queue(rt.settings.queue_name, connection=rt.conn)
    for pull in forge.list_open_pulls(100):
        if pull.base_ref == branch:
            queue.enqueue("gatekeeper.worker.pipeline.evaluate_pull_request",
                          job_id=f"policy-{after[:12]}-{pull.number}",
                          kwargs={"platform": platform, "repo": forge.repo, "number": pull.number,
                                  "installation_id": installation_id, "trigger": "push.policy_changed"},
                          retry=RETRY, job_timeout=JOB_TIMEOUT)


def _last_outcome(rt: runtime.Runtime, repo: str, sha: str) -> str | None:
    raw = rt.conn.get(key("outcome", repo, sha, rt.settings.status_context))
    return store_text(raw) if raw is not None else None


# ---- deployments ---------------------------------------------------------------------------------------

def on_deployment_protection_rule(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None,
                                  environment: str | None, event: str | None, sha: str | None, ref: str | None,
                                  callback_url: str | None, creator: Any, pull_numbers: list[int],
                                  delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    match = _CALLBACK_RUN.search(callback_url or "")
    if not match or not environment:
        # We never call URLs from payloads; without a run id there is nothing we can answer.
        log.error("%s: deployment protection request without a usable run id or environment", repo)
        return {"ignored": "no run id"}
    run_id = int(match.group(1))
    forge = rt.forge(platform, installation_id, repo, DEPLOY_PERMISSIONS)
    try:
        policy = _default_branch_policy(rt, forge, default_branch)
        # Whoever started, re-ran or created it: the most automated of them is the requester.
        run = forge.get_workflow_run(run_id) or {}
        people = [_who(p, policy) for p in (run.get("triggering_actor"), run.get("actor"), sender, creator) if p]
        requester = next((p for p in people if p.kind.is_automated), people[0] if people else None)
        numbers = list(pull_numbers) or ([p["number"] for p in forge.pulls_for_commit(sha) if p.get("state") == "open"]
                                         if sha else [])
        outcome, agent_involved = _deployed_change(rt, forge, numbers, sha)
    except ForgeError as exc:
        job = get_current_job()
        if job is None or not job.retries_left:
            # Fail closed: a deployment we could not evaluate is rejected, and says why.
            forge.review_deployment(run_id, environment, "rejected",
                                    f"agentgate could not evaluate this deployment: {exc}")
        raise
    state, reason = chains.judge_deployment(policy, environment, requester, outcome, agent_involved)
    verdict = Verdict.of([reason])
    decision_id = jobs.save_decision(rt.conn, platform, repo, f"deployment to {environment}", sha or "", verdict,
                                     {"environment": environment, "event": event, "ref": ref, "run_id": run_id,
                                      "requester": requester.login if requester else None,
                                      "requester_kind": requester.kind.value if requester else None,
                                      "pull_requests": numbers, "pr_outcome": outcome.value if outcome else None},
                                     policy, {"event": "deployment_protection_rule", "delivery": delivery_id})
    comment = f"{reason.message}. {reason.unblock or ''} {rt.settings.public_url}/decisions/{decision_id}".strip()
    # The rejection is the stop; the decision page linked from GitHub's deployment view says why.
    forge.review_deployment(run_id, environment, state, comment)
    audit.record_own(rt.conn, repo, f"deployment_{state}", environment, f"run {run_id}: {reason.message}")
    return {"decision": decision_id, "state": state}


def _deployed_change(rt: runtime.Runtime, forge: Forge, numbers: list[int], sha: str | None
                     ) -> tuple[Outcome | None, bool]:
    """The verdict of what is being deployed, and whether an agent or bot had a hand in it."""
    if numbers:
        outcomes, involved = [], False
        for number in numbers:
            result = jobs.assess(rt.conn, rt.settings, forge, forge.get_pull_request(number))
            outcomes.append(result.verdict.outcome)
            involved = involved or result.facts.author.kind.is_automated or any(
                c.author is not None and c.author.kind.is_automated for c in result.facts.commits)
        return max(outcomes, key=lambda o: o.severity), involved
    if not sha:
        return None, True
    # No open PR: a merged one agentgate passed is fine; otherwise look at who wrote the commit.
    for merged in forge.pulls_for_commit(sha):
        if merged.get("merged_at") and _last_outcome(rt, forge.repo, merged.get("head_sha") or "") == "success":
            return Outcome.SUCCESS, True
    commit = forge.get_commit(sha)
    if commit is None:
        return None, True  # unknown commit: fail closed
    authors = [_who(u) for u in (commit.author, commit.committer) if u]
    automated = any(a.kind.is_automated for a in authors) or has_ai_trailer(commit.message)
    return (None if automated else Outcome.SUCCESS), automated


# ---- merge queue ---------------------------------------------------------------------------------------

def on_merge_group(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, head_sha: str,
                   head_ref: str, base_ref: str, message: str, delivery_id: str = "") -> dict[str, Any]:
    """A merge group gets a verdict like any head: every PR in it must pass, or the group fails."""
    rt = runtime.current()
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    # GitHub names the group's newest PR in its ref (gh-readonly-queue/<base>/pr-<n>-<sha>); the PRs
    # ahead of it were checked in their own groups. The commit message is free text: not trusted.
    numbers = [int(n) for n in _MERGE_GROUP_PR.findall(head_ref)]
    reasons: list[Reason] = []
    try:
        for number in numbers:
            pr = forge.get_pull_request(number)
            result = jobs.assess(rt.conn, rt.settings, forge, pr, event="merge_group")
            for r in result.verdict.deciding:
                reasons.append(Reason(r.code, r.outcome, f"#{number}: {r.message}",
                                      f"#{number}: {r.unblock}" if r.unblock else None))
    except ForgeError as exc:
        # A required check that never reports stalls the queue: say something, then retry.
        jobs.post_unevaluated(rt.conn, forge, rt.settings.status_context, head_sha, str(exc), rt.settings.public_url)
        raise
    if not numbers:
        reasons.append(Reason("merge-group-unknown", Outcome.ERROR,
                              "Could not tell which pull requests this merge group contains",
                              "Re-queue the pull requests; agentgate reads them from the merge group's ref"))
    # A queued PR was evaluated at its own head; pending (awaiting approval) must not merge either.
    reasons = [Reason(r.code, Outcome.FAILURE if r.outcome is Outcome.PENDING else r.outcome, r.message, r.unblock)
               for r in reasons]
    verdict = Verdict.of(reasons, summary=f"All {len(numbers)} queued pull request(s) satisfy the policy")
    decision_id = jobs.save_decision(rt.conn, platform, repo, f"merge group {head_ref.rsplit('/', 1)[-1]}", head_sha,
                                     verdict, {"pull_requests": numbers, "base_ref": base_ref}, None,
                                     {"event": "merge_group.checks_requested", "delivery": delivery_id})
    target = f"{rt.settings.public_url}/decisions/{decision_id}"
    jobs.post_status(rt.conn, forge, head_sha, verdict.outcome.value, verdict.description(), target,
                     rt.settings.status_context)
    return {"decision": decision_id, "outcome": verdict.outcome.value, "pull_requests": numbers}


# ---- statuses ------------------------------------------------------------------------------------------

def _is_self(rt: runtime.Runtime, installation_id: int | None, who: Actor) -> bool:
    if rt.settings.dry_run or not rt.settings.has_github_credentials:
        slug = "agentgate"
    else:
        tokens = InstallationTokens(rt.conn, app_id=str(rt.settings.github_app_id),
                                    private_key=str(rt.settings.github_private_key),
                                    api_url=rt.settings.github_api_url)
        slug = app_slug(rt.conn, tokens)
    return who.login.lower() == f"{slug}[bot]".lower()


def on_status(*, platform: str, repo: str, installation_id: int | None, sender: Any,
                default_branch: str | None = None, sha: str | None,
              context: str | None, state: str | None, description: str | None,
              delivery_id: str = "") -> dict[str, Any]:
    rt = runtime.current()
    if context != rt.settings.status_context or not sha:
        return {"ignored": f"context {context}"}
    who = _who(sender)
    if _is_self(rt, installation_id, who):
        return {"ignored": "our own status"}
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    reason = Reason("chain-forged-status", Outcome.FAILURE,
                    f"{who.login} posted an '{context}' status ({state}) that only agentgate may post",
                    "A human with write access approves the current head; agentgate re-evaluated it")
    numbers = [p["number"] for p in forge.pulls_for_commit(sha)
               if p.get("state") == "open" and p.get("head_sha") == sha]
    if not numbers:
        verdict = Verdict.of([reason])
        decision_id = jobs.save_decision(rt.conn, platform, repo, f"commit {sha[:7]}", sha, verdict,
                                         {"forged_by": who.login, "state": state, "description": description},
                                         None, {"event": "status", "delivery": delivery_id})
        jobs.post_status(rt.conn, forge, sha, "failure", verdict.description(),
                         f"{rt.settings.public_url}/decisions/{decision_id}", rt.settings.status_context, force=True)
        return {"decision": decision_id, "outcome": "failure"}
    for number in numbers:
        # Anyone but agentgate posting its status is tampering with the gate, a human included: the PR
        # fails until a human with write access approves its head afresh.
        finding = chains.ChainFinding("forged_status", who, f"status on {sha[:7]}", reason)
        _record(rt, repo, number, finding, _finding_id("status", sha, who.login, state, delivery_id), "")
        # Always re-post over the forged one, even if the verdict is the same as last time.
        _reevaluate(rt, forge, number, "status.forged", sender, delivery_id, force=True)
    return {"pull_requests": numbers}
