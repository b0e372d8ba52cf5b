"""GitHub's `TokenIssuer` (gatekeeper/forges/github/tokens.py), agentgate's own token index
(`forget_repository`) and `Forge.default_branch`: exact requests with `responses`, then the same
against the fake GitHub (tests/fakegithub), whose tokens are long and opaque."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
import requests
import responses

from gatekeeper.forges.github.auth import InstallationTokens, forget_repository
from gatekeeper.forges.github.client import GitHubForge
from gatekeeper.forges.github.tokens import GitHubTokenIssuer, token_issuer
from gatekeeper.forges.port import ForgeError, MintedToken, RateLimited
from gatekeeper.forges.recording import RecordingForge
from gatekeeper.settings import Settings
from gatekeeper.state import keys
from tests.fakegithub import FakeGitHub, FakeState, running_fake_github
from tests.keys import app_key_pair
from tests.memoryforge import MemoryForge

API = "https://api.github.test:443"  # PyGithub spells the port out; responses matches literally
REPO, OTHER, ELSEWHERE = "acme/widgets", "acme/gadgets", "other/thing"
INSTALLATION = 42
LONG_TOKEN = "ghs_" + "Ab3" * 172  # 520 characters, the longest GitHub says its tokens get
ASKED = {"contents": "write", "pull_requests": "write", "issues": "read"}


def github_settings(api_url: str = API) -> Settings:
    return Settings(github_app_id="123", github_private_key=app_key_pair()[0], github_api_url=api_url)


def token_body(token: str = LONG_TOKEN, **extra: object) -> dict[str, object]:
    return {"token": token, "expires_at": "2030-01-01T01:00:00Z", "permissions": {"metadata": "read", **ASKED},
            "repository_selection": "selected", "repositories": [{"full_name": REPO}], **extra}


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def issuer(redis_conn: redis.Redis) -> GitHubTokenIssuer:
    return GitHubTokenIssuer(github_settings(), redis_conn)


def installed(api: responses.RequestsMock, repo: str = REPO) -> None:
    api.get(f"{API}/repos/{repo}/installation", json={"id": INSTALLATION, "account": {"login": "acme"}})


# ---- minting -----------------------------------------------------------------------------------------


def test_mint_asks_for_one_repository_and_exactly_the_permissions(api, issuer, redis_conn) -> None:
    """The installation is found as the App (JWT), and the token is asked for that one repository, by
    name, with exactly the permissions; nothing is stored, the 520-character token comes back intact."""
    installed(api)
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", json=token_body(), status=201)

    minted = issuer.mint(REPO, ASKED, 1800, "task-12")

    assert minted == MintedToken(token=LONG_TOKEN, expires_at=1893459600.0,
                                 permissions={"metadata": "read", **ASKED}, handle="")
    lookup, mint = api.calls
    assert lookup.request.method == "GET" and lookup.request.url == f"{API}/repos/{REPO}/installation"
    assert mint.request.url == f"{API}/app/installations/{INSTALLATION}/access_tokens"
    assert json.loads(mint.request.body) == {"repositories": ["widgets"], "permissions": ASKED}
    for call in api.calls:  # both as the App: a three-part JWT, never an installation token
        scheme, _, credential = call.request.headers["Authorization"].partition(" ")
        assert scheme == "Bearer" and credential.count(".") == 2
    assert redis_conn.keys("*") == []


def test_tokens_for_agents_are_never_cached(api, issuer) -> None:
    """Each mint is a new token from GitHub (an agent's token is never shared with another task)."""
    installed(api)
    mint = api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", json=token_body(), status=201)
    issuer.mint(REPO, ASKED, 600, "a")
    issuer.mint(REPO, ASKED, 600, "b")
    assert mint.call_count == 2


def test_not_installed_is_a_clear_error_and_mints_nothing(api, issuer) -> None:
    """404 on the installation lookup: "agentgate is not installed on OWNER/NAME", and no token is asked."""
    api.get(f"{API}/repos/{REPO}/installation", status=404, json={"message": "Not Found"})
    with pytest.raises(ForgeError, match="agentgate is not installed on acme/widgets"):
        issuer.mint(REPO, ASKED, 600, "t")
    with pytest.raises(ForgeError, match="not installed"):
        issuer.reader(REPO)
    assert [c.request.method for c in api.calls] == ["GET", "GET"]


def test_a_permission_the_installation_lacks_says_githubs_reason(api, issuer) -> None:
    """422 from GitHub (the installation itself lacks the permission) is a ForgeError with GitHub's message."""
    installed(api)
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", status=422,
             json={"message": "The permissions requested are not granted to this installation."})
    with pytest.raises(ForgeError, match="not granted to this installation") as raised:
        issuer.mint(REPO, {"administration": "write"}, 600, "t")
    assert raised.value.status == 422


def test_rate_limited_mint_says_when_to_come_back(api, issuer) -> None:
    """A rate-limited mint is RateLimited with GitHub's Retry-After, so the caller answers 503 and waits."""
    installed(api)
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", status=429,
             json={"message": "slow down"}, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited) as raised:
        issuer.mint(REPO, ASKED, 600, "t")
    assert raised.value.retry_after == 30


@pytest.mark.parametrize("answer", [
    {"repository_selection": "all"},
    {"repositories": [{"full_name": REPO}, {"full_name": OTHER}]},
    {"permissions": {"metadata": "read", **ASKED, "administration": "write"}},
    {"permissions": {"metadata": "read", **ASKED, "issues": "write"}},
])
def test_a_token_wider_than_asked_is_revoked_at_once(api, issuer, answer) -> None:
    """Should GitHub ever answer a token wider than asked (more repositories or permissions), it is
    revoked with itself and never handed out."""
    installed(api)
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", json=token_body(**answer), status=201)
    revoke = api.delete(f"{API}/installation/token", status=204)
    with pytest.raises(ForgeError, match="wider than asked"):
        issuer.mint(REPO, ASKED, 600, "t")
    assert revoke.call_count == 1
    assert api.calls[-1].request.headers["Authorization"] == f"token {LONG_TOKEN}"


@pytest.mark.parametrize("repo", ["widgets", "acme/", "/widgets", "acme/wid/gets", "acme/..", "ac me/x", ""])
def test_malformed_repository_names_are_refused_before_any_request(api, issuer, repo) -> None:
    """A repository name that is not OWNER/NAME never reaches a URL."""
    with pytest.raises(ForgeError, match="not a GitHub repository name"):
        issuer.mint(repo, ASKED, 600, "t")
    assert not api.calls


def test_no_permissions_is_refused_not_all_of_them(api, issuer) -> None:
    """GitHub reads a missing `permissions` as every permission of the installation: never asked."""
    with pytest.raises(ForgeError, match="no permissions"):
        issuer.mint(REPO, {}, 600, "t")
    assert not api.calls


# ---- revoking ----------------------------------------------------------------------------------------


def test_revoke_deletes_the_token_with_itself(api, issuer) -> None:
    """DELETE /installation/token authenticated by the token being revoked (no JWT, no other token)."""
    api.delete(f"{API}/installation/token", status=204)
    issuer.revoke(REPO, LONG_TOKEN, "")
    (call,) = api.calls
    assert call.request.method == "DELETE" and call.request.url == f"{API}/installation/token"
    assert call.request.headers["Authorization"] == f"token {LONG_TOKEN}"


def test_revoking_a_dead_token_is_done(api, issuer) -> None:
    """401 (already expired or revoked) counts as revoked: the caller does not retry forever."""
    api.delete(f"{API}/installation/token", status=401, json={"message": "Bad credentials"})
    issuer.revoke(REPO, LONG_TOKEN, "")


@pytest.mark.parametrize("status", [500, 502, 403])
def test_a_failed_revoke_raises_for_a_retry(api, issuer, status) -> None:
    """Any other answer is a ForgeError (the caller keeps the token's state as 'revoke failed' and retries),
    and the message never carries the token."""
    api.delete(f"{API}/installation/token", status=status, json={"message": "Server Error"})
    with pytest.raises(ForgeError) as raised:
        issuer.revoke(REPO, LONG_TOKEN, "")
    assert raised.value.status == status and LONG_TOKEN not in str(raised.value)


def test_unreachable_github_is_a_forge_error(issuer) -> None:
    """A connection failure is a ForgeError naming no token (503 for the caller)."""
    with responses.RequestsMock() as mock:
        mock.delete(f"{API}/installation/token", body=requests.ConnectionError("refused"))
        with pytest.raises(ForgeError, match="could not reach GitHub"):
            issuer.revoke(REPO, LONG_TOKEN, "")


# ---- the reader and default_branch ----------------------------------------------------------------------


def test_reader_reads_the_default_branch_with_a_read_only_token(api, issuer) -> None:
    """`reader(repo)` acts with a read-only installation token; `default_branch()` is the repository's."""
    installed(api)
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", status=201,
             json={"token": "ghs_reader", "expires_at": "2030-01-01T01:00:00Z"})
    api.get(f"{API}/repos/{REPO}", json={"full_name": REPO, "default_branch": "trunk"})
    assert issuer.reader(REPO).default_branch() == "trunk"
    asked = json.loads(api.calls[1].request.body)
    assert asked["repositories"] == ["widgets"]
    assert set(asked["permissions"].values()) == {"read"}
    assert api.calls[2].request.headers["Authorization"] == "token ghs_reader"


def test_default_branch_missing_fails_closed() -> None:
    """A repository GitHub names no default branch for is an error, never a guessed "main"."""
    with responses.RequestsMock() as mock:
        mock.get(f"{API}/repos/{REPO}", json={"full_name": REPO, "default_branch": None})
        with pytest.raises(ForgeError, match="no default branch"):
            GitHubForge(REPO, "ghs_x", API).default_branch()


def test_other_forges_answer_default_branch(redis_conn) -> None:
    """The dev-mode recording forge reads it from the samples (else main); the in-memory fake is seeded."""
    assert RecordingForge(redis_conn, REPO).default_branch() == "main"
    redis_conn.set(keys.dev_sample(REPO, 1), json.dumps(
        {"pull_request": {"number": 1, "base": {"ref": "x", "repo": {"default_branch": "develop"}}}}))
    assert RecordingForge(redis_conn, REPO).default_branch() == "develop"
    assert MemoryForge(default_ref="trunk").default_branch() == "trunk"


def test_no_issuer_without_app_credentials_or_in_dry_run(redis_conn) -> None:
    """Without the App's credentials (or when only recording) there is no GitHub issuer."""
    assert token_issuer(Settings(), redis_conn) is None
    assert token_issuer(Settings(github_app_id="1", github_private_key="k", dry_run=True), redis_conn) is None
    assert isinstance(token_issuer(github_settings(), redis_conn), GitHubTokenIssuer)


# ---- agentgate's own tokens, dropped when the App leaves a repository -------------------------------------


def test_own_tokens_are_indexed_by_repository_and_forgotten(api, redis_conn) -> None:
    """Each cached installation token is listed under its repository (with a TTL); `forget_repository`
    drops every one of them and the list, and leaves other repositories' tokens alone."""
    tokens = InstallationTokens(redis_conn, app_id="123", private_key=app_key_pair()[0], api_url=API)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    for n in range(3):
        api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", status=201,
                 json={"token": f"ghs_{n}", "expires_at": expires})
    tokens.token(INSTALLATION, REPO, {"contents": "read"})
    tokens.token(INSTALLATION, "Acme/Widgets", {"statuses": "write"})  # names are case-insensitive
    tokens.token(INSTALLATION, OTHER, {"contents": "read"})
    index = keys.installation_tokens_of("github", REPO)
    assert redis_conn.scard(index) == 2 and 0 < redis_conn.ttl(index) <= 3600
    cached = [m.decode() for m in redis_conn.smembers(index)]

    assert forget_repository(redis_conn, "ACME/widgets") == 2
    assert not redis_conn.exists(index, *cached)
    assert redis_conn.scard(keys.installation_tokens_of("github", OTHER)) == 1
    assert forget_repository(redis_conn, REPO) == 0
    # The next job mints afresh instead of reading a dropped token.
    api.post(f"{API}/app/installations/{INSTALLATION}/access_tokens", status=201,
             json={"token": "ghs_new", "expires_at": expires})
    assert tokens.token(INSTALLATION, REPO, {"contents": "read"}) == "ghs_new"


# ---- against the fake GitHub -----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    state = FakeState(app_id=123, public_key_pem=app_key_pair()[1], long_tokens=True)
    state.add_repo(REPO, default_branch="trunk")
    state.add_installation(INSTALLATION, "acme", [REPO, OTHER])
    state.add_installation(7, "other", [ELSEWHERE])
    state.add_issue(REPO, 12, title="The task")
    state.add_issue(OTHER, 3, title="Elsewhere")
    with running_fake_github(state) as gh:
        yield gh


def get(gh: FakeGitHub, path: str, token: str) -> requests.Response:
    return requests.get(f"{gh.url}{path}", headers={"Authorization": f"token {token}"}, timeout=10)


def test_fake_mint_use_refuse_and_revoke(fake, redis_conn) -> None:
    """Against the fake: the recorded request names one repository and the permissions; the long token
    works on that repository, is refused on another and for a permission it lacks, and is dead once revoked
    (the fake saw the DELETE made with that very token)."""
    issuer = GitHubTokenIssuer(github_settings(fake.url), redis_conn)
    minted = issuer.mint(REPO, {"issues": "read", "contents": "read"}, 900, "task-12")

    assert len(minted.token) == 520 and minted.token.startswith("ghs_")
    (mint,) = fake.state.calls_matching("POST", rf"/app/installations/{INSTALLATION}/access_tokens")
    assert mint.auth == "jwt"
    assert mint.body == {"repositories": ["widgets"], "permissions": {"issues": "read", "contents": "read"}}
    assert minted.permissions == {"metadata": "read", "issues": "read", "contents": "read"}
    assert abs(minted.expires_at - (fake.state.now() + 3600)) <= 5

    assert get(fake, f"/repos/{REPO}/issues/12", minted.token).status_code == 200
    assert get(fake, f"/repos/{OTHER}/issues/3", minted.token).status_code == 404
    assert get(fake, f"/repos/{REPO}/pulls", minted.token).status_code == 403  # no pull_requests permission

    issuer.revoke(REPO, minted.token, minted.handle)
    (delete,) = fake.state.calls_matching("DELETE", r"/installation/token")
    assert delete.status == 204
    assert get(fake, f"/repos/{REPO}/issues/12", minted.token).status_code == 401
    issuer.revoke(REPO, minted.token, minted.handle)  # again: already dead is done


def test_fake_long_token_round_trips_through_the_forge(fake, redis_conn) -> None:
    """A 520-character token works as agentgate's own credential too: the GitHub forge reads with it."""
    minted = GitHubTokenIssuer(github_settings(fake.url), redis_conn).mint(REPO, {"issues": "read"}, 600, "t")
    issue = GitHubForge(REPO, minted.token, fake.url).get_issue(12)
    assert issue is not None and issue.number == 12


def test_fake_reader_and_installation_lookup(fake, redis_conn) -> None:
    """The reader finds the installation (JWT), reads the default branch with a read-only token; a
    repository the App is not installed on is a clear error, with nothing minted."""
    issuer = GitHubTokenIssuer(github_settings(fake.url), redis_conn)
    assert issuer.reader(REPO).default_branch() == "trunk"
    assert issuer.installation(ELSEWHERE) == 7
    minted_before = len(fake.state.calls_matching("POST", r"/app/installations/\d+/access_tokens"))
    with pytest.raises(ForgeError, match="agentgate is not installed on acme/nowhere"):
        issuer.mint("acme/nowhere", {"issues": "read"}, 600, "t")
    assert len(fake.state.calls_matching("POST", r"/app/installations/\d+/access_tokens")) == minted_before


def test_fake_refuses_a_permission_beyond_the_installation(fake, redis_conn) -> None:
    """The fake installation has contents:read only: asking for contents:write is GitHub's 422, with its text."""
    issuer = GitHubTokenIssuer(github_settings(fake.url), redis_conn)
    with pytest.raises(ForgeError, match="not granted to this installation"):
        issuer.mint(REPO, {"contents": "write"}, 600, "t")


def test_fake_installation_route_is_for_the_app_only(fake, redis_conn) -> None:
    """GET /repos/{owner}/{repo}/installation needs the App's JWT (an installation token is 401), answers
    GitHub's `installation` object, and 404 where no installation has the repository."""
    tok = fake.state.issue_token(INSTALLATION, [REPO]).token
    assert get(fake, f"/repos/{REPO}/installation", tok).status_code == 401
    tokens = InstallationTokens(redis_conn, app_id="123", private_key=app_key_pair()[0], api_url=fake.url)
    found = tokens.app_request("GET", f"/repos/{REPO}/installation")
    assert found.status_code == 200
    body = found.json()
    assert (body["id"], body["app_id"], body["account"]["login"]) == (INSTALLATION, 123, "acme")
    assert body["access_tokens_url"] == f"{fake.url}/app/installations/{INSTALLATION}/access_tokens"
    assert tokens.app_request("GET", "/repos/acme/nowhere/installation").status_code == 404
