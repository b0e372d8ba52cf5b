"""The Flask app: GitHub REST routes (declared by their OpenAPI path templates) + /_fake control API."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from flask import Flask, Response, current_app, g, jsonify, request

from . import render
from .state import ACCESS_LEVELS, AuthKind, Call, FakeState, Repo, Token, iso, stable_id

DOCS = "https://docs.github.com/rest"
SUPPORTED_API_VERSIONS = ("2022-11-28", "2026-03-10")
CONTROL_PREFIX = "/_fake/"


class GitHubError(Exception):
    """Raised by handlers; rendered the way GitHub renders errors."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def invalid(resource: str, field: str, message: str) -> GitHubError:
    return GitHubError(422, "Validation Failed",
                       [{"resource": resource, "code": "custom", "field": field, "message": message}])


# -- route registry ------------------------------------------------------------------------------
Perm = tuple[tuple[str, ...], str]  # (any one of these permissions, minimum level)


@dataclass(frozen=True)
class RouteSpec:
    method: str
    template: str  # the OpenAPI path template, verbatim
    status: int  # documented success status
    auth: str  # "jwt" (App JWT), "token" (installation token), "repo" (token scoped to {owner}/{repo})
    perm: Perm | None
    handler: Callable[..., Any]


ROUTES: list[RouteSpec] = []
# The App's webhook delivery log. GitHub's REST routes like the rest, but served only while
# `FakeState.hook_log` is on, so the route inventory tests/test_fakegithub.py holds against
# routes.json is unchanged until that file is regenerated with them (extract_routes.py).
HOOK_ROUTES: list[RouteSpec] = []
_INT_PARAMS = {"installation_id", "pull_number", "issue_number", "comment_id", "check_run_id", "run_id",
               "event_id", "delivery_id"}
# Values that may contain "/" (file paths, branch names, label names): clients percent-encode it,
# but the WSGI path arrives decoded, so these must match across slashes.
_SLASHY_PARAMS = {"path", "ref", "name", "branch"}


def route(method: str, template: str, status: int, perm: Perm | None = None,
          auth: str = "repo", registry: list[RouteSpec] = ROUTES) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.append(RouteSpec(method, template, status, auth, perm, fn))
        return fn
    return deco


def flask_rule(template: str) -> str:
    """``/repos/{owner}/{repo}/pulls/{pull_number}`` -> ``/repos/<owner>/<repo>/pulls/<int:pull_number>``."""
    def conv(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in _SLASHY_PARAMS:
            return f"<path:{name}>"
        return f"<int:{name}>" if name in _INT_PARAMS else f"<{name}>"
    return re.sub(r"\{(\w+)\}", conv, template)


def openapi_template(rule: str) -> str:
    """Inverse of ``flask_rule``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


# -- request helpers -----------------------------------------------------------------------------
def _state() -> FakeState:
    state: FakeState = current_app.config["FAKE_STATE"]
    return state


def credentials() -> tuple[AuthKind, str]:
    """Classify the Authorization header: a 3-part Bearer value is an App JWT, anything else a token."""
    scheme, _, cred = request.headers.get("Authorization", "").strip().partition(" ")
    cred = cred.strip()
    if not cred or scheme.lower() not in ("bearer", "token"):
        return "none", ""
    if scheme.lower() == "bearer" and cred.count(".") == 2:
        return "jwt", cred
    return "installation", cred


def body() -> Any:
    if not request.get_data():
        return None
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise GitHubError(400, "Problems parsing JSON")
    return data


def body_object() -> dict[str, Any]:
    data = body()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GitHubError(400, "Problems parsing JSON")
    return data


def paginate(items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """GitHub pagination: ``per_page`` (default 30, max 100), ``page``, RFC 5988 ``Link`` header."""
    def int_arg(name: str, default: int) -> int:
        try:
            return int(request.args.get(name, default))
        except ValueError:
            return default
    per_page = min(max(int_arg("per_page", 30), 1), 100)
    page = max(int_arg("page", 1), 1)
    last = max(math.ceil(len(items) / per_page), 1)

    def link(p: int) -> str:
        args = request.args.to_dict()
        args["page"] = str(p)
        return f"{request.base_url}?{urlencode(args)}"
    rels = []
    if page > 1:
        rels.append((min(page - 1, last), "prev"))
    if page < last:
        rels += [(page + 1, "next"), (last, "last")]
    if page > 1:
        rels.append((1, "first"))
    headers = {"Link": ", ".join(f'<{link(p)}>; rel="{rel}"' for p, rel in rels)} if rels else {}
    return items[(page - 1) * per_page: page * per_page], headers


def require_jwt(state: FakeState) -> None:
    """GitHub's App JWT rules: RS256 by the App key, iss = App id, iat <= now+60s, lifetime <= 10 min.
    The App it proves is kept in `g.app_id` (the fake knows agentgate's App and `state.other_apps`)."""
    kind, cred = credentials()
    apps = {int(state.app_id): state.public_key_pem, **{int(i): pem for i, (pem, _) in state.other_apps.items()}}
    if kind != "jwt" or not any(apps.values()):
        raise GitHubError(401, "A JSON web token could not be decoded")
    try:
        unverified = jwt.decode(cred, options={"verify_signature": False})
        pem = apps.get(int(str(unverified.get("iss"))))
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise GitHubError(401, "A JSON web token could not be decoded") from exc
    if pem is None:
        raise GitHubError(401, "'Issuer' claim ('iss') must be the App id")
    try:
        claims = jwt.decode(cred, pem, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                     "require": ["iat", "exp", "iss"]})
    except jwt.InvalidTokenError as exc:
        raise GitHubError(401, "A JSON web token could not be decoded") from exc
    iat, exp, now = claims["iat"], claims["exp"], state.now()
    g.app_id = int(str(claims["iss"]))
    if not isinstance(iat, int | float) or iat > now + 60:
        raise GitHubError(401, "'Issued at' claim ('iat') must be an Integer representing the time "
                               "that the assertion was issued.")
    if not isinstance(exp, int | float) or exp <= now:
        raise GitHubError(401, "'Expiration time' claim ('exp') must be a numeric value representing "
                               "the future time at which the assertion expires.")
    if exp - iat > 600 or exp > now + 600:
        raise GitHubError(401, "'Expiration time' claim ('exp') is too far in the future.")


def current_token(state: FakeState) -> Token | None:
    """The installation token presented, None if anonymous; 401 if bad, expired or revoked."""
    kind, cred = credentials()
    if kind == "none":
        return None
    tok = state.tokens.get(cred) if kind == "installation" else None
    if tok is None or tok.revoked or tok.expires_at <= state.now():
        raise GitHubError(401, "Bad credentials")
    return tok


def access_repo(state: FakeState, tok: Token | None, full_name: str, perm: Perm | None) -> Repo:
    """GitHub hides private repos a caller cannot see behind 404; lacking a permission is 403."""
    repo = state.find_repo(full_name)
    scoped = tok is not None and full_name.casefold() in {r.casefold() for r in tok.repositories}
    if repo is not None and not repo.private and not scoped:
        # Anyone may read a public repo; writing to it needs it in the token's scope.
        if request.method == "GET":
            return repo
        raise (GitHubError(401, "Requires authentication") if tok is None
               else GitHubError(403, "Resource not accessible by integration"))
    if repo is None or tok is None or not scoped:
        raise not_found()
    if perm is not None:
        names, level = perm
        granted = max(ACCESS_LEVELS.get(tok.permissions.get(n, ""), 0) for n in names)
        if "metadata" in names:
            granted = max(granted, ACCESS_LEVELS["read"])  # every installation can read metadata
        if granted < ACCESS_LEVELS[level]:
            raise GitHubError(403, "Resource not accessible by integration")
    return repo


def _dispatch(spec: RouteSpec) -> Callable[..., Response]:
    def view(**params: Any) -> Response:
        state = _state()
        with state.lock:
            g.base = request.host_url.rstrip("/")
            if spec.auth == "jwt":
                require_jwt(state)
            else:
                g.token = current_token(state)
                if spec.auth == "token" and g.token is None:
                    raise GitHubError(401, "Requires authentication")
                if spec.auth == "repo":
                    full_name = f"{params.pop('owner')}/{params.pop('repo')}"
                    g.repo = access_repo(state, g.token, full_name, spec.perm)
            result = spec.handler(**params)
        data, headers = result if isinstance(result, tuple) else (result, {})
        if data is None:
            return Response(status=spec.status, headers=headers)
        resp = jsonify(data)
        resp.status_code = spec.status
        resp.headers.update(headers)
        return resp
    view.__name__ = f"{spec.method} {spec.template}"
    return view


# -- routes: apps --------------------------------------------------------------------------------
@route("POST", "/app/installations/{installation_id}/access_tokens", 201, auth="jwt")
def create_installation_token(installation_id: int) -> dict[str, Any]:
    state = _state()
    inst = state.installations.get(installation_id)
    if inst is None or inst.get("app_id", state.app_id) != g.app_id:
        raise not_found()  # another App's installation is not this App's to mint for
    req = body_object()
    repos, selection = list(inst["repositories"]), inst.get("repository_selection", "selected")
    if req.get("repositories") is not None or req.get("repository_ids") is not None:
        by_name = {r.split("/", 1)[1].casefold(): r for r in inst["repositories"]}
        by_id = {state.repo(r).id: r for r in inst["repositories"]}
        wanted = [by_name.get(str(n).casefold()) for n in req.get("repositories") or []]
        wanted += [by_id.get(i) for i in req.get("repository_ids") or []]
        if None in wanted:
            raise GitHubError(422, "There is at least one repository that does not exist or is not "
                                   "accessible to the parent installation.")
        repos, selection = list(dict.fromkeys(w for w in wanted if w)), "selected"
    perms = dict(inst["permissions"])
    if req.get("permissions") is not None:
        for name, level in req["permissions"].items():
            if ACCESS_LEVELS.get(level, 99) > ACCESS_LEVELS.get(inst["permissions"].get(name, ""), 0):
                raise GitHubError(422, "The permissions requested are not granted to this installation.")
        perms = {"metadata": "read", **req["permissions"]}
    tok = state.issue_token(installation_id, repos, perms)
    return {"token": tok.token, "expires_at": iso(tok.expires_at), "permissions": tok.permissions,
            "repository_selection": selection,
            "repositories": [render.repository(state, g.base, r) for r in repos]}


@route("GET", "/repos/{owner}/{repo}/installation", 200, auth="jwt")
def get_repo_installation(owner: str, repo: str) -> dict[str, Any]:
    # The App's installation that can reach the repository; 404 where none can (GitHub does not say
    # whether the repository exists).
    state, wanted = _state(), f"{owner}/{repo}".casefold()
    found = next(((iid, inst) for iid, inst in sorted(state.installations.items())
                  if wanted in {r.casefold() for r in inst["repositories"]}
                  and inst.get("app_id", state.app_id) == g.app_id), None)
    if found is None:
        raise not_found()
    return _installation(state, *found)


def _installation(state: FakeState, installation_id: int, inst: dict[str, Any]) -> dict[str, Any]:
    """GitHub's `installation` object."""
    account = render.user(g.base, {"login": inst["account"], "type": "Organization"})
    return {"id": installation_id, "account": account,
            "repository_selection": inst.get("repository_selection", "selected"),
            "access_tokens_url": f"{g.base}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{g.base}/installation/repositories",
            "html_url": f"{render.HTML_ROOT}/organizations/{inst['account']}/settings/installations/{installation_id}",
            "app_id": int(inst.get("app_id", state.app_id)), "client_id": f"Iv1.{inst.get('app_id', state.app_id)}",
            "app_slug": state.other_apps.get(inst.get("app_id"), ("", state.app_slug))[1],
            "target_id": stable_id(inst["account"]), "target_type": "Organization",
            "permissions": dict(inst["permissions"]), "events": ["pull_request", "issues", "push"],
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": None, "suspended_at": None}


@route("GET", "/app", 200, auth="jwt")
def get_authenticated_app() -> dict[str, Any]:
    # agentgate asks once who it is, to tell its own statuses and labels from anyone else's.
    return render.app(_state(), g.base)


@route("DELETE", "/installation/token", 204, auth="token")
def revoke_installation_token() -> None:
    g.token.revoked = True


# -- routes: the App's webhook delivery log ----------------------------------------------------------
def _public_delivery(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_") and k != "url"}


@route("GET", "/app/hook/deliveries", 200, auth="jwt", registry=HOOK_ROUTES)
def list_hook_deliveries() -> Any:
    # GitHub: newest first; `per_page` (max 100); `cursor` is opaque, "the starting delivery from which
    # the page of deliveries is fetched", given in the Link header's next/prev links; `status` filters
    # success (status_code 200-399) or failure (400-599).
    state = _state()
    try:
        per_page = min(max(int(request.args.get("per_page", 30)), 1), 100)
    except ValueError:
        per_page = 30
    items = sorted(state.hook_deliveries, key=lambda d: -d["id"])
    wanted = request.args.get("status")
    if wanted == "success":
        items = [d for d in items if 200 <= d["status_code"] <= 399]
    elif wanted == "failure":
        items = [d for d in items if 400 <= d["status_code"] <= 599]
    elif wanted is not None:
        raise invalid("HookDelivery", "status", "status is not included in the list")
    cursor = request.args.get("cursor")
    if cursor:
        match = re.fullmatch(r"v1_(\d+)", cursor)
        if match is None:
            raise GitHubError(400, "Invalid cursor")
        items = [d for d in items if d["id"] <= int(match.group(1))]
    page, rest = items[:per_page], items[per_page:]
    links = []
    if rest:
        args = request.args.to_dict() | {"per_page": str(per_page), "cursor": f"v1_{rest[0]['id']}"}
        links.append(f'<{request.base_url}?{urlencode(args)}>; rel="next"')
    if cursor:
        first = {k: v for k, v in request.args.to_dict().items() if k != "cursor"}
        links.append(f'<{request.base_url}?{urlencode(first)}>; rel="first"')
    return [_public_delivery(d) for d in page], ({"Link": ", ".join(links)} if links else {})


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts", 202, auth="jwt", registry=HOOK_ROUTES)
def redeliver_hook_delivery(delivery_id: int) -> dict[str, Any]:
    # GitHub answers 202 Accepted and delivers again in the background, as a new attempt of the same guid.
    if not _state().redeliver(delivery_id):
        raise not_found()
    return {}


# -- routes: repository and pulls ----------------------------------------------------------------
READ_PULLS: Perm = (("pull_requests",), "read")
ISSUES_READ: Perm = (("issues", "pull_requests"), "read")
ISSUES_WRITE: Perm = (("issues", "pull_requests"), "write")


def _pull(number: int) -> dict[str, Any]:
    pr = g.repo.pulls.get(number)
    if pr is None:
        raise not_found()
    return pr


@route("GET", "/repos/{owner}/{repo}", 200, (("metadata",), "read"))
def get_repo() -> dict[str, Any]:
    return render.repository(_state(), g.base, g.repo.full_name)


@route("GET", "/repos/{owner}/{repo}/pulls", 200, READ_PULLS)
def list_pulls() -> Any:
    state, repo = _state(), g.repo
    want = request.args.get("state", "open")
    if want not in ("open", "closed", "all"):
        raise invalid("PullRequest", "state", "state is not included in the list")
    prs = [p for p in repo.pulls.values() if want == "all" or p.get("state", "open") == want]
    if "head" in request.args:  # "user:ref"
        user, _, ref = request.args["head"].partition(":") if ":" in request.args["head"] else (
            "", "", request.args["head"])
        prs = [p for p in prs if p["head"]["ref"] == ref
               and (not user or render.head_repo_name(repo, p).split("/")[0] == user)]
    if "base" in request.args:
        prs = [p for p in prs if p["base"]["ref"] == request.args["base"]]
    sort = request.args.get("sort", "created")
    key = {"updated": lambda p: (p.get("updated_at") or "", p["number"])}.get(sort, lambda p: p["number"])
    default_desc = sort in ("created", "updated")
    prs.sort(key=key, reverse=request.args.get("direction", "desc" if default_desc else "asc") == "desc")
    page, headers = paginate(prs)
    return [render.pull(state, g.base, repo, p, simple=True) for p in page], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200, READ_PULLS)
def get_pull(pull_number: int) -> dict[str, Any]:
    return render.pull(_state(), g.base, g.repo, _pull(pull_number))


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", 200, READ_PULLS)
def list_pull_files(pull_number: int) -> Any:
    _pull(pull_number)
    files = g.repo.files.get(pull_number, [])[:3000]  # GitHub: "a maximum of 3000 files"
    page, headers = paginate(files)
    return [render.pr_file(g.base, g.repo, f) for f in page], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", 200, READ_PULLS)
def list_reviews(pull_number: int) -> Any:
    _pull(pull_number)
    # A PENDING review is visible only to its author, and the App never authors one here.
    reviews = [r for r in g.repo.reviews.get(pull_number, []) if r["state"] != "PENDING"]
    page, headers = paginate(reviews)
    return [render.review(g.base, g.repo, pull_number, r) for r in page], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", 200, READ_PULLS)
def list_pull_commits(pull_number: int) -> Any:
    _pull(pull_number)
    commits = g.repo.commits.get(pull_number, [])[:250]  # GitHub: "a maximum of 250 commits"
    page, headers = paginate(commits)
    return [render.commit(g.base, g.repo, c) for c in page], headers


@route("GET", "/repos/{owner}/{repo}/commits/{ref}", 200, (("contents",), "read"))
def get_commit(ref: str) -> dict[str, Any]:
    # PyGithub's repo.get_commit(sha) fetches this before commit.create_status(...).
    repo = g.repo
    sha = repo.resolve_ref(ref)
    if sha is None:
        raise GitHubError(422, f"No commit found for SHA: {ref}")
    seeded = next((c for cs in repo.commits.values() for c in cs if c["sha"] == sha), {"sha": sha})
    files = [render.pr_file(g.base, repo, f) for f in seeded.get("files", [])]
    adds, dels = sum(f["additions"] for f in files), sum(f["deletions"] for f in files)
    return {**render.commit(g.base, repo, seeded), "files": files,
            "stats": {"total": adds + dels, "additions": adds, "deletions": dels}}


@route("GET", "/repos/{owner}/{repo}/branches/{branch}", 200, (("contents",), "read"))
def get_branch(branch: str) -> dict[str, Any]:
    repo = g.repo
    sha = repo.branches.get(branch) or repo.resolve_ref(branch)
    if sha is None or sha == branch:  # a sha is not a branch name
        raise GitHubError(404, "Branch not found")
    protected = branch == repo.default_branch
    return {"name": branch, "protected": protected,
            "protection": {"enabled": protected, "required_status_checks": {
                "enforcement_level": "everyone" if protected else "off", "contexts": ["agentgate"] if protected else [],
                "checks": [{"context": "agentgate", "app_id": None}] if protected else []}},
            "protection_url": f"{g.base}/repos/{repo.full_name}/branches/{branch}/protection",
            "commit": render.commit(g.base, repo, {"sha": sha}),
            "_links": {"self": f"{g.base}/repos/{repo.full_name}/branches/{branch}",
                       "html": f"https://github.com/{repo.full_name}/tree/{branch}"}}


@route("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls", 200,
       (("pull_requests", "contents"), "read"))
def list_pulls_for_commit(commit_sha: str) -> Any:
    # GitHub: "Lists the merged pull request that introduced the commit to the repository. If the
    # commit is not present in the default branch, it will return merged and open pull requests
    # associated with the commit." A merged PR introduced its merge commit (``merge_commit_sha``) and
    # carries its commits; a closed, unmerged PR is not listed.
    repo = g.repo

    def carries(n: int, p: dict[str, Any]) -> bool:
        return p["head"]["sha"] == commit_sha or any(c["sha"] == commit_sha for c in repo.commits.get(n, []))

    prs = [p for n, p in sorted(repo.pulls.items())
           if ((p.get("merged") or p.get("merged_at")) and (p.get("merge_commit_sha") == commit_sha or carries(n, p)))
           or (p.get("state", "open") == "open" and carries(n, p))]
    page, headers = paginate(prs)
    return [render.pull(_state(), g.base, repo, p, simple=True) for p in page], headers


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", 200, (("contents",), "read"))
def get_git_ref(ref: str) -> dict[str, Any]:
    # GitHub: "The :ref in the URL must be formatted as heads/<branch name> for branches and
    # tags/<tag name> for tags. If the :ref doesn't match an existing ref, a 404 is returned."
    repo = g.repo
    kind, _, name = ref.partition("/")
    sha: str | None = None
    if kind == "heads" and name:
        sha = repo.branches.get(name) or repo.resolve_ref(name)
        sha = None if sha == name else sha  # a sha is not a branch name
    elif kind == "tags" and name:
        sha = repo.tags.get(name)
    if sha is None:
        raise not_found()
    api = f"{g.base}/repos/{repo.full_name}"
    return {"ref": f"refs/{ref}", "node_id": render.node_id("Ref", stable_id(f"{repo.full_name}:{ref}")),
            "url": f"{api}/git/refs/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"}}


# -- routes: contents and collaborators ------------------------------------------------------------
def _tree(repo: Repo, ref: str) -> dict[str, str] | None:
    """Files at ``ref``: seeded under that exact ref, or under a branch/sha that resolves the same."""
    if ref in repo.contents:
        return repo.contents[ref]
    sha = repo.resolve_ref(ref)
    return next((t for key, t in repo.contents.items() if sha and repo.resolve_ref(key) == sha), None)


@route("GET", "/repos/{owner}/{repo}/contents/{path}", 200, (("contents",), "read"))
def get_content(path: str) -> Any:
    repo = g.repo
    ref = request.args.get("ref") or repo.default_branch
    tree = _tree(repo, ref)
    if tree is None:
        # A commit GitHub knows with nothing seeded is an empty tree (the file is missing); only a ref
        # that names no commit at all gets GitHub's "No commit found".
        if ref != repo.default_branch and repo.resolve_ref(ref) is None:
            raise GitHubError(404, f"No commit found for the ref {ref}")
        tree = {}
    path = path.strip("/")
    if path in tree:
        return render.content_file(g.base, repo, ref, path, tree[path])
    prefix = path + "/"
    children: dict[str, str] = {}
    for p in tree:
        if p.startswith(prefix):
            rest = p[len(prefix):]
            children[prefix + rest.split("/")[0]] = "dir" if "/" in rest else "file"
    if not children:
        raise not_found()
    return [render.content_entry(g.base, repo, ref, p, kind, tree.get(p, ""))
            for p, kind in sorted(children.items())]


# role -> (legacy "permission", permissions flags); GitHub maps maintain->write, triage->read.
_LEGACY = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read",
           "none": "none"}


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", 200, (("metadata",), "read"))
def get_collaborator_permission(username: str) -> dict[str, Any]:
    repo = g.repo
    # Not seeded = not a collaborator: "none" on a private repo, "read" on a public one (anyone can
    # read it). GitHub 404s only for accounts that do not exist, which the fake does not model.
    role = repo.permissions.get(username, "none" if repo.private else "read")
    rank = ("none", "read", "triage", "write", "maintain", "admin").index(role)
    flags = {"pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3, "maintain": rank >= 4,
             "admin": rank >= 5}
    u = render.user(g.base, username) or {}
    return {"permission": _LEGACY[role], "role_name": role,
            "user": {**u, "permissions": flags, "role_name": role}}


# -- routes: statuses ------------------------------------------------------------------------------
@route("POST", "/repos/{owner}/{repo}/statuses/{sha}", 201, (("statuses",), "write"))
def create_status(sha: str) -> dict[str, Any]:
    state, repo, req = _state(), g.repo, body_object()
    if req.get("state") not in ("error", "failure", "pending", "success"):
        raise invalid("Status", "state", "state is not included in the list")
    description = req.get("description")
    if description is not None and len(description) > 140:
        raise invalid("Status", "description", "description is too long (maximum is 140 characters)")
    if sha not in repo.known_shas():
        raise GitHubError(422, f"No commit found for SHA: {sha}")
    stored = state.add_status(repo.full_name, sha, req["state"], req.get("context") or "default",
                              description, req.get("target_url"))
    return render.status(g.base, repo, sha, stored)


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", 200, (("statuses",), "read"))
def list_statuses(ref: str) -> Any:
    sha = g.repo.resolve_ref(ref)
    newest_first = list(reversed(g.repo.statuses.get(sha or "", [])))
    page, headers = paginate(newest_first)
    return [render.status(g.base, g.repo, sha or ref, s) for s in page], headers


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/status", 200, (("statuses",), "read"))
def combined_status(ref: str) -> dict[str, Any]:
    repo = g.repo
    sha = repo.resolve_ref(ref)
    if sha is None:
        raise GitHubError(404, f"No commit found for SHA: {ref}")
    latest: dict[str, dict[str, Any]] = {}
    for s in reversed(repo.statuses.get(sha, [])):
        latest.setdefault(s["context"], s)
    states = {s["state"] for s in latest.values()}
    if states & {"error", "failure"}:
        combined = "failure"
    elif not states or "pending" in states:
        combined = "pending"
    else:
        combined = "success"
    api = f"{g.base}/repos/{repo.full_name}"
    return {"state": combined, "sha": sha, "total_count": len(latest),
            "statuses": [render.status(g.base, repo, sha, s) for s in latest.values()],
            "repository": render.repository(_state(), g.base, repo.full_name),
            "commit_url": f"{api}/commits/{sha}", "url": f"{api}/commits/{sha}/status"}


# -- routes: issues, comments, labels --------------------------------------------------------------
def _issue(number: int) -> None:
    if not g.repo.has_issue(number):
        raise not_found()


def _comment_body() -> str:
    text = body_object().get("body")
    if not isinstance(text, str) or not text:
        raise invalid("IssueComment", "body", "body wasn't supplied")
    if len(text) > 65536:
        raise invalid("IssueComment", "body", "Body is too long (maximum is 65536 characters)")
    return text


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 200, ISSUES_READ)
def get_issue(issue_number: int) -> dict[str, Any]:
    _issue(issue_number)
    return render.issue(_state(), g.base, g.repo, issue_number)


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 200, ISSUES_READ)
def list_comments(issue_number: int) -> Any:
    _issue(issue_number)
    comments = g.repo.comments.get(issue_number, [])
    if since := request.args.get("since"):
        comments = [c for c in comments if c.get("updated_at", "") >= since]
    page, headers = paginate(comments)
    return [render.comment(g.base, g.repo, issue_number, c) for c in page], headers


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 201, ISSUES_WRITE)
def create_comment(issue_number: int) -> dict[str, Any]:
    _issue(issue_number)
    state = _state()
    c = state.add_comment(g.repo.full_name, issue_number, _comment_body(), state.bot)
    return render.comment(g.base, g.repo, issue_number, c)


def _find_comment(comment_id: int) -> tuple[int, dict[str, Any]]:
    found = g.repo.find_comment(comment_id)
    if found is None:
        raise not_found()
    return found


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200, ISSUES_WRITE)
def update_comment(comment_id: int) -> dict[str, Any]:
    number, c = _find_comment(comment_id)
    c["body"], c["updated_at"] = _comment_body(), iso(_state().now())
    return render.comment(g.base, g.repo, number, c)


@route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 204, ISSUES_WRITE)
def delete_comment(comment_id: int) -> None:
    number, c = _find_comment(comment_id)
    g.repo.comments[number].remove(c)


def _labels(number: int) -> list[dict[str, Any]]:
    return [render.label(g.base, g.repo, n) for n in g.repo.labels.get(number, [])]


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels", 200, ISSUES_READ)
def list_labels(issue_number: int) -> Any:
    _issue(issue_number)
    return paginate(_labels(issue_number))


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", 200, ISSUES_WRITE)
def add_labels(issue_number: int) -> list[dict[str, Any]]:
    _issue(issue_number)
    # Accepted shapes (OpenAPI oneOf): {"labels": [...]}, [...], where items are names or {"name": ...}.
    req = body()
    items = req.get("labels") if isinstance(req, dict) else req
    if not isinstance(items, list) or not items:
        raise invalid("Label", "labels", "labels must be a non-empty list")
    current = g.repo.labels.setdefault(issue_number, [])
    for item in items:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise invalid("Label", "name", "name is invalid")
        if name not in current:
            current.append(name)
    return _labels(issue_number)


@route("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", 200, ISSUES_WRITE)
def remove_label(issue_number: int, name: str) -> list[dict[str, Any]]:
    _issue(issue_number)
    current = g.repo.labels.get(issue_number, [])
    if name not in current:
        raise GitHubError(404, "Label does not exist")
    current.remove(name)
    return _labels(issue_number)


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/events", 200, ISSUES_READ)
def list_issue_events(issue_number: int) -> Any:
    _issue(issue_number)
    page, headers = paginate(g.repo.events.get(issue_number, []))
    return [render.issue_event(g.base, g.repo, e) for e in page], headers


@route("GET", "/repos/{owner}/{repo}/issues/events/{event_id}", 200, ISSUES_READ)
def get_issue_event(event_id: int) -> dict[str, Any]:
    # PyGithub fetches this for every event whose raw_data is read (list items start "incomplete").
    for number, events in g.repo.events.items():
        for e in events:
            if e.get("id") == event_id:
                out = render.issue_event(g.base, g.repo, e)
                return {**out, "issue": render.issue(_state(), g.base, g.repo, number)}
    raise not_found()


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/timeline", 200, ISSUES_READ)
def list_timeline(issue_number: int) -> Any:
    _issue(issue_number)
    page, headers = paginate(g.repo.timeline.get(issue_number, []))
    return [render.timeline_event(_state(), g.base, g.repo, e) for e in page], headers


# -- routes: checks and actions --------------------------------------------------------------------
_CHECK_STATUSES = ("queued", "in_progress", "completed")
_CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                "timed_out")


def _apply_check_fields(run: dict[str, Any], req: dict[str, Any]) -> None:
    """Validate + apply check-run fields; a conclusion implies status=completed (GitHub does this)."""
    for key in ("name", "details_url", "external_id", "started_at", "completed_at", "status",
                "conclusion", "actions"):
        if key in req:
            run[key] = req[key]
    if "output" in req:
        out = req["output"] or {}
        if not out.get("title") or not out.get("summary"):
            raise invalid("CheckRun", "output", "output needs a title and a summary")
        run["output"] = out
    if run.get("status") not in _CHECK_STATUSES:
        raise invalid("CheckRun", "status", "status is not included in the list")
    if "conclusion" in req and req["conclusion"] is not None:
        if req["conclusion"] not in _CONCLUSIONS:
            raise invalid("CheckRun", "conclusion", "conclusion is not included in the list")
        run["status"] = "completed"
    if run["status"] == "completed":
        if not run.get("conclusion"):
            raise invalid("CheckRun", "conclusion", "conclusion must be given when status is completed")
        run["completed_at"] = run.get("completed_at") or iso(_state().now())


@route("POST", "/repos/{owner}/{repo}/check-runs", 201, (("checks",), "write"))
def create_check_run() -> dict[str, Any]:
    state, repo, req = _state(), g.repo, body_object()
    for required in ("name", "head_sha"):
        if not req.get(required):
            raise GitHubError(422, f'Invalid request.\n\n"{required}" wasn\'t supplied.')
    if req["head_sha"] not in repo.known_shas():
        raise GitHubError(422, f"No commit found for SHA: {req['head_sha']}")
    run: dict[str, Any] = {"id": state.next_id(), "head_sha": req["head_sha"], "status": "queued",
                           "started_at": iso(state.now())}
    _apply_check_fields(run, req)
    repo.check_runs[run["id"]] = run
    return render.check_run(state, g.base, repo, run)


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", 200, (("checks",), "write"))
def update_check_run(check_run_id: int) -> dict[str, Any]:
    run = g.repo.check_runs.get(check_run_id)
    if run is None:
        raise not_found()
    updated = dict(run)
    _apply_check_fields(updated, body_object())  # validate before mutating the stored run
    run.update(updated)
    return render.check_run(_state(), g.base, g.repo, run)


def _workflow_run(run_id: int) -> dict[str, Any]:
    run = g.repo.workflow_runs.get(run_id)
    if run is None:
        raise not_found()
    return run


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", 200, (("actions",), "read"))
def get_workflow_run(run_id: int) -> dict[str, Any]:
    return render.workflow_run(_state(), g.base, g.repo, _workflow_run(run_id))


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule", 204,
       (("deployments",), "write"))
def review_protection_rule(run_id: int) -> None:
    _workflow_run(run_id)
    req = body_object()
    if not isinstance(req.get("environment_name"), str) or not req["environment_name"]:
        raise invalid("DeploymentProtectionRule", "environment_name", "environment_name wasn't supplied")
    if "state" in req and req["state"] not in ("approved", "rejected"):
        raise invalid("DeploymentProtectionRule", "state", "state is not included in the list")
    if "state" not in req and not req.get("comment"):  # OpenAPI oneOf: a state, or at least a comment
        raise invalid("DeploymentProtectionRule", "comment", "comment wasn't supplied")
    g.repo.protection_rule_callbacks.append({"run_id": run_id, **req, "received_at": iso(_state().now())})


# -- app factory -----------------------------------------------------------------------------------
def create_app(state: FakeState) -> Flask:
    app = Flask("fakegithub", static_folder=None)
    app.config["FAKE_STATE"] = state
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep GitHub-like key order
    for spec in ROUTES + (HOOK_ROUTES if state.hook_log else []):
        app.add_url_rule(flask_rule(spec.template), endpoint=f"{spec.method} {spec.template}",
                         view_func=_dispatch(spec), methods=[spec.method])

    @app.before_request
    def record_and_check_version() -> Response | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        kind, _ = credentials()
        with state.lock:
            g.call = Call(request.method, request.path, request.args.to_dict(),
                          request.get_json(force=True, silent=True) if request.get_data() else None, kind,
                          at=state.now())
            state.calls.append(g.call)
            state.changed.notify_all()
            limited = state.rate_limited_until - state.now()
        if limited > 0:
            return _rate_limited(state, limited)
        fault = state.fault_for(request.method, request.path)
        if fault is not None:
            g.fault = fault
            if fault.delay:
                time.sleep(fault.delay)  # the fault itself: a GitHub that answers late
            if fault.status is not None:
                resp = jsonify({"message": fault.message, "documentation_url": DOCS, "status": str(fault.status)})
                resp.status_code = fault.status
                resp.headers.update(fault.headers)
                return resp
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            supported = ", ".join(f'"{v}"' for v in SUPPORTED_API_VERSIONS)
            raise GitHubError(400, f'The version you specified in the "X-GitHub-Api-Version" request '
                                   f'header, "{version}", is not a supported version. The following '
                                   f"versions are currently supported: {supported}.")
        return None

    @app.after_request
    def github_headers(resp: Response) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return resp
        fault = g.get("fault")
        if fault is not None and fault.hold is not None and fault.status is None:
            # Applied, answer held: a client killed meanwhile never learns what it did.
            fault.held.set()
            fault.hold.wait(60)
        with state.lock:
            if "call" in g:
                g.call.status = resp.status_code
            used = len(state.calls)
            limited = state.rate_limited_until > state.now()
            reset = math.ceil(state.rate_limited_until) if limited else int(state.now()) + 3600
            state.changed.notify_all()
        # Rate-limit headers let clients that throttle themselves (PyGithub, gidgethub) stay calm.
        resp.headers.update({
            "X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0" if limited else str(max(5000 - used, 1)),
            "X-RateLimit-Used": str(used), "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Api-Version-Selected": request.headers.get("X-GitHub-Api-Version",
                                                                 SUPPORTED_API_VERSIONS[0]),
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
        })
        return resp

    @app.errorhandler(GitHubError)
    def github_error(err: GitHubError) -> tuple[Response, int]:
        payload: dict[str, Any] = {"message": err.message, "documentation_url": DOCS,
                                   "status": str(err.status)}
        if err.errors:
            payload["errors"] = err.errors
        return jsonify(payload), err.status

    @app.errorhandler(404)
    @app.errorhandler(405)  # GitHub answers an unsupported method with 404, not 405
    def unknown_route(_err: Exception) -> tuple[Response, int]:
        return github_error(not_found())

    _control_routes(app, state)
    return app


def _rate_limited(state: FakeState, wait: float) -> Response:
    """GitHub's refusal while a rate limit lasts: 403 with the primary limit spent (reset in
    X-RateLimit-Reset, an epoch), or 429 with Retry-After (seconds)."""
    if state.rate_limit_status == 429:
        resp = jsonify({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                                   "you try again.", "documentation_url": DOCS, "status": "429"})
        resp.status_code = 429
        resp.headers["Retry-After"] = str(math.ceil(wait))
        return resp
    resp = jsonify({"message": "API rate limit exceeded for installation ID 42.", "documentation_url": DOCS,
                    "status": "403"})
    resp.status_code = 403
    return resp


def _control_routes(app: Flask, state: FakeState) -> None:
    """/_fake/*: seed and inspect the fake from another process. Not recorded, no auth."""

    @app.post("/_fake/state")
    def fake_merge_state() -> Response:
        state.merge(request.get_json(force=True))
        return jsonify({"ok": True})

    @app.get("/_fake/state")
    def fake_dump_state() -> Response:
        with state.lock:  # serialise while no request can mutate what the snapshot references
            return jsonify(state.snapshot())

    @app.get("/_fake/calls")
    def fake_calls() -> Response:
        with state.lock:
            return jsonify([asdict(c) for c in state.calls])

    @app.post("/_fake/reset")
    def fake_reset() -> Response:
        if (request.get_json(force=True, silent=True) or {}).get("calls_only"):
            with state.lock:
                state.calls.clear()
        else:
            state.reset()
        return jsonify({"ok": True})

    @app.post("/_fake/tokens")
    def fake_issue_token() -> Response:
        req = request.get_json(force=True)
        tok = state.issue_token(req["installation_id"], req.get("repositories"), req.get("permissions"))
        return jsonify({"token": tok.token, "expires_at": iso(tok.expires_at)})


# Routes kept in modules of their own register themselves with `route` when imported; importing them
# here, after every name above exists, puts them in ROUTES before any app is created.
from . import admin, manifests  # noqa: E402,F401
