"""Fake GitHub routes: what `agentgate doctor` reads about an installation and its repositories' administration
(the App's and each installation's permissions and events, the installation's repositories, protected
branches, branch protection, rulesets, environments and their custom deployment protection rules).

Their state is kept here, beside `FakeState` rather than in it, in an `Admin` record per state: seed it with
the helpers below (`configure_app`, `protect_branch`, `add_ruleset`, `add_environment`, ...). Answers follow
GitHub's REST description (shapes from the OpenAPI description, tests/fixtures/openapi/routes.json) and its
documented visibility rules: branch protection needs Administration: read; a ruleset's `bypass_actors` are
shown only to whoever may edit the ruleset (for an App: Administration: write); environments and their
protection rules need Actions: read."""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from flask import g, request

from . import render
from .app import ROUTES, GitHubError, _state, not_found, paginate, route
from .state import ACCESS_LEVELS, FakeState, Repo, fake_sha, iso, stable_id

HTML = render.HTML_ROOT
METADATA_READ = (("metadata",), "read")
ADMINISTRATION_READ = (("administration",), "read")
ACTIONS_READ = (("actions",), "read")


@dataclass
class RepoAdmin:
    protection: dict[str, dict[str, Any]] = field(default_factory=dict)  # branch -> seeded protection
    rulesets: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> ruleset (GitHub's shape)
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"id", "apps": [app id]}


@dataclass
class Admin:
    """What GitHub knows about the App's registration and the repositories' settings."""

    app_permissions: dict[str, str] = field(default_factory=dict)  # GET /app `permissions`
    app_events: list[str] = field(default_factory=list)  # GET /app `events`
    installation_events: dict[int, list[str]] = field(default_factory=dict)  # default: the App's events
    suspended: set[int] = field(default_factory=set)
    repos: dict[str, RepoAdmin] = field(default_factory=dict)  # casefolded full name ->

    def repo(self, full_name: str) -> RepoAdmin:
        return self.repos.setdefault(full_name.casefold(), RepoAdmin())


# FakeState is a mutable dataclass (unhashable), so the registry is keyed by identity and cleaned up when
# the state is collected.
_ADMIN: dict[int, Admin] = {}


def admin_of(state: FakeState) -> Admin:
    key = id(state)
    found = _ADMIN.get(key)
    if found is None:
        found = _ADMIN[key] = Admin()
        weakref.finalize(state, _ADMIN.pop, key, None)
    return found


# ---- seeding helpers ------------------------------------------------------------------------------------------

def configure_app(state: FakeState, permissions: dict[str, str], events: Iterable[str]) -> None:
    """The App's registered permissions and webhook events (what `GET /app` shows)."""
    with state.lock:
        adm = admin_of(state)
        adm.app_permissions, adm.app_events = dict(permissions), list(events)


def set_installation_events(state: FakeState, installation_id: int, events: Iterable[str]) -> None:
    """The events an installation accepted (by default the App's: it accepted everything asked)."""
    with state.lock:
        admin_of(state).installation_events[int(installation_id)] = list(events)


def suspend_installation(state: FakeState, installation_id: int) -> None:
    with state.lock:
        admin_of(state).suspended.add(int(installation_id))


def protect_branch(state: FakeState, repo: str, branch: str, *,
                   checks: Iterable[tuple[str, int | None]] | None = None, contexts: Iterable[str] = (),
                   enforce_admins: bool = True, bypass_apps: Iterable[str] = (), strict: bool = True) -> None:
    """Classic branch protection. ``checks``: required status checks as (context, app id or None for any
    source), default ``[("agentgate", <this App>)]``; ``contexts``: legacy context-only entries (any source)."""
    with state.lock:
        state.repo(repo)
        wanted = list(checks) if checks is not None else [("agentgate", int(state.app_id))]
        admin_of(state).repo(repo).protection[branch] = {
            "checks": [{"context": c, "app_id": a} for c, a in wanted] + [{"context": c, "app_id": None}
                                                                         for c in contexts],
            "enforce_admins": enforce_admins, "bypass_apps": list(bypass_apps), "strict": strict}


def required_checks_rule(*checks: tuple[str, int | None]) -> dict[str, Any]:
    """A ruleset rule requiring status checks, each (context, integration id or None for any source)."""
    return {"type": "required_status_checks",
            "parameters": {"strict_required_status_checks_policy": True, "do_not_enforce_on_create": False,
                           "required_status_checks": [{"context": c, **({"integration_id": a} if a else {})}
                                                      for c, a in checks]}}


def merge_queue_rule() -> dict[str, Any]:
    return {"type": "merge_queue",
            "parameters": {"check_response_timeout_minutes": 60, "grouping_strategy": "ALLGREEN",
                           "max_entries_to_build": 5, "max_entries_to_merge": 5, "merge_method": "MERGE",
                           "min_entries_to_merge": 1, "min_entries_to_merge_wait_minutes": 5}}


def add_ruleset(state: FakeState, repo: str, *, name: str = "protect default", enforcement: str = "active",
                include: Iterable[str] = ("~DEFAULT_BRANCH",), exclude: Iterable[str] = (),
                rules: Iterable[dict[str, Any]] | None = None,
                bypass_actors: Iterable[dict[str, Any]] = (), ruleset_id: int | None = None) -> int:
    """A branch ruleset on the repository. ``include``/``exclude`` are GitHub's `ref_name` conditions
    (``~DEFAULT_BRANCH``, ``~ALL``, ``refs/heads/<fnmatch pattern>``); ``bypass_actors`` GitHub's entries
    (``{"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}``)."""
    if enforcement not in ("active", "evaluate", "disabled"):
        raise ValueError("enforcement is active, evaluate or disabled")
    with state.lock:
        r = state.repo(repo)
        ruleset_id = ruleset_id or state.next_id()
        now = iso(state.now())
        admin_of(state).repo(repo).rulesets[ruleset_id] = {
            "id": ruleset_id, "name": name, "target": "branch", "source_type": "Repository",
            "source": r.full_name, "enforcement": enforcement, "bypass_actors": list(bypass_actors),
            "conditions": {"ref_name": {"include": list(include), "exclude": list(exclude)}},
            "rules": list(rules if rules is not None else [required_checks_rule(("agentgate", int(state.app_id)))]),
            "created_at": now, "updated_at": now}
        return ruleset_id


def add_environment(state: FakeState, repo: str, name: str, *, apps: Iterable[int] | None = None) -> None:
    """An environment; ``apps``: the Apps enabled as its custom deployment protection rules (default: this App)."""
    with state.lock:
        state.repo(repo)
        admin_of(state).repo(repo).environments[name] = {
            "id": state.next_id(), "apps": list(apps) if apps is not None else [int(state.app_id)]}


# ---- routes: the App and its installations --------------------------------------------------------------------

def _with_registration(handler: Any) -> Any:
    """`GET /app` as app.py answers it, plus the permissions and events the App is registered with."""
    def get_app() -> dict[str, Any]:
        adm = admin_of(_state())
        return {**handler(), "permissions": dict(adm.app_permissions), "events": list(adm.app_events)}
    return get_app


for _i, _spec in enumerate(ROUTES):
    if (_spec.method, _spec.template) == ("GET", "/app"):
        ROUTES[_i] = replace(_spec, handler=_with_registration(_spec.handler))


def _installation(state: FakeState, installation_id: int, inst: dict[str, Any]) -> dict[str, Any]:
    adm = admin_of(state)
    account = render.user(g.base, {"login": inst["account"], "type": "Organization"})
    suspended = installation_id in adm.suspended
    return {"id": installation_id, "account": account,
            "repository_selection": inst.get("repository_selection", "selected"),
            "access_tokens_url": f"{g.base}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{g.base}/installation/repositories",
            "html_url": f"{HTML}/organizations/{inst['account']}/settings/installations/{installation_id}",
            "app_id": int(state.app_id), "client_id": f"Iv1.{state.app_id}", "app_slug": state.app_slug,
            "target_id": stable_id(inst["account"]), "target_type": "Organization",
            "permissions": dict(inst["permissions"]),
            "events": list(adm.installation_events.get(installation_id, adm.app_events)),
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": render.user(g.base, "octocat") if suspended else None,
            "suspended_at": "2024-01-02T00:00:00Z" if suspended else None}


@route("GET", "/app/installations", 200, auth="jwt")
def list_installations() -> Any:
    state = _state()
    items = [_installation(state, iid, inst) for iid, inst in sorted(state.installations.items())]
    return paginate(items)


@route("GET", "/installation/repositories", 200, auth="token")
def list_installation_repositories() -> Any:
    state, tok = _state(), g.token
    inst = state.installations.get(tok.installation_id, {})
    page, headers = paginate(list(tok.repositories))
    return ({"total_count": len(tok.repositories),
             "repository_selection": inst.get("repository_selection", "selected"),
             "repositories": [render.repository(state, g.base, r) for r in page]}, headers)


# ---- routes: branches, protection, rules -------------------------------------------------------------------------

def _branch_names(repo: Repo) -> list[str]:
    names = [repo.default_branch, *repo.branches]
    for pr in repo.pulls.values():
        names += [pr.get(side, {}).get("ref", "") for side in ("base", "head")]
    names += list(admin_of(_state()).repo(repo.full_name).protection)
    return [n for n in dict.fromkeys(names) if n]


def _targets(ruleset: dict[str, Any], repo: Repo, branch: str) -> bool:
    cond = (ruleset.get("conditions") or {}).get("ref_name") or {}

    def hit(pattern: str) -> bool:
        if pattern == "~ALL":
            return True
        if pattern == "~DEFAULT_BRANCH":
            return branch == repo.default_branch
        return fnmatch.fnmatchcase(f"refs/heads/{branch}", pattern if pattern.startswith("refs/") else
                                   f"refs/heads/{pattern}")
    return any(hit(p) for p in cond.get("include", [])) and not any(hit(p) for p in cond.get("exclude", []))


def _active_rulesets(repo: Repo, branch: str) -> list[dict[str, Any]]:
    rulesets = admin_of(_state()).repo(repo.full_name).rulesets.values()
    return [rs for rs in rulesets if rs["enforcement"] == "active" and _targets(rs, repo, branch)]


def _protected(repo: Repo, branch: str) -> bool:
    # GitHub: `protected=true` "returns only branches protected by branch protections or rulesets".
    return branch in admin_of(_state()).repo(repo.full_name).protection or bool(_active_rulesets(repo, branch))


@route("GET", "/repos/{owner}/{repo}/branches", 200, METADATA_READ)
def list_branches() -> Any:
    repo = g.repo
    wanted = request.args.get("protected")
    names = _branch_names(repo)
    if wanted is not None:
        flag = wanted.lower() == "true"
        names = [n for n in names if _protected(repo, n) == flag]
    page, headers = paginate(names)
    api = f"{g.base}/repos/{repo.full_name}"
    out = [{"name": n, "commit": {"sha": (sha := repo.resolve_ref(n) or fake_sha(repo.full_name, n)),
                                  "url": f"{api}/commits/{sha}"},
            "protected": _protected(repo, n), "protection_url": f"{api}/branches/{n}/protection"} for n in page]
    return out, headers


@route("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", 200, ADMINISTRATION_READ)
def get_branch_protection(branch: str) -> dict[str, Any]:
    repo = g.repo
    seeded = admin_of(_state()).repo(repo.full_name).protection.get(branch)
    if seeded is None:
        raise GitHubError(404, "Branch not protected")
    url = f"{g.base}/repos/{repo.full_name}/branches/{branch}/protection"
    checks = seeded["checks"]
    apps = [render.app(_state(), g.base) if slug == _state().app_slug else
            {**render.app(_state(), g.base), "id": stable_id(slug), "slug": slug, "name": slug}
            for slug in seeded["bypass_apps"]]
    return {
        "url": url,
        "required_status_checks": {"url": f"{url}/required_status_checks", "strict": seeded["strict"],
                                   "contexts": [c["context"] for c in checks],
                                   "contexts_url": f"{url}/required_status_checks/contexts",
                                   "checks": [dict(c) for c in checks]},
        "required_pull_request_reviews": {
            "url": f"{url}/required_pull_request_reviews", "dismiss_stale_reviews": True,
            "require_code_owner_reviews": False, "required_approving_review_count": 1,
            "require_last_push_approval": False,
            "bypass_pull_request_allowances": {"users": [], "teams": [], "apps": apps}},
        "enforce_admins": {"url": f"{url}/enforce_admins", "enabled": seeded["enforce_admins"]},
        "required_linear_history": {"enabled": False}, "allow_force_pushes": {"enabled": False},
        "allow_deletions": {"enabled": False}, "block_creations": {"enabled": False},
        "required_conversation_resolution": {"enabled": False}, "lock_branch": {"enabled": False},
        "allow_fork_syncing": {"enabled": False},
        "required_signatures": {"url": f"{url}/required_signatures", "enabled": False},
    }


@route("GET", "/repos/{owner}/{repo}/rules/branches/{branch}", 200, METADATA_READ)
def get_branch_rules(branch: str) -> Any:
    # GitHub: every active rule that applies to the branch, from any level; rules of rulesets in
    # "evaluate" or "disabled" enforcement are not returned. The branch need not exist.
    repo = g.repo
    rules = [{**rule, "ruleset_source_type": rs["source_type"], "ruleset_source": rs["source"],
              "ruleset_id": rs["id"]}
             for rs in _active_rulesets(repo, branch) for rule in rs["rules"]]
    return paginate(rules)


@route("GET", "/repos/{owner}/{repo}/rulesets/{ruleset_id}", 200, METADATA_READ)
def get_repo_ruleset(ruleset_id: str) -> dict[str, Any]:
    repo, state = g.repo, _state()
    rs = admin_of(state).repo(repo.full_name).rulesets.get(int(ruleset_id)) if ruleset_id.isdigit() else None
    if rs is None:
        raise not_found()
    out = {k: v for k, v in rs.items() if k != "bypass_actors"}
    api = f"{g.base}/repos/{repo.full_name}/rulesets/{rs['id']}"
    out.update({"node_id": render.node_id("RepositoryRuleset", rs["id"]),
                "_links": {"self": {"href": api}, "html": {"href": f"{HTML}/{repo.full_name}/rules/{rs['id']}"}}})
    # GitHub: "the bypass_actors property is only returned if the user making the API request has write
    # access to the ruleset" -- for an App, Administration: write.
    tok = g.token
    if tok is not None and ACCESS_LEVELS.get(tok.permissions.get("administration", ""), 0) >= ACCESS_LEVELS["write"]:
        out["bypass_actors"] = [dict(a) for a in rs["bypass_actors"]]
    mine = any(a.get("actor_type") == "Integration" and a.get("actor_id") == int(state.app_id)
               for a in rs["bypass_actors"])
    out["current_user_can_bypass"] = "always" if mine else "never"
    return out


# ---- routes: environments ------------------------------------------------------------------------------------------

def _environment(repo: Repo, name: str, env: dict[str, Any]) -> dict[str, Any]:
    api = f"{g.base}/repos/{repo.full_name}/environments/{name}"
    rules = [{"id": stable_id(f"{repo.full_name}:{name}:custom"), "node_id": render.node_id("ProtectionRule", 1),
              "type": "custom"}] if env["apps"] else []
    return {"id": env["id"], "node_id": render.node_id("Environment", env["id"]), "name": name, "url": api,
            "html_url": f"{HTML}/{repo.full_name}/deployments/activity_log?environments_filter={name}",
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "protection_rules": rules, "deployment_branch_policy": None}


@route("GET", "/repos/{owner}/{repo}/environments", 200, ACTIONS_READ)
def list_environments() -> Any:
    repo = g.repo
    envs = admin_of(_state()).repo(repo.full_name).environments
    page, headers = paginate(sorted(envs))
    return ({"total_count": len(envs), "environments": [_environment(repo, n, envs[n]) for n in page]}, headers)


@route("GET", "/repos/{owner}/{repo}/environments/{environment_name}/deployment_protection_rules", 200,
       ACTIONS_READ)
def list_deployment_protection_rules(environment_name: str) -> dict[str, Any]:
    repo, state = g.repo, _state()
    env = admin_of(state).repo(repo.full_name).environments.get(environment_name)
    if env is None:
        raise not_found()
    rules = []
    for app_id in env["apps"]:
        slug = state.app_slug if app_id == int(state.app_id) else f"app-{app_id}"
        rules.append({"id": stable_id(f"{repo.full_name}:{environment_name}:{app_id}"),
                      "node_id": render.node_id("DeploymentProtectionRule", app_id), "enabled": True,
                      "app": {"id": app_id, "slug": slug, "integration_url": f"{g.base}/apps/{slug}",
                              "node_id": render.node_id("App", app_id)}})
    return {"total_count": len(rules), "custom_deployment_protection_rules": rules}
