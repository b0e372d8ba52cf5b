"""Health, metrics, the decision details page, and (in dev mode) a page of recent activity."""

from __future__ import annotations

import re

import redis
from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gatekeeper import decisions
from gatekeeper.forges.recording import recorded_actions
from gatekeeper.metrics import StoreCollector

blueprint = Blueprint("pages", __name__)
_DECISION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _ctx():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"]


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    try:
        _ctx().conn.ping()
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=type(exc).__name__), 503
    return jsonify(status="ok", redis="ok")


@blueprint.get("/metrics")
def metrics_page():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    registry = CollectorRegistry()
    registry.register(StoreCollector(ctx.conn, (ctx.settings.queue_name,)))
    try:
        body = generate_latest(registry)
    except redis.RedisError:
        return jsonify(status="unavailable"), 503
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/decisions/<decision_id>")
def decision_page(decision_id: str):  # type: ignore[no-untyped-def]
    if not _DECISION_ID.match(decision_id):
        abort(404)
    record = decisions.load(_ctx().conn, decision_id)
    if record is None:
        abort(404, "no such decision (decisions are kept for 90 days)")
    if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
        return jsonify(record.__dict__)
    return render_template("decision.html", d=record, context=_ctx().settings.status_context)


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    dev = ctx.settings.dry_run or not ctx.settings.has_github_credentials
    recent = decisions.recent(ctx.conn) if dev else []
    actions = recorded_actions(ctx.conn) if dev else []
    return render_template("index.html", dev=dev, recent=recent, actions=actions, settings=ctx.settings)
