"""Agent keys: credentials for agents outside CI (no OIDC issuer), made by `agentgate agents add NAME`.

A key is `agk_` + 256 random bits, shown once and stored only as its SHA-256: the hash `AGENT_KEYS`
(name -> {sha256, created_at}) says which agents exist, and `agent_key(digest)` -> name finds the agent a
presented key belongs to with one lookup. A plain hash is enough here (no salt, no slow KDF): the key is
random and 256 bits long, so there is no dictionary to guess from."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from gatekeeper.state import keys

PREFIX = "agk_"
# token_urlsafe(32) is 43 characters; anything much longer is not a key, and is not hashed.
MAX_KEY_LENGTH = 128
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class AgentKey:
    """What `agents list` shows about a key: never the key nor its hash."""

    name: str
    created_at: str  # ISO 8601, UTC


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"agent name {name!r} is not valid: 1 to 64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def add(conn: redis.Redis, name: str) -> str:
    """Make a key for the agent `name` and return it: the only time it exists in clear. A name already
    in use is refused (remove it first), so a key is never silently replaced under a running agent."""
    validate_name(name)
    key = PREFIX + secrets.token_urlsafe(32)
    sha = digest(key)
    record = json.dumps({"sha256": sha, "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    if not conn.hsetnx(keys.AGENT_KEYS, name, record):
        raise ValueError(f"an agent named {name!r} already exists (remove it first to make a new key)")
    # Written second: a crash between the two leaves a name whose key finds nothing (fails closed).
    conn.set(keys.agent_key(sha), name)
    return key


def remove(conn: redis.Redis, name: str) -> bool:
    """Forget the agent's key: it fails from the next request on. False when there is no such agent."""
    raw = conn.hget(keys.AGENT_KEYS, name)
    if raw is None:
        return False
    sha = str(_record(raw).get("sha256", ""))
    pipe = conn.pipeline(transaction=True)
    pipe.hdel(keys.AGENT_KEYS, name)
    if sha:
        pipe.delete(keys.agent_key(sha))
    pipe.execute()
    return True


def list_keys(conn: redis.Redis) -> list[AgentKey]:
    found = []
    for raw_name, raw in conn.hgetall(keys.AGENT_KEYS).items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        found.append(AgentKey(name=name, created_at=str(_record(raw).get("created_at", ""))))
    return sorted(found, key=lambda k: k.name)


def lookup(conn: redis.Redis, key: str) -> str | None:
    """The name of the agent holding `key`, or None for an unknown, removed or malformed key."""
    if not key.startswith(PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    sha = digest(key)
    raw_name = conn.get(keys.agent_key(sha))
    if raw_name is None:
        return None
    name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
    raw = conn.hget(keys.AGENT_KEYS, name)
    if raw is None:
        return None
    # The name's current record must hold this very digest: an index entry left behind by a removal
    # that raced a lookup, or a name re-added with a new key, does not let an old key back in.
    stored = str(_record(raw).get("sha256", ""))
    return name if stored and hmac.compare_digest(stored, sha) else None


def _record(raw: bytes | str) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
