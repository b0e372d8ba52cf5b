"""The fake GitLab's REST API v4: the routes agentgate's GitLab adapter uses, answered the way GitLab's
API documentation describes them (paths, parameters, shapes, status codes, error bodies, pagination
headers), from `FakeGitLabState`.

Routing looks at the path as sent: GitLab addresses a project by its URL-encoded path
(`/projects/acme%2Fwidgets`) and a file by its URL-encoded path, so `%2F` must not be decoded before
the path is split into segments (a WSGI server's PATH_INFO is decoded; the raw request URI is not)."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Flask, Response, request

from .state import (
    ACCESS_LEVELS,
    DEVELOPER,
    MAINTAINER,
    MAX_TOKEN_LIFETIME_DAYS,
    REPORTER,
    RESOURCE_BOT_SCOPES,
    ROTATED_TOKEN_DAYS,
    Call,
    FakeGitLabState,
    Project,
    iso,
)

API = "/api/v4"


class GitLabError(Exception):
    def __init__(self, status: int, message: str, key: str = "message"):
        super().__init__(message)
        self.status, self.message, self.key = status, message, key


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    status: int = 200


ROUTES: list[Route] = []


def route(method: str, template: str, status: int = 200) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`template` as GitLab's docs write it (`/projects/:id/merge_requests/:merge_request_iid`)."""
    regex = re.sub(r":(\w+)", lambda m: rf"(?P<{m.group(1)}>[^/]+)", template)

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        ROUTES.append(Route(method, re.compile(f"^{regex}$"), fn, status))
        return fn

    return deco


class Ctx:
    """One request: the state, the token's user, the query and body, the project if the path names one."""

    def __init__(self, state: FakeGitLabState, user: str, query: dict[str, str], body: dict[str, Any],
                 token: str = ""):
        self.state, self.user, self.query, self.body, self.token = state, user, query, body, token
        self.project: Project | None = None
        self.headers: dict[str, str] = {}

    def param(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, self.query.get(name, default))

    def need(self, level: int) -> None:
        assert self.project is not None
        if self.project.members.get(self.user, 0) < level:
            raise GitLabError(403, "403 Forbidden")

    def page(self, items: list[Any]) -> list[Any]:
        """Offset pagination with GitLab's headers (`X-Next-Page` empty on the last page)."""
        per_page = max(1, min(int(self.query.get("per_page") or 20), 100))
        page = max(1, int(self.query.get("page") or 1))
        total_pages = max(1, -(-len(items) // per_page))
        self.headers.update({"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                             "X-Total-Pages": str(total_pages),
                             "X-Next-Page": str(page + 1) if page < total_pages else "",
                             "X-Prev-Page": str(page - 1) if page > 1 else ""})
        return items[(page - 1) * per_page: page * per_page]


def _project(ctx: Ctx, ident: str) -> Project:
    project = ctx.state.project_by_id(urllib.parse.unquote(ident))
    if project is None or ctx.user not in project.members:
        raise GitLabError(404, "404 Project Not Found")  # private projects are hidden from non-members
    ctx.project = project
    return project


def _mr(project: Project, iid: str) -> dict[str, Any]:
    found = project.mrs.get(int(iid)) if iid.isdigit() else None
    if found is None:
        raise GitLabError(404, "404 Not found")
    return found


# ---- users ----------------------------------------------------------------------------------------

@route("GET", "/user")
def current_user(ctx: Ctx) -> Any:
    return {**ctx.state.users[ctx.user], "is_admin": False}


@route("GET", "/users")
def list_users(ctx: Ctx) -> Any:
    """For non-admins: `search` matches name or username partially, a public email exactly."""
    search = str(ctx.query.get("search") or "").lower()
    username = str(ctx.query.get("username") or "").lower()
    found = [ctx.state.user_ref(u["username"]) for u in ctx.state.users.values()
             if (username and u["username"].lower() == username)
             or (search and (search in u["username"].lower() or search in u["name"].lower()
                             or search == str(u.get("public_email") or "").lower()))]
    return ctx.page(found)


@route("GET", "/users/:id")
def single_user(ctx: Ctx, id: str) -> Any:
    user = next((u for u in ctx.state.users.values() if str(u["id"]) == id), None)
    if user is None:
        raise GitLabError(404, "404 User Not Found")
    return {"public_email": None, **user, "created_at": "2024-01-01T00:00:00.000Z", "bio": ""}


# ---- projects -------------------------------------------------------------------------------------

@route("GET", "/projects/:id")
def single_project(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    return {"id": project.id, "name": project.path.rsplit("/", 1)[-1], "path": project.path.rsplit("/", 1)[-1],
            "path_with_namespace": project.path, "default_branch": project.default_branch,
            "ci_config_path": project.ci_config_path, "visibility": "private",
            "web_url": f"http://gitlab.example/{project.path}"}


@route("GET", "/projects/:id/members/all")
def members_all(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    query = str(ctx.query.get("query") or "").lower()
    found = [{**ctx.state.user_ref(name), "access_level": level, "expires_at": None, "membership_state": "active"}
             for name, level in project.members.items()
             if not query or query in name.lower() or query in ctx.state.users[name]["name"].lower()]
    return ctx.page(found)


# ---- repository -----------------------------------------------------------------------------------

@route("GET", "/projects/:id/repository/branches/:branch")
def single_branch(ctx: Ctx, id: str, branch: str) -> Any:
    project = _project(ctx, id)
    name = urllib.parse.unquote(branch)
    if name not in project.branches:
        raise GitLabError(404, "404 Branch Not Found")
    sha = project.branches[name]
    return {"name": name, "merged": False, "protected": name == project.default_branch,
            "default": name == project.default_branch, "developers_can_push": False, "developers_can_merge": False,
            "can_push": True, "web_url": f"http://gitlab.example/{project.path}/-/tree/{name}",
            "commit": project.commits.get(sha) or {"id": sha, "short_id": sha[:8]}}


def _ref_sha(project: Project, ref: str) -> str | None:
    if ref in project.branches:
        return project.branches[ref]
    if re.fullmatch(r"[0-9a-f]{7,40}", ref):
        return ref
    return None


@route("GET", "/projects/:id/repository/files/:file_path")
def get_file(ctx: Ctx, id: str, file_path: str) -> Any:
    project = _project(ctx, id)
    path = urllib.parse.unquote(file_path)
    ref = str(ctx.query.get("ref") or "")
    if not ref:
        raise GitLabError(400, "ref is missing", key="error")
    sha = _ref_sha(project, ref)
    if sha is None:
        raise GitLabError(404, "404 Commit Not Found")
    # A file is found at the ref as given, or at the commit the ref points to.
    refs = [ref, sha, *(branch for branch, head in project.branches.items() if head == sha)]
    text = next((project.files[r][path] for r in refs if path in project.files.get(r, {})), None)
    if text is None:
        raise GitLabError(404, "404 File Not Found")
    raw = text.encode()
    return {"file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(raw), "encoding": "base64",
            "content": base64.b64encode(raw).decode(), "content_sha256": "", "ref": ref, "blob_id": "",
            "commit_id": sha, "last_commit_id": sha, "execute_filemode": False}


@route("GET", "/projects/:id/repository/commits/:sha")
def single_commit(ctx: Ctx, id: str, sha: str) -> Any:
    project = _project(ctx, id)
    commit = project.commits.get(sha)
    if commit is None:
        raise GitLabError(404, "404 Commit Not Found")
    return commit


@route("GET", "/projects/:id/repository/commits/:sha/merge_requests")
def commit_merge_requests(ctx: Ctx, id: str, sha: str) -> Any:
    project = _project(ctx, id)
    if sha not in project.commits:
        raise GitLabError(404, "404 Commit Not Found")
    return [mr for iid, mr in sorted(project.mrs.items())
            if sha in project.mr_commits.get(iid, []) or mr.get("merge_commit_sha") == sha]


@route("GET", "/projects/:id/repository/commits/:sha/statuses")
def commit_statuses(ctx: Ctx, id: str, sha: str) -> Any:
    project = _project(ctx, id)
    name = ctx.query.get("name")
    found = [s for s in project.statuses if s["sha"] == sha and (not name or s["name"] == name)]
    if str(ctx.query.get("all") or "").lower() != "true":
        latest: dict[str, dict[str, Any]] = {}
        for status in found:
            latest[status["name"]] = status
        found = list(latest.values())
    return ctx.page(list(reversed(found)))


# ---- commit statuses: GitLab's state machine -------------------------------------------------------

# What each requested state does to an existing pending or running status (GitLab's `enqueue!`,
# `run!`, `success!`, `drop!`, `cancel!`), and the event named in its refusal.
_TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "pending": ({"created"}, "enqueue"),
    "running": ({"created", "pending"}, "run"),
    "success": ({"created", "pending", "running"}, "success"),
    "failed": ({"created", "pending", "running"}, "drop"),
    "canceled": ({"created", "pending", "running"}, "cancel"),
}


@route("POST", "/projects/:id/statuses/:sha", status=201)
def post_status(ctx: Ctx, id: str, sha: str) -> Any:
    project = _project(ctx, id)
    ctx.need(DEVELOPER)
    state = str(ctx.param("state") or "")
    if state not in _TRANSITIONS:
        raise GitLabError(400, "state does not have a valid value", key="error")
    if sha not in project.commits:
        raise GitLabError(404, "404 Commit Not Found")
    name = str(ctx.param("name") or ctx.param("context") or "default")
    ref = ctx.param("ref") or next((b for b, s in project.branches.items() if s == sha), None)
    # GitLab updates the newest pending or running status of this name and ref; any other is new.
    current = next((s for s in reversed(project.statuses)
                    if s["sha"] == sha and s["name"] == name and s["ref"] == ref
                    and s["status"] in ("pending", "running")), None)
    at = iso(ctx.state.now())
    if current is not None:
        allowed, verb = _TRANSITIONS[state]
        if current["status"] not in allowed:
            raise GitLabError(400, f"Cannot transition status via :{verb} from :{current['status']} "
                                   f"(Reason(s): Status cannot transition via \"{verb}\")")
        status = current
    else:
        status = {"id": ctx.state.next_id(), "sha": sha, "ref": ref, "name": name, "created_at": at,
                  "started_at": None, "finished_at": None, "allow_failure": False, "coverage": None,
                  "pipeline_id": ctx.state.next_id(), "author": ctx.state.user_ref(ctx.user)}
        project.statuses.append(status)
    status.update(status=state, target_url=ctx.param("target_url"), description=ctx.param("description"))
    if state in ("success", "failed", "canceled"):
        status["finished_at"] = at
    return status


# ---- merge requests -------------------------------------------------------------------------------

@route("GET", "/projects/:id/merge_requests")
def list_merge_requests(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    state = ctx.query.get("state") or "all"
    found = [mr for mr in project.mrs.values() if state == "all" or mr["state"] == state]
    descending = (ctx.query.get("sort") or "desc") == "desc"
    key = ctx.query.get("order_by") or "created_at"
    found.sort(key=lambda mr: (mr.get(key) or "", mr["iid"]), reverse=descending)
    return ctx.page(found)


@route("GET", "/projects/:id/merge_requests/:merge_request_iid")
def single_merge_request(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    return _mr(_project(ctx, id), merge_request_iid)


@route("PUT", "/projects/:id/merge_requests/:merge_request_iid")
def update_merge_request(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    ctx.need(DEVELOPER)
    for label in _labels(ctx.param("remove_labels")):
        if label in mr["labels"]:
            mr["labels"].remove(label)
            ctx.state._label_event(project, "merge_requests", mr["iid"], label, "remove", ctx.user)
    for label in _labels(ctx.param("add_labels")):
        if label not in mr["labels"]:
            mr["labels"].append(label)
            ctx.state._label_event(project, "merge_requests", mr["iid"], label, "add", ctx.user)
    for name in ("title", "description", "target_branch"):
        if ctx.param(name) is not None:
            mr[name] = ctx.param(name)
    mr["updated_at"] = iso(ctx.state.now())
    return mr


def _labels(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/diffs")
def merge_request_diffs(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    return ctx.page(list(project.diffs.get(mr["iid"], [])))


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/changes")
def merge_request_changes(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    return {**mr, "changes": list(project.diffs.get(mr["iid"], [])), "overflow": False}


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/commits")
def merge_request_commits(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    # Newest first, as GitLab lists a merge request's commits.
    return ctx.page([project.commits[sha] for sha in reversed(project.mr_commits.get(mr["iid"], []))])


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/versions")
def merge_request_versions(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    return ctx.page(list(reversed(project.versions.get(mr["iid"], []))))  # newest first


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/approvals")
def merge_request_approvals(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    entries = project.approvals.get(mr["iid"], [])
    approved_by = [e if ctx.state.approvals_with_time else {"user": e["user"]} for e in entries]
    return {"id": mr["id"], "iid": mr["iid"], "project_id": project.id, "title": mr["title"],
            "description": mr["description"], "state": mr["state"], "created_at": mr["created_at"],
            "updated_at": mr["updated_at"], "merge_status": mr["merge_status"], "approved": bool(entries),
            "approvals_required": 0, "approvals_left": 0, "require_password_to_approve": False,
            "approved_by": approved_by, "suggested_approvers": [], "approvers": [], "approver_groups": [],
            "user_has_approved": any(e["user"]["username"] == ctx.user for e in entries),
            "user_can_approve": True, "approval_rules_left": [], "has_approval_rules": False,
            "merge_request_approvers_available": False, "multiple_approval_rules_available": False}


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/reviewers")
def merge_request_reviewers(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    return list(project.reviewers.get(mr["iid"], []))


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/closes_issues")
def merge_request_closes_issues(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    return ctx.page([project.issues[i] for i in project.closes.get(mr["iid"], []) if i in project.issues])


@route("POST", "/projects/:id/merge_requests/:merge_request_iid/status_check_responses", status=201)
def status_check_response(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project = _project(ctx, id)
    mr = _mr(project, merge_request_iid)
    check_id, status = ctx.param("external_status_check_id"), ctx.param("status")
    check = next((c for c in project.status_checks if str(c["id"]) == str(check_id)), None)
    if check is None:
        raise GitLabError(404, "404 Not found")
    if status not in ("passed", "failed", "pending"):
        raise GitLabError(400, "status does not have a valid value", key="error")
    if ctx.param("sha") != mr["sha"]:
        raise GitLabError(409, "SHA does not match HEAD of source branch")
    response = {"id": ctx.state.next_id(), "merge_request": {"id": mr["id"], "iid": mr["iid"]},
                "external_status_check": {"id": check["id"], "name": check["name"]}, "status": status,
                "sha": mr["sha"]}
    project.status_check_responses.append(response)
    return response


@route("GET", "/projects/:id/external_status_checks")
def external_status_checks(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    return ctx.page(list(project.status_checks))


# ---- notes and history ----------------------------------------------------------------------------

def _noteable(ctx: Ctx, id: str, noun: str, iid: str) -> tuple[Project, int]:
    project = _project(ctx, id)
    if noun == "merge_requests":
        return project, int(_mr(project, iid)["iid"])
    if not iid.isdigit() or int(iid) not in project.issues:
        raise GitLabError(404, "404 Issue Not Found")
    return project, int(iid)


def _list_notes(ctx: Ctx, id: str, noun: str, iid: str) -> Any:
    project, number = _noteable(ctx, id, noun, iid)
    notes = list(project.notes.get((noun, number), []))
    key = ctx.query.get("order_by") or "created_at"
    notes.sort(key=lambda n: (n.get(key) or "", n["id"]), reverse=(ctx.query.get("sort") or "desc") == "desc")
    return ctx.page(notes)


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/notes")
def merge_request_notes(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    return _list_notes(ctx, id, "merge_requests", merge_request_iid)


@route("GET", "/projects/:id/issues/:issue_iid/notes")
def issue_notes(ctx: Ctx, id: str, issue_iid: str) -> Any:
    return _list_notes(ctx, id, "issues", issue_iid)


@route("POST", "/projects/:id/merge_requests/:merge_request_iid/notes", status=201)
def create_merge_request_note(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project, number = _noteable(ctx, id, "merge_requests", merge_request_iid)
    body = ctx.param("body")
    if not body:
        raise GitLabError(400, "body is missing", key="error")
    return ctx.state._note(project, "merge_requests", number, ctx.user, str(body))


@route("PUT", "/projects/:id/merge_requests/:merge_request_iid/notes/:note_id")
def update_merge_request_note(ctx: Ctx, id: str, merge_request_iid: str, note_id: str) -> Any:
    project, number = _noteable(ctx, id, "merge_requests", merge_request_iid)
    note = next((n for n in project.notes.get(("merge_requests", number), []) if str(n["id"]) == note_id), None)
    if note is None:
        raise GitLabError(404, "404 Not found")
    if note["author"]["username"] != ctx.user:
        raise GitLabError(403, "403 Forbidden")
    note.update(body=str(ctx.param("body") or note["body"]), updated_at=iso(ctx.state.now()))
    return note


@route("GET", "/projects/:id/merge_requests/:merge_request_iid/resource_label_events")
def merge_request_label_events(ctx: Ctx, id: str, merge_request_iid: str) -> Any:
    project, number = _noteable(ctx, id, "merge_requests", merge_request_iid)
    return ctx.page(list(project.label_events.get(("merge_requests", number), [])))


@route("GET", "/projects/:id/issues/:issue_iid/resource_label_events")
def issue_label_events(ctx: Ctx, id: str, issue_iid: str) -> Any:
    project, number = _noteable(ctx, id, "issues", issue_iid)
    return ctx.page(list(project.label_events.get(("issues", number), [])))


@route("GET", "/projects/:id/issues/:issue_iid")
def single_issue(ctx: Ctx, id: str, issue_iid: str) -> Any:
    project, number = _noteable(ctx, id, "issues", issue_iid)
    return project.issues[number]


@route("GET", "/projects/:id/pipelines/:pipeline_id")
def single_pipeline(ctx: Ctx, id: str, pipeline_id: str) -> Any:
    project = _project(ctx, id)
    found = project.pipelines.get(int(pipeline_id)) if pipeline_id.isdigit() else None
    if found is None:
        raise GitLabError(404, "404 Not found")
    return found


# ---- project access tokens ------------------------------------------------------------------------
# GitLab's API: Grape validates the parameters first (400 `{"error": "<param> is missing"}`), then the
# services answer `bad_request!(message)`: 400 `{"message": "400 Bad request - <message>"}`.

_BOT_NAME = re.compile(r"^(project|group)_\d+_bot")


def _bad_request(reason: str) -> GitLabError:
    return GitLabError(400, f"400 Bad request - {reason}")


def _date_param(ctx: Ctx, name: str, problems: list[str]) -> date | None:
    raw = ctx.param(name)
    if raw in (None, ""):
        return None
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        problems.append(f"{name} is invalid")
        return None


def _may_manage_tokens(ctx: Ctx, project: Project) -> bool:
    # Maintainers and owners, never with a project or group access token (their bot users): GitLab wants
    # a personal or service account token here.
    return project.members.get(ctx.user, 0) >= MAINTAINER and not _BOT_NAME.match(ctx.user)


def _find_token(project: Project, state: FakeGitLabState, token_id: str) -> dict[str, Any] | None:
    record = state.access_tokens.get(int(token_id)) if token_id.isdigit() else None
    return record if record is not None and record["_project"] == project.path else None


@route("POST", "/projects/:id/access_tokens", status=201)
def create_access_token(ctx: Ctx, id: str) -> Any:
    problems = [f"{name} is missing" for name in ("name", "scopes") if not ctx.param(name)]
    scopes = ctx.param("scopes")
    scopes = [scopes] if isinstance(scopes, str) else scopes
    if scopes and (not isinstance(scopes, list) or any(s not in RESOURCE_BOT_SCOPES for s in scopes)):
        problems.append("scopes does not have a valid value")
    level = ctx.param("access_level", MAINTAINER)
    try:
        level = int(level)
    except (TypeError, ValueError):
        problems.append("access_level is invalid")
    else:
        if level not in ACCESS_LEVELS:
            problems.append("access_level does not have a valid value")
    expires = _date_param(ctx, "expires_at", problems)
    if problems:
        raise GitLabError(400, ", ".join(problems), key="error")
    project = _project(ctx, id)
    if not _may_manage_tokens(ctx, project):
        raise _bad_request("User does not have permission to create project access token")
    if level > project.members.get(ctx.user, 0):
        raise _bad_request("Access level of the token contains permissions not held by the creating user")
    today = ctx.state.today()
    if expires is None:
        expires = today + timedelta(days=MAX_TOKEN_LIFETIME_DAYS)
    # A token dies at 00:00 UTC of its expiry date, so today is as much in the past as yesterday. (The
    # wording is the fake's: GitLab documents the refusal, not its text.)
    if expires <= today:
        raise _bad_request("Expires at must be in the future")
    if expires > today + timedelta(days=MAX_TOKEN_LIFETIME_DAYS):
        raise _bad_request(f"Expires at must be before {today + timedelta(days=MAX_TOKEN_LIFETIME_DAYS)}")
    record = ctx.state.mint_access_token(project, str(ctx.param("name")), list(scopes), level, expires.isoformat())
    return ctx.state.public_token(record, with_token=True)


@route("POST", "/projects/:id/access_tokens/:token_id/rotate")
def rotate_access_token(ctx: Ctx, id: str, token_id: str) -> Any:
    problems: list[str] = []
    expires = _date_param(ctx, "expires_at", problems)
    if problems:
        raise GitLabError(400, ", ".join(problems), key="error")
    project = _project(ctx, id)
    state = ctx.state
    if token_id == "self":
        record = state.token_record(ctx.token)
        scopes = state.token_scopes.get(ctx.token, [])
        if record is None or record["_project"] != project.path:
            raise GitLabError(405, "405 Method Not Allowed")
        if not {"api", "self_rotate"} & set(scopes):
            raise GitLabError(403, "403 Forbidden")
    else:
        record = _find_token(project, state, token_id) if _may_manage_tokens(ctx, project) else None
    if record is None:
        raise GitLabError(401, "401 Unauthorized")
    if record["revoked"]:
        # Reuse of a rotated (or revoked) token: GitLab revokes every active token of its family.
        for other in list(state.access_tokens.values()):
            if other["_family"] == record["_family"] and not other["revoked"]:
                state.revoke_access_token(other, remove_bot=False)
        raise GitLabError(401, "401 Unauthorized")
    today = state.today()
    expires = expires or today + timedelta(days=ROTATED_TOKEN_DAYS)
    if expires <= today:
        raise _bad_request("Expires at must be in the future")
    state.revoke_access_token(record, remove_bot=False)
    rotated = state.mint_access_token(project, record["name"], record["scopes"], record["access_level"],
                                      expires.isoformat(), bot_user=record["_user"], family=record["_family"])
    return state.public_token(rotated, with_token=True)


@route("DELETE", "/projects/:id/access_tokens/:token_id", status=204)
def revoke_access_token(ctx: Ctx, id: str, token_id: str) -> Any:
    project = _project(ctx, id)
    record = _find_token(project, ctx.state, token_id)
    # A revoked token's bot has left the project: GitLab no longer finds the token there.
    if record is None or record["_user"] not in project.members:
        raise GitLabError(404, "404 project Access Token Not Found")
    if not _may_manage_tokens(ctx, project):
        raise _bad_request(f"{ctx.user} cannot delete {record['_user']}")
    for other in list(ctx.state.access_tokens.values()):  # the bot's every token goes with it
        if other["_user"] == record["_user"] and not other["revoked"]:
            ctx.state.revoke_access_token(other)
    ctx.state.revoke_access_token(record)
    return None


def insufficient_scope(scopes: list[str] | None, method: str, relative: str) -> bool:
    """Whether a token with `scopes` may not make this request (GitLab answers 403 `insufficient_scope`).
    `api` allows everything, `read_api` every read, `read_repository` reading files (the repository files
    API's GET), `self_rotate` rotating the token itself; `write_repository` is for Git over HTTP only."""
    if scopes is None or "api" in scopes:
        return False
    reading = method in ("GET", "HEAD")
    if "read_api" in scopes and reading:
        return False
    if "read_repository" in scopes and reading and re.match(r"^/projects/[^/]+/repository/files/", relative):
        return False
    if "self_rotate" in scopes and method == "POST" and re.match(r"^/projects/[^/]+/access_tokens/self/rotate$",
                                                                   relative):
        return False
    return True


# ---- the WSGI app ---------------------------------------------------------------------------------

def _body() -> dict[str, Any]:
    if request.mimetype == "application/json":
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    return {k: v for k, v in request.form.items()}


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(data), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def create_app(state: FakeGitLabState) -> Flask:
    app = Flask("fakegitlab")
    app.config["FAKE_STATE"] = state

    @app.route("/", defaults={"anything": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/<path:anything>", methods=["GET", "POST", "PUT", "DELETE"])
    def dispatch(anything: str) -> Response:
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        path = raw.split("?", 1)[0]
        query = {k: v for k, v in request.args.items()}
        body = _body()
        token = request.headers.get("PRIVATE-TOKEN") or \
            request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        user = state.tokens.get(token or "")
        call = Call(request.method, path, query, body, user)
        if path.startswith("/_fake/"):
            return _control(state, path)
        state.record(call)
        limits = {"RateLimit-Limit": str(state.rate_limit), "RateLimit-Remaining": str(state.rate_limit - 1)}
        if not path.startswith(API + "/"):
            call.status = 404
            return _json(404, {"message": "404 Not Found"}, limits)
        if user is None or not state.token_alive(token or ""):
            call.status = 401
            return _json(401, {"message": "401 Unauthorized"}, limits)
        fault = state.take_fault(request.method, path)
        if fault is not None:
            call.status = fault.status
            return _json(fault.status, fault.body, {**limits, **fault.headers})
        relative = path[len(API):]
        if insufficient_scope(state.token_scopes.get(token or ""), request.method, relative):
            call.status = 403
            return _json(403, {"error": "insufficient_scope",
                               "error_description": "The request requires higher privileges than provided by "
                                                    "the access token.",
                               "scope": "api read_api"}, limits)
        for spec in ROUTES:
            match = spec.pattern.match(relative)
            if spec.method != request.method or match is None:
                continue
            ctx = Ctx(state, user, query, body, token or "")
            try:
                with state.lock:
                    data = spec.handler(ctx, **match.groupdict())
            except GitLabError as exc:
                call.status = exc.status
                return _json(exc.status, {exc.key: exc.message}, limits)
            call.status = spec.status
            return _json(spec.status, data, {**limits, **ctx.headers})
        call.status = 404
        return _json(404, {"error": "404 Not Found"}, limits)

    return app


def _control(state: FakeGitLabState, path: str) -> Response:
    """`GET /_fake/calls` (what was asked), `POST /_fake/reset` (forget the calls)."""
    if path == "/_fake/calls":
        return _json(200, [{"method": c.method, "path": c.path, "query": c.query, "body": c.body,
                            "user": c.user, "status": c.status} for c in list(state.calls)])
    if path == "/_fake/reset":
        state.reset_calls()
        return _json(200, {"ok": True})
    return _json(404, {"message": "404 Not Found"})


__all__ = ["API", "REPORTER", "ROUTES", "GitLabError", "create_app"]
