"""What the worker does on a platform, each action idempotent and recorded in the audit log: the
commit status (the worst verdict over every open pull request at that head), the optional check run,
the one comment per pull request, removing a bot's label, answering a deployment."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from gatekeeper.core import enforcement
from gatekeeper.core.verdict import Outcome, Verdict, shorten, worst
from gatekeeper.forges.port import Forge, ForgeError
from gatekeeper.policy import InvalidPolicy, Policy
from gatekeeper.state import audit, decisions, keys
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.state.store import text as store_text
from gatekeeper.worker.gather import fingerprint

log = logging.getLogger(__name__)


def save_decision(conn: redis.Redis, platform: str, repo: str, subject: str, sha: str, verdict: Verdict,
                  facts: dict[str, Any], policy: Policy | InvalidPolicy | None, trigger: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> str:
    """The same facts and verdict keep the same decision id, so an unchanged verdict changes nothing."""
    source = getattr(policy, "source", ".agentgate.yml") if policy is not None else "-"
    layers = list(getattr(policy, "layers", ()) or ())
    record = DecisionRecord(platform=platform, repo=repo, subject=subject, sha=sha, verdict=verdict.to_dict(),
                            facts=facts, policy_source=source, trigger=trigger,
                            extra={"policy_layers": layers, **(extra or {})})
    fp = keys.decision_fingerprint(fingerprint(platform, repo, subject, sha, record.verdict, facts, source,
                                               record.extra))
    existing = conn.get(fp)
    if existing is not None and decisions.load(conn, store_text(existing)) is not None:
        return store_text(existing)
    record.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
    decision_id = decisions.save(conn, record)
    conn.set(fp, decision_id, ex=keys.DECISION_TTL)
    return decision_id


@dataclass(frozen=True)
class HeadVerdict:
    """One pull request's verdict at a head, as the status on that head weighs it."""

    number: int
    outcome: str
    description: str
    target: str


def record_head_verdict(conn: redis.Redis, forge: Forge, sha: str, verdict: HeadVerdict) -> None:
    name = keys.verdicts(forge.platform, forge.repo, sha)
    pipe = conn.pipeline()
    pipe.hset(name, str(verdict.number), json.dumps(verdict.__dict__))
    pipe.expire(name, keys.VERDICTS_TTL)
    pipe.execute()


def forget_head_verdict(conn: redis.Redis, forge: Forge, sha: str, number: int) -> None:
    conn.hdel(keys.verdicts(forge.platform, forge.repo, sha), str(number))


def head_verdicts(conn: redis.Redis, forge: Forge, sha: str) -> dict[int, HeadVerdict]:
    raw = conn.hgetall(keys.verdicts(forge.platform, forge.repo, sha))
    return {int(store_text(k)): HeadVerdict(**json.loads(v)) for k, v in raw.items()}


def combined(mine: HeadVerdict, others: list[HeadVerdict]) -> HeadVerdict:
    """A commit status belongs to the commit, not to one pull request: the status on a head is the most
    severe verdict over every open pull request at that head, so a second pull request of the same
    commit into an unguarded branch cannot turn the first one green."""
    every = [mine, *others]
    outcome = worst([Outcome(v.outcome) for v in every])
    chosen = next(v for v in every if v.outcome == outcome.value)
    if chosen is mine or len(every) == 1:
        return mine
    return HeadVerdict(chosen.number, chosen.outcome, f"#{chosen.number}: {chosen.description}", chosen.target)


def post_status(conn: redis.Redis, forge: Forge, sha: str, state: str, description: str, target_url: str,
                context: str, *, force: bool = False) -> bool:
    """Post a commit status unless the very same one is already the latest we posted."""
    last = keys.status_posted(forge.platform, forge.repo, sha, context)
    wanted = fingerprint(state, description, target_url)
    if not force and conn.get(last) == wanted.encode():
        return False
    forge.set_status(sha, state, shorten(description, forge.status_description_limit), target_url, context)
    audit.record_own(conn, forge.platform, forge.repo, "status", sha, f"{state}: {description}")
    conn.set(last, wanted, ex=keys.STATUS_TTL)
    return True


def forget_posted_status(conn: redis.Redis, forge: Forge, sha: str, context: str) -> None:
    """Someone else posted our context on this head: the next evaluation posts ours again."""
    conn.delete(keys.status_posted(forge.platform, forge.repo, sha, context))


def post_check_run(conn: redis.Redis, forge: Forge, sha: str, verdict: Verdict, details_url: str,
                   name: str) -> None:
    """The optional check run of the same name, updated in place for a head (one per SHA)."""
    id_key = keys.check_run(forge.platform, forge.repo, sha, name)
    shown_key = keys.check_run_shown(forge.platform, forge.repo, sha, name)
    title = f"{verdict.outcome.value}: {verdict.description()}"
    summary = enforcement.reasons_markdown(verdict, details_url)
    wanted = fingerprint(title, summary)
    if conn.get(shown_key) == wanted.encode():
        return  # its own fingerprint: a failed post is retried even when the status did not change
    existing = conn.get(id_key)
    run_id = forge.upsert_check_run(sha, name, verdict.outcome.value, title, summary, details_url,
                                    int(existing) if existing is not None else None)
    pipe = conn.pipeline()
    if run_id is not None:
        pipe.set(id_key, run_id, ex=keys.STATUS_TTL)
    pipe.set(shown_key, wanted, ex=keys.STATUS_TTL)
    pipe.execute()


def sync_comment(conn: redis.Redis, forge: Forge, number: int, section: str, text: str) -> None:
    """At most one agentgate comment per PR, edited in place when one of its sections changes."""
    sections_key = keys.comment_sections(forge.platform, forge.repo, number)
    id_key = keys.comment(forge.platform, forge.repo, number)
    shown = {store_text(k): store_text(v) for k, v in conn.hgetall(sections_key).items()}
    if shown.get(section) == text:
        return
    shown[section] = text
    existing = conn.get(id_key)
    # Without a remembered id (first comment, or the store lost it) look for ours before creating one.
    comment_id = int(existing) if existing is not None else forge.find_comment(number, enforcement.COMMENT_MARKER)
    body = enforcement.comment_body(shown)
    # Recognised as ours when its delivery arrives, whatever the author's login says (see keys).
    conn.set(keys.comment_posting(forge.platform, forge.repo, number), hashlib.sha256(body.encode()).hexdigest(),
             ex=keys.OWN_ACTION_TTL)
    comment_id = forge.upsert_comment(number, body, comment_id)
    audit.record_own(conn, forge.platform, forge.repo, "comment", f"#{number}", f"{section} section updated")
    pipe = conn.pipeline()
    pipe.set(id_key, comment_id, ex=keys.COMMENT_TTL)
    # What it says now: an edit of our comment by anyone else (an agent holding our App's token) differs.
    pipe.set(keys.comment_body(forge.platform, forge.repo, number), hashlib.sha256(body.encode()).hexdigest(),
             ex=keys.COMMENT_TTL)
    pipe.hset(sections_key, section, text)
    pipe.expire(sections_key, keys.COMMENT_TTL)
    pipe.execute()


def restore_comment(conn: redis.Redis, forge: Forge, number: int) -> None:
    """Write agentgate's comment again as agentgate last wrote it (from its remembered sections)."""
    comment_id = conn.get(keys.comment(forge.platform, forge.repo, number))
    shown = {store_text(k): store_text(v)
             for k, v in conn.hgetall(keys.comment_sections(forge.platform, forge.repo, number)).items()}
    if comment_id is None or not shown:
        return
    body = enforcement.comment_body(shown)
    digest = hashlib.sha256(body.encode()).hexdigest()
    conn.set(keys.comment_posting(forge.platform, forge.repo, number), digest, ex=keys.OWN_ACTION_TTL)
    forge.upsert_comment(number, body, int(comment_id))
    conn.set(keys.comment_body(forge.platform, forge.repo, number), digest, ex=keys.COMMENT_TTL)
    audit.record_own(conn, forge.platform, forge.repo, "comment", f"#{number}", "restored after someone else's edit")


def chain_section(conn: redis.Redis, forge: Forge, number: int, open_ids: list[str], text: str) -> str | None:
    """The chains section once anything was flagged; it changes only when the open findings do."""
    shown = conn.hget(keys.comment_sections(forge.platform, forge.repo, number), "chains-ids")
    wanted = ",".join(sorted(open_ids))
    if shown is None and not open_ids:
        return None
    if shown is not None and store_text(shown) == wanted:
        return None
    return text


def remember_chain_section(conn: redis.Redis, forge: Forge, number: int, open_ids: list[str]) -> None:
    # Only once the comment was posted, so a failed post is retried.
    conn.hset(keys.comment_sections(forge.platform, forge.repo, number), "chains-ids", ",".join(sorted(open_ids)))


def remove_label(conn: redis.Redis, forge: Forge, number: int, label: str, applied_by: str) -> None:
    conn.set(keys.label_removal(forge.platform, forge.repo, number, label), "1", ex=keys.OWN_ACTION_TTL)
    forge.remove_label(number, label)
    audit.record_own(conn, forge.platform, forge.repo, "remove_label", f"#{number}",
                     f"{label} (applied by {applied_by})")


def answer_deployment(conn: redis.Redis, forge: Forge, run_id: int, environment: str, state: str,
                      comment: str) -> None:
    forge.review_deployment(run_id, environment, state, comment)
    audit.record_own(conn, forge.platform, forge.repo, f"deployment_{state}", environment, f"run {run_id}: {comment}")


def post_unevaluated(conn: redis.Redis, forge: Forge, context: str, sha: str, why: str, public_url: str,
                     retrying: bool) -> None:
    """Fail closed: an earlier `success` must not stand for a head we cannot evaluate now. While the job
    will be retried, `pending` (no flapping through `error` on a transient failure); after, `error`."""
    state = Outcome.PENDING if retrying else Outcome.ERROR
    text = f"Could not evaluate{' yet, retrying' if retrying else ''}: {why}"
    try:
        post_status(conn, forge, sha, state.value, text, public_url, context, force=True)
    except ForgeError:
        log.warning("could not post the unevaluated status for %s@%s", forge.repo, sha[:7])
