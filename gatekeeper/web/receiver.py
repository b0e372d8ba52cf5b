"""Webhook receivers: verify, deduplicate, enqueue, answer. Nothing here calls a platform.

`GitHubReceiver.receive` is the whole of `POST /webhooks/github` and knows no web framework: `agentgate
serve` calls it straight from its ASGI front (gatekeeper/web/app.py), and the Flask route below (dev
mode, tests) calls the same code. Nothing is written to Redis before the signature is verified, and an
accepted delivery costs one Redis round trip (`JobQueue.accept_delivery`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request
from gidgethub import ValidationFailure
from gidgethub.sansio import validate_event

from gatekeeper.forges.github import webhooks as github_webhooks
from gatekeeper.forges.gitlab import webhooks as gitlab_webhooks
from gatekeeper.settings import Settings
from gatekeeper.state import audit, metrics
from gatekeeper.state.queue import EnqueueFailed, JobQueue

log = logging.getLogger(__name__)
blueprint = Blueprint("receiver", __name__)

# GitHub's delivery ids are GUIDs and event names are snake_case words; anything else is not GitHub,
# and these values end up in job ids, store keys and metrics labels.
_DELIVERY = re.compile(r"[A-Za-z0-9-]{1,100}")
_EVENT = re.compile(r"[a-z_]{1,64}")
WEBHOOKS = "agentgate_webhooks"
UNVERIFIED = "-"  # the event label of every delivery whose headers cannot be trusted

Header = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


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
    except (ValueError, KeyError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: JSON nested deeper than the parser goes is malformed, not ours
    return payload if isinstance(payload, dict) else None


# Deliveries that say nothing about an actor's choice: other systems' statuses and checks, job progress.
_NOT_ACTIONS = frozenset({"status", "workflow_job", "check_run", "check_suite", "build"})


def _audit_entry(event: str, payload: dict[str, Any], delivery: str, routed: bool,
                 build: Callable[..., audit.AuditEntry] = github_webhooks.audit_entry) -> audit.AuditEntry | None:
    """What goes in the audit log: every delivery agentgate acts on, and any other action by a bot or
    agent. Never in the way of enforcement: an entry it cannot build is skipped, not an error."""
    try:
        entry = build(event, payload, delivery, datetime.now(UTC))
    except (TypeError, AttributeError, ValueError, LookupError):
        return None
    if routed or (entry.actor_kind in ("bot", "agent") and event not in _NOT_ACTIONS):
        return entry
    return None


class _Receiver:
    """What every platform's receiver does once a delivery is verified, parsed and named: record it in
    one round trip (`JobQueue.accept_delivery`) and answer."""

    platform = ""

    def __init__(self, settings: Settings, conn: redis.Redis, queue: JobQueue):
        self.conn = conn
        self.queue = queue
        self.status_context = settings.status_context

    def _accept(self, event: str, delivery: str, events: list[Any], entry: audit.AuditEntry | None) -> Answer:
        result = "queued" if events else "ignored"
        try:
            accepted = self.queue.accept_delivery(self.platform, delivery, events,
                                                  audit=entry.to_dict() if entry is not None else None,
                                                  metric=metrics.field(WEBHOOKS, self.platform, event, result))
            if accepted.duplicate:
                return self._redelivered(event, accepted.job_ids)
        except EnqueueFailed:
            log.warning("could not enqueue %s delivery %s", self.platform, delivery)
            return self._count(_UNAVAILABLE, event)
        except redis.RedisError:
            log.warning("could not enqueue %s delivery %s: Redis unavailable", self.platform, delivery)
            return _UNAVAILABLE  # counting it would wait on the same Redis
        if not events:
            return Answer(202, {"result": result})
        return Answer(202, {"result": result, "jobs": accepted.job_ids})

    def _redelivered(self, event: str, job_ids: list[str]) -> Answer:
        """A redelivery. Acted on once already, unless its job failed for good (e.g. a long platform
        outage): then an operator's "Redeliver" is how it gets retried."""
        requeued = self.queue.requeue_failed(job_ids)
        if requeued:
            return self._count(Answer(202, {"result": "requeued", "jobs": requeued}), event)
        return self._count(Answer(200, {"result": "duplicate"}), event)

    def _count(self, answer: Answer, event: str) -> Answer:
        metrics.incr(self.conn, WEBHOOKS, self.platform, event, str(answer.body["result"]))
        return answer


class GitHubReceiver(_Receiver):
    """`POST /webhooks/github`: the signature is checked over the raw body before anything else, the
    headers are validated before they name anything, and only then is the body parsed and recorded."""

    platform = "github"

    def __init__(self, settings: Settings, conn: redis.Redis, queue: JobQueue):
        super().__init__(settings, conn, queue)
        # One keyed HMAC per secret (several during a rotation), copied per delivery: the key schedule
        # is computed once per process instead of once per delivery.
        self._macs = [hmac.new(s.encode(), digestmod=hashlib.sha256) for s in settings.github_webhook_secrets]

    def verified(self, body: bytes, signature: str | None) -> bool:
        """Only SHA-256 signatures count: SHA-1 (`X-Hub-Signature`) is too weak to rely on."""
        if not signature or not signature.startswith("sha256="):
            return False
        try:
            given = signature[7:].encode("ascii")
        except UnicodeEncodeError:
            return False
        found = False
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(body)
            found |= hmac.compare_digest(mac.hexdigest().encode(), given)
        return found

    def receive(self, header: Header, body: bytes) -> Answer:
        event = header("X-GitHub-Event") or ""
        if not self.verified(body, header("X-Hub-Signature-256")):
            # Unverified headers never become metric labels, nor anything else in the store.
            return self._count(Answer(401, {"result": "bad-signature",
                                            "message": "missing or invalid X-Hub-Signature-256"}), UNVERIFIED)
        delivery = header("X-GitHub-Delivery") or ""
        if not _EVENT.fullmatch(event) or not _DELIVERY.fullmatch(delivery):
            return self._count(Answer(400, {"result": "malformed",
                                            "message": "X-GitHub-Event and X-GitHub-Delivery are required"}),
                               UNVERIFIED)
        payload = _parse_body(body, header("Content-Type") or "")
        if payload is None:
            return self._count(Answer(400, {"result": "malformed", "message": "body is not a JSON object"}), event)
        if event == "ping":
            return self._count(Answer(200, {"result": "pong", "zen": payload.get("zen")}), event)
        try:
            events = github_webhooks.parse(event, payload, delivery, self.status_context)
        except (TypeError, AttributeError, ValueError, LookupError):
            # A payload of the right event but the wrong shape: a client error, not ours.
            return self._count(Answer(400, {"result": "malformed",
                                            "message": "payload does not have the documented shape"}), event)
        return self._accept(event, delivery, events, _audit_entry(event, payload, delivery, bool(events)))


class GitLabReceiver(_Receiver):
    """`POST /webhooks/gitlab`: GitLab's secret token is compared in constant time before anything else;
    the delivery is named by GitLab's `Idempotency-Key` (the same on every attempt), else by its event
    UUID and the object it reports (gatekeeper/forges/gitlab/webhooks.delivery_id)."""

    platform = "gitlab"

    def __init__(self, settings: Settings, conn: redis.Redis, queue: JobQueue):
        super().__init__(settings, conn, queue)
        # Several tokens may be configured (comma-separated) so one can be rotated without a gap.
        self._tokens = tuple(s.strip().encode("utf-8") for s in (settings.gitlab_webhook_secret or "").split(",")
                             if s.strip())

    def _token_valid(self, given: bytes) -> bool:
        # Every configured token is compared, each in constant time, whatever matched first.
        return bool(self._tokens) and sum(hmac.compare_digest(given, token) for token in self._tokens) > 0

    def receive(self, header: Header, body: bytes) -> Answer:
        given = (header("X-Gitlab-Token") or "").encode("utf-8", "replace")
        if not self._token_valid(given):
            return self._count(Answer(401, {"result": "bad-token", "message": "missing or invalid X-Gitlab-Token"}),
                               UNVERIFIED)
        payload = _parse_body(body, header("Content-Type") or "")
        if payload is None:
            return self._count(Answer(400, {"result": "malformed", "message": "body is not a JSON object"}),
                               UNVERIFIED)
        # GitLab disables a hook after repeated failures: past the token and the JSON check, nothing it
        # sends is refused with a 4xx. What cannot be acted on is answered 2xx, and logged.
        names = {name: header(name) or "" for name in ("Idempotency-Key", "X-Gitlab-Event-UUID")}
        delivery = gitlab_webhooks.delivery_id(names, payload) or ""
        if not _DELIVERY.fullmatch(delivery):
            # Without GitLab's ids, the body itself names the delivery: a retry is the same body.
            delivery = "body-" + hashlib.sha256(body).hexdigest()[:40]
        kind = str(payload.get("object_kind") or "")
        if not _EVENT.fullmatch(kind):
            log.warning("GitLab delivery %s without a usable object_kind: ignored", delivery)
            return self._count(Answer(202, {"result": "ignored", "message": "no object_kind"}), UNVERIFIED)
        try:
            events = gitlab_webhooks.parse(header("X-Gitlab-Event") or "", payload, delivery, self.status_context)
        except (TypeError, AttributeError, ValueError, LookupError):
            log.warning("GitLab delivery %s (%s) does not have the documented shape: ignored", delivery, kind)
            return self._count(Answer(202, {"result": "ignored",
                                            "message": "payload does not have the documented shape"}), kind)
        entry = _audit_entry(kind, payload, delivery, bool(events), gitlab_webhooks.audit_entry)
        return self._accept(kind, delivery, events, entry)


_UNAVAILABLE = Answer(503, {"result": "unavailable", "message": "queue unavailable; redeliver later"})


def _ctx():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"]


@blueprint.post("/webhooks/github")
def github_webhook():  # type: ignore[no-untyped-def]
    body = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH, before any parsing
    answer = _ctx().github.receive(request.headers.get, body)
    return jsonify(answer.body), answer.status


@blueprint.post("/webhooks/gitlab")
def gitlab_webhook():  # type: ignore[no-untyped-def]
    body = request.get_data(cache=False)
    answer = _ctx().gitlab.receive(request.headers.get, body)
    return jsonify(answer.body), answer.status
