"""Contract tests for tests/fakegithub, the fake GitHub REST API that end-to-end tests point
agentgate at. The fake is only useful if it behaves like GitHub, so it is held to GitHub's OpenAPI
description (tests/fixtures/openapi/routes.json, extracted by extract_routes.py next to it) and to
the documented auth, pagination and validation rules."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import github
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakegithub import ROUTES, FakeGitHub, FakeState, create_app, running_fake_github

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILE = Path(__file__).parent / "fixtures" / "openapi" / "routes.json"
SPEC: dict[tuple[str, str], dict[str, Any]] = {
    (r["method"], r["path"]): r for r in json.loads(SPEC_FILE.read_text())["routes"]}

APP_ID = 4242
INSTALLATION = 77
REPO, OTHER, PUBLIC = "acme/widgets", "acme/gadgets", "acme/open"
HEAD = "3f786850e387550fdab836ed7e6dc881de23001b"
FIRST = "89e6c98d92887913cadf06b2adb97f26cde4849b"
BASE = "2ef7bde608ce5404e97d5f042f95f89f1c232871"
COMMENT_ID, DOOMED_COMMENT_ID, CHECK_RUN_ID, RUN_ID = 501, 502, 601, 701
N_FILES = 66  # three pages at the default per_page of 30


# -- fixtures and helpers ------------------------------------------------------------------------
def new_key_pair() -> tuple[str, str]:
    """A throwaway RSA key pair: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    """The App's key pair; the fake knows the public half."""
    return new_key_pair()


@pytest.fixture(scope="module")
def other_key() -> tuple[str, str]:
    """Somebody else's key pair."""
    return new_key_pair()


def seed(state: FakeState) -> FakeState:
    from tests.fakegithub import admin
    from tests.fakegithub.manifests import add_manifest_code
    from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS

    state.add_installation(INSTALLATION, "acme", [REPO, OTHER],
                           permissions={**DEFAULT_INSTALLATION_PERMISSIONS, "administration": "read"})
    admin.protect_branch(state, REPO, "main")
    admin.add_ruleset(state, REPO, ruleset_id=4001)
    admin.add_environment(state, REPO, "production")
    add_manifest_code(state, {"name": "agentgate", "url": "https://agentgate.example",
                              "hook_attributes": {"url": "https://agentgate.example/webhooks/github"}}, code="c0ffee")
    state.add_repo(PUBLIC, private=False)
    state.add_pull(REPO, 7, title="Add widget", body="Implements widgets", user="coder-bot[bot]",
                   head_ref="agent/widget", head_sha=HEAD, base_sha=BASE, labels=["agent"])
    state.add_pull(REPO, 3, title="Old", state="closed", head_ref="old", user="alice")
    for i in range(N_FILES - 1):
        state.add_file(REPO, 7, f"src/file_{i:02}.py", additions=i, deletions=1)
    state.add_file(REPO, 7, "docs/new.md", status="renamed", previous_filename="docs/old.md",
                   additions=0, deletions=0)
    state.add_review(REPO, 7, "alice", "APPROVED", commit_id=HEAD)
    state.add_review(REPO, 7, "bob", "CHANGES_REQUESTED", commit_id=FIRST)
    state.add_review(REPO, 7, "carol", "PENDING")
    state.add_commit(REPO, 7, FIRST, message="first", author="coder-bot[bot]")
    state.add_commit(REPO, 7, HEAD, message="second", author=None, author_email="nobody@example.com")
    state.set_content(REPO, ".github/agentgate.yml", "rules: []\n")
    state.set_content(REPO, ".github/agentgate.yml", "rules: [changed]\n", ref=HEAD)
    state.set_content(REPO, ".github/CODEOWNERS", "* @acme/core\n")
    state.set_permission(REPO, "alice", "maintain")
    state.set_permission(REPO, "bob", "write")
    state.add_comment(REPO, 7, "hello", user="alice", id=COMMENT_ID)
    state.add_comment(REPO, 7, "delete me", user="alice", id=DOOMED_COMMENT_ID)
    state.add_event(REPO, 7, {"id": 1, "event": "labeled", "label": {"name": "agent", "color": "ededed"},
                              "actor": {"login": "alice"}, "created_at": "2024-01-01T00:00:00Z"})
    state.add_status(REPO, FIRST, "failure", "ci/legacy", "an older commit's status")
    state.add_check_run(REPO, "agentgate", HEAD, id=CHECK_RUN_ID)
    state.add_workflow_run(REPO, RUN_ID, head_sha=HEAD, head_branch="agent/widget",
                           event="pull_request", pull_requests=[7])
    state.add_issue(REPO, 9, title="A plain issue", labels=["bug", "triage"])
    return state


@pytest.fixture
def fake(app_key: tuple[str, str]) -> Iterator[FakeGitHub]:
    with running_fake_github(seed(FakeState(app_id=APP_ID, public_key_pem=app_key[1]))) as gh:
        yield gh


def app_jwt(private_pem: str, now: float, *, iss: object = str(APP_ID), iat_delta: int = -30,
            lifetime: int = 540) -> str:
    """An App JWT as GitHub's docs describe it (iat backdated for clock drift, exp <= 10 min)."""
    claims = {"iat": int(now + iat_delta), "exp": int(now + iat_delta + lifetime), "iss": iss}
    # jwt.encode insists on a string iss; GitHub also accepts the App id as a number.
    return jwt.api_jws.encode(json.dumps(claims).encode(), load_key(private_pem), algorithm="RS256")


@functools.cache
def load_key(private_pem: str) -> Any:
    """Parsing (and validating) a PEM costs ~30 ms; do it once per key."""
    return serialization.load_pem_private_key(private_pem.encode(), password=None)


def http(method: str, url: str, **kw: Any) -> requests.Response:
    return requests.request(method, url, timeout=10, **kw)


def mint(gh: FakeGitHub, private_pem: str, **body: Any) -> str:
    r = http("POST", f"{gh.url}/app/installations/{INSTALLATION}/access_tokens", json=body or None,
                      headers={"Authorization": f"Bearer {app_jwt(private_pem, gh.state.now())}"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def call(gh: FakeGitHub, method: str, path: str, token: str | None = None,
         headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
    auth = {"Authorization": f"token {token}"} if token else {}
    return http(method, gh.url + path, headers={**auth, **(headers or {})}, **kw)


# -- (1) routes vs. the OpenAPI description ----------------------------------------------------------
def test_every_served_route_is_documented_with_the_same_success_status() -> None:
    """Every (method, path) the fake serves outside /_fake/ is an OpenAPI route, with the spec's
    success status, and routes.json lists nothing the fake does not serve (so it is not stale)."""
    app = create_app(FakeState())
    served = {(m, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
              for rule in app.url_map.iter_rules() if not rule.rule.startswith("/_fake/")
              for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    declared = {(r.method, r.template): r.status for r in ROUTES}
    assert served == set(declared)
    assert served == set(SPEC), f"regenerate routes.json: {served ^ set(SPEC)}"
    assert {k: SPEC[k]["status"] for k in served} == declared


# -- (2) required response fields, route by route -------------------------------------------------------
P = f"/repos/{REPO}"
EXAMPLES: dict[tuple[str, str], tuple[str, dict[str, Any] | list[Any] | None]] = {
    ("POST", "/app/installations/{installation_id}/access_tokens"):
        (f"/app/installations/{INSTALLATION}/access_tokens", {"repositories": ["widgets"]}),
    ("DELETE", "/installation/token"): ("/installation/token", None),
    ("GET", "/app"): ("/app", None),
    ("GET", "/repos/{owner}/{repo}/installation"): (f"{P}/installation", None),
    ("POST", "/app-manifests/{code}/conversions"): ("/app-manifests/c0ffee/conversions", None),
    ("GET", "/app/installations"): ("/app/installations", None),
    ("GET", "/installation/repositories"): ("/installation/repositories", None),
    ("GET", "/repos/{owner}/{repo}/branches"): (f"{P}/branches?protected=true", None),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection"): (f"{P}/branches/main/protection", None),
    ("GET", "/repos/{owner}/{repo}/rules/branches/{branch}"): (f"{P}/rules/branches/main", None),
    ("GET", "/repos/{owner}/{repo}/rulesets/{ruleset_id}"): (f"{P}/rulesets/4001", None),
    ("GET", "/repos/{owner}/{repo}/environments"): (f"{P}/environments", None),
    ("GET", "/repos/{owner}/{repo}/environments/{environment_name}/deployment_protection_rules"):
        (f"{P}/environments/production/deployment_protection_rules", None),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"): (f"{P}/branches/main", None),
    ("GET", "/repos/{owner}/{repo}"): (P, None),
    ("GET", "/repos/{owner}/{repo}/pulls"): (f"{P}/pulls", None),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"): (f"{P}/pulls/7", None),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"): (f"{P}/pulls/7/files", None),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"): (f"{P}/pulls/7/reviews", None),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"): (f"{P}/pulls/7/commits", None),
    ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"): (f"{P}/commits/{HEAD}/pulls", None),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"): (f"{P}/git/ref/heads/agent/widget", None),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"): (f"{P}/contents/.github/agentgate.yml", None),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"):
        (f"{P}/collaborators/alice/permission", None),
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"):
        (f"{P}/statuses/{HEAD}", {"state": "success", "context": "agentgate", "description": "ok"}),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}"): (f"{P}/commits/{HEAD}", None),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses"): (f"{P}/commits/{FIRST}/statuses", None),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/status"): (f"{P}/commits/{HEAD}/status", None),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}"): (f"{P}/issues/7", None),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): (f"{P}/issues/7/comments", None),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"):
        (f"{P}/issues/7/comments", {"body": "agentgate says hi"}),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"):
        (f"{P}/issues/comments/{COMMENT_ID}", {"body": "edited"}),
    ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}"):
        (f"{P}/issues/comments/{DOOMED_COMMENT_ID}", None),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels"): (f"{P}/issues/7/labels", None),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"):
        (f"{P}/issues/7/labels", {"labels": ["needs-review"]}),
    ("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}"):
        (f"{P}/issues/9/labels/bug", None),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/events"): (f"{P}/issues/7/events", None),
    ("GET", "/repos/{owner}/{repo}/issues/events/{event_id}"): (f"{P}/issues/events/1", None),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/timeline"): (f"{P}/issues/7/timeline", None),
    ("POST", "/repos/{owner}/{repo}/check-runs"):
        (f"{P}/check-runs", {"name": "agentgate", "head_sha": HEAD, "status": "in_progress"}),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"):
        (f"{P}/check-runs/{CHECK_RUN_ID}",
         {"conclusion": "success", "output": {"title": "ok", "summary": "all good"}}),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"): (f"{P}/actions/runs/{RUN_ID}", None),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"):
        (f"{P}/actions/runs/{RUN_ID}/deployment_protection_rule",
         {"environment_name": "prod", "state": "approved", "comment": "policy ok"}),
}


def test_every_route_has_an_example() -> None:
    """The field-by-field contract test below covers every route the fake serves."""
    assert set(EXAMPLES) == set(SPEC)


def assert_required_fields(obj: Any, entry: dict[str, Any], where: str) -> None:
    assert isinstance(obj, dict), where
    missing = [f for f in entry["required"] if f not in obj]
    assert not missing, f"{where}: missing required {missing}"
    nulls = [f for f in entry["required"] if obj[f] is None and f not in entry["nullable"]]
    assert not nulls, f"{where}: null but not nullable {nulls}"
    for name, sub in entry["nested"].items():
        if isinstance(obj[name], dict):
            missing = [f for f in sub if f not in obj[name]]
            assert not missing, f"{where}.{name}: missing required {missing}"


@pytest.mark.parametrize("key", sorted(SPEC), ids=lambda k: SPEC[k]["operation_id"])
def test_response_has_every_required_field(fake: FakeGitHub, app_key: tuple[str, str],
                                           key: tuple[str, str]) -> None:
    """Each route answers a valid request with the documented success status, and its JSON carries
    every field the OpenAPI schema marks required (non-null unless nullable), one level deep."""
    entry = SPEC[key]
    path, payload = EXAMPLES[key]
    if entry["path"] == "/app" or entry["path"].startswith("/app/") or entry["path"].endswith("/installation"):
        headers = {"Authorization": f"Bearer {app_jwt(app_key[0], fake.state.now())}"}
    else:
        headers = {"Authorization": f"token {mint(fake, app_key[0])}"}
    r = http(entry["method"], fake.url + path, json=payload, headers=headers)
    assert r.status_code == entry["status"], r.text
    if entry["status"] == 204:
        assert r.content == b""
        return
    data = r.json()
    if entry["array"]:
        assert isinstance(data, list) and data, "example should return a non-empty list"
        for i, item in enumerate(data):
            assert_required_fields(item, entry, f"{entry['operation_id']}[{i}]")
    else:
        assert_required_fields(data, entry, entry["operation_id"])


def test_pull_request_review_file_and_commit_shapes(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Seeded objects come back in GitHub's shape: PR user/head/base/labels, review states and
    commit ids, previous_filename only on renames, null author for unlinked commit emails."""
    tok = mint(fake, app_key[0])
    pr = call(fake, "GET", f"{P}/pulls/7", tok).json()
    assert (pr["number"], pr["state"], pr["draft"], pr["title"]) == (7, "open", False, "Add widget")
    assert pr["user"]["login"] == "coder-bot[bot]" and pr["user"]["type"] == "Bot"
    assert isinstance(pr["user"]["id"], int)
    assert pr["head"]["ref"] == "agent/widget" and pr["head"]["sha"] == HEAD
    assert pr["head"]["repo"]["full_name"] == REPO
    assert pr["base"]["repo"]["default_branch"] == "main" and pr["base"]["sha"] == BASE
    assert [lb["name"] for lb in pr["labels"]] == ["agent"]
    assert (pr["changed_files"], pr["commits"]) == (N_FILES, 2)
    assert pr["url"] == f"{fake.url}/repos/{REPO}/pulls/7", "API URLs must point back at the fake"

    reviews = call(fake, "GET", f"{P}/pulls/7/reviews", tok).json()
    assert [(r["user"]["login"], r["state"], r["commit_id"]) for r in reviews] == [
        ("alice", "APPROVED", HEAD), ("bob", "CHANGES_REQUESTED", FIRST)], "PENDING is author-only"
    assert reviews[0]["author_association"] == "MEMBER" and reviews[0]["submitted_at"].endswith("Z")

    files = call(fake, "GET", f"{P}/pulls/7/files", tok, params={"page": 3}).json()
    renamed = files[-1]
    assert (renamed["filename"], renamed["status"], renamed["previous_filename"]) == (
        "docs/new.md", "renamed", "docs/old.md")
    assert "previous_filename" not in files[0]
    assert files[0]["changes"] == files[0]["additions"] + files[0]["deletions"]

    commits = call(fake, "GET", f"{P}/pulls/7/commits", tok).json()
    assert [c["sha"] for c in commits] == [FIRST, HEAD]
    assert commits[0]["author"]["login"] == "coder-bot[bot]" and commits[0]["author"]["type"] == "Bot"
    assert commits[1]["author"] is None and commits[1]["commit"]["author"]["email"] == "nobody@example.com"
    assert commits[1]["parents"][0]["sha"] == FIRST


# -- (3) pagination and PyGithub -----------------------------------------------------------------------
def test_link_header_pagination(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """per_page defaults to 30 (max 100); Link carries absolute next/last (and prev/first) URLs on
    the request host; following rel="next" visits every item exactly once."""
    tok = mint(fake, app_key[0])
    first = call(fake, "GET", f"{P}/pulls/7/files", tok)
    assert len(first.json()) == 30
    assert first.links["next"]["url"] == f"{fake.url}{P}/pulls/7/files?page=2"
    assert first.links["last"]["url"] == f"{fake.url}{P}/pulls/7/files?page=3"
    assert "prev" not in first.links

    names: list[str] = []
    url: str | None = f"{fake.url}{P}/pulls/7/files"
    while url:
        r = http("GET", url, headers={"Authorization": f"token {tok}"})
        names += [f["filename"] for f in r.json()]
        url = r.links.get("next", {}).get("url")
    assert len(names) == len(set(names)) == N_FILES
    assert set(r.links) == {"prev", "first"}

    big = call(fake, "GET", f"{P}/pulls/7/files", tok, params={"per_page": 1000})
    assert len(big.json()) == N_FILES and "Link" not in big.headers  # clamped to 100: one page


def test_pull_files_are_capped_at_3000(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """GitHub lists at most 3000 files for a PR, however many it changes."""
    fake.state.add_pull(REPO, 8, head_sha=FIRST)
    for i in range(3005):
        fake.state.add_file(REPO, 8, f"gen/{i:04}.txt", status="added")
    tok = mint(fake, app_key[0])
    r = call(fake, "GET", f"{P}/pulls/8/files", tok, params={"per_page": 100, "page": 30})
    assert len(r.json()) == 100 and "next" not in r.links
    assert call(fake, "GET", f"{P}/pulls/8/files", tok, params={"per_page": 100, "page": 31}).json() == []
    assert call(fake, "GET", f"{P}/pulls/8", tok).json()["changed_files"] == 3000


def test_pygithub_reads_a_pull_request_and_posts_a_status(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """PyGithub, pointed at the fake, can read a PR, its files across pages, reviews and contents,
    and post a commit status; the fake saw exactly the requests that implies."""
    tok = mint(fake, app_key[0])
    fake.state.calls.clear()
    # PyGithub throttles itself between requests by default; nothing to wait for here.
    gh = github.Github(base_url=fake.url, auth=github.Auth.Token(tok), seconds_between_requests=None,
                       seconds_between_writes=None)
    try:
        repo = gh.get_repo(REPO)
        pr = repo.get_pull(7)
        assert (pr.title, pr.head.sha, pr.user.login) == ("Add widget", HEAD, "coder-bot[bot]")
        files = list(pr.get_files())
        assert len(files) == N_FILES and files[-1].previous_filename == "docs/old.md"
        assert [(r.user.login, r.state) for r in pr.get_reviews()] == [
            ("alice", "APPROVED"), ("bob", "CHANGES_REQUESTED")]
        doc = repo.get_contents(".github/agentgate.yml", ref=HEAD)
        assert not isinstance(doc, list) and doc.decoded_content == b"rules: [changed]\n"
        status = repo.get_commit(HEAD).create_status(state="success", context="agentgate",
                                                    description="All rules passed")
        assert status.creator.login == "agentgate[bot]"
    finally:
        gh.close()
    assert [s["state"] for s in fake.state.repo(REPO).statuses[HEAD]] == ["success"]
    assert [(c.method, c.path, c.query.get("page")) for c in fake.state.calls] == [
        ("GET", f"{P}", None), ("GET", f"{P}/pulls/7", None),
        ("GET", f"{P}/pulls/7/files", None), ("GET", f"{P}/pulls/7/files", "2"),
        ("GET", f"{P}/pulls/7/files", "3"), ("GET", f"{P}/pulls/7/reviews", None),
        ("GET", f"{P}/contents/.github/agentgate.yml", None),
        ("GET", f"{P}/commits/{HEAD}", "1"),  # PyGithub's get_commit() is eager
        ("POST", f"{P}/statuses/{HEAD}", None)]
    assert {c.auth for c in fake.state.calls} == {"installation"}


# -- (4) App JWTs and installation tokens ---------------------------------------------------------------
@pytest.mark.parametrize("case", ["wrong_key", "future_iat", "wrong_iss", "too_long", "expired",
                                  "missing", "installation_token"])
def test_access_token_route_rejects_bad_jwts(fake: FakeGitHub, app_key: tuple[str, str],
                                             other_key: tuple[str, str], case: str) -> None:
    """POST /app/installations/{id}/access_tokens needs an RS256 JWT signed by the App key with
    iss = App id, iat at most 60s ahead, exp in the future and at most 600s after iat; else 401."""
    now = fake.state.now()
    auth = {
        "wrong_key": f"Bearer {app_jwt(other_key[0], now)}",
        "future_iat": f"Bearer {app_jwt(app_key[0], now, iat_delta=120)}",
        "wrong_iss": f"Bearer {app_jwt(app_key[0], now, iss='999')}",
        "too_long": f"Bearer {app_jwt(app_key[0], now, iat_delta=0, lifetime=601)}",
        "expired": f"Bearer {app_jwt(app_key[0], now, iat_delta=-700, lifetime=600)}",
        "missing": "",
        "installation_token": f"token {mint(fake, app_key[0])}",
    }[case]
    r = http("POST", f"{fake.url}/app/installations/{INSTALLATION}/access_tokens",
                      headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401, r.text
    assert r.json()["documentation_url"].startswith("https://docs.github.com/")


def test_access_token_accepts_numeric_or_string_iss_and_scopes_the_token(
        fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """A valid JWT (iss as number or string, iat up to 60s ahead) yields 201 with a ghs_ token that
    expires in an hour, the requested permissions and repositories, selection "selected"."""
    now = fake.state.now()
    for iss, iat_delta in ((APP_ID, -60), (str(APP_ID), 50)):
        r = http("POST", f"{fake.url}/app/installations/{INSTALLATION}/access_tokens",
                          json={"repositories": ["widgets"], "permissions": {"statuses": "write"}},
                          headers={"Authorization": f"Bearer {app_jwt(app_key[0], now, iss=iss, iat_delta=iat_delta)}"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["token"].startswith("ghs_") and len(body["token"]) == 40
        expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(expires.timestamp() - (now + 3600)) <= 2
        assert body["permissions"] == {"metadata": "read", "statuses": "write"}
        assert body["repository_selection"] == "selected"
        assert [repo["full_name"] for repo in body["repositories"]] == [REPO]


@pytest.mark.parametrize("request_body, status", [
    ({"repositories": ["not-installed"]}, 422),
    ({"repository_ids": [123456789]}, 422),
    ({"permissions": {"administration": "write"}}, 422),  # never granted to the installation
    ({"permissions": {"contents": "write"}}, 422),  # granted only at read
])
def test_access_token_cannot_exceed_the_installation(fake: FakeGitHub, app_key: tuple[str, str],
                                                     request_body: dict[str, Any], status: int) -> None:
    """A token can be narrowed to some of the installation's repos and permissions, never widened."""
    r = http("POST", f"{fake.url}/app/installations/{INSTALLATION}/access_tokens", json=request_body,
                      headers={"Authorization": f"Bearer {app_jwt(app_key[0], fake.state.now())}"})
    assert r.status_code == status, r.text


def test_unknown_installation_is_404(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Minting a token for an installation the App does not have is 404."""
    r = http("POST", f"{fake.url}/app/installations/999/access_tokens",
                      headers={"Authorization": f"Bearer {app_jwt(app_key[0], fake.state.now())}"})
    assert r.status_code == 404


def test_token_scoping_revocation_and_expiry(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """A token sees only its repositories (others, and unknown repos, are 404 like GitHub hides
    private repos); a bad, revoked or expired token is 401."""
    tok = mint(fake, app_key[0], repositories=["widgets"])
    assert call(fake, "GET", f"/repos/{REPO}", tok).status_code == 200
    assert call(fake, "GET", f"/repos/{REPO.upper()}", tok).status_code == 200  # names are case-insensitive
    assert call(fake, "GET", f"/repos/{OTHER}", tok).status_code == 404
    assert call(fake, "GET", f"/repos/{OTHER}/pulls", tok).status_code == 404
    assert call(fake, "GET", "/repos/acme/nope", tok).status_code == 404
    assert call(fake, "GET", f"/repos/{REPO}", None).status_code == 404  # anonymous: private is hidden
    assert call(fake, "GET", f"/repos/{PUBLIC}", None).status_code == 200  # ...public is readable
    assert call(fake, "GET", f"/repos/{REPO}", "ghs_" + "x" * 36).status_code == 401

    assert call(fake, "DELETE", "/installation/token", tok).status_code == 204
    r = call(fake, "GET", f"/repos/{REPO}", tok)
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"

    tok2 = mint(fake, app_key[0])
    fake.state.advance(3601)
    assert call(fake, "GET", f"/repos/{REPO}", tok2).status_code == 401


def test_token_permissions_are_enforced(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Routes need their GitHub App permission (e.g. statuses:write to post a status, contents:read
    to read files); without it the answer is 403 "Resource not accessible by integration"."""
    tok = mint(fake, app_key[0], permissions={"contents": "read", "issues": "read"})
    assert call(fake, "GET", f"{P}/contents/.github/agentgate.yml", tok).status_code == 200
    assert call(fake, "GET", f"{P}/issues/7/comments", tok).status_code == 200
    assert call(fake, "GET", f"{P}", tok).status_code == 200  # metadata:read is implicit
    for method, path, payload in [("POST", f"{P}/statuses/{HEAD}", {"state": "success"}),
                                  ("POST", f"{P}/issues/7/comments", {"body": "x"}),
                                  ("GET", f"{P}/pulls/7", None),
                                  ("POST", f"{P}/check-runs", {"name": "x", "head_sha": HEAD})]:
        r = call(fake, method, path, tok, json=payload)
        assert r.status_code == 403, (method, path)
        assert r.json()["message"] == "Resource not accessible by integration"


# -- route behaviour -------------------------------------------------------------------------------------------
def test_status_validation_and_combined_state(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """POST statuses: state must be error|failure|pending|success, description <= 140 chars and the
    sha a known commit (422 otherwise). Combined state: failure if any latest context failed or
    errored, pending if none or any pending, else success. Lists are newest first."""
    tok = mint(fake, app_key[0])
    url = f"{P}/statuses/{HEAD}"
    assert call(fake, "POST", url, tok, json={"state": "passed"}).status_code == 422
    assert call(fake, "POST", url, tok, json={"state": "success", "description": "x" * 141}).status_code == 422
    assert call(fake, "POST", f"{P}/statuses/{'0' * 40}", tok, json={"state": "success"}).status_code == 422
    assert call(fake, "GET", f"{P}/commits/{HEAD}/status", tok).json()["state"] == "pending"

    def post(state: str, context: str) -> None:
        r = call(fake, "POST", url, tok, json={"state": state, "context": context, "description": "y" * 140})
        assert r.status_code == 201, r.text
        assert r.json()["creator"]["type"] == "Bot"
    post("pending", "a")
    post("success", "b")
    assert call(fake, "GET", f"{P}/commits/{HEAD}/status", tok).json()["state"] == "pending"
    post("success", "a")
    combined = call(fake, "GET", f"{P}/commits/agent/widget/status", tok).json()  # a branch name works too
    assert (combined["state"], combined["total_count"], combined["sha"]) == ("success", 2, HEAD)
    post("error", "b")
    assert call(fake, "GET", f"{P}/commits/{HEAD}/status", tok).json()["state"] == "failure"
    listed = call(fake, "GET", f"{P}/commits/{HEAD}/statuses", tok).json()
    assert [(s["context"], s["state"]) for s in listed] == [
        ("b", "error"), ("a", "success"), ("b", "success"), ("a", "pending")]


def test_comment_lifecycle(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Comments posted with an installation token are authored by the App's bot user; they can be
    edited (200) and deleted (204), after which they are gone (404); an empty body is 422."""
    tok = mint(fake, app_key[0])
    assert call(fake, "POST", f"{P}/issues/7/comments", tok, json={"body": ""}).status_code == 422
    assert call(fake, "POST", f"{P}/issues/404/comments", tok, json={"body": "x"}).status_code == 404
    created = call(fake, "POST", f"{P}/issues/7/comments", tok, json={"body": "first"}).json()
    assert created["user"]["login"] == "agentgate[bot]" and created["user"]["type"] == "Bot"
    cid = created["id"]
    edited = call(fake, "PATCH", f"{P}/issues/comments/{cid}", tok, json={"body": "second"})
    assert edited.status_code == 200 and edited.json()["body"] == "second"
    assert call(fake, "DELETE", f"{P}/issues/comments/{cid}", tok).status_code == 204
    assert cid not in [c["id"] for c in call(fake, "GET", f"{P}/issues/7/comments", tok).json()]
    assert call(fake, "PATCH", f"{P}/issues/comments/{cid}", tok, json={"body": "x"}).status_code == 404


def test_labels_and_issues(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Adding labels returns the issue's full label list; removing one that is not on the issue is
    404 "Label does not exist"; a PR read through the issues API carries ``pull_request``."""
    tok = mint(fake, app_key[0])
    added = call(fake, "POST", f"{P}/issues/7/labels", tok, json=["x", {"name": "y"}]).json()
    assert [lb["name"] for lb in added] == ["agent", "x", "y"]
    r = call(fake, "DELETE", f"{P}/issues/7/labels/nope", tok)
    assert r.status_code == 404 and r.json()["message"] == "Label does not exist"
    left = call(fake, "DELETE", f"{P}/issues/7/labels/x", tok).json()
    assert [lb["name"] for lb in left] == ["agent", "y"]
    assert "pull_request" in call(fake, "GET", f"{P}/issues/7", tok).json()
    plain = call(fake, "GET", f"{P}/issues/9", tok).json()
    assert "pull_request" not in plain and [lb["name"] for lb in plain["labels"]] == ["bug", "triage"]
    assert call(fake, "GET", f"{P}/issues/404", tok).status_code == 404


def test_contents_encoding_refs_and_directories(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Contents: base64 wrapped every 60 chars with a trailing newline, git blob sha, ``ref`` by
    sha or branch (default: the default branch), directory listings, 404 when absent."""
    tok = mint(fake, app_key[0])
    text = "x" * 100 + "\n"
    fake.state.set_content(REPO, "big.txt", text)
    doc = call(fake, "GET", f"{P}/contents/big.txt", tok).json()
    assert (doc["type"], doc["encoding"], doc["name"], doc["path"], doc["size"]) == (
        "file", "base64", "big.txt", "big.txt", 101)
    lines = doc["content"].split("\n")
    assert [len(line) for line in lines] == [60, 60, 16, 0]
    assert base64.b64decode(doc["content"]) == text.encode()
    assert doc["sha"] == hashlib.sha1(b"blob 101\0" + text.encode()).hexdigest()  # noqa: S324

    def read(ref: str | None) -> bytes:
        r = call(fake, "GET", f"{P}/contents/.github/agentgate.yml", tok, params={"ref": ref} if ref else None)
        return base64.b64decode(r.json()["content"])
    assert read(None) == read("main") == read(BASE) == b"rules: []\n"
    assert read(HEAD) == read("agent/widget") == b"rules: [changed]\n"

    listing = call(fake, "GET", f"{P}/contents/.github", tok).json()
    assert [(e["name"], e["type"]) for e in listing] == [("CODEOWNERS", "file"), ("agentgate.yml", "file")]
    missing = call(fake, "GET", f"{P}/contents/nope.yml", tok)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                              "status": "404"}
    assert call(fake, "GET", f"{P}/contents/x", tok, params={"ref": "no-such-branch"}).status_code == 404


def test_collaborator_permission_levels(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """``permission`` is the legacy base role (maintain->write, triage->read), ``role_name`` the
    real one; a user with no grant reads as "none" on a private repo."""
    tok = mint(fake, app_key[0])
    fake.state.set_permission(REPO, "tim", "triage")
    got = {u: call(fake, "GET", f"{P}/collaborators/{u}/permission", tok).json()
           for u in ("alice", "bob", "tim", "stranger")}
    assert {u: (d["permission"], d["role_name"]) for u, d in got.items()} == {
        "alice": ("write", "maintain"), "bob": ("write", "write"), "tim": ("read", "triage"),
        "stranger": ("none", "none")}
    assert got["alice"]["user"]["login"] == "alice" and got["alice"]["user"]["permissions"]["push"]


def test_pull_listing_filters(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """GET pulls: state defaults to open (all/closed selectable, anything else 422), newest first;
    head=owner:ref and base filters; commits/{sha}/pulls finds PRs containing the commit."""
    tok = mint(fake, app_key[0])

    def numbers(params: dict[str, str]) -> list[int]:
        return [p["number"] for p in call(fake, "GET", f"{P}/pulls", tok, params=params).json()]

    def by_commit(sha: str) -> list[int]:
        return [p["number"] for p in call(fake, "GET", f"{P}/commits/{sha}/pulls", tok).json()]
    assert numbers({}) == [7]
    assert numbers({"state": "all"}) == [7, 3]
    assert numbers({"state": "closed"}) == [3]
    assert numbers({"state": "all", "head": "acme:agent/widget"}) == [7]
    assert numbers({"state": "all", "base": "develop"}) == []
    assert call(fake, "GET", f"{P}/pulls", tok, params={"state": "merged"}).status_code == 422
    assert "additions" not in call(fake, "GET", f"{P}/pulls", tok).json()[0]  # the "simple" variant
    assert by_commit(HEAD) == by_commit(FIRST) == [7]
    assert by_commit("f" * 40) == []


def test_refs_merged_pulls_and_cross_references(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """git/ref answers heads/<branch> and tags/<tag> (404 for anything else, a tag is not a branch);
    commits/{sha}/pulls lists the merged PR that introduced a merge commit, and merged or open PRs
    carrying a commit, never closed unmerged ones; a cross-referenced timeline item seeded with an
    issue number renders that issue in full as its source."""
    tok = mint(fake, app_key[0])
    repo = fake.state.repo(REPO)
    repo.tags["v1.2.3"] = HEAD
    ref = call(fake, "GET", f"{P}/git/ref/tags/v1.2.3", tok).json()
    assert (ref["ref"], ref["object"]["sha"], ref["object"]["type"]) == ("refs/tags/v1.2.3", HEAD, "commit")
    assert call(fake, "GET", f"{P}/git/ref/heads/agent/widget", tok).json()["object"]["sha"] == HEAD
    for missing in ("heads/v1.2.3", "tags/agent/widget", "heads/nope", f"heads/{HEAD}", "v1.2.3"):
        assert call(fake, "GET", f"{P}/git/ref/{missing}", tok).status_code == 404, missing
    assert call(fake, "GET", f"{P}/branches/v1.2.3", tok).status_code == 404

    merge = "5" * 40
    fake.state.add_pull(REPO, 4, title="Merged", state="closed", merged=True, head_sha=FIRST,
                        merge_commit_sha=merge)
    fake.state.add_pull(REPO, 5, title="Closed unmerged", state="closed", head_sha=FIRST)

    def by_commit(sha: str) -> list[int]:
        return [p["number"] for p in call(fake, "GET", f"{P}/commits/{sha}/pulls", tok).json()]
    assert by_commit(merge) == [4]
    assert by_commit(FIRST) == [4, 7]
    assert call(fake, "GET", f"{P}/commits/{merge}", tok).status_code == 200  # the merge commit exists

    repo.timeline.setdefault(7, []).append({"event": "cross-referenced", "actor": "alice",
                                            "created_at": "2024-01-02T00:00:00Z", "source": {"issue": 9}})
    [*_, xref] = call(fake, "GET", f"{P}/issues/7/timeline", tok).json()
    assert xref["source"]["type"] == "issue" and xref["source"]["issue"]["number"] == 9
    assert xref["source"]["issue"]["title"] == "A plain issue" and "pull_request" not in xref["source"]["issue"]
    assert xref["actor"]["login"] == "alice" and xref["updated_at"] == "2024-01-02T00:00:00Z"


def test_check_runs_and_deployment_protection_rules(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Check runs: name and head_sha required, a conclusion implies completed, completed without a
    conclusion is 422. Protection-rule reviews need environment_name and a state (approved|rejected)
    or a comment; they are recorded per run; unknown runs are 404."""
    tok = mint(fake, app_key[0])
    assert call(fake, "POST", f"{P}/check-runs", tok, json={"name": "x"}).status_code == 422
    run = call(fake, "POST", f"{P}/check-runs", tok,
               json={"name": "gate", "head_sha": HEAD, "conclusion": "failure",
                     "output": {"title": "Blocked", "summary": "rule X"}}).json()
    assert (run["status"], run["conclusion"], run["output"]["title"]) == ("completed", "failure", "Blocked")
    bad = call(fake, "PATCH", f"{P}/check-runs/{CHECK_RUN_ID}", tok, json={"status": "completed"})
    assert bad.status_code == 422
    assert fake.state.repo(REPO).check_runs[CHECK_RUN_ID]["status"] == "queued"  # unchanged on 422

    url = f"{P}/actions/runs/{RUN_ID}/deployment_protection_rule"
    assert call(fake, "POST", url, tok, json={"environment_name": "prod", "state": "maybe"}).status_code == 422
    assert call(fake, "POST", url, tok, json={"state": "approved"}).status_code == 422
    assert call(fake, "POST", f"{P}/actions/runs/1/deployment_protection_rule", tok,
                json={"environment_name": "prod", "state": "approved"}).status_code == 404
    assert call(fake, "POST", url, tok, json={"environment_name": "prod", "state": "rejected",
                                              "comment": "no"}).status_code == 204
    assert [(c["run_id"], c["state"]) for c in fake.state.repo(REPO).protection_rule_callbacks] == [
        (RUN_ID, "rejected")]
    assert call(fake, "GET", f"{P}/actions/runs/{RUN_ID}", tok).json()["pull_requests"][0]["number"] == 7


def test_unknown_routes_methods_and_api_versions(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Unknown paths, unsupported methods and trailing slashes are GitHub's JSON 404; every answer
    has rate-limit headers; an unsupported X-GitHub-Api-Version is 400, a supported one echoed."""
    tok = mint(fake, app_key[0])
    for method, path in [("GET", "/nope"), ("PUT", f"{P}/pulls/7"), ("GET", f"{P}/pulls/7/")]:
        r = call(fake, method, path, tok)
        assert r.status_code == 404 and r.json()["message"] == "Not Found", (method, path)
        assert r.headers["X-RateLimit-Remaining"].isdigit() and r.headers["X-RateLimit-Limit"] == "5000"
    r = call(fake, "GET", P, tok, headers={"X-GitHub-Api-Version": "v3"})
    assert r.status_code == 400 and "not a supported version" in r.json()["message"]
    r = call(fake, "GET", P, tok, headers={"X-GitHub-Api-Version": "2022-11-28"})
    assert r.status_code == 200 and r.headers["X-GitHub-Api-Version-Selected"] == "2022-11-28"


# -- recording and the control API -------------------------------------------------------------------
def test_calls_are_recorded_with_auth_kind(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Every API request is recorded (method, path, query, JSON body, auth kind, status) so tests can
    assert exactly which calls were made; /_fake/ control requests are not recorded."""
    tok = mint(fake, app_key[0], repositories=["widgets"])
    call(fake, "POST", f"{P}/statuses/{HEAD}", tok, json={"state": "success"})
    call(fake, "GET", f"{P}/pulls", None, params={"state": "all"})
    http("GET", f"{fake.url}/_fake/calls")
    assert [(c.method, c.auth, c.status) for c in fake.state.calls] == [
        ("POST", "jwt", 201), ("POST", "installation", 201), ("GET", "none", 404)]
    assert fake.state.calls[0].body == {"repositories": ["widgets"]}
    assert fake.state.calls[2].query == {"state": "all"}
    posted = fake.state.calls_matching("POST", r"/repos/acme/widgets/statuses/[0-9a-f]{40}")
    assert [c.body for c in posted] == [{"state": "success"}]
    assert fake.state.calls_matching("GET", r"/repos/.*/pulls/\d+") == []


def test_control_api_seeds_inspects_and_resets(fake: FakeGitHub, app_key: tuple[str, str]) -> None:
    """Another process can seed the fake (JSON merge, or seeding-helper ops) via POST /_fake/state,
    mint tokens via /_fake/tokens, read GET /_fake/calls and /_fake/state, and POST /_fake/reset."""
    seed_doc = {
        "installations": {"88": {"account": "zed", "repositories": ["zed/app"]}},
        "repos": {"zed/app": {"default_branch": "trunk", "permissions": {"zoe": "admin"},
                              "pulls": {"5": {"number": 5, "title": "Merged in", "labels": ["x"],
                                              "head": {"ref": "f", "sha": HEAD},
                                              "base": {"ref": "trunk", "sha": BASE}}}}},
        "ops": [{"op": "add_file", "args": {"repo": "zed/app", "number": 5, "filename": "a.py"}},
                {"op": "set_content", "args": {"repo": "zed/app", "path": "README", "text": "hi"}}],
    }
    assert http("POST", f"{fake.url}/_fake/state", json=seed_doc).status_code == 200
    tok = http("POST", f"{fake.url}/_fake/tokens", json={"installation_id": 88}).json()["token"]
    pr = call(fake, "GET", "/repos/zed/app/pulls/5", tok).json()
    assert (pr["title"], pr["base"]["repo"]["default_branch"], pr["changed_files"]) == ("Merged in", "trunk", 1)
    assert [lb["name"] for lb in pr["labels"]] == ["x"]
    assert call(fake, "GET", "/repos/zed/app/contents/README", tok).json()["content"] == "aGk=\n"

    calls = http("GET", f"{fake.url}/_fake/calls").json()
    assert [(c["method"], c["path"], c["auth"]) for c in calls] == [
        ("GET", "/repos/zed/app/pulls/5", "installation"), ("GET", "/repos/zed/app/contents/README", "installation")]
    assert http("GET", f"{fake.url}/_fake/state").json()["repos"]["zed/app"]["permissions"] == {"zoe": "admin"}

    http("POST", f"{fake.url}/_fake/reset", json={"calls_only": True})
    assert fake.state.calls == [] and "zed/app" in fake.state.repos
    http("POST", f"{fake.url}/_fake/reset")
    assert fake.state.repos == {} and fake.state.app_id == APP_ID
    assert call(fake, "GET", "/repos/zed/app", tok).status_code == 401  # tokens are gone too


def test_runs_as_its_own_process(app_key: tuple[str, str], tmp_path: Path) -> None:
    """``python -m tests.fakegithub --port 0 --public-key-file F`` prints its URL first, then serves
    the same API (here: minting a token with a JWT from the matching private key)."""
    key_file = tmp_path / "app.pub"
    key_file.write_text(app_key[1])
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"installations": {str(INSTALLATION): {"account": "acme",
                                                                           "repositories": [REPO]}}}))
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakegithub", "--port", "0", "--app-id", str(APP_ID),
                             "--public-key-file", str(key_file), "--seed-file", str(seed_file)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # blocks until the server is bound
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        r = http("POST", f"{url}/app/installations/{INSTALLATION}/access_tokens",
                          headers={"Authorization": f"Bearer {app_jwt(app_key[0], time.time())}"})
        assert r.status_code == 201, r.text
        assert http("GET", f"{url}/_fake/calls").json()[0]["auth"] == "jwt"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
