"""Tokens for agents on GitHub: installation tokens restricted to one repository and a set of
permissions, minted as the App and revoked with the token itself.

Nothing here is cached or stored: each `mint` is a fresh token handed to the caller (which keeps it
only encrypted, to revoke it). GitHub's tokens are opaque strings of up to about 520 characters
(`ghs_...`); nothing here assumes a length or a shape."""

from __future__ import annotations

import re
import urllib.parse
from datetime import datetime
from typing import Any

import redis
import requests

from gatekeeper.forges.github.auth import HTTP_TIMEOUT, InstallationTokens, refused
from gatekeeper.forges.github.client import GitHubForge
from gatekeeper.forges.github.forge import open_github
from gatekeeper.forges.port import Capability, ForgeError, MintedToken
from gatekeeper.settings import Settings

# GitHub's owner and repository names; anything else is refused before a URL is built from it.
_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+")
_LEVEL = {"read": 1, "write": 2, "admin": 3}
# GitHub adds this to every installation token, whatever was asked.
_IMPLIED = {"metadata": "read"}


def _repo_name(repo: str) -> tuple[str, str]:
    if not _REPO.fullmatch(repo or "") or repo.endswith("/.") or repo.endswith("/.."):
        raise ForgeError(f"{repo!r} is not a GitHub repository name (OWNER/NAME)")
    owner, name = repo.split("/", 1)
    return owner, name


class GitHubTokenIssuer:
    """The `TokenIssuer` of GitHub: finds the App's installation on a repository, mints installation
    tokens restricted to that repository, and revokes them."""

    platform = "github"

    def __init__(self, settings: Settings, conn: redis.Redis, session: requests.Session | None = None):
        self.settings = settings
        self.conn = conn
        self.api_url = settings.github_api_url.rstrip("/")
        self.tokens = InstallationTokens(conn, app_id=str(settings.github_app_id),
                                         private_key=str(settings.github_private_key), api_url=self.api_url,
                                         session=session)
        self.session = self.tokens.session
        # Agent tokens come from the agent App when one is configured (AGENTGATE_AGENT_APP_ID): its bot, not
        # agentgate's, then acts for the agent. agentgate reads with its own App either way.
        self.minter = self.tokens
        if settings.agent_app_id and settings.agent_app_private_key:
            self.minter = InstallationTokens(conn, app_id=str(settings.agent_app_id),
                                             private_key=str(settings.agent_app_private_key), api_url=self.api_url,
                                             session=self.session)
        # Per issuer (one request or job): an installation never moves between repositories mid-request.
        self._installations: dict[tuple[str, str], int] = {}

    def installation(self, repo: str, app: InstallationTokens | None = None) -> int:
        """The id of the App's installation that covers `repo` (GET /repos/{owner}/{repo}/installation);
        `app`: the agent App's, for minting."""
        app = app or self.tokens
        owner, name = _repo_name(repo)
        key = (app.app_id, repo.lower())
        if key not in self._installations:
            path = f"/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(name)}/installation"
            try:
                resp = app.app_request("GET", path)
            except requests.RequestException as exc:
                raise ForgeError(f"could not reach GitHub to find the installation on {repo}: "
                                 f"{type(exc).__name__}") from None
            if resp.status_code == 404:
                which = "agentgate's agent App" if app is not self.tokens else "agentgate"
                raise ForgeError(f"{which} is not installed on {repo}", 404)
            if resp.status_code != 200:
                raise refused(resp, f"the App's installation on {repo}")
            self._installations[key] = int(resp.json()["id"])
        return self._installations[key]

    def reader(self, repo: str) -> GitHubForge:
        forge = open_github(self.settings, self.conn, self.installation(repo), repo, frozenset({Capability.READ}))
        forge.http_timeout = self.settings.github_timeout
        return forge

    def mint(self, repo: str, permissions: dict[str, str], ttl: int, name: str) -> MintedToken:
        """An installation token for `repo` only, with exactly `permissions`. GitHub gives it an hour and
        cannot be asked for less: agentgate revokes it at `ttl`. `name` has nowhere to go on GitHub."""
        _, short = _repo_name(repo)
        if not permissions:
            # No `permissions` means every permission of the installation: never what a grant meant.
            raise ForgeError("no permissions to mint a token with", 422)
        installation = self.installation(repo, self.minter)
        try:
            resp = self.minter.app_request("POST", f"/app/installations/{installation}/access_tokens",
                                           json_body={"repositories": [short], "permissions": dict(permissions)})
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub to mint a token: {type(exc).__name__}") from None
        if resp.status_code == 422:
            # The installation itself lacks a permission asked (or the repository left it): GitHub says which.
            raise ForgeError(f"GitHub refused the token for {repo}: {_message(resp)}", 422)
        if resp.status_code != 201:
            raise refused(resp, f"a token for {repo}")
        data = resp.json()
        token = str(data.get("token") or "")
        if not token:
            raise ForgeError(f"GitHub answered a token request for {repo} without a token")
        granted = data.get("permissions") if isinstance(data.get("permissions"), dict) else dict(permissions)
        problem = _beyond(repo, data, permissions, granted)
        if problem:
            # Never hand out a token wider than the grant: take it back and say why.
            self.revoke(repo, token, "")
            raise ForgeError(f"GitHub minted a token wider than asked ({problem}); it was revoked")
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")).timestamp()
        return MintedToken(token=token, expires_at=expires, permissions={str(k): str(v) for k, v in granted.items()})

    def revoke(self, repo: str, token: str, handle: str) -> None:
        """DELETE /installation/token, authenticated by the token itself. 401: it is already dead (expired
        or revoked), which is what was wanted."""
        try:
            resp = self.session.request("DELETE", f"{self.api_url}/installation/token", timeout=HTTP_TIMEOUT,
                                        headers={"Authorization": f"token {token}",
                                                 "Accept": "application/vnd.github+json",
                                                 "X-GitHub-Api-Version": "2022-11-28"})
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub to revoke a token: {type(exc).__name__}") from None
        if resp.status_code in (204, 401):
            return
        raise refused(resp, f"revoking a token for {repo}")


def _beyond(repo: str, data: dict[str, Any], asked: dict[str, str], granted: dict[str, Any]) -> str:
    """What of GitHub's answer exceeds the request (another repository, a wider permission), or ''."""
    if data.get("repository_selection") == "all":
        return "every repository of the installation"
    listed = data.get("repositories")
    if isinstance(listed, list):
        names = {str((r or {}).get("full_name") or "").lower() for r in listed}
        if names != {repo.lower()}:
            return "other repositories"
    allowed = {**_IMPLIED, **asked}
    for perm, level in granted.items():
        if _LEVEL.get(str(level), 99) > _LEVEL.get(allowed.get(str(perm), ""), 0):
            return f"{perm}: {level}"
    return ""


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("message", ""))[:300]
    except ValueError:
        return ""


def token_issuer(settings: Settings, conn: redis.Redis) -> GitHubTokenIssuer | None:
    """GitHub's issuer, or None where agentgate has no App credentials (or only records, in dry run)."""
    if settings.dry_run or not settings.has_github_credentials:
        return None
    return GitHubTokenIssuer(settings, conn)
