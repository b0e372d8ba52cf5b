"""GitHub App authentication: app JWTs and installation tokens scoped to one repository.

Tokens are cached in the shared Redis (so every worker process reuses them) and encrypted there with
a key derived from the App's private key: a Redis dump alone never yields a usable token."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import jwt
import redis
import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gatekeeper.forges.port import ForgeError, RateLimited
from gatekeeper.state import keys, metrics
from gatekeeper.state.store import text

REFRESH_MARGIN_SECONDS = 5 * 60  # never hand out a token that expires within five minutes
HTTP_TIMEOUT = 10
TOKEN_LIFETIME_SECONDS = 3600  # GitHub: an installation token expires an hour after it was minted
SKEW_TOLERANCE = 5  # seconds of disagreement between clocks not worth correcting (iat is backdated 60 s)

log = logging.getLogger(__name__)


def app_jwt(app_id: str, private_key: str, now: float | None = None) -> str:
    now = int(now if now is not None else time.time())
    # iat is backdated 60 s to tolerate clock drift; GitHub rejects exp more than 10 minutes ahead.
    claims = {"iat": now - 60, "exp": now + 540, "iss": app_id}
    return jwt.encode(claims, private_key, algorithm="RS256")


# How far GitHub's clock is ahead of ours (negative: behind), per API, as its `Date` header showed. A
# JWT is judged by GitHub's clock: `iat` in its future or `exp` more than ten minutes ahead is refused,
# so a host whose clock drifted could not act as the App at all. Kept per process: each learns it from
# its first answer.
_skew: dict[str, float] = {}


def github_now(api_url: str) -> float:
    """The time by GitHub's clock, as far as this process has seen it."""
    return time.time() + _skew.get(api_url.rstrip("/"), 0.0)


def _learn_skew(api_url: str, resp: requests.Response) -> bool:
    """Remember GitHub's clock from an answer's `Date` header; True when that changed what we believed."""
    try:
        server = parsedate_to_datetime(resp.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return False
    measured = server - time.time()
    measured = measured if abs(measured) > SKEW_TOLERANCE else 0.0
    key = api_url.rstrip("/")
    changed = abs(measured - _skew.get(key, 0.0)) > SKEW_TOLERANCE
    if changed:
        log.warning("GitHub's clock differs from ours by %+.0f s; App JWTs now use GitHub's time", measured)
    _skew[key] = measured
    return changed


def app_request(session: requests.Session, method: str, url: str, *, api_url: str, app_id: str, private_key: str,
                json_body: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> requests.Response:
    """One request as the App (a JWT). Refused as unauthenticated while our clock disagrees with GitHub's,
    it is made once more with a JWT on GitHub's time, learnt from the refusal's `Date` header."""
    resp: requests.Response | None = None
    for _ in range(2):
        token = app_jwt(app_id, private_key, github_now(api_url))
        resp = session.request(method, url, json=json_body, params=params, timeout=HTTP_TIMEOUT, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"})
        if not _learn_skew(api_url, resp) or resp.status_code != 401:
            break
    assert resp is not None
    return resp


def refused(resp: requests.Response, what: str) -> ForgeError:
    """GitHub's refusal as the port's error: a rate limit says when to come back."""
    headers = {k.lower(): v for k, v in resp.headers.items()}
    if resp.status_code in (403, 429) and ("retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"):
        try:
            # The reset is an epoch on GitHub's clock: measured against its own `Date`.
            wait = float(headers["retry-after"]) if "retry-after" in headers else (
                float(headers["x-ratelimit-reset"]) - parsedate_to_datetime(headers["date"]).timestamp())
        except (KeyError, TypeError, ValueError):
            wait = 60.0
        return RateLimited(f"GitHub rate limit: {what}", max(1.0, wait), resp.status_code)
    return ForgeError(f"GitHub refused {what} ({resp.status_code}): {_message(resp)}", resp.status_code)


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
        self.session.hooks["response"].append(metrics.response_hook("github"))  # counted by endpoint class
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
        # The expiry is GitHub's time: measured on our clock, a skewed host would keep a dead token.
        ttl = int(issued.expires_at - github_now(self.api_url) - REFRESH_MARGIN_SECONDS)
        if ttl > 0:
            # Indexed by repository, so uninstalling the App there drops them (`forget_repository`). The
            # index outlives every entry it names: no cached token outlives a token's own lifetime.
            index = keys.installation_tokens_of("github", repo.lower())
            pipe = self.conn.pipeline()
            pipe.set(cache_key, self._fernet.encrypt(issued.token.encode()), ex=ttl)
            pipe.sadd(index, cache_key)
            pipe.expire(index, TOKEN_LIFETIME_SECONDS)
            pipe.execute()
        return issued.token

    def mint(self, installation_id: int, repo: str, permissions: dict[str, str]) -> IssuedToken:
        name = repo.split("/", 1)[-1]
        try:
            resp = self.app_request("POST", f"/app/installations/{int(installation_id)}/access_tokens",
                                    json_body={"repositories": [name], "permissions": permissions})
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub to mint a token: {type(exc).__name__}") from None
        if resp.status_code != 201:
            # The body may echo request details but never the token; keep only GitHub's message.
            raise refused(resp, "an installation token")
        data = resp.json()
        expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00")).timestamp()
        return IssuedToken(token=data["token"], expires_at=expires)

    def app_request(self, method: str, path: str, json_body: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None) -> requests.Response:
        """A request as the App itself (its JWT), corrected for GitHub's clock."""
        return app_request(self.session, method, f"{self.api_url}{path}", api_url=self.api_url, app_id=self.app_id,
                           private_key=self.private_key, json_body=json_body, params=params)


def forget_repository(conn: redis.Redis, repo: str) -> int:
    """Drop every cached token agentgate holds for `repo` (the App was uninstalled there) and say how
    many: no cached credential outlives agentgate's access to the repository, and a reinstallation
    starts from fresh tokens."""
    index = keys.installation_tokens_of("github", repo.lower())
    cached = [text(member) for member in conn.smembers(index)]
    pipe = conn.pipeline()
    for cache_key in cached:
        pipe.delete(cache_key)
    pipe.delete(index)
    results = pipe.execute()
    return sum(int(n) for n in results[:len(cached)])


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
        resp = tokens.app_request("GET", "/app")
    except requests.RequestException as exc:
        raise ForgeError(f"could not reach GitHub for the App's identity: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise refused(resp, "the App's identity")
    slug = str(resp.json()["slug"])
    conn.set(cache, slug, ex=keys.APP_SLUG_TTL)
    return slug
