"""agentgate's own GitLab token: the configured one until the first rotation, then the rotated one, kept
in Redis (encrypted) where every process reads it.

GitLab has no App installations whose tokens expire by themselves: the token agentgate acts with is a
standing credential. With AGENTGATE_GITLAB_ROTATE_DAYS it is rotated on a schedule
(`POST /personal_access_tokens/self/rotate`, GitLab 16.10+): GitLab revokes the old token at once and
answers a new one that expires a few days after the next rotation, so a copy that leaked is worth days.

Two rotations must never race: GitLab treats the reuse of a rotated token as theft and revokes the whole
line, the new token included. One process rotates at a time (a lock in Redis), and it re-reads the current
token under the lock."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import requests

from gatekeeper.forges.port import ForgeError
from gatekeeper.settings import Settings
from gatekeeper.state import audit, keys
from gatekeeper.state.store import text
from gatekeeper.state.tokens import cipher_for

HTTP_TIMEOUT = 15
_RECOVER = ("set a new AGENTGATE_GITLAB_TOKEN (a Maintainer's personal or service-account token) and delete the "
            f"Redis key {keys.GITLAB_OWN_TOKEN}")

log = logging.getLogger(__name__)


def current_token(conn: redis.Redis, settings: Settings) -> str:
    """The token agentgate acts with on GitLab now."""
    if settings.gitlab_rotate_days > 0:
        # Never fall back to the configured token once it may have been rotated: GitLab revokes a whole
        # line of tokens when a rotated one is presented again (the live one with it).
        try:
            stored = conn.hmget(keys.GITLAB_OWN_TOKEN, ["enc", "rotated_at"])
        except redis.RedisError as exc:
            raise ForgeError(f"cannot read agentgate's rotated GitLab token from Redis: {type(exc).__name__}") from None
        blob, rotated = stored[0], stored[1]
        if blob is not None:
            token = cipher_for(settings).decrypt(blob if isinstance(blob, bytes) else blob.encode())
            if not token:
                raise ForgeError("agentgate's rotated GitLab token cannot be decrypted (AGENTGATE_TOKEN_KEYS changed?)")
            return token
        if rotated is not None:
            raise ForgeError(f"agentgate's rotated GitLab token is missing from Redis: {_RECOVER}")
    if not settings.gitlab_token:
        raise ForgeError("AGENTGATE_GITLAB_TOKEN is not configured")
    return settings.gitlab_token


def rotation_due(conn: redis.Redis, settings: Settings, now: float) -> bool:
    if settings.gitlab_rotate_days <= 0 or not settings.gitlab_url or not settings.gitlab_token:
        return False
    last = conn.hget(keys.GITLAB_OWN_TOKEN, "rotated_at")
    # Never rotated: the configured token's age is unknown, so the first run rotates it.
    return last is None or now - float(text(last)) >= settings.gitlab_rotate_days * 86400


def rotate(conn: redis.Redis, settings: Settings, *, session: requests.Session | None = None,
           now: float | None = None) -> dict[str, Any]:
    """Rotate agentgate's own token when due; what was done, for the periodic job's result."""
    now = time.time() if now is None else now
    if not rotation_due(conn, settings, now):
        return {"rotated": False}
    # A lock with this process's own value, released only by it (redis-py's Lock compares and deletes).
    lock = conn.lock(keys.GITLAB_ROTATION_LOCK, timeout=keys.GITLAB_ROTATION_LOCK_TTL, blocking=False)
    if not lock.acquire(blocking=False):
        return {"rotated": False, "why": "another process is rotating"}
    try:
        if not rotation_due(conn, settings, now):  # rotated by another process meanwhile
            return {"rotated": False}
        old = current_token(conn, settings)
        # Valid until well after the next rotation, so a rotation that fails once leaves time to retry.
        expires = (datetime.fromtimestamp(now, UTC).date() + timedelta(days=2 * settings.gitlab_rotate_days + 1))
        try:
            resp = (session or requests.Session()).post(
                f"{str(settings.gitlab_url).rstrip('/')}/api/v4/personal_access_tokens/self/rotate",
                json={"expires_at": expires.isoformat()}, timeout=(5, HTTP_TIMEOUT),
                headers={"PRIVATE-TOKEN": old, "Accept": "application/json"})
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitLab to rotate agentgate's token: {type(exc).__name__} (if GitLab "
                             f"rotated it anyway, the old token is revoked: {_RECOVER})") from None
        if resp.status_code == 401:
            # The token agentgate holds is dead: most likely a rotation GitLab made whose answer was lost.
            raise ForgeError(f"agentgate's GitLab token is no longer valid (401); {_RECOVER}", 401)
        if resp.status_code != 200:
            raise ForgeError(f"GitLab refused to rotate agentgate's token ({resp.status_code}): it must be a "
                             "personal or service-account token with the api or self_rotate scope", resp.status_code)
        data = resp.json()
        new = str(data.get("token") or "")
        if not new:
            raise ForgeError("GitLab answered the rotation of agentgate's token without a token")
        conn.hset(keys.GITLAB_OWN_TOKEN, mapping={
            "enc": cipher_for(settings).encrypt(new), "id": str(data.get("id") or ""),
            "expires_at": str(data.get("expires_at") or ""), "rotated_at": str(now)})
        audit.record_own(conn, "gitlab", "-", "rotate_token", "agentgate's GitLab token",
                         f"rotated; the new one expires {data.get('expires_at')}")
        log.info("rotated agentgate's GitLab token; the new one expires %s", data.get("expires_at"))
        return {"rotated": True, "expires_at": data.get("expires_at")}
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            pass  # it lapsed (a very slow answer) and another process holds it now: not ours to delete
