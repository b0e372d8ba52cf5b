"""Who is asking for a token: the credential after `Authorization: Bearer` becomes an `AgentIdentity`,
or a refusal that says why (401) without ever quoting the credential.

Two kinds of credential: an OIDC ID token (a JWT from an issuer in AGENTGATE_OIDC_ISSUERS: `oidc`), or
an agent key (`agk_...` from `agentgate agents add`: `agentkeys`). Anything else is malformed."""

from __future__ import annotations

import redis
import requests

from gatekeeper.core.grants import AgentIdentity
from gatekeeper.settings import Settings
from gatekeeper.tokens import agentkeys, oidc
from gatekeeper.tokens.oidc import IssuerUnavailable

__all__ = ["IssuerUnavailable", "Unauthenticated", "authenticate", "bearer"]


class Unauthenticated(Exception):
    """Answered 401 {"error": "unauthenticated", "reason": reason}; the reason never includes the credential."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bearer(header_value: str | None) -> str:
    """The credential of an `Authorization: Bearer CREDENTIAL` header (the scheme in any case)."""
    if header_value is None or not header_value.strip():
        raise Unauthenticated("credential missing: send it as Authorization: Bearer CREDENTIAL")
    scheme, _, value = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("malformed credential: the Authorization scheme must be Bearer")
    if not value.strip():
        raise Unauthenticated("credential missing: send it as Authorization: Bearer CREDENTIAL")
    return value.strip()


def authenticate(conn: redis.Redis, settings: Settings, credential: str, *,
                 session: requests.Session | None = None, now: float | None = None) -> AgentIdentity:
    """The agent `credential` proves to be. Raises Unauthenticated (401), or IssuerUnavailable (503) when
    an OIDC issuer's keys cannot be fetched and none are cached. Redis errors propagate (503)."""
    credential = (credential or "").strip()
    if not credential:
        raise Unauthenticated("credential missing")
    if len(credential) > oidc.MAX_TOKEN_LENGTH:
        raise Unauthenticated(f"malformed credential: larger than {oidc.MAX_TOKEN_LENGTH // 1024} KB")
    if credential.startswith(agentkeys.PREFIX):
        name = agentkeys.lookup(conn, credential)
        if name is None:
            raise Unauthenticated("unknown or removed agent key")
        return AgentIdentity(kind="key", key_name=name)
    if credential.count(".") == 2:
        try:
            verified = oidc.verify(conn, settings.oidc_issuers, credential, session=session, now=now)
        except oidc.IDTokenRefused as exc:
            raise Unauthenticated(exc.reason) from None
        return AgentIdentity(kind="oidc", issuer=verified.issuer, subject=verified.subject,
                             claims=dict(verified.claims))
    raise Unauthenticated("malformed credential: neither an OIDC ID token (a JWT) nor an agent key (agk_...)")
