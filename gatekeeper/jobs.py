"""Worker jobs: gather facts, decide, act. Each job is idempotent and safe to retry."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from gatekeeper import decisions, gather, metrics, runtime
from gatekeeper.decision import evaluate_pull_request as decide_pull_request
from gatekeeper.decisions import DecisionRecord
from gatekeeper.forges.base import Forge, ForgeError
from gatekeeper.forges.github_auth import EVALUATE_PERMISSIONS
from gatekeeper.store import key
from gatekeeper.verdict import Outcome, shorten

log = logging.getLogger(__name__)

LOCK_SECONDS = 90


def evaluate_pull_request(
    *,
    platform: str,
    repo: str,
    number: int,
    installation_id: int | None = None,
    trigger: str = "",
    sender: str | None = None,
    delivery_id: str = "",
    force_status: bool = False,
) -> dict[str, Any]:
    """Evaluate one pull request from fresh platform state and post its `agentgate` status."""
    rt = runtime.current()
    conn, settings = rt.conn, rt.settings
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    # One evaluation per PR at a time: two deliveries in a burst must not post out of order.
    with conn.lock(key("lock", "pr", platform, repo, number), timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS):
        pr = forge.get_pull_request(number)
        if pr.state != "open":
            return {"skipped": f"pull request is {pr.state}"}
        try:
            policy = gather.policy_at(conn, forge, pr.base_sha)
            facts = gather.pull_request_facts(conn, forge, pr, policy)
        except ForgeError as exc:
            _post_unevaluated(conn, forge, settings.status_context, pr.head_sha, str(exc), settings.public_url)
            raise
        verdict = decide_pull_request(policy, facts)
        trigger_info = {"event": trigger, "sender": sender, "delivery": delivery_id}
        record = DecisionRecord(
            platform=platform, repo=repo, subject=f"pull request #{number}", sha=pr.head_sha,
            verdict=verdict.to_dict(), facts=facts.to_dict(),
            policy_source=getattr(policy, "source", ".agentgate.yml"), trigger=trigger_info,
        )
        decision_id = _save_decision(conn, record)
        target = f"{settings.public_url}/decisions/{decision_id}"
        posted = post_status(conn, forge, pr.head_sha, verdict.outcome.value, verdict.description(), target,
                             settings.status_context, force=force_status)
        metrics.incr(conn, "agentgate_verdicts", platform, verdict.outcome.value)
        log.info("%s#%s %s -> %s (%s)", repo, number, pr.head_sha[:7], verdict.outcome.value, trigger)
        return {"decision": decision_id, "outcome": verdict.outcome.value, "posted": posted}


def _save_decision(conn: Any, record: DecisionRecord) -> str:
    """The same facts and verdict keep the same decision id, so an unchanged verdict changes nothing."""
    fp_key = key("decision-fp", gather.fingerprint(record.repo, record.subject, record.sha, record.verdict,
                                                    record.facts, record.policy_source))
    existing = conn.get(fp_key)
    if existing is not None and decisions.load(conn, existing.decode()) is not None:
        return str(existing.decode())
    record.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    decision_id = decisions.save(conn, record)
    conn.set(fp_key, decision_id, ex=decisions.DECISION_TTL_SECONDS)
    return decision_id


def post_status(conn: Any, forge: Forge, sha: str, state: str, description: str, target_url: str,
                context: str, *, force: bool = False) -> bool:
    """Post a commit status unless the very same one is already the latest we posted."""
    last_key = key("status", forge.repo, sha, context)
    wanted = gather.fingerprint(state, description, target_url)
    if not force and conn.get(last_key) == wanted.encode():
        return False
    forge.set_status(sha, state, shorten(description, 140), target_url, context)
    conn.set(last_key, wanted, ex=30 * 24 * 3600)
    return True


def _post_unevaluated(conn: Any, forge: Forge, context: str, sha: str, why: str, public_url: str) -> None:
    """Fail closed: an earlier `success` must not stand for a head we can no longer evaluate."""
    job = get_current_job()
    retrying = bool(job and (job.retries_left or 0) > 0)
    text = f"Could not evaluate{' (retrying)' if retrying else ''}: {why}"
    try:
        post_status(conn, forge, sha, Outcome.ERROR.value, text, public_url, context, force=True)
    except ForgeError:
        log.warning("could not post the error status for %s@%s", forge.repo, sha[:7])
