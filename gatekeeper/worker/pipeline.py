"""Worker jobs for pull requests: gather facts, decide, act. Each job is idempotent and safe to retry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import redis
from rq import Queue, get_current_job

from gatekeeper.core import enforcement
from gatekeeper.core.decide import evaluate_pull_request as decide_pull_request
from gatekeeper.core.facts import PullRequestFacts, RecordedFinding
from gatekeeper.core.verdict import Outcome, Verdict, shorten
from gatekeeper.forges.github.auth import EVALUATE_PERMISSIONS
from gatekeeper.forges.port import Forge, ForgeError, PullRequestInfo
from gatekeeper.policy import POLICY_PATH, InvalidPolicy, Policy
from gatekeeper.settings import Settings
from gatekeeper.state import audit, decisions, findings, metrics
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.state.queue import JOB_TIMEOUT, RETRY, waiting_key
from gatekeeper.state.store import key
from gatekeeper.state.store import text as store_text
from gatekeeper.worker import gather, runtime

log = logging.getLogger(__name__)

# A pull request and its policy as a job just read them, handed on so the evaluation need not re-read.
KnownPull = tuple[PullRequestInfo, Policy | InvalidPolicy]

LOCK_SECONDS = 150  # longer than a job may run (queueing.JOB_TIMEOUT), so it never lapses mid-job


@dataclass
class Assessment:
    pr: PullRequestInfo
    policy: Policy | InvalidPolicy
    facts: PullRequestFacts
    verdict: Verdict
    open_findings: list[RecordedFinding]


def pr_lock(conn: redis.Redis, platform: str, repo: str, number: int):  # type: ignore[no-untyped-def]
    # One evaluation per PR at a time: two deliveries in a burst must not post out of order.
    return conn.lock(key("lock", "pr", platform, repo, number), timeout=LOCK_SECONDS, blocking_timeout=60)


def assess(conn: redis.Redis, settings: Settings, forge: Forge, pr: PullRequestInfo,
           event: str = "pull_request", policy: Policy | InvalidPolicy | None = None) -> Assessment:
    """Facts, policy and verdict for a pull request, findings included. Posts `error` if facts fail.
    `policy` may be passed when the caller just read it for this PR."""
    try:
        policy = policy if policy is not None else gather.policy_for_pull(conn, forge, pr)
        facts = gather.pull_request_facts(conn, forge, pr, policy)
    except gather.HeadMoved:
        raise
    except ForgeError as exc:
        post_unevaluated(conn, forge, settings.status_context, pr.head_sha, str(exc), settings.public_url)
        raise
    stored = findings.load(conn, forge.repo, pr.number)
    min_permission = policy.min_permission if isinstance(policy, Policy) else "write"
    still_open = enforcement.active(stored, facts, min_permission)
    approved = {f.id for f in stored} - {f.id for f in still_open}
    if approved:
        # A human approved the head after the action: the finding is settled for good.
        findings.lift(conn, forge.repo, pr.number, lambda f: f.id in approved)
    verdict = enforcement.with_findings(decide_pull_request(policy, facts, event=event), still_open)
    return Assessment(pr, policy, facts, verdict, still_open)


def evaluate_pull_request(
    *,
    platform: str,
    repo: str,
    number: int,
    installation_id: int | None = None,
    trigger: str = "",
    sender: Any = None,
    delivery_id: str = "",
    force_status: bool = False,
) -> dict[str, Any]:
    """Evaluate one pull request from fresh platform state and post its `agentgate` status."""
    rt = runtime.current()
    # From here on this job reads fresh state: a delivery arriving now needs an evaluation of its own.
    rt.conn.delete(waiting_key(platform, repo, number))
    forge = rt.forge(platform, installation_id, repo, EVALUATE_PERMISSIONS)
    return evaluate_with(rt, forge, platform, number, trigger, sender, delivery_id, force_status,
                         installation_id=installation_id)


def evaluate_with(rt: runtime.Runtime, forge: Forge, platform: str, number: int, trigger: str, sender: Any,
                  delivery_id: str, force_status: bool = False, known: KnownPull | None = None,
                  installation_id: int | None = None) -> dict[str, Any]:
    """Evaluate and act. `known` is the PR and its policy when the calling job just read them: the
    policy is reused when the PR still targets the same branch (the PR itself is read again)."""
    conn, settings = rt.conn, rt.settings
    with pr_lock(conn, platform, forge.repo, number):
        # Always read the PR under the lock: a copy read before it may miss a retarget, a label, a draft.
        pr = forge.get_pull_request(number)
        if pr.state != "open":
            return {"skipped": f"pull request is {pr.state}"}
        policy = known[1] if known and known[0].base_ref == pr.base_ref else None
        try:
            result = assess(conn, settings, forge, pr, policy=policy)
        except gather.HeadMoved as moved:
            return {"skipped": str(moved)}  # the push's own `synchronize` delivery evaluates the new head
        for task in gather.task_numbers(pr.body):
            gather.remember_task_pull(conn, forge.repo, task, number)
        decision_id = save_decision(conn, platform, forge.repo, f"pull request #{number}", pr.head_sha,
                                    result.verdict, result.facts.to_dict(), result.policy,
                                    {"event": trigger, "sender": sender, "delivery": delivery_id})
        target = f"{settings.public_url}/decisions/{decision_id}"
        posted = post_status(conn, forge, pr.head_sha, result.verdict.outcome.value, result.verdict.description(),
                             target, settings.status_context, force=force_status)
        if settings.check_runs:
            post_check_run(conn, forge, pr.head_sha, result.verdict, target, settings.status_context)
        chain_text = _chain_section(conn, forge, number, result.open_findings, target, settings.status_context)
        if chain_text is not None:
            sync_comment(conn, forge, number, "chains", chain_text)
            # Remember what the comment lists only once it was posted, so a failed post is retried.
            conn.hset(key("comment-sections", forge.repo, number), "chains-ids",
                      ",".join(sorted(f.id for f in result.open_findings)))
        if POLICY_PATH in {p for f in result.facts.changed_files for p in f.paths}:
            later = partial(schedule_evaluation, rt, platform, forge.repo, number, installation_id,
                            f"preview-{number}-{pr.head_sha[:12]}")
            preview_policy_change(rt, forge, result, decision_id, later)
        metrics.incr(conn, "agentgate_verdicts", platform, result.verdict.outcome.value)
        log.info("%s#%s %s -> %s (%s)", forge.repo, number, pr.head_sha[:7], result.verdict.outcome.value, trigger)
        return {"decision": decision_id, "outcome": result.verdict.outcome.value, "posted": posted}


def schedule_evaluation(rt: runtime.Runtime, platform: str, repo: str, number: int, installation_id: int | None,
                        job_id: str, seconds: int) -> None:
    """Evaluate a PR again later (RQ's scheduler runs in every worker); one job id, so no pile-up."""
    Queue(rt.settings.queue_name, connection=rt.conn).enqueue_in(
        timedelta(seconds=seconds + 1), evaluate_pull_request, job_id=job_id, job_timeout=JOB_TIMEOUT, retry=RETRY,
        kwargs={"platform": platform, "repo": repo, "number": number, "installation_id": installation_id,
                "trigger": "scheduled"})


def save_decision(conn: redis.Redis, platform: str, repo: str, subject: str, sha: str, verdict: Verdict,
                  facts: dict[str, Any], policy: Policy | InvalidPolicy | None, trigger: dict[str, Any]) -> str:
    """The same facts and verdict keep the same decision id, so an unchanged verdict changes nothing."""
    source = getattr(policy, "source", ".agentgate.yml") if policy is not None else "-"
    record = DecisionRecord(platform=platform, repo=repo, subject=subject, sha=sha, verdict=verdict.to_dict(),
                            facts=facts, policy_source=source, trigger=trigger)
    fp_key = key("decision-fp", gather.fingerprint(repo, subject, sha, record.verdict, facts, source))
    existing = conn.get(fp_key)
    if existing is not None and decisions.load(conn, store_text(existing)) is not None:
        return store_text(existing)
    record.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    decision_id = decisions.save(conn, record)
    conn.set(fp_key, decision_id, ex=decisions.DECISION_TTL_SECONDS)
    return decision_id


def post_status(conn: redis.Redis, forge: Forge, sha: str, state: str, description: str, target_url: str,
                context: str, *, force: bool = False) -> bool:
    """Post a commit status unless the very same one is already the latest we posted."""
    last_key = key("status", forge.repo, sha, context)
    wanted = gather.fingerprint(state, description, target_url)
    if not force and conn.get(last_key) == wanted.encode():
        return False
    forge.set_status(sha, state, shorten(description, 140), target_url, context)
    audit.record_own(conn, forge.repo, "status", sha, f"{state}: {description}")
    pipe = conn.pipeline()
    pipe.set(last_key, wanted, ex=30 * 24 * 3600)
    # The state alone, for questions like "did agentgate pass the PR this merge commit came from?"
    pipe.set(key("outcome", forge.repo, sha, context), state, ex=90 * 24 * 3600)
    pipe.execute()
    return True


def post_check_run(conn: redis.Redis, forge: Forge, sha: str, verdict: Verdict, details_url: str,
                   name: str) -> None:
    """The optional check run of the same name, updated in place for a head (one per SHA)."""
    id_key, shown_key = key("check-run", forge.repo, sha, name), key("check-run-shown", forge.repo, sha, name)
    title = f"{verdict.outcome.value}: {verdict.description()}"
    summary = enforcement.check_run_summary(verdict, details_url)
    wanted = gather.fingerprint(title, summary)
    if conn.get(shown_key) == wanted.encode():
        return  # its own fingerprint: a failed post is retried even when the status did not change
    existing = conn.get(id_key)
    run_id = forge.upsert_check_run(sha, name, enforcement.CHECK_CONCLUSIONS[verdict.outcome.value], title,
                                    summary, details_url, int(existing) if existing is not None else None)
    pipe = conn.pipeline()
    pipe.set(id_key, run_id, ex=30 * 24 * 3600)
    pipe.set(shown_key, wanted, ex=30 * 24 * 3600)
    pipe.execute()


def sync_comment(conn: redis.Redis, forge: Forge, number: int, section: str, text: str) -> None:
    """At most one agentgate comment per PR, edited in place when one of its sections changes."""
    sections_key = key("comment-sections", forge.repo, number)
    id_key = key("comment", forge.repo, number)
    shown = {store_text(k): store_text(v) for k, v in conn.hgetall(sections_key).items()}
    if shown.get(section) == text:
        return
    shown[section] = text
    existing = conn.get(id_key)
    # Without a remembered id (first comment, or the store lost it) look for ours before creating one.
    comment_id = int(existing) if existing is not None else forge.find_comment(number, enforcement.COMMENT_MARKER)
    comment_id = forge.upsert_comment(number, enforcement.comment_body(shown), comment_id)
    audit.record_own(conn, forge.repo, "comment", f"#{number}", f"{section} section updated")
    pipe = conn.pipeline()
    pipe.set(id_key, comment_id, ex=180 * 24 * 3600)
    pipe.hset(sections_key, section, text)
    pipe.expire(sections_key, 180 * 24 * 3600)
    pipe.execute()


def _chain_section(conn: redis.Redis, forge: Forge, number: int, open_findings: list[RecordedFinding],
                   details_url: str, context: str) -> str | None:
    """The chains section, once anything was flagged; its details link only changes with the findings."""
    # Shown before means the section exists in the comment; what it listed is the set of finding ids.
    shown = conn.hget(key("comment-sections", forge.repo, number), "chains-ids")
    wanted = ",".join(sorted(f.id for f in open_findings))
    if shown is None and not open_findings:
        return None
    if shown is not None and store_text(shown) == wanted:
        return None
    return enforcement.findings_section(open_findings, details_url, context)


def post_unevaluated(conn: redis.Redis, forge: Forge, context: str, sha: str, why: str, public_url: str) -> None:
    """Fail closed: an earlier `success` must not stand for a head we cannot evaluate now. While RQ will
    retry, `pending` (no flapping through `error` on a transient failure); after the last try, `error`."""
    job = get_current_job()
    retrying = bool(job and (job.retries_left or 0) > 0)
    state = Outcome.PENDING if retrying else Outcome.ERROR
    text = f"Could not evaluate{' yet, retrying' if retrying else ''}: {why}"
    try:
        post_status(conn, forge, sha, state.value, text, public_url, context, force=True)
    except ForgeError:
        log.warning("could not post the unevaluated status for %s@%s", forge.repo, sha[:7])


PREVIEW_OPEN_PULLS = 30
PREVIEW_INTERVAL_SECONDS = 300


def preview_policy_change(rt: runtime.Runtime, forge: Forge, result: Assessment, decision_id: str,
                          reschedule: Callable[[int], None] | None = None) -> None:
    """A PR changing `.agentgate.yml` is judged by the base policy; here admins see what the proposed
    file would do to the open pull requests, once per head and base."""
    conn, pr = rt.conn, result.pr
    once = key("preview", forge.repo, pr.number, pr.head_sha, pr.base_sha)
    if not conn.set(once, "1", nx=True, ex=30 * 24 * 3600):
        return
    # Each preview reads every open PR: at most one per PR every few minutes, however often it is pushed;
    # a head pushed meanwhile is previewed when the interval is over.
    if not conn.set(key("preview-recent", forge.repo, pr.number), "1", nx=True, ex=PREVIEW_INTERVAL_SECONDS):
        conn.delete(once)
        if reschedule is not None:
            reschedule(PREVIEW_INTERVAL_SECONDS)
        return
    from gatekeeper.policy.preview import preview, render_markdown

    try:
        proposed_text = forge.get_file(POLICY_PATH, pr.head_sha)
        proposed = gather.policy_from_text(conn, forge, proposed_text, f"{POLICY_PATH} at {pr.head_sha[:7]}")
        others = [p for p in forge.list_open_pulls(PREVIEW_OPEN_PULLS) if p.number != pr.number]
        facts = []
        for other in others:
            # Gathered under the base policy's identities; the preview compares verdicts only.
            try:
                facts.append(gather.pull_request_facts(conn, forge, other, result.policy))
            except gather.HeadMoved:
                continue  # pushed to while we read it: its own evaluation follows
    except ForgeError:
        conn.delete(once)  # try again on the next evaluation
        raise
    markdown = render_markdown(preview(result.policy, proposed, facts)).replace(
        "\n\n", f"\n\nThe proposed `{POLICY_PATH}` at `{pr.head_sha[:7]}`, against {len(facts)} open "
                f"pull request(s):\n\n", 1)
    record = decisions.load(conn, decision_id)
    if record is not None:
        record.extra["policy_preview_markdown"] = markdown
        decisions.save(conn, record)
    sync_comment(conn, forge, pr.number, "policy-preview", markdown)
