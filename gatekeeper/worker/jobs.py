"""The worker's two job entry points (RQ runs them by dotted name, with JSON arguments):

- `evaluate`: one pull request, from fresh platform state (coalesced: one waits per PR at a time);
- `handle`: any other event, dispatched to its handler; the handler's findings, confirmations and
  actions are applied here, and each pull request it names is re-evaluated in a job of its own.

Both are idempotent and safe to retry. How they fail is decided here: a platform error fails the job
(RQ retries it with backoff; the PR shows `pending` meanwhile and `error` once retries are spent); a
rate limit re-enqueues it at the reset without counting as a failure (see `worker/recovery.py`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rq import get_current_job

from gatekeeper.forges.port import EVALUATE, Capability, Event, Forge, RateLimited
from gatekeeper.state import findings, keys, metrics
from gatekeeper.tokens.revoke import cipher_for, revoke_repo, revoke_task
from gatekeeper.worker import actions, handlers, pipeline, recovery
from gatekeeper.worker.runtime import Runtime, current

log = logging.getLogger(__name__)


def _retrying() -> bool:
    """Whether RQ will run this job again if this attempt fails."""
    job = get_current_job()
    return bool(job and (job.retries_left or 0) > 0)


def _received_at() -> float | None:
    """When the delivery behind this job was received (state/queue.py keeps it in the job's meta)."""
    job = get_current_job()
    value = job.meta.get("received_at") if job is not None else None
    return float(value) if isinstance(value, int | float) else None


def _guarded(rt: Runtime, platform: str, installation: int | None, repo: str,
             work: Callable[[], dict[str, Any]], name: str) -> dict[str, Any]:
    """Run a job's work unless the platform asked this installation to wait: then, and when it asks
    during the work, the job is re-enqueued at the reset. Nothing is asked of the platform before it.
    `name` ("evaluate", "handle") labels the job's failures."""
    job = get_current_job()
    recovery.tune_retries(job, rt.settings)
    until = recovery.limited_until(rt.conn, platform, installation)
    if until is not None and job is not None:
        return recovery.reschedule(rt, job, until, "held until the reset")
    recovery.remember_repo(rt.conn, platform, installation, repo)
    try:
        return work()
    except RateLimited as exc:
        until = recovery.hold(rt.conn, platform, installation, exc.retry_after)
        if job is None:
            raise
        return recovery.reschedule(rt, job, until, str(exc))
    except Exception:
        metrics.incr(rt.conn, metrics.JOB_FAILURES, name)
        raise
    finally:
        metrics.flush(rt.conn)  # the platform calls this job made, in one round trip


def evaluate(*, platform: str, repo: str, number: int, installation: int | None = None, trigger: str = "",
             delivery: str = "", head_sha: str | None = None) -> dict[str, Any]:
    rt = current()

    def work() -> dict[str, Any]:
        # From here on this job reads fresh state: a delivery arriving now needs an evaluation of its own.
        rt.conn.delete(keys.eval_waiting(platform, repo, number))
        forge = rt.forges(platform, installation, repo, EVALUATE)
        return pipeline.evaluate(rt, forge, number, installation=installation, trigger=trigger, delivery=delivery,
                                 retrying=_retrying(), head_hint=head_sha, received_at=_received_at())

    return _guarded(rt, platform, installation, repo, work, "evaluate")


def handle(*, event: dict[str, Any]) -> dict[str, Any]:
    rt = current()
    ev = Event.from_dict(event)
    if ev.kind not in handlers.HANDLERS:
        return {"ignored": f"no handler for {ev.kind}"}
    handle_fn, reads = handlers.HANDLERS[ev.kind]

    def work() -> dict[str, Any]:
        forge = rt.forges(ev.platform, ev.installation, ev.repo, reads)
        resolved = forge.resolve_event(ev)
        result = handle_fn(handlers.Context(rt, forge, resolved, _retrying()))
        apply(rt, forge, resolved, result, reads, received_at=_received_at())
        return result.info

    return _guarded(rt, ev.platform, ev.installation, ev.repo, work, "handle")


def apply(rt: Runtime, forge: Forge, ev: Event, result: handlers.Result,
          reads: frozenset[Capability] = EVALUATE, *, received_at: float | None = None) -> None:
    """Record what the handler found, take its actions, and queue the evaluations it asks for. Findings
    are stored before anything is posted, so a retry after a failed post finds them again. The
    evaluations carry `received_at`, the delivery's receipt, to measure delivery → status."""
    conn = rt.conn
    for number, finding in result.findings:
        if findings.record(conn, ev.platform, ev.repo, number, finding):
            metrics.incr(conn, "agentgate_verdicts", ev.platform, f"chain-{finding.kind}")
            log.warning("%s#%s chain finding: %s", ev.repo, number, finding.message)
    for number, confirmation in result.confirmations:
        findings.confirm(conn, ev.platform, ev.repo, number, confirmation)
    for sha in result.forget_status:
        actions.forget_posted_status(conn, forge, sha, rt.settings.status_context)
    for ask in result.revoke_tokens:
        revoked = revoke_task(conn, rt.token_issuers(), cipher_for(rt.settings), ev.platform, ev.repo,
                              ask.task, ask.reason, label=ask.label, kind=ask.kind)
        if revoked:
            log.info("%s#%s: revoked %d agent token(s): %s", ev.repo, ask.task, len(revoked), ask.reason)
    if result.revoke_repo:
        revoke_repo(conn, rt.token_issuers(), cipher_for(rt.settings), ev.platform, ev.repo,
                    "agentgate was removed from the repository")
    for action in result.actions:
        needs = handlers.ACTION_CAPABILITIES[type(action)]
        _act(rt, forge if needs <= reads else rt.forges(ev.platform, ev.installation, ev.repo, needs), ev, action,
             received_at)
    for number in dict.fromkeys(result.reevaluate):
        trigger = f"{ev.kind}.{ev.data.get('action', '')}".rstrip(".")
        rt.queue.enqueue_evaluation(ev.platform, ev.repo, number, ev.installation, trigger,
                                    f"{ev.platform}-{ev.delivery}-eval-{number}", delivery=ev.delivery,
                                    received_at=received_at)


def _act(rt: Runtime, forge: Forge, ev: Event, action: handlers.HandlerAction,
         received_at: float | None = None) -> None:
    conn, settings = rt.conn, rt.settings
    trigger = {"event": ev.kind, "delivery": ev.delivery}
    if isinstance(action, handlers.RemoveLabel):
        actions.remove_label(conn, forge, action.number, action.label, action.applied_by)
    elif isinstance(action, handlers.AnswerDeployment):
        verdict = handlers.Verdict.of([action.reason])
        decision_id = actions.save_decision(conn, ev.platform, ev.repo, f"deployment to {action.environment}",
                                            str(ev.data.get("sha") or ""), verdict, action.facts, action.policy,
                                            trigger)
        reason = action.reason
        # The rejection is the stop; the decision page linked from the deployment view says why.
        comment = f"{reason.message}. {reason.unblock or ''} {settings.public_url}/decisions/{decision_id}".strip()
        actions.answer_deployment(conn, forge, action.run_id, action.environment, action.state, comment)
        fields = pipeline.decision_fields(ev.platform, ev.repo, None, str(ev.data.get("sha") or ""), action.state,
                                          ev.delivery, ev.kind, decision_id)
        log.info("%s deployment to %s -> %s", ev.repo, action.environment, action.state, extra=fields)
    elif isinstance(action, handlers.RestoreComment):
        actions.restore_comment(conn, forge, action.number)
    elif isinstance(action, handlers.PostVerdict):
        decision_id = actions.save_decision(conn, ev.platform, ev.repo, action.subject, action.sha, action.verdict,
                                            action.facts, action.policy, trigger)
        if action.status and action.sha:
            actions.post_status(conn, forge, action.sha, action.verdict.outcome.value, action.verdict.description(),
                                f"{settings.public_url}/decisions/{decision_id}", settings.status_context,
                                force=action.verdict.outcome.value != "success")
        latency = pipeline.status_latency(conn, ev.platform, received_at) if action.status and action.sha else None
        outcome = action.verdict.outcome.value
        fields = pipeline.decision_fields(ev.platform, ev.repo, None, action.sha, outcome, ev.delivery, ev.kind,
                                          decision_id, latency)
        log.info("%s %s -> %s", ev.repo, action.subject, outcome, extra=fields)
