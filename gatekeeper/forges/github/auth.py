"""GitHub App authentication: app JWTs and installation tokens scoped to one repository.

Tokens are cached in the shared Redis (so every worker process reuses them) and encrypted there with
a key derived from the App's private key: a Redis dump alone never yields a usable token."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime

import jwt
import redis
import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gatekeeper.forges.port import ForgeError
from gatekeeper.state import keys
from gatekeeper.state.store import text

REFRESH_MARGIN_SECONDS = 5 * 60  # never hand out a token that expires within five minutes
HTTP_TIMEOUT = 10

def app_jwt(app_id: str, private_key: str, now: float | None = None) -> str:
    now = int(now if now is not None else time.time())
    # iat is backdated 60 s to tolerate clock drift; GitHub rejects exp more than 10 minutes ahead.
    claims = {"iat": now - 60, "exp": now + 540, "iss": app_id}
    return jwt.encode(claims, private_key, algorithm="RS256")


def _fernet(private_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agentgate-token-cache",
                   info=b"installation-tokens").derive(private_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float


class InstallationTokens:
    def __init__(self, conn: redis.Redis, *, app_id: str, private_key: str, api_url: str,
                 session: requests.Session | None = None):
        self.conn = conn
        self.app_id = app_id
        self.private_key = private_key
        self.api_url = api_url.rstrip("/")
        self.session = session or requests.Session()
        self._fernet = _fernet(private_key)

    def _cache_key(self, installation_id: int, repo: str, permissions: dict[str, str]) -> str:
        scope = hashlib.sha256(json.dumps([repo.lower(), permissions], sort_keys=True).encode()).hexdigest()[:24]
        return keys.installation_token("github", installation_id, scope)

    def token(self, installation_id: int, repo: str, permissions: dict[str, str]) -> str:
        """A token for one repository with exactly `permissions`, cached until 5 min before expiry."""
        cache_key = self._cache_key(installation_id, repo, permissions)
        cached = self.conn.get(cache_key)
        if cached is not None:
            try:
                return self._fernet.decrypt(cached).decode()
            except InvalidToken:
                self.conn.delete(cache_key)  # the App key was rotated; mint a new one
        issued = self.mint(installation_id, repo, permissions)
        ttl = int(issued.expires_at - time.time() - REFRESH_MARGIN_SECONDS)
        if ttl > 0:
            self.conn.set(cache_key, self._fernet.encrypt(issued.token.encode()), ex=ttl)
        return issued.token

    def mint(self, installation_id: int, repo: str, permissions: dict[str, str]) -> IssuedToken:
        name = repo.split("/", 1)[-1]
        try:
            resp = self.session.post(
                f"{self.api_url}/app/installations/{int(installation_id)}/access_tokens",
                json={"repositories": [name], "permissions": permissions},
                headers={"Authorization": f"Bearer {app_jwt(self.app_id, self.private_key)}",
                         "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub to mint a token: {type(exc).__name__}") from None
        if resp.status_code != 201:
            # The body may echo request details but never the token; keep only GitHub's message.
            message = _message(resp)
            raise ForgeError(f"GitHub refused an installation token ({resp.status_code}): {message}")
        data = resp.json()
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")).timestamp()
        return IssuedToken(token=data["token"], expires_at=expires)


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("message", ""))[:200]
    except ValueError:
        return ""


def app_slug(conn: redis.Redis, tokens: InstallationTokens) -> str:
    """The App's slug (its bot user is `<slug>[bot]`), asked of GitHub once and kept in the store."""
    cache = keys.app_slug(tokens.app_id)
    cached = conn.get(cache)
    if cached is not None:
        return text(cached)
    try:
        resp = tokens.session.get(f"{tokens.api_url}/app", timeout=HTTP_TIMEOUT, headers={
            "Authorization": f"Bearer {app_jwt(tokens.app_id, tokens.private_key)}",
            "Accept": "application/vnd.github+json"})
    except requests.RequestException as exc:
        raise ForgeError(f"could not reach GitHub for the App's identity: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise ForgeError(f"GitHub refused the App's identity ({resp.status_code}): {_message(resp)}", resp.status_code)
    slug = str(resp.json()["slug"])
    conn.set(cache, slug, ex=keys.APP_SLUG_TTL)
    return slug
