"""The agent tokens agentgate issued: one record each, the token itself only encrypted (it is needed to
revoke it at the platform) and as its SHA-256 (to name it in the audit log and to find it).

A record outlives its token by `keys.AGENT_TOKEN_KEEP` so `agentgate tokens list` and the dashboard can
show what was revoked and why; the ciphertext is deleted the moment the token is revoked."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gatekeeper.settings import Settings
from gatekeeper.state import keys
from gatekeeper.state.store import text

ACTIVE = "active"  # usable at the platform
REVOKING = "revoking"  # a revocation is under way (claimed by one process)
RETRYING = "revoke-failed"  # the platform refused or failed to answer; the sweep tries again
REVOKED = "revoked"

RETRY_BACKOFF = (15, 60, 300, 900)  # seconds before each further attempt to revoke


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    return "tok_" + secrets.token_hex(10)


class Cipher:
    """Encrypts tokens at rest. Keys come from AGENTGATE_TOKEN_KEYS (Fernet keys, newest first, so a key
    can be rotated), else are derived from the platform credential agentgate already guards (the App's
    private key, the GitLab token): a Redis dump alone never yields a usable token."""

    def __init__(self, fernet_keys: Iterable[str] = (), derive_from: Iterable[str] = ()):
        ring = [Fernet(k.encode() if isinstance(k, str) else k) for k in fernet_keys]
        for secret in derive_from:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agentgate-agent-tokens",
                           info=b"agent-tokens").derive(secret.encode())
            ring.append(Fernet(base64.urlsafe_b64encode(derived)))
        # Without any key nothing can be issued (encrypt raises), but revoking still runs and says why.
        self._fernet = MultiFernet(ring) if ring else None

    def encrypt(self, token: str) -> bytes:
        if self._fernet is None:
            raise ValueError("no key to encrypt agent tokens with (set AGENTGATE_TOKEN_KEYS or platform credentials)")
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str | None:
        if self._fernet is None:
            return None
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken:
            return None


@dataclass
class TokenRecord:
    id: str
    platform: str
    repo: str
    task: int
    agent: str  # the agent's principal (oidc:ISSUER#SUB or key:NAME)
    requester: str  # the human who approved the task: the agent acts on their behalf
    permissions: dict[str, str]
    issued_at: float
    expires_at: float  # when agentgate revokes it (the ttl), never later than the platform's expiry
    sha256: str
    approved_label: str = ""
    handle: str = ""  # what else the platform needs to revoke it (GitLab: the token's id)
    state: str = ACTIVE
    revoked_at: float = 0.0
    reason: str = ""  # why it was revoked, or why revoking failed
    attempts: int = 0
    claims: dict[str, str] = field(default_factory=dict)  # a few identifying claims, for the audit
    task_kind: str = "issue"  # or "pull_request": GitLab numbers merge requests apart from issues

    def to_hash(self) -> dict[str, str]:
        raw = asdict(self)
        return {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in raw.items()}

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> TokenRecord:
        values = {text(k): text(v) for k, v in raw.items()}
        return cls(id=values["id"], platform=values["platform"], repo=values["repo"], task=int(values["task"]),
                   agent=values["agent"], requester=values.get("requester", ""),
                   permissions=json.loads(values.get("permissions") or "{}"),
                   issued_at=float(values["issued_at"]), expires_at=float(values["expires_at"]),
                   sha256=values["sha256"], approved_label=values.get("approved_label", ""),
                   handle=values.get("handle", ""), state=values.get("state", ACTIVE),
                   revoked_at=float(values.get("revoked_at") or 0), reason=values.get("reason", ""),
                   attempts=int(values.get("attempts") or 0), claims=json.loads(values.get("claims") or "{}"),
                   task_kind=values.get("task_kind") or "issue")

    @property
    def live(self) -> bool:
        return self.state != REVOKED

    def public(self) -> dict[str, object]:
        """What may be shown to an operator: everything but the token (which is not here anyway)."""
        return {k: v for k, v in asdict(self).items() if k != "handle"}


def cipher_for(settings: Settings) -> Cipher:
    """The keys agent tokens (and agentgate's own rotated credentials) are encrypted with at rest."""
    derive = [s for s in (settings.github_private_key, settings.gitlab_token) if s]
    return Cipher(settings.token_keys, derive)


_ENC = "enc"  # the hash field that holds the encrypted token


def save(conn: redis.Redis, record: TokenRecord, encrypted: bytes, now: float) -> None:
    name = keys.agent_token(record.id)
    keep = int(record.expires_at - now) + keys.AGENT_TOKEN_KEEP
    with conn.pipeline() as pipe:
        mapping: dict[str, str | bytes] = {**record.to_hash(), _ENC: encrypted}
        pipe.hset(name, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(name, keep)
        pipe.zadd(keys.AGENT_TOKENS_ACTIVE, {record.id: record.expires_at})
        for index in (keys.agent_tokens_of_task(record.platform, record.repo, record.task),
                      keys.agent_tokens_of_repo(record.platform, record.repo)):
            pipe.sadd(index, record.id)
            pipe.expire(index, keep)
        pipe.execute()


def load(conn: redis.Redis, token_id: str) -> TokenRecord | None:
    raw: dict[bytes, bytes] = conn.hgetall(keys.agent_token(token_id))  # type: ignore[assignment]
    if not raw or b"id" not in raw:
        return None
    return TokenRecord.from_hash(raw)


def encrypted(conn: redis.Redis, token_id: str) -> bytes | None:
    value = conn.hget(keys.agent_token(token_id), _ENC)
    return value.encode() if isinstance(value, str) else value


# Claim a record for revocation: only one process revokes a token at a time, and a revoked one stays so.
_CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == false or state == 'revoked' or state == 'revoking' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'revoking')
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


def claim(conn: redis.Redis, token_id: str, now: float, lease: float = 120.0) -> bool:
    """Take the token's revocation; a claim left by a process that died is retried by the sweep after
    `lease` seconds (its score in the active set)."""
    return bool(conn.eval(_CLAIM, 2, keys.agent_token(token_id), keys.AGENT_TOKENS_ACTIVE, now + lease, token_id))


def release_stale_claim(conn: redis.Redis, token_id: str) -> None:
    """A claim whose lease lapsed (its process died mid-revocation) becomes a failed attempt again."""
    name = keys.agent_token(token_id)
    if text(conn.hget(name, "state") or b"") == REVOKING:
        conn.hset(name, "state", RETRYING)


def mark_revoked(conn: redis.Redis, token_id: str, reason: str, now: float) -> None:
    name = keys.agent_token(token_id)
    with conn.pipeline() as pipe:
        pipe.hset(name, mapping={"state": REVOKED, "revoked_at": str(now), "reason": reason[:200]})
        pipe.hdel(name, _ENC)
        pipe.zrem(keys.AGENT_TOKENS_ACTIVE, token_id)
        pipe.execute()


def mark_failed(conn: redis.Redis, token_id: str, reason: str, now: float) -> int:
    """Record a failed attempt and when the sweep tries again; returns the attempts so far."""
    name = keys.agent_token(token_id)
    attempts = int(conn.hincrby(name, "attempts", 1))
    wait = RETRY_BACKOFF[min(attempts - 1, len(RETRY_BACKOFF) - 1)]
    with conn.pipeline() as pipe:
        pipe.hset(name, mapping={"state": RETRYING, "reason": reason[:200]})
        pipe.zadd(keys.AGENT_TOKENS_ACTIVE, {token_id: now + wait})
        pipe.execute()
    return attempts


def due(conn: redis.Redis, now: float, limit: int = 100) -> list[str]:
    """Tokens whose time has come: their ttl passed, a failed revocation is due again, or a claim lapsed."""
    found: list[bytes] = conn.zrangebyscore(keys.AGENT_TOKENS_ACTIVE, "-inf", now, start=0, num=limit)  # type: ignore[assignment]
    return [text(m) for m in found]


def of_task(conn: redis.Redis, platform: str, repo: str, task: int) -> list[str]:
    return sorted(text(m) for m in conn.smembers(keys.agent_tokens_of_task(platform, repo, task)))


def of_repo(conn: redis.Redis, platform: str, repo: str) -> list[str]:
    return sorted(text(m) for m in conn.smembers(keys.agent_tokens_of_repo(platform, repo)))


def live(conn: redis.Redis, limit: int = 1000) -> Iterator[TokenRecord]:
    """Every token not yet revoked (active, or its revocation pending), soonest to end first."""
    members: list[bytes] = conn.zrange(keys.AGENT_TOKENS_ACTIVE, 0, limit - 1)  # type: ignore[assignment]
    for member in members:
        record = load(conn, text(member))
        if record is not None and record.live:
            yield record


def live_count(conn: redis.Redis, platform: str, repo: str, agent: str) -> int:
    count = 0
    for token_id in of_repo(conn, platform, repo):
        record = load(conn, token_id)
        if record is not None and record.live and record.agent == agent:
            count += 1
    return count


def forget_own_tokens(conn: redis.Redis, platform: str, repo: str) -> int:
    """Drop the tokens agentgate itself cached for a repository (it was uninstalled there)."""
    index = keys.installation_tokens_of(platform, repo)
    names = [text(n) for n in conn.smembers(index)]
    with conn.pipeline() as pipe:
        for name in names:
            pipe.delete(name)
        pipe.delete(index)
        pipe.execute()
    return len(names)
