"""Tokens for agents on GitLab: project access tokens, one project each, with the fewest scopes and
the lowest role the permissions need, revoked by agentgate when the task ends.

GitLab has no App installations and no per-token permission list like GitHub's, so a grant in GitHub
App permission names is mapped onto GitLab's scopes and roles:

- `contents`: read -> `read_repository` (Git, and the repository files API); write -> `read_repository`
  and `write_repository` (push);
- `pull_requests`, `issues`, `statuses`, `checks`, `deployments`, `actions`: read -> `read_api`;
  write -> `api`;
- `metadata`: no scope of its own (GitHub gives it to every token; GitLab has no equivalent).

`read_api` is dropped where `api` is granted. The role is Developer (30) only with
`contents: write` (Developer with `api` can commit), else Reporter (20), and a write that needs Developer
(pull requests, statuses, checks, deployments, actions) without `contents: write` is refused; never
Maintainer or above (`admin` is refused). A permission
GitLab has no equivalent for is refused, not widened to `api`.

GitLab's expiry is a date (the token dies at 00:00 UTC that day) and cannot be earlier than tomorrow,
so a token is minted with the earliest date that still outlives its `ttl`, and agentgate revokes it
explicitly at the `ttl`.

Creating a project access token needs agentgate's own GitLab token to be a personal (or service
account) token of a member with at least the Maintainer role: GitLab refuses project and group
access tokens here."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
import requests

from gatekeeper.forges.gitlab.client import GitLabForge
from gatekeeper.forges.gitlab.credentials import current_token
from gatekeeper.forges.gitlab.forge import open_gitlab
from gatekeeper.forges.port import Capability, ForgeError, MintedToken, RateLimited
from gatekeeper.settings import Settings
from gatekeeper.state import metrics

HTTP_TIMEOUT = 15
REPORTER, DEVELOPER = 20, 30
NAME_LIMIT = 255
# Writes GitLab allows only from the Developer role up (a Reporter may write issues and comments).
DEVELOPER_WRITES = frozenset({"pull_requests", "statuses", "checks", "deployments", "actions"})
CANNOT_GRANT = 422  # the status of a refusal to map permissions, as GitHub answers ones it cannot grant

_REPOSITORY: dict[str, tuple[str, ...]] = {"read": ("read_repository",),
                                           "write": ("read_repository", "write_repository")}
_API: dict[str, tuple[str, ...]] = {"read": ("read_api",), "write": ("api",)}
# Each GitHub App permission (and level) as the GitLab scopes that allow it (see the table above).
PERMISSION_SCOPES: dict[str, dict[str, tuple[str, ...]]] = {
    "contents": _REPOSITORY,
    "metadata": {"read": ()},
    "pull_requests": _API,
    "issues": _API,
    "statuses": _API,
    "checks": _API,
    "deployments": _API,
    "actions": _API,
}


def scopes_for(permissions: dict[str, str]) -> tuple[list[str], int]:
    """The GitLab scopes and access level for `permissions`; ForgeError for anything GitLab cannot
    narrow to (an unknown permission, a level other than read or write), with status 422 as GitHub
    answers permissions it cannot grant."""
    if not permissions:
        raise ForgeError("no permissions to mint a token with", CANNOT_GRANT)
    scopes: set[str] = set()
    for name, level in permissions.items():
        levels = PERMISSION_SCOPES.get(name)
        if levels is None:
            raise ForgeError(f"the permission {name!r} has no GitLab equivalent", CANNOT_GRANT)
        if level not in levels:
            raise ForgeError(f"{name}: {level!r} cannot be granted on GitLab (read or write only)", CANNOT_GRANT)
        scopes.update(levels[level])
    if "api" in scopes:
        scopes.discard("read_api")
    if not scopes:
        raise ForgeError("the permissions asked need no GitLab scope: nothing to mint", CANNOT_GRANT)
    # Least privilege: the Developer role (needed to open merge requests, post statuses, run pipelines)
    # with `api` can also commit through the API, so it is only ever given with `contents: write`. Issues
    # and comments need no more than Reporter.
    if permissions.get("contents") == "write":
        return sorted(scopes), DEVELOPER
    needs_developer = sorted(n for n, level in permissions.items()
                             if level == "write" and n in DEVELOPER_WRITES)
    if needs_developer:
        raise ForgeError(f"on GitLab {', '.join(needs_developer)}: write needs the Developer role, which can also "
                         "push code: grant contents: write as well, or ask for read", CANNOT_GRANT)
    return sorted(scopes), REPORTER


def expiry_date(now: float, ttl: int) -> date:
    """The earliest expiry GitLab accepts (tomorrow, UTC) that still outlives `ttl`: GitLab ends a
    token at 00:00 UTC of its expiry date."""
    last_moment = datetime.fromtimestamp(now + max(0, ttl), UTC)
    tomorrow = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return max(tomorrow, last_moment.date() + timedelta(days=1))


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class GitLabTokenIssuer:
    """The `TokenIssuer` of GitLab: project access tokens, minted and revoked with agentgate's token."""

    platform = "gitlab"

    def __init__(self, settings: Settings, conn: redis.Redis, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time):
        if not settings.gitlab_url or not settings.gitlab_token:
            raise ForgeError("AGENTGATE_GITLAB_URL and AGENTGATE_GITLAB_TOKEN are not configured")
        self.settings = settings
        self.conn = conn
        self.session = session or requests.Session()
        self.session.hooks["response"].append(metrics.response_hook("gitlab"))  # counted by endpoint class
        self.clock = clock
        self._api = f"{settings.gitlab_url.rstrip('/')}/api/v4"
        self._token = current_token(conn, settings)  # rotated on a schedule, when configured

    # ---- TokenIssuer

    def reader(self, repo: str) -> GitLabForge:
        return open_gitlab(self.settings, self.conn, repo, frozenset({Capability.READ}))

    def mint(self, repo: str, permissions: dict[str, str], ttl: int, name: str) -> MintedToken:
        scopes, level = scopes_for(permissions)
        expires = expiry_date(self.clock(), ttl)
        body = {"name": (name or "agentgate")[:NAME_LIMIT], "scopes": scopes, "access_level": level,
                "expires_at": expires.isoformat()}
        resp = self._call("POST", f"{_project_path(repo)}/access_tokens", body, what=f"a token for {repo}")
        if resp.status_code != 201:
            raise self._refused(resp, f"a project access token for {repo}")
        data = _json(resp)
        token, token_id = str(data.get("token") or ""), data.get("id")
        if not token or not isinstance(token_id, int):
            raise ForgeError(f"GitLab answered a token request for {repo} without a token")
        if sorted(data.get("scopes") or []) != scopes or data.get("access_level") != level:
            # Never hand out a token wider than asked: take it back and say why.
            self.revoke(repo, token, str(token_id))
            raise ForgeError(f"GitLab minted a token for {repo} unlike the one asked "
                             f"(scopes {data.get('scopes')}, role {data.get('access_level')}); it was revoked")
        answered = str(data.get("expires_at") or expires.isoformat())
        try:
            ends = _midnight(date.fromisoformat(answered[:10]))
        except ValueError:
            ends = _midnight(expires)
        return MintedToken(token=token, expires_at=ends, permissions=dict(permissions), handle=str(token_id))

    def revoke(self, repo: str, token: str, handle: str) -> None:
        """DELETE /projects/:id/access_tokens/:token_id. A token GitLab no longer knows (404 naming the
        token) was revoked already; a project it cannot find is an error, since the token may live on."""
        if not handle.isdigit():
            raise ForgeError(f"no GitLab token id to revoke with ({handle!r})")
        resp = self._call("DELETE", f"{_project_path(repo)}/access_tokens/{int(handle)}",
                          what=f"revoking a token for {repo}")
        if resp.status_code == 204:
            return
        if resp.status_code == 404 and "access token" in _message(resp).lower():
            return
        raise self._refused(resp, f"revoking a project access token for {repo}")

    # ---- agentgate's own per-project tokens

    def rotate_token(self, project: str, token_id: int | str, expires_at: date | None = None) -> MintedToken:
        """POST /projects/:id/access_tokens/:token_id/rotate (`self`: the token agentgate acts with):
        GitLab revokes the old token at once and answers a new one, with a new id (`handle`)."""
        ident = str(token_id)
        if ident != "self" and not ident.isdigit():
            raise ForgeError(f"{token_id!r} is not a GitLab token id")
        body = {"expires_at": expires_at.isoformat()} if expires_at is not None else None
        resp = self._call("POST", f"{_project_path(project)}/access_tokens/{ident}/rotate", body,
                          what=f"rotating a token of {project}")
        if resp.status_code != 200:
            raise self._refused(resp, f"rotating a project access token of {project}")
        data = _json(resp)
        token = str(data.get("token") or "")
        if not token:
            raise ForgeError(f"GitLab answered the rotation of a token of {project} without a token")
        try:
            ends = _midnight(date.fromisoformat(str(data.get("expires_at") or "")[:10]))
        except ValueError:
            ends = 0.0  # GitLab set no expiry
        return MintedToken(token=token, expires_at=ends, permissions={}, handle=str(data.get("id") or ""))

    def rotate(self, project: str, token_id: int | str) -> str:
        """The new token after rotating `token_id` of `project` (see `rotate_token` for its id)."""
        return self.rotate_token(project, token_id).token

    # ---- HTTP

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str) -> requests.Response:
        try:
            return self.session.request(method, f"{self._api}{path}", json=body, timeout=HTTP_TIMEOUT,
                                        headers={"PRIVATE-TOKEN": self._token, "Accept": "application/json"})
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitLab for {what}: {type(exc).__name__}") from None

    def _refused(self, resp: requests.Response, what: str) -> ForgeError:
        status, message = resp.status_code, _message(resp)
        if status == 429:
            try:
                wait = float(resp.headers.get("Retry-After") or 60)
            except ValueError:
                wait = 60.0
            return RateLimited(f"GitLab rate limit: {what}", max(1.0, wait), status)
        # GitLab answers 400 "User does not have permission to create project access token" to a
        # project or group access token, or a Developer's: the operator needs to know which token to use.
        if status in (401, 403) or (status == 400 and "permission" in message.lower()):
            return ForgeError(f"GitLab refused {what} ({status}: {message}): agentgate's token needs the "
                              "Maintainer role there, and must be a personal or service account token", status)
        return ForgeError(f"GitLab refused {what} ({status}): {message}", status)


def _project_path(project: str) -> str:
    if not project or project.startswith("/") or project.endswith("/") or "//" in project:
        raise ForgeError(f"{project!r} is not a GitLab project path")
    return f"/projects/{urllib.parse.quote(project, safe='')}"


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        raise ForgeError("GitLab answered with something that is not JSON") from None
    if not isinstance(data, dict):
        raise ForgeError("GitLab answered with something that is not an object")
    return data


def _message(resp: requests.Response) -> str:
    """GitLab's reason: `message` (a string or a field -> errors object) or Grape's `error`. Never the
    request (a token in it would be echoed)."""
    try:
        data = resp.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    found = data.get("message", data.get("error", ""))
    return str(found)[:300]


def token_issuer(settings: Settings, conn: redis.Redis) -> GitLabTokenIssuer | None:
    """GitLab's issuer, or None where agentgate is not configured for GitLab (or only records, in dry run)."""
    if settings.dry_run or not settings.gitlab_url or not settings.gitlab_token:
        return None
    return GitLabTokenIssuer(settings, conn)
