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


EVALUATE_PR = "gatekeeper.worker.pipeline.evaluate_pull_request"
POLICY_FILE = ".agentgate.yml"  # routing stays import-light: the same name as gatekeeper.policy.POLICY_PATH

Handler = Callable[[str, dict[str, Any]], list[JobRequest]]
_GITHUB: dict[str, Handler] = {}


def github_handler(event: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _GITHUB[event] = fn
        return fn

    return register


def route_github(event: str, payload: dict[str, Any], status_context: str = "agentgate") -> list[JobRequest]:
    """Jobs for one GitHub delivery; [] means accepted and ignored."""
    if event == "status" and payload.get("context") != status_context:
        return []  # every CI system's statuses arrive here; only agentgate's own context matters
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


def _chain_common(payload: dict[str, Any]) -> dict[str, Any]:
    return _common(payload) | {"sender": _actor(payload.get("sender")),
                               "default_branch": (payload.get("repository") or {}).get("default_branch")}


def _evaluate(payload: dict[str, Any], number: int | None, trigger: str) -> list[JobRequest]:
    common = _common(payload)
    if not common["repo"] or not isinstance(number, int):
        return []
    return [JobRequest(EVALUATE_PR, {**common, "number": number, "trigger": trigger})]


# Actions that change what a pull request's verdict depends on: its head, its base (a retarget is an
# `edited`), its title and body (rules and task references read them), draft state.
_PR_ACTIONS = {"opened", "synchronize", "reopened", "ready_for_review", "converted_to_draft", "edited"}


@github_handler("pull_request")
def _pull_request(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    number = (payload.get("pull_request") or {}).get("number", payload.get("number"))
    if action in _PR_ACTIONS:
        return _evaluate(payload, number, f"pull_request.{action}")
    if action in ("labeled", "unlabeled"):
        # The label job re-evaluates too: rules may read labels, and a bot's trigger label is a chain.
        label = (payload.get("label") or {}).get("name")
        return _job("on_label", payload, action=action, number=number, label=label,
                    at=payload["pull_request"].get("updated_at"))
    if action == "assigned":
        return _job("on_assigned", payload, number=number, assignee=_actor(payload.get("assignee")))
    return []


@github_handler("pull_request_review")
def _pull_request_review(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("submitted", "dismissed", "edited"):
        return []
    number = (payload.get("pull_request") or {}).get("number")
    jobs = _evaluate(payload, number, f"pull_request_review.{action}")
    review = payload.get("review") or {}
    if action == "submitted" and review.get("body"):
        # Bors and Prow act on review bodies too (`bors r+`, `/lgtm`): judge them like comments.
        jobs += _job("on_comment", payload, action="created", number=number, is_pull_request=True,
                     comment_id=review.get("id"), body=str(review["body"])[:MAX_BODY_CHARS],
                     author=_actor(review.get("user")), created_at=review.get("submitted_at"), kind="review")
    sender = (payload.get("sender") or {}).get("login")
    author = (review.get("user") or {}).get("login")
    if action == "edited" and sender and author and sender.lower() != author.lower():
        # A review changed by someone other than its author is tampering, whatever it now says. The
        # tampering job records it and evaluates, so the PR never shows a passing status in between.
        return _job("on_tampering", payload, number=number, what=f"review {review.get('id')} by {author}",
                    author=author)
    return jobs


# ---- The whole action path: comments, labels, workflows, deployments, merge queues, pushes, statuses.

CHAIN_JOBS = "gatekeeper.worker.handlers"
MAX_BODY_CHARS = 65536  # commands are judged on the first 64 KB; the job records that it cut


def _actor(user: dict[str, Any] | None, via_app: dict[str, Any] | None = None) -> dict[str, Any] | None:
    if not user:
        return None
    actor = {"login": user.get("login"), "type": user.get("type"), "id": user.get("id")}
    if via_app:
        actor["via_app"] = via_app.get("slug") or via_app.get("name")
    return actor


def _job(func: str, payload: dict[str, Any], **kwargs: Any) -> list[JobRequest]:
    common = _chain_common(payload)
    if not common["repo"]:
        return []
    return [JobRequest(f"{CHAIN_JOBS}.{func}", {**common, **kwargs})]


@github_handler("issue_comment")
def _issue_comment(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("created", "edited", "deleted"):
        return []
    issue, comment = payload["issue"], payload["comment"]
    return _job("on_comment", payload, action=action, number=issue["number"],
                is_pull_request=bool(issue.get("pull_request")), comment_id=comment["id"],
                body=str(comment.get("body") or "")[:MAX_BODY_CHARS],
                author=_actor(comment.get("user"), comment.get("performed_via_github_app")),
                created_at=comment.get("created_at"), kind="comment")


@github_handler("pull_request_review_comment")
def _review_comment(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("created", "edited", "deleted"):
        return []
    comment = payload["comment"]
    return _job("on_comment", payload, action=action, number=payload["pull_request"]["number"],
                is_pull_request=True, comment_id=comment["id"], body=str(comment.get("body") or "")[:MAX_BODY_CHARS],
                author=_actor(comment.get("user"), comment.get("performed_via_github_app")),
                created_at=comment.get("created_at"), kind="review_comment")


@github_handler("issues")
def _issues(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    # Assigning an issue to an agent is how a human sets it on a task: remember who did.
    if action == "assigned":
        return _job("on_assigned", payload, number=payload["issue"]["number"],
                    assignee=_actor(payload.get("assignee")))
    # Approving (or un-approving) a task by label changes the verdict of the PRs that resolve it.
    if action in ("labeled", "unlabeled", "closed", "reopened") and not payload["issue"].get("pull_request"):
        return _job("on_task_changed", payload, number=payload["issue"]["number"], action=action)
    return []


@github_handler("workflow_run")
def _workflow_run(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("requested", "completed", "in_progress"):
        return []
    run = payload["workflow_run"]
    return _job("on_workflow_run", payload, action=action, run_id=run["id"], name=run.get("name") or "",
                path=run.get("path") or "", event=run.get("event") or "", head_sha=run.get("head_sha"),
                head_branch=run.get("head_branch"), triggering_actor=_actor(run.get("triggering_actor")),
                actor=_actor(run.get("actor")),
                pull_numbers=[p["number"] for p in run.get("pull_requests") or [] if "number" in p])


@github_handler("workflow_job")
def _workflow_job(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    # A job belongs to a run, judged once at `workflow_run.requested` (who triggered it, which event);
    # a job adds no new actor, so a queued job per CI job would only cost work.
    return []


@github_handler("check_suite")
def _check_suite(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("requested", "rerequested"):
        return []
    suite = payload["check_suite"]
    jobs: list[JobRequest] = []
    for pr in suite.get("pull_requests") or []:
        jobs += [JobRequest(j.func, j.kwargs, name=f"pr{pr['number']}")
                 for j in _evaluate(payload, pr.get("number"), f"check_suite.{action}")]
    return jobs


@github_handler("check_run")
def _check_run(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action not in ("rerequested", "requested_action"):
        return []
    run = payload["check_run"]
    jobs: list[JobRequest] = []
    for pr in run.get("pull_requests") or []:
        jobs += [JobRequest(j.func, j.kwargs, name=f"pr{pr['number']}")
                 for j in _evaluate(payload, pr.get("number"), f"check_run.{action}")]
    return jobs


@github_handler("push")
def _push(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    ref = str(payload.get("ref") or "")
    if not ref.startswith("refs/heads/") or payload.get("deleted"):
        return []
    return _job("on_push", payload, ref=ref.removeprefix("refs/heads/"), after=payload.get("after"),
                before=payload.get("before"), forced=bool(payload.get("forced")),
                pusher=(payload.get("pusher") or {}).get("name"),
                commits=[{"id": c.get("id"), "message": str(c.get("message") or "")[:4096],
                          "author": (c.get("author") or {}).get("username")}
                         for c in (payload.get("commits") or [])[:50]],
                policy_changed=_touches_policy(payload))


def _touches_policy(payload: dict[str, Any]) -> bool:
    """Whether a push changes `.agentgate.yml` (GitHub lists at most 20 commits' files: unknown counts)."""
    commits = payload.get("commits") or []
    if len(commits) >= 20:
        return True
    return any(POLICY_FILE in (c.get(k) or []) for c in commits for k in ("added", "modified", "removed"))


@github_handler("deployment_protection_rule")
def _deployment_protection_rule(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action != "requested":
        return []
    deployment = payload.get("deployment") or {}
    return _job("on_deployment_protection_rule", payload, environment=payload.get("environment"),
                event=payload.get("event"), sha=payload.get("sha") or deployment.get("sha"),
                ref=payload.get("ref") or deployment.get("ref"),
                callback_url=payload.get("deployment_callback_url"),
                creator=_actor(deployment.get("creator"), deployment.get("performed_via_github_app")),
                pull_numbers=[p["number"] for p in payload.get("pull_requests") or [] if "number" in p])


@github_handler("merge_group")
def _merge_group(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    if action != "checks_requested":
        return []
    group = payload["merge_group"]
    return _job("on_merge_group", payload, head_sha=group["head_sha"], head_ref=group.get("head_ref") or "",
                base_ref=group.get("base_ref") or "",
                message=str((group.get("head_commit") or {}).get("message") or "")[:MAX_BODY_CHARS])


@github_handler("status")
def _status(action: str, payload: dict[str, Any]) -> list[JobRequest]:
    return _job("on_status", payload, sha=payload.get("sha"), context=payload.get("context"),
                state=payload.get("state"), description=payload.get("description"))
