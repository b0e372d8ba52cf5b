"""Authenticating an agent that asks for a token: OIDC ID tokens checked against a locally served issuer
(tests/oidc_issuer.py, a real HTTP server), agent keys stored only as their SHA-256, and the
`agentgate agents` commands. Real Redis; the issuer's HTTP is real or, for https issuers, `responses`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests
import responses
from cryptography.hazmat.primitives import serialization

from gatekeeper.cli.main import main
from gatekeeper.settings import Settings
from gatekeeper.state import keys
from gatekeeper.tokens import agentkeys, oidc
from gatekeeper.tokens.authenticate import IssuerUnavailable, Unauthenticated, authenticate, bearer
from tests.conftest import TEST_REDIS_URL
from tests.oidc_issuer import GITHUB_SUBJECT, GITLAB_SUBJECT, OIDCIssuer, generate_key, running_oidc_issuer

AUDIENCE = "agentgate"


@pytest.fixture
def issuer() -> Iterator[OIDCIssuer]:
    with running_oidc_issuer(AUDIENCE) as served:
        yield served


def settings_for(*issuers: OIDCIssuer | tuple[str, str]) -> Settings:
    pairs = tuple(i if isinstance(i, tuple) else (i.url, i.audience) for i in issuers)
    return Settings(redis_url=TEST_REDIS_URL, oidc_issuers=pairs)


def refused(conn: redis.Redis, settings: Settings, credential: str, **kwargs: object) -> str:
    """The reason `credential` is refused; it never quotes the credential."""
    with pytest.raises(Unauthenticated) as caught:
        authenticate(conn, settings, credential, **kwargs)  # type: ignore[arg-type]
    reason = caught.value.reason
    assert reason and (len(credential) < 8 or credential not in reason)
    assert (len(credential) < 8 or credential not in str(caught.value))
    return reason


def lapse_refetch_floor(conn: redis.Redis, issuer: OIDCIssuer) -> None:
    """OIDC_REFETCH_FLOOR seconds have passed since the last fetch (its Redis key expired)."""
    conn.delete(keys.oidc_refetch(issuer.url))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- accepted tokens
def test_a_valid_github_actions_token_gives_an_identity_with_its_claims(redis_conn, issuer):
    """A token signed by the issuer's published key, for agentgate's audience, in its lifetime, is the
    agent `oidc:ISSUER#SUB`, with its string claims for the policy's globs."""
    agent = authenticate(redis_conn, settings_for(issuer), issuer.mint())
    assert agent.kind == "oidc" and agent.issuer == issuer.url and agent.subject == GITHUB_SUBJECT
    assert agent.claims["repository"] == "acme/agent-runner"
    assert agent.claims["job_workflow_ref"] == "acme/agent-runner/.github/workflows/agent.yml@refs/heads/main"
    assert agent.claims["ref"] == "refs/heads/main" and agent.claims["run_id"] == "9001"
    assert agent.principal == f"oidc:{issuer.url}#{GITHUB_SUBJECT}"
    assert issuer.fetches == {"discovery": 1, "jwks": 1}


def test_a_gitlab_ci_token_verifies_with_keys_at_gitlabs_path():
    """GitLab publishes its keys at /oauth/discovery/keys, found through the discovery document."""
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    conn.flushdb()
    with running_oidc_issuer(AUDIENCE, jwks_path="/oauth/discovery/keys") as gitlab:
        agent = authenticate(conn, settings_for(gitlab), gitlab.mint(shape="gitlab"))
        assert agent.subject == GITLAB_SUBJECT and agent.claims["project_path"] == "acme/agent-runner"
        assert gitlab.fetches == {"discovery": 1, "jwks": 1}
    conn.flushdb()


@pytest.mark.parametrize("kind", ["ec", "ed25519"])
def test_ec_and_eddsa_keys_verify(redis_conn, issuer, kind):
    """Every asymmetric family is accepted, each with its own key."""
    key = issuer.add_key(kind)
    agent = authenticate(redis_conn, settings_for(issuer), issuer.mint(key=key))
    assert agent.subject == GITHUB_SUBJECT


def test_claims_keep_only_strings_integers_and_booleans_as_strings(redis_conn, issuer):
    """Lists, objects and floats are left out (no representation a glob could be fooled by); booleans and
    integers become the strings JSON writes."""
    token = issuer.mint({"environment": "production", "run_attempt": 2, "ref_protected": True,
                         "groups": ["admins"], "nested": {"a": "b"}, "ratio": 0.5})
    claims = authenticate(redis_conn, settings_for(issuer), token).claims
    assert claims["environment"] == "production" and claims["run_attempt"] == "2"
    assert claims["ref_protected"] == "true"
    assert not {"groups", "nested", "ratio"} & set(claims)


def test_an_audience_list_is_accepted_only_when_it_names_agentgate_alone(redis_conn, issuer):
    """`aud` may be a list, but (OIDC Core 3.1.3.7) one that also names audiences agentgate does not trust
    is refused: whoever else it was shown to could present it here."""
    agent = authenticate(redis_conn, settings_for(issuer), issuer.mint({"aud": [AUDIENCE]}))
    assert agent.subject == GITHUB_SUBJECT
    with pytest.raises(Unauthenticated, match="other audiences"):
        authenticate(redis_conn, settings_for(issuer), issuer.mint({"aud": ["sts.amazonaws.com", AUDIENCE]}))


def test_a_trailing_slash_on_either_side_of_the_issuer_is_ignored(redis_conn, issuer):
    """`https://host/` and `https://host` name the same issuer; nothing else about it is loosened."""
    settings = settings_for((issuer.url + "/", AUDIENCE))
    assert authenticate(redis_conn, settings, issuer.mint({"iss": issuer.url + "/"})).issuer == issuer.url


# -- forged and misused tokens
def test_a_forged_signature_with_the_issuers_kid_is_refused(redis_conn, issuer):
    """A token signed by another key that claims the issuer's `kid` does not verify."""
    forger = generate_key("rsa", kid=issuer.keys[0].kid)
    assert refused(redis_conn, settings_for(issuer), issuer.mint(key=forger)) == "signature does not verify"


def test_a_tampered_payload_is_refused(redis_conn, issuer):
    """Changing a claim after signing (another repository) breaks the signature."""
    head, _, sig = issuer.mint().split(".")
    claims = issuer.claims()
    claims["repository"] = "acme/crown-jewels"
    forged = ".".join([head, b64(json.dumps(claims).encode()), sig])
    assert refused(redis_conn, settings_for(issuer), forged) == "signature does not verify"


def test_alg_none_is_refused_before_any_fetch(redis_conn, issuer):
    """An unsigned token (`alg: none`) never verifies, and costs the issuer nothing."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": issuer.keys[0].kid}).encode())
    token = f"{header}.{b64(json.dumps(issuer.claims()).encode())}."
    reason = refused(redis_conn, settings_for(issuer), token)
    assert "algorithm none is not accepted" in reason
    assert issuer.total_fetches == 0


def test_hs256_signed_with_the_issuers_public_key_is_refused(redis_conn, issuer):
    """The key-confusion attack: an HMAC token whose secret is the issuer's public key (PEM or the JWK's
    modulus) must not verify, because a public key is never used as an HMAC secret."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint())  # the keys are cached: the attack has them too
    pem = issuer.keys[0].private.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.keys[0].kid}).encode())
    payload = b64(json.dumps(issuer.claims()).encode())
    signature = b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert "algorithm HS256 is not accepted" in refused(redis_conn, settings, f"{header}.{payload}.{signature}")


def test_a_token_whose_alg_differs_from_the_keys_own_alg_is_refused(redis_conn, issuer):
    """The JWK's `alg` binds the key: RS384 over a key published for RS256 is refused, even though the
    signature would verify with that RSA key."""
    token = issuer.mint(alg="RS384")
    assert "signed with RS384 but its key" in refused(redis_conn, settings_for(issuer), token)


def test_an_ec_token_naming_an_rsa_key_is_refused(redis_conn, issuer):
    """The key's type must fit the algorithm, also when the JWK names no `alg`."""
    rsa_key = issuer.rotate("rsa", publish_alg=False)
    ec_key = generate_key("ec", kid=rsa_key.kid)
    assert "signed with ES256" in refused(redis_conn, settings_for(issuer), issuer.mint(key=ec_key))


def test_a_kid_is_required_when_the_issuer_publishes_several_keys(redis_conn, issuer):
    """Without `kid` the key is ambiguous among several; with exactly one key it is not."""
    settings = settings_for(issuer)
    assert authenticate(redis_conn, settings, issuer.mint(kid=None)).subject == GITHUB_SUBJECT
    issuer.add_key("rsa")
    redis_conn.delete(keys.oidc_keys(issuer.url))
    lapse_refetch_floor(redis_conn, issuer)
    assert "names no signing key (`kid`)" in refused(redis_conn, settings, issuer.mint(kid=None))


# -- lifetime
def test_an_expired_token_is_refused_beyond_the_leeway(redis_conn, issuer):
    """`exp` is checked with 60 s of skew: 30 s past still passes, 61 s past is expired."""
    settings, minted_at = settings_for(issuer), time.time()
    token = issuer.mint(now=minted_at)  # exp = minted_at + 300
    assert authenticate(redis_conn, settings, token, now=minted_at + 330).subject == GITHUB_SUBJECT
    assert refused(redis_conn, settings, token, now=minted_at + 300 + 61).startswith("expired")


def test_a_token_not_yet_valid_is_refused(redis_conn, issuer):
    """`nbf` in the future beyond the leeway is refused; so is an `iat` in the future."""
    settings, now = settings_for(issuer), time.time()
    assert refused(redis_conn, settings, issuer.mint({"nbf": int(now) + 300}), now=now).startswith("not yet valid")
    assert refused(redis_conn, settings, issuer.mint({"iat": int(now) + 300}),
                   now=now).startswith("issued in the future")


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_exp_iat_and_sub_are_required(redis_conn, issuer, claim):
    """A token that never expires, has no issue time or names no subject is refused."""
    assert refused(redis_conn, settings_for(issuer), issuer.mint({claim: None})) == \
        f"the ID token has no `{claim}` claim"


# -- audience and issuer
def test_a_token_without_an_audience_is_refused(redis_conn, issuer):
    """A token minted with no `aud` could have been meant for anyone: refused."""
    reason = refused(redis_conn, settings_for(issuer), issuer.mint({"aud": None}))
    assert reason == f"the ID token has no audience (`aud`): agentgate expects {AUDIENCE}"


def test_a_token_for_another_audience_is_refused(redis_conn, issuer):
    """A token minted for another relying party (e.g. a cloud STS) cannot be replayed at agentgate."""
    reason = refused(redis_conn, settings_for(issuer), issuer.mint({"aud": "sts.amazonaws.com"}))
    assert reason == f"audience is not agentgate's (expected {AUDIENCE})"


def test_an_unknown_issuer_is_refused_without_any_fetch(redis_conn, issuer):
    """A token from an issuer not configured is refused from its `iss` alone: agentgate fetches nothing,
    so a token cannot make it fetch from a URL the token names."""
    settings = settings_for(("https://token.actions.githubusercontent.com", AUDIENCE))
    reason = refused(redis_conn, settings, issuer.mint())
    assert reason == f"issuer {issuer.url} is not configured (AGENTGATE_OIDC_ISSUERS)"
    assert issuer.total_fetches == 0
    assert redis_conn.keys("*") == []


def test_a_prefix_of_a_configured_issuer_is_not_that_issuer(redis_conn, issuer):
    """The issuer must match exactly: `URL/evil` is not `URL`."""
    settings = settings_for(issuer)
    assert "is not configured" in refused(redis_conn, settings, issuer.mint({"iss": issuer.url + "/evil"}))
    assert issuer.total_fetches == 0


def test_an_http_issuer_off_loopback_is_refused_without_any_fetch(redis_conn):
    """Keys fetched over plain http could be swapped by anyone on the path: an http issuer is accepted only
    on loopback (tests), never configured elsewhere, and nothing is fetched from it."""
    plain = OIDCIssuer(url="http://issuer.example", audience=AUDIENCE)
    plain.add_key()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        reason = refused(redis_conn, settings_for(plain), plain.mint())
        assert len(mocked.calls) == 0
    assert reason == "issuer http://issuer.example is refused: an issuer must be an https URL (http only on loopback)"


# -- the key set: discovery, caching, refetch floor
def github_like(mocked: responses.RequestsMock, issuer: OIDCIssuer, *, jwks_uri: str | None = None,
                jwks_body: str | None = None) -> None:
    """Register an https issuer's discovery document and key set (GitHub's paths) with `responses`."""
    uri = jwks_uri or issuer.url + "/.well-known/jwks"
    mocked.get(issuer.url + "/.well-known/openid-configuration", json={"issuer": issuer.url, "jwks_uri": uri})
    mocked.get(uri, body=jwks_body if jwks_body is not None else json.dumps({"keys": [k.jwk for k in issuer.keys]}),
               content_type="application/json")


def test_an_https_issuer_is_found_through_its_discovery_document(redis_conn):
    """GitHub's issuer over https: discovery, then the key set it names, then the token verifies."""
    github = OIDCIssuer(url="https://token.actions.githubusercontent.com", audience=AUDIENCE)
    github.add_key()
    with responses.RequestsMock() as mocked:
        github_like(mocked, github)
        agent = authenticate(redis_conn, settings_for(github), github.mint())
        assert [c.request.url for c in mocked.calls] == [
            "https://token.actions.githubusercontent.com/.well-known/openid-configuration",
            "https://token.actions.githubusercontent.com/.well-known/jwks"]
    assert agent.issuer == "https://token.actions.githubusercontent.com"


def test_an_http_jwks_uri_of_an_https_issuer_is_refused(redis_conn):
    """The discovery document cannot downgrade the key fetch to plain http."""
    github = OIDCIssuer(url="https://token.actions.githubusercontent.com", audience=AUDIENCE)
    github.add_key()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        github_like(mocked, github, jwks_uri="http://token.actions.githubusercontent.com/.well-known/jwks")
        with pytest.raises(IssuerUnavailable) as caught:
            authenticate(redis_conn, settings_for(github), github.mint())
        assert len(mocked.calls) == 1  # the discovery document only
    assert "is not https" in caught.value.reason


def test_an_oversized_key_set_is_refused(redis_conn):
    """An issuer answering more than 1 MB is not read further (and not cached)."""
    github = OIDCIssuer(url="https://token.actions.githubusercontent.com", audience=AUDIENCE)
    github.add_key()
    with responses.RequestsMock() as mocked:
        github_like(mocked, github, jwks_body=json.dumps({"keys": [], "pad": "x" * (oidc.MAX_RESPONSE_BYTES + 1)}))
        with pytest.raises(IssuerUnavailable) as caught:
            authenticate(redis_conn, settings_for(github), github.mint())
    assert "more than 1024 KB" in caught.value.reason
    assert redis_conn.get(keys.oidc_keys(github.url)) is None


def test_a_discovery_document_naming_another_issuer_is_refused(redis_conn, issuer):
    """OIDC Discovery: the document must name the issuer it was fetched for."""
    issuer.discovery_overrides["issuer"] = "https://evil.example"
    with pytest.raises(IssuerUnavailable) as caught:
        authenticate(redis_conn, settings_for(issuer), issuer.mint())
    assert "names issuer https://evil.example" in caught.value.reason
    assert issuer.fetches == {"discovery": 1}


def test_keys_are_shared_through_redis(redis_conn, issuer):
    """Once fetched, the discovery document and key set serve every process: a second authentication with
    a fresh HTTP session (another process) asks the issuer nothing."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint(), session=requests.Session())
    assert issuer.fetches == {"discovery": 1, "jwks": 1}
    other_process = redis.Redis.from_url(TEST_REDIS_URL)
    agent = authenticate(other_process, settings, issuer.mint(), session=requests.Session())
    assert agent.subject == GITHUB_SUBJECT
    assert issuer.fetches == {"discovery": 1, "jwks": 1}
    ttl = redis_conn.ttl(keys.oidc_keys(issuer.url))
    assert 0 < ttl <= keys.OIDC_DISCOVERY_TTL


def test_an_unknown_kid_refetches_the_key_set_once(redis_conn, issuer):
    """A `kid` not in the cached set refetches the key set (not the discovery document) once the floor has
    passed, and only once: the next unknown `kid` within the floor fetches nothing."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint())
    lapse_refetch_floor(redis_conn, issuer)
    assert "is not among the keys" in refused(redis_conn, settings, issuer.mint(kid="made-up-1"))
    assert issuer.fetches == {"discovery": 1, "jwks": 2}
    refused(redis_conn, settings, issuer.mint(kid="made-up-2"))
    assert issuer.fetches == {"discovery": 1, "jwks": 2}
    assert 0 < redis_conn.ttl(keys.oidc_refetch(issuer.url)) <= keys.OIDC_REFETCH_FLOOR


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_floor(redis_conn, issuer):
    """50 tokens with made-up `kid`s, from 8 concurrent clients, cost the issuer at most one key-set fetch
    within the floor: the floor is one SET NX shared by every process."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint())
    lapse_refetch_floor(redis_conn, issuer)
    before = issuer.fetches["jwks"]
    tokens = [issuer.mint(kid=f"flood-{i}") for i in range(50)]
    reasons: list[str] = []

    def client(chunk: list[str]) -> None:
        conn = redis.Redis.from_url(TEST_REDIS_URL)
        for token in chunk:
            try:
                authenticate(conn, settings, token, session=requests.Session())
            except Unauthenticated as exc:
                reasons.append(exc.reason)

    threads = [threading.Thread(target=client, args=(tokens[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reasons) == 50 and all("is not among the keys" in r for r in reasons)
    assert issuer.fetches["jwks"] - before == 1
    assert issuer.fetches["discovery"] == 1


def test_concurrent_first_requests_fetch_the_keys_once(redis_conn, issuer):
    """With nothing cached, 8 processes asking at once cause one discovery and one key-set fetch: the others
    wait for the shared cache instead of asking the issuer too, and every token is accepted."""
    settings = settings_for(issuer)
    tokens = [issuer.mint() for _ in range(8)]
    subjects: list[str] = []
    start = threading.Barrier(len(tokens))

    def client(token: str) -> None:
        conn = redis.Redis.from_url(TEST_REDIS_URL)
        start.wait()
        subjects.append(authenticate(conn, settings, token, session=requests.Session()).subject)

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert subjects == [GITHUB_SUBJECT] * len(tokens)
    assert issuer.fetches == {"discovery": 1, "jwks": 1}


def test_a_rotated_key_is_picked_up_after_the_floor(redis_conn, issuer):
    """The issuer rotates its key: tokens signed with the new one are refused while the floor holds (the
    cached set lacks it and no refetch is allowed), then accepted once it has passed."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint())
    new = issuer.rotate("ec")
    token = issuer.mint(key=new)
    assert "is not among the keys" in refused(redis_conn, settings, token)
    assert issuer.fetches["jwks"] == 1
    lapse_refetch_floor(redis_conn, issuer)
    assert authenticate(redis_conn, settings, token).subject == GITHUB_SUBJECT
    assert issuer.fetches == {"discovery": 1, "jwks": 2}
    # The retired key is gone from the cached set too.
    assert "is not among the keys" in refused(redis_conn, settings, issuer.mint(key=generate_key(
        "rsa", kid="retired")))


def test_an_issuer_down_with_no_cached_keys_is_unavailable_and_not_hammered(redis_conn, issuer):
    """No keys cached and the issuer answers 503: IssuerUnavailable (the route answers 503, retry), never
    an accept; within the floor further requests do not ask the issuer again."""
    issuer.down = True
    settings = settings_for(issuer)
    with pytest.raises(IssuerUnavailable) as caught:
        authenticate(redis_conn, settings, issuer.mint())
    assert "answered HTTP 503" in caught.value.reason
    with pytest.raises(IssuerUnavailable) as again:
        authenticate(redis_conn, settings, issuer.mint())
    assert "could not be fetched" in again.value.reason
    issuer.down = False
    lapse_refetch_floor(redis_conn, issuer)
    assert authenticate(redis_conn, settings, issuer.mint()).subject == GITHUB_SUBJECT


def test_an_issuer_down_with_cached_keys_still_verifies(redis_conn, issuer):
    """Cached keys keep verifying while the issuer is down; only an unknown `kid` is refused (401)."""
    settings = settings_for(issuer)
    authenticate(redis_conn, settings, issuer.mint())
    issuer.down = True
    assert authenticate(redis_conn, settings, issuer.mint()).subject == GITHUB_SUBJECT
    lapse_refetch_floor(redis_conn, issuer)
    assert "is not among the keys" in refused(redis_conn, settings, issuer.mint(kid="new-kid"))


def test_an_oversized_token_is_refused_before_parsing(redis_conn, issuer):
    """A credential over 16 KB is refused before it is decoded or anything is fetched."""
    token = issuer.mint({"padding": "x" * oidc.MAX_TOKEN_LENGTH})
    assert "larger than 16 KB" in refused(redis_conn, settings_for(issuer), token)
    assert issuer.total_fetches == 0


# -- the Authorization header and other credentials
def test_bearer_extracts_the_credential():
    """`Bearer` in any case; anything else (missing, Basic, empty) is refused with the reason."""
    assert bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer("bearer   agk_x ") == "agk_x"
    with pytest.raises(Unauthenticated, match="credential missing"):
        bearer(None)
    with pytest.raises(Unauthenticated, match="credential missing"):
        bearer("Bearer ")
    with pytest.raises(Unauthenticated, match="scheme must be Bearer"):
        bearer("Basic dXNlcjpwYXNz")


@pytest.mark.parametrize("credential, reason", [
    ("", "credential missing"),
    ("   ", "credential missing"),
    ("Basic dXNlcjpwYXNz", "malformed credential"),
    ("not-a-credential-at-all", "malformed credential"),
    ("a.b.c", "malformed ID token"),
    ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "malformed credential"),
])
def test_anything_else_is_missing_or_malformed(redis_conn, credential, reason):
    """Neither a JWT nor an agent key: refused with a reason, nothing looked up."""
    assert refused(redis_conn, settings_for(("https://token.actions.githubusercontent.com", AUDIENCE)),
                   credential).startswith(reason)


# -- agent keys
def test_an_agent_key_authenticates_its_agent_until_removed(redis_conn):
    """`agents add` makes a key that authenticates as `key:NAME`; after `remove` it is refused at once."""
    settings = settings_for()
    key = agentkeys.add(redis_conn, "runner-1")
    assert key.startswith("agk_") and len(key) >= 40
    agent = authenticate(redis_conn, settings, key)
    assert agent.kind == "key" and agent.key_name == "runner-1" and agent.principal == "key:runner-1"
    assert agentkeys.remove(redis_conn, "runner-1") is True
    assert refused(redis_conn, settings, key) == "unknown or removed agent key"
    assert agentkeys.remove(redis_conn, "runner-1") is False


def test_an_unknown_or_altered_agent_key_is_refused(redis_conn):
    """A key agentgate never made, or one character off, is refused."""
    key = agentkeys.add(redis_conn, "runner-1")
    settings = settings_for()
    assert refused(redis_conn, settings, key[:-1] + ("A" if key[-1] != "A" else "B")) == "unknown or removed agent key"
    assert refused(redis_conn, settings, "agk_" + "x" * 43) == "unknown or removed agent key"


def test_re_adding_a_name_gives_a_new_key_and_the_old_one_stays_dead(redis_conn):
    """A name already in use is refused; after remove + add, only the new key works."""
    old = agentkeys.add(redis_conn, "runner-1")
    with pytest.raises(ValueError, match="already exists"):
        agentkeys.add(redis_conn, "runner-1")
    agentkeys.remove(redis_conn, "runner-1")
    new = agentkeys.add(redis_conn, "runner-1")
    assert agentkeys.lookup(redis_conn, new) == "runner-1"
    assert agentkeys.lookup(redis_conn, old) is None


@pytest.mark.parametrize("name", ["", "-runner", "has space", "a" * 65, "slash/name", "ünïcode"])
def test_agent_names_are_validated(redis_conn, name):
    """Names are 1-64 of letters, digits, `.`, `_`, `-`, starting with a letter or digit."""
    with pytest.raises(ValueError, match="is not valid"):
        agentkeys.add(redis_conn, name)
    assert redis_conn.keys("*") == []


def test_only_the_sha256_of_an_agent_key_is_in_redis(redis_conn):
    """Every key and value in Redis is scanned: the agent key appears nowhere, its SHA-256 does."""
    key = agentkeys.add(redis_conn, "runner-1")
    stored = []
    for name in redis_conn.scan_iter("*"):
        stored.append(name)
        kind = redis_conn.type(name)
        if kind == b"string":
            stored.append(redis_conn.get(name) or b"")
        elif kind == b"hash":
            for field_name, value in redis_conn.hgetall(name).items():
                stored += [field_name, value]
    blob = b"\n".join(stored)
    assert key.encode() not in blob and key[4:].encode() not in blob
    assert hashlib.sha256(key.encode()).hexdigest().encode() in blob
    assert [k.name for k in agentkeys.list_keys(redis_conn)] == ["runner-1"]


# -- the CLI
def test_agents_cli_adds_lists_and_removes(redis_conn, monkeypatch, capsys):
    """`agentgate agents add` prints the key once (saying so), `list` shows names and dates only,
    `remove` removes, and an unknown name exits 1."""
    monkeypatch.setenv("AGENTGATE_REDIS_URL", TEST_REDIS_URL)
    assert main(["agents", "add", "runner-1"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("agk_") and "shown only once" in err
    assert agentkeys.lookup(redis_conn, key) == "runner-1"

    assert main(["agents", "add", "runner-1"]) == 1
    assert "already exists" in capsys.readouterr().err

    assert main(["agents", "list"]) == 0
    out = capsys.readouterr().out
    assert "runner-1" in out and "CREATED" in out and key not in out and key[4:] not in out

    assert main(["agents", "remove", "runner-1"]) == 0
    capsys.readouterr()
    assert agentkeys.lookup(redis_conn, key) is None
    assert main(["agents", "remove", "runner-1"]) == 1
    assert "no agent named 'runner-1'" in capsys.readouterr().err


def test_agents_cli_says_when_redis_is_unavailable(monkeypatch, capsys):
    """Redis unreachable: a message on stderr and exit status 2, not a traceback."""
    monkeypatch.setenv("AGENTGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["agents", "list"]) == 2
    assert "Redis is unavailable" in capsys.readouterr().err
