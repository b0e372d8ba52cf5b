"""OIDC ID tokens (GitHub Actions, GitLab CI, any OIDC issuer): verified against the keys the issuer
publishes, found through its discovery document.

PyJWT does the JWT work (parsing, signatures, `iss`, `aud`, required claims); this module decides which
issuer and which key a token may be checked with, before any of it is trusted:

- the unverified `iss` only *chooses* among the configured issuers: a token from anywhere else is refused
  before anything is fetched, so a token cannot make agentgate fetch from a URL it names;
- only asymmetric algorithms, and the key's own type, curve and `alg` must fit the header's `alg`: a
  public key is never used as an HMAC secret, and `alg: none` never verifies;
- the discovery document and key set live in Redis (`oidc_keys`), shared by every process; an unknown
  `kid` refetches the key set at most once per OIDC_REFETCH_FLOOR per issuer (`oidc_refetch`, SET NX), so
  a flood of made-up `kid`s costs the issuer one request a minute at most;
- fetches have timeouts, a size cap and no redirects; an issuer that cannot be reached while no keys are
  cached is `IssuerUnavailable` (503: retry), never a silent accept.

The clock is handed in (`now`), so `exp`, `nbf` and `iat` are compared here against it, with LEEWAY."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import redis
import requests

from gatekeeper.state import keys

log = logging.getLogger(__name__)

# Asymmetric only: an HS* token would be verified with a secret agentgate does not share with anyone
# (and, in the classic confusion attack, with the issuer's *public* key as the secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
LEEWAY = 60  # seconds of clock skew allowed on exp, nbf and iat
MAX_TOKEN_LENGTH = 16 * 1024  # GitHub's ID tokens are ~1.5 KB; larger is refused before parsing
FETCH_TIMEOUT = 5.0  # seconds, per request to an issuer, connect + read + whole body
MAX_RESPONSE_BYTES = 1024 * 1024
# A process that finds no cached keys while another one is fetching them waits this long for the result
# rather than asking the issuer too (two requests: the discovery document, then the key set).
COLD_WAIT = 2 * FETCH_TIMEOUT + 1
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
DISCOVERY_PATH = "/.well-known/openid-configuration"


class IDTokenRefused(Exception):
    """The ID token is not accepted; `reason` says why in an operator's words, never quoting the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IssuerUnavailable(Exception):
    """The issuer's keys could not be fetched and none are cached: the agent should retry (503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedToken:
    issuer: str  # the configured issuer (no trailing slash)
    subject: str
    claims: Mapping[str, str] = field(default_factory=dict)  # string, integer and boolean claims, as strings


def verify(conn: redis.Redis, issuers: Sequence[tuple[str, str]], token: str, *,
           session: requests.Session | None = None, now: float | None = None) -> VerifiedToken:
    """Verify an ID token from one of `issuers` ((issuer, audience) pairs) and return its claims."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise IDTokenRefused(f"the ID token is larger than {MAX_TOKEN_LENGTH // 1024} KB")
    try:
        header = jwt.get_unverified_header(token)
        # Read only to choose the issuer and its keys; nothing in it counts until the signature verified.
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise IDTokenRefused("malformed ID token: not a JWT (base64url JSON header.payload.signature)") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise IDTokenRefused(f"signing algorithm {_shown(alg)} is not accepted: only asymmetric ones "
                             f"({', '.join(ALGORITHMS)})")
    claimed = unverified.get("iss")
    if not isinstance(claimed, str) or not claimed:
        raise IDTokenRefused("the ID token names no issuer (`iss`)")
    configured = _configured(issuers, claimed)
    if configured is None:
        raise IDTokenRefused(f"issuer {_shown(claimed)} is not configured (AGENTGATE_OIDC_ISSUERS)")
    issuer, audience = configured
    refusal = _issuer_url_refusal(issuer)
    if refusal:
        raise IDTokenRefused(refusal)
    kid = header.get("kid")  # PyJWT already refused a kid that is not a string
    key = _signing_key(conn, issuer, kid, str(alg), session)
    try:
        claims = jwt.decode(
            token, key=key, algorithms=[str(alg)], audience=audience, issuer=(issuer, issuer + "/"),
            options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False, "enforce_minimum_key_length": True})
    except jwt.PyJWTError as exc:
        raise IDTokenRefused(_why(exc, audience)) from None
    _check_times(claims, time.time() if now is None else now)
    aud = claims.get("aud")
    if isinstance(aud, list) and set(aud) != {audience}:
        # OIDC Core 3.1.3.7: refuse a token that also names audiences we do not trust; whoever else it
        # was shown to could present it here.
        raise IDTokenRefused(f"the ID token names other audiences besides {audience}; ask for one for "
                             f"{audience} alone")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise IDTokenRefused("the ID token's subject (`sub`) is empty or not a string")
    return VerifiedToken(issuer=issuer, subject=subject, claims=_string_claims(claims))


def _configured(issuers: Sequence[tuple[str, str]], claimed: str) -> tuple[str, str] | None:
    """The configured (issuer, audience) the token's `iss` names exactly (a trailing slash aside)."""
    for issuer, audience in issuers:
        if issuer.rstrip("/") == claimed.rstrip("/"):
            return issuer.rstrip("/"), audience
    return None


def _issuer_url_refusal(issuer: str) -> str | None:
    parts = urlsplit(issuer)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None  # a local test issuer; anywhere else plain http lets the network forge the keys
    return f"issuer {_shown(issuer)} is refused: an issuer must be an https URL (http only on loopback)"


def _jwks_uri_refusal(uri: str, issuer: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK and urlsplit(issuer).scheme == "http":
        return None
    return f"its jwks_uri {_shown(uri)} is not https"


# -- keys: chosen from the cached key set, refetched on an unknown kid at most once per floor
def _signing_key(conn: redis.Redis, issuer: str, kid: str | None, alg: str,
                 session: requests.Session | None) -> jwt.PyJWK:
    cached = _cached(conn, issuer)
    fetched = cached is None
    if cached is None:
        cached = _first_fetch(conn, issuer, session)
    key = _select(cached, issuer, kid, alg)
    if key is None and not fetched and conn.set(keys.oidc_refetch(issuer), "fetching", nx=True,
                                                ex=keys.OIDC_REFETCH_FLOOR):
        # The issuer may have rotated its keys since they were cached.
        try:
            cached = _fetch_and_store(conn, issuer, session, discovery=cached["discovery"])
        except IssuerUnavailable as exc:
            log.warning("could not refresh the keys of %s: %s", issuer, exc.reason)
        else:
            key = _select(cached, issuer, kid, alg)
    if key is None:
        raise IDTokenRefused(f"the ID token's signing key {_shown(kid)} is not among the keys {issuer} publishes "
                             f"(they are refreshed at most every {keys.OIDC_REFETCH_FLOOR} s)")
    return key


def _select(cached: Mapping[str, Any], issuer: str, kid: str | None, alg: str) -> jwt.PyJWK | None:
    """The key to verify with; None when no key has this `kid` (a refetch may find it)."""
    usable = [k for k in cached["jwks"]["keys"]
              if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP") and k.get("use", "sig") == "sig"]
    if kid is None:
        # Without a kid the key is unambiguous only when the issuer publishes exactly one.
        if len(usable) != 1:
            raise IDTokenRefused(f"the ID token names no signing key (`kid`) and {issuer} publishes "
                                 f"{len(usable)} keys")
        candidates = usable
    else:
        candidates = [k for k in usable if k.get("kid") == kid]
        if not candidates:
            return None
    fitting = [k for k in candidates if _fits(k, alg)]
    if not fitting:
        published = candidates[0].get("alg") or candidates[0].get("kty")
        raise IDTokenRefused(f"the ID token is signed with {alg} but its key {_shown(kid)} is for "
                             f"{_shown(published)}")
    try:
        return jwt.PyJWK(fitting[0], algorithm=alg)
    except jwt.PyJWTError:
        raise IDTokenRefused(f"the issuer's key {_shown(kid)} cannot be used") from None


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    """The header's `alg` must be the key's own `alg` when it names one, and fit its type and curve."""
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    kty = jwk.get("kty")
    if kty == "RSA":
        return alg[:2] in ("RS", "PS")
    if kty == "EC":
        return _EC_CURVES.get(alg) == jwk.get("crv")
    return kty == "OKP" and alg == "EdDSA" and jwk.get("crv") in ("Ed25519", "Ed448")


def _cached(conn: redis.Redis, issuer: str) -> dict[str, Any] | None:
    raw = conn.get(keys.oidc_keys(issuer))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("discovery"), dict)
            and isinstance(value.get("jwks"), dict) and isinstance(value["jwks"].get("keys"), list)):
        return None
    return value


def _first_fetch(conn: redis.Redis, issuer: str, session: requests.Session | None) -> dict[str, Any]:
    """Fetch the keys when none are cached. The floor holds here too: when another process fetched (or is
    fetching) within it, its result is awaited instead of asking the issuer again."""
    refetch = keys.oidc_refetch(issuer)
    deadline = time.monotonic() + COLD_WAIT
    while True:
        if conn.set(refetch, "fetching", nx=True, ex=keys.OIDC_REFETCH_FLOOR):
            return _fetch_and_store(conn, issuer, session)
        cached = _cached(conn, issuer)
        if cached is not None:
            return cached
        state = conn.get(refetch)
        if state in (b"failed", "failed"):
            raise IssuerUnavailable(f"the keys of {issuer} could not be fetched; agentgate asks again at most "
                                    f"every {keys.OIDC_REFETCH_FLOOR} s")
        if state in (b"fetched", "fetched") or time.monotonic() >= deadline:
            raise IssuerUnavailable(f"the keys of {issuer} are not available yet; retry shortly")
        time.sleep(0.05)  # another process is fetching them: poll the shared cache until it lands


def _fetch_and_store(conn: redis.Redis, issuer: str, session: requests.Session | None, *,
                     discovery: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fetch the key set (and the discovery document unless given) and cache both. The caller holds the
    `oidc_refetch` floor; its value records the outcome for processes waiting on it."""
    refetch = keys.oidc_refetch(issuer)
    own = session is None
    http = session if session is not None else requests.Session()
    try:
        if discovery is None:
            discovery = _discover(http, issuer)
        jwks = _get_json(http, str(discovery["jwks_uri"]), issuer)
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise IssuerUnavailable(f"the key set of {issuer} is not a JWKS (no `keys` list)")
    except IssuerUnavailable:
        conn.set(refetch, "failed", xx=True, keepttl=True)
        raise
    finally:
        if own:
            http.close()
    value = {"discovery": dict(discovery), "jwks": {"keys": jwks["keys"]}, "fetched_at": time.time()}
    conn.set(keys.oidc_keys(issuer), json.dumps(value), ex=keys.OIDC_DISCOVERY_TTL)
    conn.set(refetch, "fetched", xx=True, keepttl=True)
    log.info("fetched the signing keys of %s (%d keys)", issuer, len(jwks["keys"]))
    return value


def _discover(http: requests.Session, issuer: str) -> dict[str, str]:
    doc = _get_json(http, issuer + DISCOVERY_PATH, issuer)
    if not isinstance(doc, dict):
        raise IssuerUnavailable(f"the discovery document of {issuer} is not a JSON object")
    named = doc.get("issuer")
    if not isinstance(named, str) or named.rstrip("/") != issuer:
        # OIDC Discovery: the document must name the issuer it was fetched for, exactly.
        raise IssuerUnavailable(f"the discovery document of {issuer} names issuer {_shown(named)}")
    uri = doc.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        raise IssuerUnavailable(f"the discovery document of {issuer} has no jwks_uri")
    refusal = _jwks_uri_refusal(uri, issuer)
    if refusal:
        raise IssuerUnavailable(f"the discovery document of {issuer} is refused: {refusal}")
    return {"issuer": named, "jwks_uri": uri}


def _get_json(http: requests.Session, url: str, issuer: str) -> Any:
    deadline = time.monotonic() + FETCH_TIMEOUT
    try:
        # No redirects: a redirect could lead off https, or anywhere the issuer's host was made to point.
        with http.get(url, timeout=(FETCH_TIMEOUT, FETCH_TIMEOUT), stream=True, allow_redirects=False,
                      headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise IssuerUnavailable(f"{url} answered HTTP {resp.status_code}")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise IssuerUnavailable(f"{url} answered more than {MAX_RESPONSE_BYTES // 1024} KB")
            body = bytearray()
            for chunk in resp.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise IssuerUnavailable(f"{url} answered more than {MAX_RESPONSE_BYTES // 1024} KB")
                if time.monotonic() > deadline:
                    raise IssuerUnavailable(f"{url} took longer than {FETCH_TIMEOUT:g} s to answer")
    except requests.RequestException as exc:
        raise IssuerUnavailable(f"cannot reach {url} ({type(exc).__name__})") from None
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise IssuerUnavailable(f"{url} did not answer JSON") from None


# -- claims
def _why(exc: jwt.PyJWTError, audience: str) -> str:
    """PyJWT's refusal in words an agent's operator acts on."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return "signature does not verify"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        if exc.claim == "aud":
            return f"the ID token has no audience (`aud`): agentgate expects {audience}"
        return f"the ID token has no `{exc.claim}` claim"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"audience is not agentgate's (expected {audience})"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the ID token's issuer (`iss`) does not match"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the ID token's algorithm does not match its key"
    if isinstance(exc, jwt.InvalidKeyError):
        return "the issuer's key is too weak to be trusted"
    if isinstance(exc, jwt.DecodeError):
        return "malformed ID token"
    return f"the ID token is not valid ({type(exc).__name__})"


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    exp, iat = _instant(claims, "exp"), _instant(claims, "iat")
    if exp <= now - LEEWAY:
        raise IDTokenRefused(f"expired ({int(now - exp)} s ago)")
    if "nbf" in claims:
        nbf = _instant(claims, "nbf")
        if nbf > now + LEEWAY:
            raise IDTokenRefused(f"not yet valid (`nbf` is {int(nbf - now)} s ahead of agentgate's clock)")
    if iat > now + LEEWAY:
        raise IDTokenRefused(f"issued in the future (`iat` is {int(iat - now)} s ahead of agentgate's clock)")


def _instant(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IDTokenRefused(f"the ID token's `{name}` is not a time (seconds since 1970)")
    return float(value)


def _string_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims policy globs can match: strings as they are, integers and booleans as JSON writes them;
    lists, objects and floats are left out rather than given a representation a glob could be fooled by."""
    out: dict[str, str] = {}
    for name, value in claims.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, str):
            out[name] = value
        elif isinstance(value, int) and abs(value) < 2**63:
            out[name] = str(value)
    return out


def _shown(value: object) -> str:
    """A value from the token (or an issuer) quoted in a reason: short printable strings only."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable():
        return value
    return "(not shown)" if value is not None else "(none)"
