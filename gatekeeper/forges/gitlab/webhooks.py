"""GitLab deliveries as the port's `Event`s, with the kinds and `data` fields the GitHub parser produces
for the equivalent events (see `worker/handlers.py`). Pure: the receiver calls it on the verified
payload and enqueues the result, so nothing here may touch the network.

GitLab tells what happened by `object_kind` and `object_attributes.action`, and what changed by
`changes.<field>.previous/current`; merge requests are numbered by `iid` (`subject`), and a project
by `path_with_namespace` (`repo`) and `id` (`installation`: GitLab has no installations, and the
project id is what a job needs to find the project again). `[]` means accepted and ignored."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from gatekeeper.core.facts import User
from gatekeeper.core.identity import classify
from gatekeeper.forges.gitlab.users import gitlab_user, mentioned_users, push_user
from gatekeeper.forges.port import Event
from gatekeeper.state.audit import SNIPPET, AuditEntry

PLATFORM = "gitlab"
POLICY_FILE = ".agentgate.yml"  # parsing stays import-light: the same name as gatekeeper.policy.POLICY_PATH
MAX_BODY_CHARS = 65536  # as for GitHub: commands are judged on the first 64 KB
MAX_PUSH_COMMITS = 50
PUSH_COMMITS_LISTED = 20  # GitLab lists at most the newest 20 commits of a push
ZERO_SHA = "0" * 40
DEFAULT_CI_CONFIG = ".gitlab-ci.yml"

# The hooks agentgate's webhook subscribes to (`X-Gitlab-Event`), as set up on a project or group.
SUBSCRIBED = ("Merge Request Hook", "Note Hook", "Confidential Note Hook", "Issue Hook", "Confidential Issue Hook",
              "Pipeline Hook", "Push Hook")

Parser = Callable[[str, dict[str, Any], "_Context"], list[Event]]
_PARSERS: dict[str, Parser] = {}


def utc(value: Any) -> str:
    """A GitLab timestamp in the one form findings, reviews and confirmations compare as strings:
    ISO 8601, UTC, seconds, `Z` (GitHub's). GitLab writes `2015-05-17 18:21:36 UTC` in webhooks and
    `2016-06-08T21:20:42.470Z` or `...+02:00` in the API. Empty when there is none or it is unreadable."""
    text = str(value or "").strip()
    if not text:
        return ""
    if text.endswith(" UTC"):
        text = text[:-4].replace(" ", "T") + "+00:00"
    elif text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"\s+(?=[+-]\d{2}:?\d{2}$)", "", text.replace(" ", "T", 1))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Context:
    """What every event of one delivery shares."""

    def __init__(self, delivery: str, payload: dict[str, Any]):
        project = payload.get("project") or {}
        self.delivery = delivery
        self.repo = str(project.get("path_with_namespace") or "")
        self.default_branch = project.get("default_branch")
        pid = project.get("id", payload.get("project_id"))
        self.installation = pid if isinstance(pid, int) else None
        self.sender = gitlab_user(payload.get("user")) if isinstance(payload.get("user"), dict) else None
        self.status_context = "agentgate"

    def event(self, kind: str, subject: Any = 0, **data: Any) -> Event:
        return Event(platform=PLATFORM, delivery=self.delivery, kind=kind, repo=self.repo,
                     installation=self.installation, actor=self.sender, subject=int(subject or 0), data=data,
                     default_branch=self.default_branch)

    def evaluate(self, number: Any, trigger: str, head_sha: Any = None) -> list[Event]:
        if not isinstance(number, int):
            return []
        head = head_sha if isinstance(head_sha, str) and head_sha else None
        return [self.event("evaluate", number, trigger=trigger, head_sha=head)]


def parser(kind: str) -> Callable[[Parser], Parser]:
    def register(fn: Parser) -> Parser:
        _PARSERS[kind] = fn
        return fn

    return register


def parse(event: str, payload: dict[str, Any], delivery: str, status_context: str = "agentgate") -> list[Event]:
    """The events one GitLab delivery reports (`event` is the `X-Gitlab-Event` header; the payload's
    `object_kind` decides). Raises LookupError/TypeError/ValueError on a payload that does not have
    the documented shape (the receiver answers 400)."""
    if not isinstance(payload, dict):
        raise TypeError("payload is not an object")
    kind = str(payload.get("object_kind") or "")
    handler = _PARSERS.get(kind)
    if handler is None:
        return []
    context = _Context(delivery, payload)
    if not context.repo:
        return []
    context.status_context = status_context
    action = str((payload.get("object_attributes") or {}).get("action") or "")
    return handler(action, payload, context)


# ---- delivery ids ---------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9-]+")
_KEY = re.compile(r"[A-Za-z0-9-]{8,100}")


def delivery_id(headers: Mapping[str, str], payload: dict[str, Any]) -> str | None:
    """The id that is the same on every attempt of one delivery, GUID-like (it becomes job ids and
    store keys): `Idempotency-Key` (GitLab 17.4+), else `X-Gitlab-Event-UUID` with the object's kind,
    id and action (a status for pipelines, the new head for pushes). None when neither header is there."""
    key = str(_header(headers, "Idempotency-Key") or "").strip()
    if _KEY.fullmatch(key):
        return key
    event_uuid = str(_header(headers, "X-Gitlab-Event-UUID") or "").strip()
    if not event_uuid or not isinstance(payload, dict):
        return None
    kind = str(payload.get("object_kind") or payload.get("event_name") or "event")
    attrs = payload.get("object_attributes") or {}
    if kind in ("push", "tag_push"):
        object_id, action = payload.get("after") or payload.get("checkout_sha") or "", payload.get("ref") or ""
    elif kind == "pipeline":
        object_id, action = attrs.get("id") or "", attrs.get("status") or ""
    else:
        object_id, action = attrs.get("id") or "", attrs.get("action") or ""
    raw = "-".join(str(p) for p in (event_uuid, kind, object_id, action) if str(p))
    return _SAFE.sub("-", raw).strip("-")[:100].strip("-") or None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is None:
        lowered = name.lower()
        found = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return found


# ---- helpers --------------------------------------------------------------------------------------

def _user(raw: Any) -> dict[str, Any] | None:
    user = gitlab_user(raw) if isinstance(raw, dict) else None
    return user.to_dict() if user else None


def _changes(payload: dict[str, Any]) -> dict[str, Any]:
    found = payload.get("changes")
    return found if isinstance(found, dict) else {}


def _body(text: Any) -> str:
    return str(text or "")[: MAX_BODY_CHARS + 1]  # one more: the rule knows it was cut


def _titles(labels: Any) -> list[str]:
    return [str(label.get("title")) for label in labels or [] if isinstance(label, dict) and label.get("title")]


def _usernames(users: Any) -> dict[str, dict[str, Any]]:
    return {str(u.get("username")).lower(): u for u in users or [] if isinstance(u, dict) and u.get("username")}


def _label_events(ctx: _Context, number: int, changes: dict[str, Any], at: str,
                  only_added: bool = False) -> list[Event]:
    """One `label` event per label added or removed, judged as the delivery's user's act."""
    change = changes.get("labels")
    if not isinstance(change, dict):
        return []
    before, after = _titles(change.get("previous")), _titles(change.get("current"))
    events = [ctx.event("label", number, action="labeled", label=label, at=at)
              for label in after if label not in before]
    if not only_added:
        events += [ctx.event("label", number, action="unlabeled", label=label, at=at)
                   for label in before if label not in after]
    return events


def _assigned(ctx: _Context, number: int, changes: dict[str, Any], fallback: Any, is_pull_request: bool
              ) -> list[Event]:
    """One `assigned` event per account newly assigned (the delivery's user assigned them)."""
    change = changes.get("assignees")
    if isinstance(change, dict):
        before, after = _usernames(change.get("previous")), _usernames(change.get("current"))
    else:
        before, after = {}, _usernames(fallback)
    return [ctx.event("assigned", number, assignee=_user(raw), is_pull_request=is_pull_request)
            for name, raw in after.items() if name not in before]


# ---- merge requests -------------------------------------------------------------------------------

# Changes to what a merge request's verdict reads: its target (base), title and description (rules and
# task references read them), draft state; `state_id` covers closing and reopening sent as updates.
_VERDICT_FIELDS = ("target_branch", "draft", "work_in_progress", "title", "description", "state_id")
_EVALUATE_ACTIONS = ("open", "reopen", "close", "merge", "approved", "unapproved", "approval", "unapproval")


@parser("merge_request")
def _merge_request(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    mr = payload["object_attributes"]
    number = mr.get("iid")
    if not isinstance(number, int):
        raise ValueError("merge request without an iid")
    head = (mr.get("last_commit") or {}).get("id")
    changes = _changes(payload)
    at = utc((changes.get("updated_at") or {}).get("current") if isinstance(changes.get("updated_at"), dict)
             else None) or utc(mr.get("updated_at"))
    trigger = f"merge_request.{action or 'update'}"
    if action in ("open", "reopen"):
        # Labels and assignees set when opening come in the same delivery: a bot opening an MR with
        # `automerge` applies that label.
        return [*ctx.evaluate(number, trigger, head), *_label_events(ctx, number, changes, at, only_added=True),
                *_assigned(ctx, number, changes, payload.get("assignees"), True)]
    if action in ("close", "merge"):
        # A merge request can be an agent's task too: closing or merging it revokes its tokens.
        return [*ctx.evaluate(number, trigger, head), ctx.event("task", number, action="closed", is_pull_request=True)]
    if action in _EVALUATE_ACTIONS:
        return ctx.evaluate(number, trigger, head)
    if action != "update":
        return []
    events: list[Event] = []
    pushed = bool(mr.get("oldrev"))
    if pushed:
        # New commits: who pushed is recorded first (commits may name anyone), then the MR is evaluated.
        events += [ctx.event("pushed", number, head_sha=head)] if ctx.sender is not None \
            else ctx.evaluate(number, trigger, head)
    labels = changes.get("labels") if isinstance(changes.get("labels"), dict) else None
    # A push's delivery has been seen to list every label as new (`previous: []`): not a label change.
    if labels is not None and not (pushed and not _titles(labels.get("previous"))):
        events += _label_events(ctx, number, changes, at)
    if not pushed:
        events += _assigned(ctx, number, changes, [], True) if isinstance(changes.get("assignees"), dict) else []
        if any(name in changes for name in _VERDICT_FIELDS):
            events += ctx.evaluate(number, trigger, head)
    return events


# ---- notes ----------------------------------------------------------------------------------------

_NOTE_ACTIONS = {"create": "created", "update": "edited", "": "created"}  # no action before GitLab 16.11


@parser("note")
def _note(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    note = payload["object_attributes"]
    if note.get("system") or action not in _NOTE_ACTIONS:
        return []  # GitLab's own notes ("approved this merge request") are not anyone's words
    kind = note.get("noteable_type")
    if kind == "MergeRequest":
        number, is_pull_request = payload["merge_request"]["iid"], True
    elif kind == "Issue":
        number, is_pull_request = payload["issue"]["iid"], False
    else:
        return []  # commits and snippets carry no commands agentgate governs
    if not isinstance(number, int):
        raise ValueError("note on something without an iid")
    body = _body(note.get("note"))
    author = ctx.sender
    author_id = note.get("author_id")
    if isinstance(author_id, int) and (author is None or author.id != author_id):
        # Someone other than the note's author acted on it (an edit): its author is known by id only.
        author = User(login=f"user-{author_id}", id=author_id)
    created = utc(note.get("created_at"))
    return [ctx.event("comment", number, action=_NOTE_ACTIONS[action], is_pull_request=is_pull_request,
                      comment_id=note.get("id"), body=body, author=author.to_dict() if author else None,
                      created_at=created, edited_at=utc(note.get("updated_at")) or created,
                      source="review_comment" if note.get("type") == "DiffNote" or note.get("position") else "comment",
                      mentions=[u.to_dict() for u in mentioned_users(body)])]


# ---- issues: task context -------------------------------------------------------------------------

@parser("issue")
def _issue(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    issue = payload["object_attributes"]
    number = issue.get("iid")
    if not isinstance(number, int):
        raise ValueError("issue without an iid")
    changes = _changes(payload)
    # Assigning an issue to an agent is how a human sets it on a task: remember who did.
    events = _assigned(ctx, number, changes, payload.get("assignees") if action == "open" else [], False)
    if action == "close":
        events.append(ctx.event("task", number, action="closed"))
    elif action == "reopen":
        events.append(ctx.event("task", number, action="reopened"))
    labels = changes.get("labels")
    if isinstance(labels, dict) and action != "open":
        before, after = set(_titles(labels.get("previous"))), set(_titles(labels.get("current")))
        for added in sorted(after - before):
            events.append(ctx.event("task", number, action="labeled", label=added))
        for removed in sorted(before - after):
            # Each removed label by name: removing the one that approved the task revokes its agent tokens.
            events.append(ctx.event("task", number, action="unlabeled", label=removed))
    return events


# ---- pipelines ------------------------------------------------------------------------------------

# A pipeline is judged once, when it starts (GitLab reports every status change of it).
_STARTING = frozenset({"created", "waiting_for_resource", "preparing", "pending", "scheduled"})
_STATUS_STATES = {"success": "success", "failed": "failure", "canceled": "error", "canceling": "error",
                  "skipped": "error", "pending": "pending", "running": "pending", "created": "pending"}


# GitLab pipeline sources named as the policy's CI events (`chains.ci_events`) name the same runs.
CI_SOURCES = {"merge_request_event": "pull_request", "external_pull_request_event": "pull_request"}


@parser("pipeline")
def _pipeline(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    run = payload["object_attributes"]
    source, status = str(run.get("source") or ""), str(run.get("status") or "")
    if source == "external":
        # A pipeline of commit statuses posted through the API: only someone posting agentgate's own
        # status matters (like GitHub's `status` event); everyone else's statuses are other CI systems'.
        return [_as(ctx.event("status", 0, sha=run.get("sha"), context=build.get("name"),
                              state=_STATUS_STATES.get(str(build.get("status") or ""), "pending"), description=""),
                    gitlab_user(build.get("user")) or ctx.sender)
                for build in payload.get("builds") or []
                if isinstance(build, dict) and build.get("name") == ctx.status_context][:5]
    if status not in _STARTING:
        return []
    run_id = run.get("id")
    if not isinstance(run_id, int):
        raise ValueError("pipeline without an id")
    project = payload.get("project") or {}
    mr = payload.get("merge_request") or {}
    # A merge request pipeline is the merge request's own CI, as GitHub's `pull_request` runs are: it is
    # judged like one (a chain only when the merge request changed the CI configuration).
    event = CI_SOURCES.get(source, source)
    return [ctx.event("workflow_run", 0, run_id=run_id, name=str(run.get("name") or ""),
                      path=str(project.get("ci_config_path") or DEFAULT_CI_CONFIG), event=event,
                      head_sha=run.get("sha"), head_branch=run.get("ref"),
                      triggering_actor=_user(payload.get("user")), run_actor=_user(payload.get("user")),
                      pull_numbers=[int(mr["iid"])] if isinstance(mr.get("iid"), int) else [])]


def _as(event: Event, actor: User | None) -> Event:
    return Event(event.platform, event.delivery, event.kind, event.repo, event.installation, actor, event.subject,
                 event.data, event.default_branch)


# ---- pushes ---------------------------------------------------------------------------------------

@parser("push")
def _push(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    ref = str(payload.get("ref") or "")
    after = payload.get("after")
    if after == ZERO_SHA or not ref.startswith("refs/heads/"):
        return []  # a deleted branch; tags come as Tag Push Hooks and are judged through their pipelines
    commits = payload.get("commits") or []
    pusher = push_user(payload)
    event = ctx.event("push", 0, ref=ref.removeprefix("refs/heads/"), after=after, before=payload.get("before"),
                      forced=False,  # GitLab's push hook does not say; nothing here relies on it
                      pusher=payload.get("user_username"),
                      commits=[{"id": c.get("id"), "message": str(c.get("message") or "")[:1024],
                                "author": (c.get("author") or {}).get("name")}
                               for c in commits[:MAX_PUSH_COMMITS] if isinstance(c, dict)],
                      policy_changed=_touches_policy(commits, payload.get("total_commits_count")))
    return [_as(event, pusher)]


def _touches_policy(commits: list[Any], total: Any) -> bool:
    """Whether a push changes `.agentgate.yml` (GitLab lists at most 20 commits: unknown counts)."""
    listed = [c for c in commits if isinstance(c, dict)]
    if len(listed) >= PUSH_COMMITS_LISTED or (isinstance(total, int) and total > len(listed)):
        return True
    return any(POLICY_FILE in (c.get(k) or []) for c in listed for k in ("added", "modified", "removed"))


@parser("tag_push")
def _tag_push(action: str, payload: dict[str, Any], ctx: _Context) -> list[Event]:
    return []  # a tag push is judged through the pipeline it starts


# ---- the audit log's view of a delivery -----------------------------------------------------------

def audit_entry(event: str, payload: dict[str, Any], delivery: str, now: datetime) -> AuditEntry:
    """Who did what, from a verified GitLab payload, with the actor's kind as the platform tells it."""
    kind = str(payload.get("object_kind") or "")
    user = push_user(payload) if kind in ("push", "tag_push") else gitlab_user(payload.get("user"))
    actor = classify(user) if user else None
    attrs = payload.get("object_attributes") or {}
    return AuditEntry(
        at=now.astimezone(UTC).isoformat(timespec="milliseconds"), platform=PLATFORM, delivery=delivery,
        event=kind or event, action=str(attrs.get("action") or attrs.get("status") or ""),
        repo=str((payload.get("project") or {}).get("path_with_namespace") or ""),
        actor=actor.login if actor else "", actor_kind=actor.kind.value if actor else "", via_app="",
        target=_target(kind, payload), detail=_detail(kind, payload)[:SNIPPET])


def _target(kind: str, payload: dict[str, Any]) -> str:
    attrs = payload.get("object_attributes") or {}
    if kind == "merge_request":
        return f"!{attrs.get('iid', '')}"
    if kind == "issue":
        return f"#{attrs.get('iid', '')}"
    if kind == "note":
        if isinstance(payload.get("merge_request"), dict):
            return f"!{payload['merge_request'].get('iid', '')}"
        if isinstance(payload.get("issue"), dict):
            return f"#{payload['issue'].get('iid', '')}"
        return str(attrs.get("commit_id") or "")
    if kind in ("push", "tag_push"):
        return str(payload.get("ref") or "")
    return str(attrs.get("sha") or "")


def _detail(kind: str, payload: dict[str, Any]) -> str:
    attrs = payload.get("object_attributes") or {}
    changes = _changes(payload)
    labels = changes.get("labels") if isinstance(changes.get("labels"), dict) else None
    if kind == "note":
        return " ".join(str(attrs.get("note") or "").split())
    if labels is not None:
        before, after = _titles(labels.get("previous")), _titles(labels.get("current"))
        added, removed = [t for t in after if t not in before], [t for t in before if t not in after]
        return " ".join([*(f"label +{t}" for t in added), *(f"label -{t}" for t in removed)])
    if kind == "pipeline":
        return f"pipeline {attrs.get('name') or attrs.get('id', '')} via {attrs.get('source', '')}"
    if kind in ("push", "tag_push"):
        return f"{payload.get('total_commits_count', len(payload.get('commits') or []))} commit(s)"
    return ""


__all__ = ["MAX_BODY_CHARS", "SUBSCRIBED", "audit_entry", "delivery_id", "parse", "utc"]
