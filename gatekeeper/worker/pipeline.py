"""The one evaluation pipeline: lock → governing policy → gather → decide → act.

Every verdict on a pull request is reached here, whichever event asked for it (a push, a review, a
bot's comment, a label, a task change, a policy change); merge groups and deployments `assess`
pull requests through the same steps without acting on them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import redis

from gatekeeper.core import enforcement
from gatekeeper.core.decide import evaluate_pull_request as decide
from gatekeeper.core.facts import Actor, Confirmation, PullRequestFacts, RecordedFinding
from gatekeeper.core.verdict import Outcome, Verdict
from gatekeeper.forges.port import Forge, ForgeError, PullRequest, User
from gatekeeper.policy import POLICY_PATH, InvalidPolicy, Policy
from gatekeeper.state import findings, keys, metrics
from gatekeeper.worker import actions, gather
from gatekeeper.worker.runtime import Runtime

log = logging.getLogger(__name__)

FACTS_STORED_FILES = 300  # a decision record keeps the first files; the verdict saw them all


@dataclass
class Assessment:
    pr: PullRequest
    policy: Policy | InvalidPolicy
    facts: PullRequestFacts
    verdict: Verdict
    open_findings: list[RecordedFinding]
    lifted: dict[str, str]


def assess(rt: Runtime, forge: Forge, pr: PullRequest, event: str = "pull_request") -> Assessment:
    """Facts, policy and verdict for a pull request, chain findings included. Reads only."""
    conn = rt.conn
    policy = gather.governing_policy(conn, forge, pr)
    stored = findings.load(conn, forge.platform, forge.repo, pr.number)
    pending_confirmations = findings.confirmations(conn, forge.platform, forge.repo, pr.number)
    facts = gather.pull_request_facts(conn, forge, pr, policy, with_requesters=True if (
        stored and pending_confirmations) else None)
    verdict = decide(policy, facts, event=event)
    if not stored:
        return Assessment(pr, policy, facts, verdict, [], {})
    judged = gather.usable(policy)
    who = gather.identities(policy, forge)
    confirmations: list[tuple[Confirmation, Actor]] = []
    for c in pending_confirmations:
        actor = who(User(c.login))
        level = gather.permission(conn, forge, c.login) if not actor.kind.is_automated else "none"
        confirmations.append((replace(c, permission=level), actor))
    settled = enforcement.settle(judged, facts, stored, confirmations)
    return Assessment(pr, policy, facts, enforcement.with_findings(verdict, settled.open), settled.open,
                      settled.lifted)


def evaluate(rt: Runtime, forge: Forge, number: int, *, installation: int | None, trigger: str = "",
             delivery: str = "", retrying: bool = False, head_hint: str | None = None,
             received_at: float | None = None) -> dict[str, Any]:
    """Evaluate one pull request from fresh platform state and act on the verdict. `head_hint` is the
    head the triggering delivery saw: it gets the fail-closed status when even the PR cannot be read.
    `received_at` (epoch seconds) is when that delivery was received: delivery → status is measured."""
    conn, settings = rt.conn, rt.settings
    with conn.lock(keys.pr_lock(forge.platform, forge.repo, number), timeout=keys.LOCK_TTL, blocking_timeout=60):
        try:
            pr = forge.get_pull_request(number)
        except ForgeError as exc:
            if head_hint:
                actions.post_unevaluated(conn, forge, settings.status_context, head_hint, str(exc),
                                         settings.public_url, retrying)
            raise
        if pr.state != "open":
            return _closed(rt, forge, pr, installation)
        try:
            result = assess(rt, forge, pr)
        except gather.HeadMoved as moved:
            return {"skipped": str(moved)}  # the push's own delivery evaluates the new head
        except ForgeError as exc:
            actions.post_unevaluated(conn, forge, settings.status_context, pr.head_sha, str(exc), settings.public_url,
                                     retrying)
            raise
        if result.lifted:
            # A human approved the head after the action, or repeated it: settled for good.
            findings.lift(conn, forge.platform, forge.repo, number, result.lifted)
        for task in gather.task_numbers(pr.body):
            gather.remember_task_pull(conn, forge.platform, forge.repo, task, number)
        verdict = result.verdict
        decision_id = actions.save_decision(
            conn, forge.platform, forge.repo, f"pull request #{number}", pr.head_sha, verdict,
            _stored_facts(result.facts), result.policy, {"event": trigger, "delivery": delivery},
            # The commit the governing policy was read at (cached: no extra request), for the details page.
            {"policy_sha": gather.branch_head(conn, forge, pr.base_ref) or pr.base_sha,
             **({"lifted": result.lifted} if result.lifted else {})})
        target = f"{settings.public_url}/decisions/{decision_id}"
        posted = _post_head_status(rt, forge, pr, verdict, target, installation)
        latency = status_latency(conn, forge.platform, received_at)
        _remember_approval(rt, forge, pr, verdict)
        if settings.check_runs:
            actions.post_check_run(conn, forge, pr.head_sha, verdict, target, settings.status_context)
        open_ids = [f.id for f in result.open_findings]
        text = actions.chain_section(conn, forge, number, open_ids, enforcement.findings_section(
            result.open_findings, target, settings.status_context))
        if text is not None:
            actions.sync_comment(conn, forge, number, "chains", text)
            actions.remember_chain_section(conn, forge, number, open_ids)
        if POLICY_PATH in {p for f in result.facts.changed_files for p in f.paths}:
            from gatekeeper.worker.preview import preview_policy_change

            preview_policy_change(rt, forge, result, decision_id, installation)
        metrics.incr(conn, "agentgate_verdicts", forge.platform, verdict.outcome.value)
        log.info("%s#%s %s -> %s (%s)", forge.repo, number, pr.head_sha[:7], verdict.outcome.value, trigger,
                 extra=decision_fields(forge.platform, forge.repo, number, pr.head_sha, verdict.outcome.value,
                                       delivery, trigger, decision_id, latency))
        return {"decision": decision_id, "outcome": verdict.outcome.value, "posted": posted}


def status_latency(conn: redis.Redis, platform: str, received_at: float | None) -> float | None:
    """Seconds from the delivery's receipt to now, when the verdict's status was just posted (or found
    in place), observed in `agentgate_job_latency_seconds`; None for an evaluation no delivery asked for."""
    if received_at is None:
        return None
    seconds = max(0.0, time.time() - received_at)
    metrics.observe(conn, metrics.JOB_LATENCY, seconds, platform)
    return seconds


def decision_fields(platform: str, repo: str, number: int | None, sha: str, verdict: str, delivery: str,
                    trigger: str, decision_id: str, latency: float | None = None) -> dict[str, Any]:
    """The fields of a decision's log line (one per decision; `agentgate serve`/`worker` print them as
    JSON). Identifiers and the outcome only: never a title, a body, a comment or a token."""
    fields: dict[str, Any] = {"event": "decision", "platform": platform, "repo": repo, "pr": number, "sha": sha,
                              "verdict": verdict, "delivery": delivery or None, "trigger": trigger,
                              "decision": decision_id}
    if latency is not None:
        fields["latency_seconds"] = round(latency, 4)
    return fields


def _post_head_status(rt: Runtime, forge: Forge, pr: PullRequest, verdict: Verdict, target: str,
                      installation: int | None) -> bool:
    """Post the worst verdict over every open pull request at this head. Another open PR at the same
    head that agentgate has not judged yet counts as pending, and is evaluated now."""
    conn, settings = rt.conn, rt.settings
    mine = actions.HeadVerdict(pr.number, verdict.outcome.value, verdict.description(), target)
    actions.record_head_verdict(conn, forge, pr.head_sha, mine)
    known = actions.head_verdicts(conn, forge, pr.head_sha)
    # Only a passing verdict needs to ask the platform which other PRs share the head: a PR agentgate
    # never judged (its delivery lost) must not be shown green by this one. A verdict that does not pass
    # cannot make the head look better than it is; the PRs already judged are in `known`.
    sharing = [p.number for p in forge.pulls_for_commit(pr.head_sha)
               if p.number != pr.number and p.state == "open" and p.head_sha == pr.head_sha] \
        if verdict.outcome is Outcome.SUCCESS else [n for n in known if n != pr.number]
    others = []
    for number in sharing:
        if number in known:
            others.append(known[number])
        else:
            others.append(actions.HeadVerdict(number, Outcome.PENDING.value,
                                              "Not evaluated yet; agentgate is evaluating it", target))
            rt.queue.enqueue_evaluation(forge.platform, forge.repo, number, installation, "shared-head",
                                        f"shared-{pr.head_sha[:12]}-{number}")
    shown = actions.combined(mine, others)
    return actions.post_status(conn, forge, pr.head_sha, shown.outcome, shown.description, shown.target,
                               settings.status_context)


def _remember_approval(rt: Runtime, forge: Forge, pr: PullRequest, verdict: Verdict) -> None:
    """Deployments and merges of an agent's change rest on a human having approved that exact head."""
    name = keys.approved_head(forge.platform, forge.repo, pr.number, pr.head_sha)
    if verdict.outcome is Outcome.SUCCESS and verdict.approvals:
        rt.conn.set(name, ",".join(verdict.approvals), ex=keys.APPROVED_HEAD_TTL)
    else:
        rt.conn.delete(name)


def _closed(rt: Runtime, forge: Forge, pr: PullRequest, installation: int | None) -> dict[str, Any]:
    """A closed PR no longer weighs on its head's status; the others at that head are re-judged."""
    actions.forget_head_verdict(rt.conn, forge, pr.head_sha, pr.number)
    for other in actions.head_verdicts(rt.conn, forge, pr.head_sha):
        rt.queue.enqueue_evaluation(forge.platform, forge.repo, other, installation, "shared-head",
                                    f"shared-closed-{pr.head_sha[:12]}-{other}")
    return {"skipped": f"pull request is {pr.state}"}


def _stored_facts(facts: PullRequestFacts) -> dict[str, Any]:
    """The facts a decision record keeps: bounded, so an agent cannot make records huge."""
    data = facts.to_dict()
    data["changed_files_total"] = len(facts.changed_files)
    data["changed_files"] = data["changed_files"][:FACTS_STORED_FILES]
    data["body"] = data["body"][:4096]
    for commit in data["commits"]:
        commit["message"] = commit["message"][:1024]
    data["commits"] = data["commits"][:100]
    return data
