"""GitHub deliveries as the port's `Event`s. Pure: the receiver calls it on the verified payload and
enqueues the result, so nothing here may touch the network.

Every `Event.kind` the worker dispatches on (worker/handlers.py) is produced here; `[]` means the
delivery is accepted and ignored."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gatekeeper.core.facts import User
from gatekeeper.core.identity import classify
from gatekeeper.forges.github.users import app_name, github_user, mentioned_users
from gatekeeper.forges.port import Event
from gatekeeper.state.audit import SNIPPET, AuditEntry

POLICY_FILE = ".agentgate.yml"  # parsing stays import-light: the same name as gatekeeper.policy.POLICY_PATH
MAX_BODY_CHARS = 65536  # commands are judged on the first 64 KB; the chain rules count the rest as unscanned
MAX_PUSH_COMMITS = 50
_CALLBACK_RUN = re.compile(r"/actions/runs/(\d+)/deployment_protection_rule/?$")

Parser = Callable[[str, dict[str, Any], "_Context"], list[Event]]
_PARSERS: dict[str, Parser] = {}


class _Context:
    """What every event of one delivery shares."""

    def __init__(self, delivery: str, payload: dict[str, Any]):
        repo = payload.get("repository") or {}
        self.delivery = delivery
        self.repo = str(repo.get("full_name") or "")
        self.default_branch = repo.get("default_branch")
        self.installation = (payload.get("installation") or {}).get("id")
        self.sender = github_user(payload.get("sender"))

    def event(self, kind: str, subject: int = 0, **data: Any) -> Event:
        return Event(platform="github", delivery=self.delivery, kind=kind, repo=self.repo,
                     installation=self.installation, actor=self.sender, subject=int(subject or 0), data=data,
                     default_branch=self.default_branch)

    def evaluate(self, number: Any, trigger: str, head_sha: Any = None) -> list[Event]:
        if not isinstance(number, int):
            return []
        # The head the delivery saw: if even the first read of the PR fails, that head still gets a
        # status (pending while retrying, error after), never a stale success.
        head = head_sha if isinstance(head_sha, str) else None
        return [self.event("evaluate", number, trigger=trigger, head_sha=head)]


def parser(event: str) -> Callable[[Parser], Parser]:
    def register(fn: Parser) -> Parser:
        _PARSERS[event] = fn
        return fn

    return register


# The events agentgate subscribes to (the App manifest asks for exactly these).
SUBSCRIBED = _PARSERS


def parse(event: str, payload: dict[str, Any], delivery: str, status_context: str = "agentgate") -> list[Event]:
    """The events one GitHub delivery reports. Raises LookupError/TypeError/ValueError on a payload
    that does not have the documented shape (the receiver answers 400)."""
    if event == "status" and payload.get("context") != status_context:
        return []  # every CI system's statuses arrive here; only agentgate's own context matters
    if (event == "check_run" and str(payload.get("action") or "") in ("created", "completed")
            and (payload.get("check_run") or {}).get("name") == status_context):
        return _forged_check_run(payload, delivery)
    if event in ("installation", "installation_repositories"):
        return _uninstalled(event, payload, delivery)
    handler = _PARSERS.get(event)
    if handler is None:
        return []
    context = _Context(delivery, payload)
    if not context.repo:
        return []
    return handler(str(payload.get("action") or ""), payload, context)


def _uninstalled(event: str, payload: dict[str, Any], delivery: str) -> list[Event]:
    """The App removed from repositories (or uninstalled): one `uninstalled` event per repository, so
    agentgate drops the tokens it holds there and revokes the agent tokens it issued for them."""
    action = str(payload.get("action") or "")
    if event == "installation" and action in ("deleted", "suspend"):
        removed = payload.get("repositories") or []
    elif event == "installation_repositories" and action == "removed":
        removed = payload.get("repositories_removed") or []
    else:
        return []
    installation = (payload.get("installation") or {}).get("id")
    sender = github_user(payload.get("sender"))
    names = [str(r["full_name"]) for r in removed if isinstance(r, dict) and r.get("full_name")]
    return [Event(platform="github", delivery=delivery, kind="uninstalled", repo=name, installation=installation,
                  actor=sender, data={"action": action, "everywhere": event == "installation"}) for name in names]


def _forged_check_run(payload: dict[str, Any], delivery: str) -> list[Event]:
    """A check run named like agentgate's status: judged like a status in agentgate's context, posted by the
    App that created it (agentgate's own optional check run is recognised as its own there)."""
    run = payload["check_run"]
    context = _Context(delivery, payload)
    if not context.repo:
        return []
    app = run.get("app") or {}
    slug = str(app.get("slug") or "")
    actor = User(f"{slug}[bot]", app.get("id"), bot=True) if slug else context.sender
    state = str(run.get("conclusion") or run.get("status") or "")
    return [Event(platform="github", delivery=delivery, kind="status", repo=context.repo,
                  installation=context.installation, actor=actor, subject=0,
                  data={"sha": run.get("head_sha"), "context": run.get("name"), "state": state,
                        "description": str((run.get("output") or {}).get("title") or "")[:200],
                        "check_run": True},
                  default_branch=context.default_branch)]


def _user(raw: dict[str, Any] | None, via_app: dict[str, Any] | None = None) -> dict[str, Any] | None:
    user = github_user(raw, via_app)
    return user.to_dict() if user else None


def _body(text: Any) -> str:
    return str(text or "")[: MAX_BODY_CHARS + 1]  # one more: the rule knows it was cut


# Actions that change what a pull request's verdict depends on: its head, its base (a retarget is an
# `edited`), title and body (rules and task references read them), draft state; `closed` lets the
# status of a commit shared with other pull requests drop this one.
_PR_ACTIONS = {"opened", "synchronize", "reopened", "ready_for_review", "converted_to_draft", "edited", "closed"}


@parser("pull_request")
def _pull_request(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    pr = payload["pull_request"]
    number = pr.get("number", payload.get("number"))
    if action == "synchronize" and ctx.sender is not None and isinstance(number, int):
        # Who pushed is recorded first (commits may name anyone as their author; the push cannot),
        # then the PR is evaluated.
        return [ctx.event("pushed", number, head_sha=(pr.get("head") or {}).get("sha"))]
    if action in _PR_ACTIONS:
        events = ctx.evaluate(number, f"pull_request.{action}", (pr.get("head") or {}).get("sha"))
        if action == "closed":
            # A pull request can be an agent's task too: closing or merging it revokes its tokens.
            events.append(ctx.event("task", number, action="closed", is_pull_request=True))
        return events
    if action in ("labeled", "unlabeled"):
        # The label handler re-evaluates too: rules read labels, and a bot's trigger label is a chain.
        return [ctx.event("label", number, action=action, label=(payload.get("label") or {}).get("name"),
                          at=pr.get("updated_at") or "")]
    if action == "assigned":
        return [ctx.event("assigned", number, assignee=_user(payload.get("assignee")), is_pull_request=True)]
    return []


@parser("pull_request_review")
def _pull_request_review(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action not in ("submitted", "dismissed", "edited"):
        return []
    number = payload["pull_request"].get("number")
    review = payload.get("review") or {}
    head = (payload["pull_request"].get("head") or {}).get("sha")
    events = ctx.evaluate(number, f"pull_request_review.{action}", head) if action != "edited" else []
    if action == "dismissed" and isinstance(number, int):
        # Dismissing someone's review (a change request that blocks) rewrites a human's judgement.
        events.append(ctx.event("review_dismissed", number, review_id=review.get("id"),
                                author=_user(review.get("user"))))
    if action in ("submitted", "edited") and isinstance(number, int):
        # Bors and Prow act on review bodies too (`bors r+`, `/lgtm`): judged like comments, an edit
        # included; an edit by anyone but its author is tampering, whatever it now says.
        events.append(ctx.event(
            "comment", number, action="created" if action == "submitted" else "edited", is_pull_request=True,
            comment_id=review.get("id"), body=_body(review.get("body")), author=_user(review.get("user")),
            created_at=review.get("submitted_at") or "", edited_at=payload.get("review", {}).get("updated_at", ""),
            source="review", mentions=[]))
    return events


def _comment(action: str, ctx: _Context, number: int, is_pull_request: bool, comment: dict[str, Any],
             kind: str) -> list[Event]:
    if action not in ("created", "edited", "deleted"):
        return []
    body = _body(comment.get("body"))
    return [ctx.event("comment", number, action=action, is_pull_request=is_pull_request,
                      comment_id=comment.get("id"), body=body,
                      author=_user(comment.get("user"), comment.get("performed_via_github_app")),
                      created_at=comment.get("created_at") or "", edited_at=comment.get("updated_at") or "",
                      source=kind, mentions=[u.to_dict() for u in mentioned_users(body)])]


@parser("issue_comment")
def _issue_comment(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    issue = payload["issue"]
    return _comment(action, ctx, int(issue["number"]), bool(issue.get("pull_request")), payload["comment"],
                    "comment")


@parser("pull_request_review_comment")
def _review_comment(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    return _comment(action, ctx, int(payload["pull_request"]["number"]), True, payload["comment"],
                    "review_comment")


@parser("issues")
def _issues(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    issue = payload["issue"]
    number = int(issue["number"])
    if action == "assigned":
        # Assigning an issue to an agent is how a human sets it on a task: remember who did.
        return [ctx.event("assigned", number, assignee=_user(payload.get("assignee")),
                          is_pull_request=bool(issue.get("pull_request")))]
    # Approving (or un-approving) a task by label, or closing it, changes the verdict of the PRs that
    # resolve it.
    if action in ("labeled", "unlabeled", "closed", "reopened") and not issue.get("pull_request"):
        label = {"label": (payload.get("label") or {}).get("name")} if action in ("labeled", "unlabeled") else {}
        return [ctx.event("task", number, action=action, **label)]
    if action in ("deleted", "transferred") and not issue.get("pull_request"):
        # Gone from this repository: its agent tokens are revoked like a closed task's.
        return [ctx.event("task", number, action="closed")]
    return []


@parser("workflow_run")
def _workflow_run(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action != "requested":
        return []  # judged once, when it was requested
    run = payload["workflow_run"]
    return [ctx.event("workflow_run", 0, run_id=int(run["id"]), name=run.get("name") or "",
                      path=run.get("path") or "", event=run.get("event") or "", head_sha=run.get("head_sha"),
                      head_branch=run.get("head_branch"), triggering_actor=_user(run.get("triggering_actor")),
                      run_actor=_user(run.get("actor")),
                      pull_numbers=[int(p["number"]) for p in run.get("pull_requests") or [] if "number" in p])]


@parser("workflow_job")
def _workflow_job(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    # A job belongs to a run, judged once at `workflow_run.requested` (who triggered it, which event);
    # a job adds no new actor, so a queued job per CI job would only cost work.
    return []


def _checks(action: str, subject: dict[str, Any], ctx: _Context, name: str) -> list[Event]:
    events: list[Event] = []
    for pr in subject.get("pull_requests") or []:
        events += ctx.evaluate(pr.get("number"), f"{name}.{action}")
    return events


@parser("check_suite")
def _check_suite(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action not in ("requested", "rerequested"):
        return []
    return _checks(action, payload["check_suite"], ctx, "check_suite")


@parser("check_run")
def _check_run(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action not in ("rerequested", "requested_action"):
        return []
    return _checks(action, payload["check_run"], ctx, "check_run")


@parser("push")
def _push(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    ref = str(payload.get("ref") or "")
    if payload.get("deleted") or not ref.startswith("refs/heads/"):
        return []  # tags are judged through the workflow runs they start
    commits = payload.get("commits") or []
    return [ctx.event("push", 0, ref=ref.removeprefix("refs/heads/"),
                      after=payload.get("after"), before=payload.get("before"), forced=bool(payload.get("forced")),
                      pusher=(payload.get("pusher") or {}).get("name"),
                      commits=[{"id": c.get("id"), "message": str(c.get("message") or "")[:1024],
                                "author": (c.get("author") or {}).get("username")}
                               for c in commits[:MAX_PUSH_COMMITS]],
                      policy_changed=_touches_policy(commits))]


def _touches_policy(commits: list[dict[str, Any]]) -> bool:
    """Whether a push changes `.agentgate.yml` (GitHub lists at most 20 commits' files: unknown counts)."""
    if len(commits) >= 20:
        return True
    return any(POLICY_FILE in (c.get(k) or []) for c in commits for k in ("added", "modified", "removed"))


@parser("deployment_protection_rule")
def _deployment_protection_rule(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action != "requested":
        return []
    deployment = payload.get("deployment") or {}
    # We never call URLs from payloads: the run id is read from the callback URL, and answered through
    # the configured API.
    match = _CALLBACK_RUN.search(str(payload.get("deployment_callback_url") or ""))
    return [ctx.event("deployment", 0, environment=payload.get("environment"), event=payload.get("event"),
                      sha=payload.get("sha") or deployment.get("sha"), ref=payload.get("ref") or deployment.get("ref"),
                      run_id=int(match.group(1)) if match else None,
                      creator=_user(deployment.get("creator"), deployment.get("performed_via_github_app")),
                      pull_numbers=[int(p["number"]) for p in payload.get("pull_requests") or [] if "number" in p])]


_MERGE_GROUP_PR = re.compile(r"/pr-(\d+)-[0-9a-f]{7,40}$")


@parser("merge_group")
def _merge_group(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    if action != "checks_requested":
        return []
    group = payload["merge_group"]
    head_ref = str(group.get("head_ref") or "")
    # GitHub names the group's newest PR in its ref (gh-readonly-queue/<base>/pr-<n>-<sha>); the PRs
    # ahead of it were checked in their own groups. The commit message is free text: not trusted.
    return [ctx.event("merge_group", 0, head_sha=group["head_sha"], head_ref=head_ref,
                      base_ref=group.get("base_ref") or "",
                      pull_numbers=[int(n) for n in _MERGE_GROUP_PR.findall(head_ref)])]


@parser("status")
def _status(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    return [ctx.event("status", 0, sha=payload.get("sha"), context=payload.get("context"),
                      state=payload.get("state"), description=str(payload.get("description") or "")[:200])]


# ---- the audit log's view of a delivery

def audit_entry(event: str, payload: dict[str, Any], delivery: str, now: datetime) -> AuditEntry:
    """Who did what, from a verified GitHub payload, with the actor's kind as the platform tells it."""
    sender = payload.get("sender") or {}
    comment = payload.get("comment") or {}
    via = comment.get("performed_via_github_app") or (payload.get("deployment") or {}).get("performed_via_github_app")
    actor = classify(github_user(sender, via)) if sender else None
    return AuditEntry(
        at=now.astimezone(UTC).isoformat(timespec="milliseconds"),
        platform="github", delivery=delivery, event=event, action=str(payload.get("action") or ""),
        repo=str((payload.get("repository") or {}).get("full_name") or ""),
        actor=actor.login if actor else "", actor_kind=actor.kind.value if actor else "",
        via_app=actor.via_app or "" if actor else "", target=_target(event, payload),
        detail=_detail(event, payload)[:SNIPPET],
    )


def _target(event: str, payload: dict[str, Any]) -> str:
    for name in ("pull_request", "issue"):
        if isinstance(payload.get(name), dict) and payload[name].get("number") is not None:
            return f"#{payload[name]['number']}"
    if event == "push":
        return str(payload.get("ref") or "")
    if event == "deployment_protection_rule":
        return str(payload.get("environment") or "")
    for name in ("workflow_run", "merge_group", "check_suite"):
        if isinstance(payload.get(name), dict):
            return str(payload[name].get("head_sha") or "")
    return str(payload.get("sha") or "")


def _detail(event: str, payload: dict[str, Any]) -> str:
    if isinstance(payload.get("label"), dict):
        return f"label {payload['label'].get('name', '')}"
    if isinstance(payload.get("review"), dict):
        return f"review {payload['review'].get('state', '')}"
    if isinstance(payload.get("comment"), dict):
        return " ".join(str(payload["comment"].get("body") or "").split())
    if isinstance(payload.get("workflow_run"), dict):
        run = payload["workflow_run"]
        return f"workflow {run.get('name', '')} via {run.get('event', '')}"
    if event == "status":
        return f"{payload.get('context', '')}: {payload.get('state', '')}"
    if event == "push":
        return f"{len(payload.get('commits') or [])} commit(s){' forced' if payload.get('forced') else ''}"
    return ""


__all__ = ["MAX_BODY_CHARS", "SUBSCRIBED", "app_name", "audit_entry", "parse"]
