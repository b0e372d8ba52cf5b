"""Dev-mode only routes: `agentgate replay` seeds sample platform state and reads recorded actions."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request

from gatekeeper.forges.recording import recorded_actions, store_sample
from gatekeeper.web.receiver import signature_valid

blueprint = Blueprint("dev", __name__, url_prefix="/dev")


@blueprint.post("/samples")
def samples():  # type: ignore[no-untyped-def]
    ctx = current_app.extensions["agentgate"]
    body = request.get_data(cache=True)
    # Signed like a webhook: even a dev server should not take state from anyone who can reach it.
    if not signature_valid(body, request.headers.get("X-Hub-Signature-256"), ctx.settings.github_webhook_secrets):
        return jsonify(error="bad signature"), 401
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or "repo" not in data or "number" not in data:
        return jsonify(error="expected {repo, number, sample}"), 400
    store_sample(ctx.conn, str(data["repo"]), int(data["number"]), data.get("sample") or {})
    return jsonify(result="stored"), 201


@blueprint.get("/actions")
def actions():  # type: ignore[no-untyped-def]
    ctx = current_app.extensions["agentgate"]
    return jsonify([asdict(a) for a in recorded_actions(ctx.conn, limit=200)])
