"""Fake GitLab routes `agentgate doctor` reads: the token's own record (`GET /personal_access_tokens/self`), the
projects it is a member of, project and group webhooks, protected branches, environments and protected
environments, and a project's merge settings (`only_allow_merge_if_pipeline_succeeds`,
`allow_merge_on_skipped_pipeline`, the caller's `permissions`) on `GET /projects/:id`.

Importing this module registers the routes (the fake matches `ROUTES` at request time). Their state lives in an
`Admin` record per fake, seeded with the helpers below; shapes and access rules follow GitLab's REST API
documentation (hooks need the Maintainer role, group hooks the Owner role)."""

from __future__ import annotations

import urllib.parse
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from flask import request

from .app import ROUTES, Ctx, GitLabError, _project, route
from .state import MAINTAINER, FakeGitLabState, iso

HOOK_EVENTS = ("push_events", "tag_push_events", "note_events", "issues_events", "merge_requests_events",
               "pipeline_events")
ALL_HOOK_EVENTS = HOOK_EVENTS + ("confidential_issues_events", "confidential_note_events", "job_events",
                                 "wiki_page_events", "deployment_events", "releases_events",
                                 "emoji_events", "resource_access_token_events")


@dataclass
class ProjectAdmin:
    settings: dict[str, Any] = field(default_factory=lambda: {"only_allow_merge_if_pipeline_succeeds": False,
                                                               "allow_merge_on_skipped_pipeline": False})
    hooks: list[dict[str, Any]] = field(default_factory=list)
    protected_branches: dict[str, dict[str, Any]] = field(default_factory=dict)
    environments: dict[str, int] = field(default_factory=dict)  # name -> id
    protected_environments: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Admin:
    projects: dict[str, ProjectAdmin] = field(default_factory=dict)  # path ->
    group_hooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # group path ->
    group_owners: dict[str, set[str]] = field(default_factory=dict)  # group path -> usernames with Owner
    token_expires_at: str | None = None  # the fake token's expiry (YYYY-MM-DD), None: never
    rotations: list[tuple[str, str]] = field(default_factory=list)  # (old, new) personal tokens rotated

    def project(self, path: str) -> ProjectAdmin:
        return self.projects.setdefault(path, ProjectAdmin())


_ADMIN: weakref.WeakKeyDictionary[FakeGitLabState, Admin] = weakref.WeakKeyDictionary()


def admin_of(state: FakeGitLabState) -> Admin:
    found = _ADMIN.get(state)
    if found is None:
        found = _ADMIN[state] = Admin()
    return found


# ---- seeding helpers ------------------------------------------------------------------------------------------

def set_merge_settings(state: FakeGitLabState, path: str, **settings: Any) -> None:
    """e.g. ``only_allow_merge_if_pipeline_succeeds=True`` ("Pipelines must succeed")."""
    with state.lock:
        admin_of(state).project(path).settings.update(settings)


def add_hook(state: FakeGitLabState, path: str, url: str = "https://agentgate.example/webhooks/gitlab", *,
             events: Iterable[str] = HOOK_EVENTS, alert_status: str = "executable", group: str | None = None) -> None:
    """A project webhook (or, with ``group``, a group webhook) with these trigger flags on."""
    wanted = set(events)
    with state.lock:
        hook: dict[str, Any] = {"id": state.next_id(), "url": url, "created_at": iso(state.now()),
                                "enable_ssl_verification": True, "alert_status": alert_status,
                                "disabled_until": None, "push_events_branch_filter": "",
                                **{e: e in wanted for e in ALL_HOOK_EVENTS}}
        if group is not None:
            admin_of(state).group_hooks.setdefault(group, []).append({**hook, "group_id": 1})
        else:
            admin_of(state).project(path).hooks.append({**hook, "project_id": state.projects[path].id})


def protect_branch(state: FakeGitLabState, path: str, name: str, *, push: int = 0, merge: int = MAINTAINER,
                   allow_force_push: bool = False) -> None:
    """A protected branch: who may push (0: No one) and merge, and whether force pushes are allowed."""
    def levels(level: int) -> list[dict[str, Any]]:
        names = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers"}
        return [{"id": state.next_id(), "access_level": level, "access_level_description": names.get(level, str(level)),
                 "user_id": None, "group_id": None, "deploy_key_id": None}]
    with state.lock:
        admin_of(state).project(path).protected_branches[name] = {
            "id": state.next_id(), "name": name, "push_access_levels": levels(push),
            "merge_access_levels": levels(merge), "unprotect_access_levels": [], "allow_force_push": allow_force_push,
            "code_owner_approval_required": False}


def add_environment(state: FakeGitLabState, path: str, name: str, *, approvals: int | None = 1) -> None:
    """An environment; ``approvals``: protected with that many required deployment approvals (None: unprotected)."""
    with state.lock:
        adm = admin_of(state).project(path)
        adm.environments[name] = state.next_id()
        if approvals is not None:
            adm.protected_environments[name] = {
                "name": name, "deploy_access_levels": [{"id": state.next_id(), "access_level": MAINTAINER,
                                                        "access_level_description": "Maintainers", "user_id": None,
                                                        "group_id": None, "group_inheritance_type": 0}],
                "required_approval_count": approvals,
                "approval_rules": [{"id": state.next_id(), "user_id": None, "group_id": None,
                                    "access_level": MAINTAINER, "access_level_description": "Maintainers",
                                    "required_approvals": approvals, "group_inheritance_type": 0}] if approvals else []}


def set_group_owner(state: FakeGitLabState, group: str, username: str) -> None:
    with state.lock:
        admin_of(state).group_owners.setdefault(group, set()).add(username)


# ---- routes --------------------------------------------------------------------------------------------------------

def _with_settings(handler: Any) -> Any:
    """`GET /projects/:id` as app.py answers it, plus the merge settings and the caller's `permissions`."""
    def single_project(ctx: Ctx, id: str) -> Any:
        out = handler(ctx, id)
        project = ctx.project
        assert project is not None
        level = project.members.get(ctx.user, 0)
        return {**out, **admin_of(ctx.state).project(project.path).settings,
                "namespace": {"full_path": project.path.rsplit("/", 1)[0], "kind": "group"},
                "permissions": {"project_access": {"access_level": level, "notification_level": 3},
                                "group_access": None}}
    return single_project


for _i, _spec in enumerate(ROUTES):
    if (_spec.method, _spec.pattern.pattern) == ("GET", r"^/projects/(?P<id>[^/]+)$"):
        ROUTES[_i] = replace(_spec, handler=_with_settings(_spec.handler))


@route("GET", "/personal_access_tokens/self")
def token_self(ctx: Ctx) -> Any:
    # GitLab: the token used for the request (personal, project or group access token), whatever its scopes.
    token = request.headers.get("PRIVATE-TOKEN") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    scopes = ctx.state.token_scopes.get(token.strip(), ["api"])
    user = ctx.state.users[ctx.user]
    return {"id": 1, "name": "agentgate", "revoked": False, "created_at": "2024-01-01T00:00:00.000Z",
            "description": "", "scopes": list(scopes), "user_id": user["id"], "last_used_at": iso(ctx.state.now()),
            "active": True, "expires_at": admin_of(ctx.state).token_expires_at}


@route("GET", "/projects")
def list_projects(ctx: Ctx) -> Any:
    # `membership=true`: only projects the user is a member of (for the fake, all it can see).
    visible = [p for p in ctx.state.projects.values() if ctx.user in p.members]
    return ctx.page([{"id": p.id, "path_with_namespace": p.path, "default_branch": p.default_branch}
                     for p in sorted(visible, key=lambda p: p.id)])


@route("GET", "/projects/:id/hooks")
def list_project_hooks(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    ctx.need(MAINTAINER)
    return ctx.page(list(admin_of(ctx.state).project(project.path).hooks))


@route("GET", "/groups/:id/hooks")
def list_group_hooks(ctx: Ctx, id: str) -> Any:
    group = urllib.parse.unquote(id)
    adm = admin_of(ctx.state)
    if group not in adm.group_hooks and group not in adm.group_owners:
        raise GitLabError(404, "404 Group Not Found")
    if ctx.user not in adm.group_owners.get(group, set()):
        raise GitLabError(403, "403 Forbidden")  # group hooks: Owner role
    return ctx.page(list(adm.group_hooks.get(group, [])))


@route("GET", "/projects/:id/protected_branches")
def list_protected_branches(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    return ctx.page(list(admin_of(ctx.state).project(project.path).protected_branches.values()))


@route("GET", "/projects/:id/environments")
def list_environments(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    envs = admin_of(ctx.state).project(project.path).environments
    return ctx.page([{"id": eid, "name": name, "slug": name, "external_url": None, "state": "available",
                      "tier": "production" if name.startswith("prod") else "other"}
                     for name, eid in sorted(envs.items())])


@route("GET", "/projects/:id/protected_environments")
def list_protected_environments(ctx: Ctx, id: str) -> Any:
    project = _project(ctx, id)
    ctx.need(MAINTAINER)
    return ctx.page(list(admin_of(ctx.state).project(project.path).protected_environments.values()))


@route("POST", "/personal_access_tokens/self/rotate")
def rotate_own_token(ctx: Ctx) -> Any:
    # GitLab 16.10+: a personal (or service account) token with `api` or `self_rotate` rotates itself: the
    # old one is revoked at once and a new one answered (shown once). Not for project access tokens here.
    import secrets
    from datetime import date, timedelta

    state, token = ctx.state, ctx.token
    if state.token_record(token) is not None:
        raise GitLabError(405, "405 Method Not Allowed")
    scopes = state.token_scopes.get(token)
    if scopes is not None and not {"api", "self_rotate"} & set(scopes):
        raise GitLabError(403, "403 Forbidden")
    raw = ctx.param("expires_at")
    try:
        expires = date.fromisoformat(str(raw)) if raw else state.today() + timedelta(days=7)
    except ValueError:
        raise GitLabError(400, "expires_at is invalid", key="error") from None
    if expires <= state.today():
        raise GitLabError(400, "Expires at must be in the future", key="error")
    with state.lock:
        new = "glpat-" + secrets.token_urlsafe(15)[:20]
        state.tokens[new] = state.tokens.pop(token)
        if scopes is not None:
            state.token_scopes[new] = state.token_scopes.pop(token)
        admin_of(state).rotations.append((token, new))
    user = state.users[ctx.user]
    return {"id": len(admin_of(state).rotations) + 100, "name": "agentgate", "revoked": False,
            "created_at": iso(state.now()), "description": "", "scopes": list(scopes or ["api"]),
            "user_id": user["id"], "last_used_at": None, "active": True, "expires_at": expires.isoformat(),
            "token": new}
