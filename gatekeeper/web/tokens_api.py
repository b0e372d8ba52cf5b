"""`/api/v1/tokens`: an agent asks for a short-lived platform token for one task, and gives it back.
The decisions are the token service's (gatekeeper/tokens/service.py); this only speaks HTTP."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from gatekeeper.tokens.service import Answer

blueprint = Blueprint("tokens_api", __name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # an answer may hold a token


def _service():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"].token_service()


def _respond(answer: Answer) -> Response:
    resp = jsonify(answer.body) if answer.body is not None else Response(status=answer.status)
    resp.status_code = answer.status
    resp.headers.update({**NO_STORE, **answer.headers})
    return resp


@blueprint.post("/api/v1/tokens")
def issue_token() -> Response:
    return _respond(_service().issue(request.headers.get("Authorization"), request.get_data(cache=False)))


@blueprint.delete("/api/v1/tokens/<token_id>")
def give_back_token(token_id: str) -> Response:
    return _respond(_service().give_back(request.headers.get("Authorization"), token_id))
