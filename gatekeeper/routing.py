"""Which deliveries lead to which jobs. Pure: the receiver calls it on the parsed payload and enqueues
the result, so nothing here may touch the network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class JobRequest:
    """A job with primitive arguments only: the worker fetches fresh state itself."""

    func: str  # dotted path of the job function
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # distinguishes several jobs from one delivery

    @property
    def description(self) -> str:
        return f"{self.func.rsplit('.', 1)[-1]} {self.kwargs.get('repo', '')}#{self.kwargs.get('number', '')}"


EVALUATE_PR = "gatekeeper.jobs.evaluate_pull_request"

Handler = Callable[[str, dict[str, Any]], list[JobRequest]]
_GITHUB: dict[str, Handler] = {}


def github_handler(event: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _GITHUB[event] = fn
        return fn

    return register


def route_github(event: str, payload: dict[str, Any]) -> list[JobRequest]:
    """Jobs for one GitHub delivery; [] means accepted and ignored."""
    handler = _GITHUB.get(event)
    if handler is None:
        return []
    return handler(str(payload.get("action") or ""), payload)


def _common(payload: dict[str, Any]) -> dict[str, Any]:
    repo = payload.get("repository") or {}
    installation = payload.get("installation") or {}
    return {
        "platform": "github",
        "installation_id": installation.get("id"),
        "repo": repo.get("full_name"),
        "sender": (payload.get("sender") or {}).get("login"),
    }


def _evaluate(payload: dict[str, Any], number: int | None, trigger: str) -> list[JobRequest]:
    common = _common(payload)
    if not common["repo"] or not isinstance(number, int):
        return []
    return [JobRequest(EVALUATE_PR, {**common, "number": number, "trigger": trigger})]


# Actions that change what a pull request's verdict depends on.
_PR_ACTIONS = {"opened", "synchronize", "reopened", "ready_for_review"}


@github_handler("pull_request")
def _pull_request(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    number = (payload.get("pull_request") or {}).get("number", payload.get("number"))
    if action in _PR_ACTIONS:
        return _evaluate(payload, number, f"pull_request.{action}")
    if action == "edited" and "base" in (payload.get("changes") or {}):
        # Retargeting, e.g. from a feature branch to main, can move a PR under protection.
        return _evaluate(payload, number, "pull_request.edited.base")
    return []


@github_handler("pull_request_review")
def _pull_request_review(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("submitted", "dismissed", "edited"):
        return []
    number = (payload.get("pull_request") or {}).get("number")
    return _evaluate(payload, number, f"pull_request_review.{action}")
