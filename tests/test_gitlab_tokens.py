"""GitLab's `TokenIssuer` (gatekeeper/forges/gitlab/tokens.py): project access tokens with the fewest
scopes and the lowest role, the earliest expiry date GitLab allows, revoked and rotated explicitly.
Exact requests with `responses`, then against the fake GitLab (tests/fakegitlab), which holds the
tokens to their project and scopes."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import redis
import requests
import responses

from gatekeeper.forges.gitlab.client import GitLabForge
from gatekeeper.forges.gitlab.tokens import GitLabTokenIssuer, expiry_date, scopes_for, token_issuer
from gatekeeper.forges.port import ForgeError, MintedToken, RateLimited
from gatekeeper.settings import Settings
from tests.fakegitlab import DEVELOPER, MAINTAINER, FakeGitLab, FakeGitLabState, running_fake_gitlab

URL = "https://gitlab.test"
PROJECT, OTHER = "acme/widgets", "acme/gadgets"
P = f"{URL}/api/v4/projects/acme%2Fwidgets"
OWN_TOKEN = "glpat-agentgate-own-token"
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()


def gitlab_settings(url: str = URL, token: str = OWN_TOKEN) -> Settings:
    return Settings(gitlab_url=url, gitlab_token=token)


def created(**extra: object) -> dict[str, object]:
    return {"id": 58, "name": "task-12", "revoked": False, "created_at": "2026-03-10T12:00:00.000Z",
            "description": None, "scopes": ["read_api", "read_repository"], "user_id": 166, "last_used_at": None,
            "active": True, "expires_at": "2026-03-11", "access_level": 20, "token": "glpat-minted", **extra}


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def issuer(redis_conn: redis.Redis) -> GitLabTokenIssuer:
    return GitLabTokenIssuer(gitlab_settings(), redis_conn, clock=lambda: NOON)


# ---- the mapping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("permissions, scopes, level", [
    ({"contents": "read"}, ["read_repository"], 20),
    ({"contents": "write"}, ["read_repository", "write_repository"], 30),
    ({"contents": "read", "issues": "read"}, ["read_api", "read_repository"], 20),
    ({"contents": "write", "pull_requests": "write"}, ["api", "read_repository", "write_repository"], 30),
    ({"issues": "write"}, ["api"], 20),  # a Reporter writes issues and comments, and cannot commit
    ({"checks": "read", "metadata": "read"}, ["read_api"], 20),
])
def test_permissions_map_to_the_fewest_scopes_and_lowest_role(permissions, scopes, level) -> None:
    """contents -> read_repository (+ write_repository), anything else -> read_api or api; Reporter when
    everything is read, Developer when anything is write."""
    assert scopes_for(permissions) == (scopes, level)


@pytest.mark.parametrize("permissions, reason", [
    ({"contents": "admin"}, "read or write only"),  # never Maintainer
    ({"administration": "write"}, "no GitLab equivalent"),  # unknown: refused, not widened to api
    ({"metadata": "read"}, "need no GitLab scope"),
    ({}, "no permissions"),
])
def test_what_gitlab_cannot_narrow_to_is_refused(permissions, reason) -> None:
    """A permission GitLab has no narrow equivalent for is an error, never a broader token."""
    with pytest.raises(ForgeError, match=reason) as raised:
        scopes_for(permissions)
    assert raised.value.status == 422  # like GitHub's refusal of a permission it cannot grant


@pytest.mark.parametrize("now, ttl, expected", [
    (NOON, 1800, date(2026, 3, 11)),  # the earliest GitLab allows: tomorrow
    (NOON, 0, date(2026, 3, 11)),
    (datetime(2026, 3, 10, 23, 50, tzinfo=UTC).timestamp(), 1800, date(2026, 3, 12)),  # must outlive the ttl
    (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp(), 60, date(2027, 1, 2)),
])
def test_expiry_is_the_earliest_date_that_outlives_the_ttl(now, ttl, expected) -> None:
    """GitLab ends a token at 00:00 UTC of its date: the date is tomorrow, or later only to cover the ttl."""
    assert expiry_date(now, ttl) == expected


# ---- minting -------------------------------------------------------------------------------------------


def test_mint_asks_gitlab_for_exactly_this_token(api, issuer, redis_conn) -> None:
    """POST /projects/:id/access_tokens (the path URL-encoded) with agentgate's token, the name, the
    mapped scopes and role and tomorrow's date; the token id is the handle; nothing is stored."""
    api.post(f"{P}/access_tokens", status=201, json=created())
    minted = issuer.mint(PROJECT, {"contents": "read", "issues": "read"}, 1800, "task-12")

    assert minted == MintedToken(token="glpat-minted", expires_at=datetime(2026, 3, 11, tzinfo=UTC).timestamp(),
                                 permissions={"contents": "read", "issues": "read"}, handle="58")
    (call,) = api.calls
    assert call.request.headers["PRIVATE-TOKEN"] == OWN_TOKEN
    assert json.loads(call.request.body) == {"name": "task-12", "scopes": ["read_api", "read_repository"],
                                             "access_level": 20, "expires_at": "2026-03-11"}
    assert redis_conn.keys("*") == []


def test_gitlab_refusals_say_why(api, issuer) -> None:
    """400 carries GitLab's message; 403 says what agentgate's own token lacks; 429 says when to retry."""
    api.post(f"{P}/access_tokens", status=400,
             json={"message": "400 Bad request - User does not have permission to create project access token"})
    with pytest.raises(ForgeError, match="does not have permission to create") as raised:
        issuer.mint(PROJECT, {"contents": "read"}, 600, "t")
    assert raised.value.status == 400
    api.replace(responses.POST, f"{P}/access_tokens", status=403, json={"message": "403 Forbidden"})
    with pytest.raises(ForgeError, match="Maintainer role"):
        issuer.mint(PROJECT, {"contents": "read"}, 600, "t")
    api.replace(responses.POST, f"{P}/access_tokens", status=429, json={"message": "Retry later"},
                headers={"Retry-After": "20"})
    with pytest.raises(RateLimited) as limited:
        issuer.mint(PROJECT, {"contents": "read"}, 600, "t")
    assert limited.value.retry_after == 20


@pytest.mark.parametrize("answer", [{"scopes": ["api"]}, {"access_level": 40}])
def test_a_token_unlike_the_one_asked_is_revoked_at_once(api, issuer, answer) -> None:
    """Should GitLab answer broader scopes or a higher role than asked, the token is revoked, not handed out."""
    api.post(f"{P}/access_tokens", status=201, json=created(**answer))
    revoke = api.delete(f"{P}/access_tokens/58", status=204)
    with pytest.raises(ForgeError, match="unlike the one asked"):
        issuer.mint(PROJECT, {"contents": "read", "issues": "read"}, 600, "t")
    assert revoke.call_count == 1


@pytest.mark.parametrize("project", ["", "/acme/widgets", "acme/widgets/", "acme//widgets"])
def test_malformed_project_paths_are_refused_before_any_request(api, issuer, project) -> None:
    """A project path GitLab could not name is refused before a URL is built from it."""
    with pytest.raises(ForgeError, match="not a GitLab project path"):
        issuer.mint(project, {"contents": "read"}, 600, "t")
    assert not api.calls


# ---- revoking and rotating -------------------------------------------------------------------------------


def test_revoke_deletes_the_token_by_id(api, issuer) -> None:
    """DELETE /projects/:id/access_tokens/:token_id with agentgate's own token (not the agent's)."""
    api.delete(f"{P}/access_tokens/58", status=204)
    issuer.revoke(PROJECT, "glpat-minted", "58")
    (call,) = api.calls
    assert call.request.method == "DELETE" and call.request.headers["PRIVATE-TOKEN"] == OWN_TOKEN


def test_a_token_gitlab_no_longer_knows_is_revoked(api, issuer) -> None:
    """404 naming the access token: already gone, which is what was wanted."""
    api.delete(f"{P}/access_tokens/58", status=404, json={"message": "404 project Access Token Not Found"})
    issuer.revoke(PROJECT, "glpat-minted", "58")


@pytest.mark.parametrize("status, body", [
    (404, {"message": "404 Project Not Found"}),  # moved or hidden: the token may live on
    (400, {"message": "400 Bad request - maria cannot delete project_1_bot"}),
    (500, {"message": "500 Internal Server Error"}),
])
def test_any_other_revoke_answer_raises_for_a_retry(api, issuer, status, body) -> None:
    """A project GitLab cannot find, or any other failure, is a ForgeError: the token is not dead yet."""
    api.delete(f"{P}/access_tokens/58", status=status, json=body)
    with pytest.raises(ForgeError) as raised:
        issuer.revoke(PROJECT, "glpat-minted", "58")
    assert raised.value.status == status and "glpat-minted" not in str(raised.value)


def test_revoke_needs_a_token_id(api, issuer) -> None:
    """Without a numeric handle there is nothing to revoke by: an error, and no request."""
    with pytest.raises(ForgeError, match="no GitLab token id"):
        issuer.revoke(PROJECT, "glpat-minted", "")
    assert not api.calls


def test_rotate_returns_the_new_token(api, issuer) -> None:
    """POST /projects/:id/access_tokens/:token_id/rotate: the new token (and, from rotate_token, its new id)."""
    api.post(f"{P}/access_tokens/58/rotate", status=200, json=created(id=59, token="glpat-rotated"))
    assert issuer.rotate(PROJECT, 58) == "glpat-rotated"
    api.post(f"{P}/access_tokens/self/rotate", status=200, json=created(id=60, token="glpat-self"))
    rotated = issuer.rotate_token(PROJECT, "self", expires_at=date(2026, 3, 17))
    assert (rotated.token, rotated.handle) == ("glpat-self", "60")
    assert json.loads(api.calls[-1].request.body) == {"expires_at": "2026-03-17"}
    api.post(f"{P}/access_tokens/61/rotate", status=401, json={"message": "401 Unauthorized"})
    with pytest.raises(ForgeError, match="401"):
        issuer.rotate(PROJECT, 61)
    with pytest.raises(ForgeError, match="not a GitLab token id"):
        issuer.rotate(PROJECT, "../../users")


def test_no_issuer_without_gitlab_settings(redis_conn) -> None:
    """Without a GitLab URL and token (or when only recording) there is no GitLab issuer."""
    assert token_issuer(Settings(), redis_conn) is None
    assert token_issuer(Settings(gitlab_url=URL, gitlab_token="t", dry_run=True), redis_conn) is None
    assert isinstance(token_issuer(gitlab_settings(), redis_conn), GitLabTokenIssuer)


# ---- against the fake GitLab -------------------------------------------------------------------------------

SERVICE = "agentgate-service"  # a service account: a personal token, Maintainer on both projects
SERVICE_TOKEN = "glpat-service"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    state = FakeGitLabState()
    for path in (PROJECT, OTHER):
        state.add_project(path, default_branch="trunk" if path == PROJECT else "main")
        state.add_file(path, "trunk" if path == PROJECT else "main", "README.md", f"# {path}\n")
        state.set_member(path, SERVICE, MAINTAINER)
    state.add_token(SERVICE, SERVICE_TOKEN)
    with running_fake_gitlab(state) as gl:
        yield gl


def fake_issuer(gl: FakeGitLab, conn: redis.Redis, token: str = SERVICE_TOKEN) -> GitLabTokenIssuer:
    return GitLabTokenIssuer(gitlab_settings(gl.url, token), conn, clock=gl.state.now)


def call(gl: FakeGitLab, method: str, path: str, token: str, **kw: object) -> requests.Response:
    return requests.request(method, f"{gl.url}/api/v4{path}", headers={"PRIVATE-TOKEN": token}, timeout=10, **kw)


def project(path: str) -> str:
    return f"/projects/{urllib.parse.quote(path, safe='')}"


def test_fake_read_token_works_on_its_project_only_and_dies_when_revoked(fake, redis_conn) -> None:
    """A read-only token (read_api + read_repository, Reporter) reads its project, is 404 on another,
    403 `insufficient_scope` for a write, and 401 once revoked."""
    issuer = fake_issuer(fake, redis_conn)
    minted = issuer.mint(PROJECT, {"contents": "read", "issues": "read"}, 1800, "task-12")
    record = fake.state.access_tokens[int(minted.handle)]
    assert (record["scopes"], record["access_level"], record["name"]) == (["read_api", "read_repository"], 20,
                                                                          "task-12")
    assert record["expires_at"] == expiry_date(fake.state.now(), 1800).isoformat()

    readme = f"{project(PROJECT)}/repository/files/README.md?ref=trunk"
    assert call(fake, "GET", readme, minted.token).status_code == 200
    assert call(fake, "GET", project(PROJECT), minted.token).status_code == 200
    assert call(fake, "GET", f"{project(OTHER)}/repository/files/README.md?ref=main", minted.token).status_code == 404
    write = call(fake, "POST", f"{project(PROJECT)}/statuses/{'a' * 40}", minted.token, json={"state": "success"})
    assert write.status_code == 403 and write.json()["error"] == "insufficient_scope"

    issuer.revoke(PROJECT, minted.token, minted.handle)
    assert call(fake, "GET", readme, minted.token).status_code == 401
    issuer.revoke(PROJECT, minted.token, minted.handle)  # again: GitLab no longer knows it, which is done


def test_fake_scopes_hold_the_token_to_what_it_was_granted(fake, redis_conn) -> None:
    """read_repository alone reads files and nothing else of the API; a write grant (api, Developer) may
    post a status on its project only, and its role is never Maintainer."""
    issuer = fake_issuer(fake, redis_conn)
    files_only = issuer.mint(PROJECT, {"contents": "read"}, 600, "files")
    assert call(fake, "GET", f"{project(PROJECT)}/repository/files/README.md?ref=trunk",
                files_only.token).status_code == 200
    assert call(fake, "GET", project(PROJECT), files_only.token).status_code == 403

    writer = issuer.mint(PROJECT, {"contents": "write", "statuses": "write"}, 600, "writer")
    assert fake.state.access_tokens[int(writer.handle)]["access_level"] == DEVELOPER
    head = fake.state.projects[PROJECT].branches["trunk"]
    fake.state.add_commit(PROJECT, head)
    assert call(fake, "POST", f"{project(PROJECT)}/statuses/{head}", writer.token,
                json={"state": "success", "name": "ci"}).status_code == 201
    assert call(fake, "GET", project(OTHER), writer.token).status_code == 404


def test_fake_token_reads_through_the_forge_and_expires_at_its_date(fake, redis_conn) -> None:
    """The minted token works as a GitLab forge's credential; past 00:00 UTC of its date it is 401."""
    minted = fake_issuer(fake, redis_conn).mint(PROJECT, {"contents": "read"}, 600, "t")
    assert GitLabForge(PROJECT, fake.url, minted.token).get_file("README.md", "trunk") == f"# {PROJECT}\n"
    fake.state.tick(minted.expires_at - fake.state.now() + 1)
    assert call(fake, "GET", f"{project(PROJECT)}/repository/files/README.md?ref=trunk",
                minted.token).status_code == 401


def test_fake_reader_reads_the_default_branch(fake, redis_conn) -> None:
    """The issuer's reader is a GitLab forge on agentgate's token; default_branch() is the project's."""
    assert fake_issuer(fake, redis_conn).reader(PROJECT).default_branch() == "trunk"


def test_fake_rotation_replaces_the_token_and_reuse_kills_the_family(fake, redis_conn) -> None:
    """Rotating gives a new token (the old one is 401 at once); rotating the old one again is 401 and
    revokes the new one too (GitLab's reuse detection)."""
    issuer = fake_issuer(fake, redis_conn)
    first = issuer.mint(PROJECT, {"contents": "read"}, 600, "own")
    rotated = issuer.rotate_token(PROJECT, int(first.handle))
    path = f"{project(PROJECT)}/repository/files/README.md?ref=trunk"
    assert rotated.token != first.token and rotated.handle != first.handle
    assert call(fake, "GET", path, rotated.token).status_code == 200
    assert call(fake, "GET", path, first.token).status_code == 401
    with pytest.raises(ForgeError, match="401"):
        issuer.rotate(PROJECT, int(first.handle))
    assert call(fake, "GET", path, rotated.token).status_code == 401


def test_fake_refuses_tokens_from_project_bots_and_beyond_the_creator(fake, redis_conn) -> None:
    """GitLab: only a personal or service account token of a Maintainer creates project access tokens, and
    never with a role above the creator's."""
    with pytest.raises(ForgeError, match="does not have permission to create project access token"):
        fake_issuer(fake, redis_conn, fake.state.token).mint(PROJECT, {"contents": "read"}, 600, "t")
    dev = fake.state.add_token("dev-dora", "glpat-dora")
    fake.state.set_member(PROJECT, "dev-dora", DEVELOPER)
    with pytest.raises(ForgeError, match="does not have permission"):
        fake_issuer(fake, redis_conn, dev).mint(PROJECT, {"contents": "read"}, 600, "t")
    r = call(fake, "POST", f"{project(PROJECT)}/access_tokens", SERVICE_TOKEN,
             json={"name": "x", "scopes": ["api"], "access_level": 50, "expires_at": "2099-01-01"})
    assert r.status_code == 400 and "not held by the creating user" in r.json()["message"]


@pytest.mark.parametrize("body, key, message", [
    ({"scopes": ["api"], "expires_at": "tomorrow"}, "error", "name is missing, expires_at is invalid"),
    ({"name": "x", "scopes": ["sudo"]}, "error", "scopes does not have a valid value"),
    ({"name": "x", "scopes": ["api"], "access_level": 35}, "error", "access_level does not have a valid value"),
    ({"name": "x", "scopes": ["api"], "expires_at": "2020-01-01"}, "message", "400 Bad request - Expires at must"),
    ({"name": "x", "scopes": ["api"], "expires_at": "2999-01-01"}, "message", "400 Bad request - Expires at must"),
])
def test_fake_validates_like_gitlab(fake, body, key, message) -> None:
    """Parameters are checked as GitLab's API does (Grape's `error` for a missing or invalid parameter, the
    service's `message` for an expiry in the past or beyond a year), and nothing is minted."""
    r = call(fake, "POST", f"{project(PROJECT)}/access_tokens", SERVICE_TOKEN, json=body)
    assert r.status_code == 400 and r.json()[key].startswith(message), r.text
    assert not fake.state.access_tokens


def test_fake_expiry_today_is_refused(fake) -> None:
    """Today is as much in the past as yesterday (a token dies at 00:00 UTC of its date): the earliest is tomorrow."""
    today = fake.state.today().isoformat()
    r = call(fake, "POST", f"{project(PROJECT)}/access_tokens", SERVICE_TOKEN,
             json={"name": "x", "scopes": ["read_api"], "access_level": 20, "expires_at": today})
    assert r.status_code == 400


def test_a_developer_write_without_contents_write_is_refused() -> None:
    """The Developer role with `api` can commit through the API, so writes that need it (merge requests,
    statuses, pipelines) are only granted together with `contents: write`: otherwise refused (422)."""
    from gatekeeper.forges.gitlab.tokens import scopes_for

    for permissions in ({"pull_requests": "write"}, {"contents": "read", "statuses": "write"}):
        with pytest.raises(ForgeError) as refused:
            scopes_for(permissions)
        assert refused.value.status == 422 and "contents: write" in str(refused.value)
