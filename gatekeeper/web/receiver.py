"""Webhook receivers: verify, deduplicate, enqueue, answer. Nothing here calls a platform."""

from __future__ import annotations

import hmac
import json
import logging
import re
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

from gatekeeper.forges.github.webhooks import audit_entry, parse
from gatekeeper.state import audit, keys, metrics
from gatekeeper.state.queue import EnqueueFailed
from gatekeeper.state.store import text as store_text

log = logging.getLogger(__name__)
blueprint = Blueprint("receiver", __name__)

# GitHub's delivery ids are GUIDs and event names are snake_case words; anything else is not GitHub,
# and these values end up in job ids, store keys and metrics labels.
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,100}")
_EVENT = re.compile(r"[a-z_]{1,64}")


def _ctx():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"]


def _answer(status: int, result: str, event: str, **extra: Any):  # type: ignore[no-untyped-def]
    metrics.incr(_ctx().conn, "agentgate_webhooks", "github", event or "-", result)
    return jsonify(result=result, **extra), status


def signature_valid(body: bytes, signature: str | None, secrets: tuple[str, ...]) -> bool:
    """Only SHA-256 signatures count: SHA-1 (`X-Hub-Signature`) is too weak to rely on."""
    if not signature or not signature.startswith("sha256=") or not secrets:
        return False
    for secret in secrets:  # several during a rotation
        try:
            validate_event(body, signature=signature, secret=secret)
            return True
        except (ValidationFailure, TypeError):  # TypeError: non-ASCII header in compare_digest
            continue
    return False


def _parse_body(body: bytes, content_type: str) -> dict[str, Any] | None:
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            # Webhooks may be configured to send form-encoded bodies with the JSON in `payload`.
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
            body = form["payload"][0].encode("utf-8")
        payload = json.loads(body)
    except (ValueError, KeyError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


# Deliveries that say nothing about an actor's choice: other systems' statuses and checks, job progress.
_NOT_ACTIONS = frozenset({"status", "workflow_job", "check_run", "check_suite"})


def _audit_entry(event: str, payload: dict[str, Any], delivery: str, routed: bool) -> audit.AuditEntry | None:
    """What goes in the audit log: every delivery agentgate acts on, and any other action by a bot or
    agent. Never in the way of enforcement: an entry it cannot build is skipped, not an error."""
    try:
        entry = audit_entry(event, payload, delivery, datetime.now(UTC))
    except (TypeError, AttributeError, ValueError, LookupError):
        return None
    if routed or (entry.actor_kind in ("bot", "agent") and event not in _NOT_ACTIONS):
        return entry
    return None


@blueprint.post("/webhooks/github")
def github_webhook():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH, before any parsing
    event = request.headers.get("X-GitHub-Event", "")
    if not signature_valid(body, request.headers.get("X-Hub-Signature-256"), ctx.settings.github_webhook_secrets):
        # Unverified headers never become metric labels: anyone could grow the label set.
        return _answer(401, "bad-signature", "-", message="missing or invalid X-Hub-Signature-256")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not _EVENT.fullmatch(event) or not _DELIVERY.fullmatch(delivery):
        return _answer(400, "malformed", "-", message="X-GitHub-Event and X-GitHub-Delivery are required")
    payload = _parse_body(body, request.content_type or "")
    if payload is None:
        return _answer(400, "malformed", event, message="body is not a JSON object")
    if event == "ping":
        return _answer(200, "pong", event, zen=payload.get("zen"))
    try:
        events = parse(event, payload, delivery, ctx.settings.status_context)
    except (TypeError, AttributeError, ValueError, LookupError):
        # A payload of the right event but the wrong shape: a client error, not ours.
        return _answer(400, "malformed", event, message="payload does not have the documented shape")
    entry = _audit_entry(event, payload, delivery, bool(events))
    seen = keys.delivery("github", delivery)
    try:
        if not ctx.conn.set(seen, "", nx=True, ex=keys.DELIVERY_TTL):
            # A redelivery. Acted on once already, unless its job failed for good (e.g. a long GitHub
            # outage): then an operator's "Redeliver" is how it gets retried.
            requeued = ctx.queue.requeue_failed(store_text(ctx.conn.get(seen) or b"").split(","))
            if requeued:
                return _answer(202, "requeued", event, jobs=requeued)
            return _answer(200, "duplicate", event)
        try:
            job_ids = ctx.queue.enqueue_events("github", delivery, events) if events else []
        except EnqueueFailed:
            # Forget the delivery so GitHub's redelivery is processed.
            ctx.conn.delete(seen)
            raise
        ctx.conn.set(seen, ",".join(job_ids), ex=keys.DELIVERY_TTL)
    except (redis.RedisError, EnqueueFailed):
        log.warning("could not enqueue delivery %s", delivery)
        return _answer(503, "unavailable", event, message="queue unavailable; redeliver later")
    if entry is not None:
        try:
            audit.record(ctx.conn, entry)  # agents' actions apart from humans', by actor kind
        except redis.RedisError:
            log.warning("could not write the audit entry for delivery %s", delivery)  # the jobs are queued
    if not events:
        return _answer(202, "ignored", event)
    return _answer(202, "queued", event, jobs=job_ids)


@blueprint.post("/webhooks/gitlab")
def gitlab_webhook():  # type: ignore[no-untyped-def]
    """GitLab's secret token is compared in constant time. GitLab events are verified and parsed, then
    answered as ignored: evaluating them arrives with the GitLab adapter."""
    ctx = _ctx()
    body = request.get_data(cache=False)
    event = request.headers.get("X-Gitlab-Event", "")[:64]
    expected = ctx.settings.gitlab_webhook_secret
    given = request.headers.get("X-Gitlab-Token", "")
    if not expected or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
        metrics.incr(ctx.conn, "agentgate_webhooks", "gitlab", "-", "bad-token")
        return jsonify(result="bad-token", message="missing or invalid X-Gitlab-Token"), 401
    if _parse_body(body, request.content_type or "") is None:
        metrics.incr(ctx.conn, "agentgate_webhooks", "gitlab", "-", "malformed")
        return jsonify(result="malformed", message="body is not a JSON object"), 400
    metrics.incr(ctx.conn, "agentgate_webhooks", "gitlab", "-", "ignored")
    return jsonify(result="ignored", event=event, message="GitLab events are not evaluated yet"), 202
