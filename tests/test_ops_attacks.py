"""Attacks on the operator surfaces: the dashboard and its sign-in, the details page, the ASGI front,
`/metrics`, the logs, `agentgate doctor` and `agentgate setup github`.

Three attackers: an anonymous visitor of the web process (the one GitHub's webhooks reach, so it is on
the internet), a malicious pull request author whose strings (title, branch, files, labels, logins,
review bodies) end up on the pages, and a local user of the machine where `agentgate setup github` runs.
A passing test documents a defence that holds; a test marked `xfail(strict=True)` demonstrates a
weakness that is still there (its reason says what is wrong), and starts failing once it is fixed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import io
import json
import logging
import os
import re
import threading
import types
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import logs
from gatekeeper.cli import setup as setup_cli
from gatekeeper.cli.main import main
from gatekeeper.doctor import PolicyFile, Report, policy_check, render_json, render_text
from gatekeeper.forges.github import manifest as manifests
from gatekeeper.settings import Settings
from gatekeeper.state import audit, decisions, keys, metrics
from gatekeeper.state.audit import AuditEntry
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.web import create_app
from gatekeeper.web import dashboard as dashboard_web
from gatekeeper.web.app import Front
from gatekeeper.web.dashboard import COOKIE
from tests.browser import ADMIN_TOKEN, chrome, chromium_missing
from tests.fakegithub import admin
from tests.test_dashboard import BEARER
from tests.test_dashboard import admin_settings as admin_settings  # fixture: settings with the admin token
from tests.test_dashboard import client as client  # fixture: a test client of the web app
from tests.test_dashboard import seeded as seeded  # fixture: a store with decisions, tokens and failures
from tests.test_doctor import REPO as DOCTOR_REPO
from tests.test_doctor import github  # noqa: F401 - the fake GitHub fixture doctor's tests use

HEAD = "eab0c84" + "1" * 33
BASE = "9c0ffee" + "3" * 33
# One hostile string: it closes an attribute (both quotes), opens a tag with a handler, a script, an
# entity that must not be decoded twice, and a URL scheme a link must never carry.
EVIL = "\"'><x-pwn onclick=alert(1) onmouseover=alert(2)>&amp;<script>alert(3)</script>javascript:alert(4)"


# -- what an HTML page really contains, as a parser sees it -----------------------------------------------

class _Markup(HTMLParser):
    """Every element and attribute of a page, and its text (entities decoded, as a browser shows it)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> _Markup:
    page = _Markup()
    page.feed(html)
    page.close()
    return page


LINK_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "srcset", "background", "poster", "data"}


def assert_inert(html: str, allowed_links: tuple[str, ...]) -> _Markup:
    """No element, handler or link came from data: no script, no element an attacker named, no `on*`
    attribute, no link other than the allowed prefixes (never javascript: or data:)."""
    page = parsed(html)
    names = {tag for tag, _ in page.tags}
    assert not names & {"x-pwn", "script", "iframe", "object", "embed", "img", "meta-refresh", "base", "link"}, names
    for tag, attrs in page.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            if name in LINK_ATTRIBUTES:
                assert value is not None and value.startswith(allowed_links), (tag, name, value)
            if tag == "meta" and name == "http-equiv":
                raise AssertionError(f"a meta http-equiv on the page: {attrs}")
    return page


# -- the dashboard: who may look ------------------------------------------------------------------------------

SEEDED_WORDS = ("acme/", "copilot", "devin", "renovate", "octocat", "bad-signature", "/decisions/", "<svg", "<td")


def assert_nothing_seeded(body: str) -> None:
    said = re.sub(r"<style.*?</style>", "", body, flags=re.S).lower()
    assert [w for w in SEEDED_WORDS if w in said] == []


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/", "/dashboard%2f", "/dashboard%2F",
                                  "/DASHBOARD", "/Dashboard", "/dashboard;x", "/dashboard/.", "/./dashboard",
                                  "/dashboard/../dashboard", "/dashboard%00", "/%64ashboard", "/dashboard?format=json",
                                  "/dashboard/signin", "/dashboard/signout", "/decisions/../dashboard"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_no_path_or_method_variant_opens_the_dashboard(client, seeded, path, method):
    """However the path is spelled (a trailing slash, an encoded slash or letter, a dot segment, a NUL,
    another case; doubled slashes are tried through the front below, as the test client reads them as a
    host) and whichever read method is used, an anonymous visitor gets a refusal, a redirect to the same
    refusal or a method answer: never a byte of the store."""
    resp = client.open(path, method=method, follow_redirects=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code in (200, 401, 404, 405), (path, method, resp.status_code)
    if resp.status_code == 200:
        assert method == "OPTIONS" and body == "", (path, body[:200])  # only the Allow header
    assert_nothing_seeded(body)
    for name, value in resp.headers.items():
        assert_nothing_seeded(f"{name}: {value}")


def test_head_of_the_dashboard_is_refused_like_get(client, seeded):
    """HEAD runs the same check as GET: 401 without the token, and its length is the refusal's, not the
    dashboard's (a HEAD must not measure the data)."""
    anonymous = client.head("/dashboard")
    refusal = client.get("/dashboard")
    assert anonymous.status_code == 401
    assert anonymous.headers.get("Content-Length") == refusal.headers.get("Content-Length")
    assert client.head("/dashboard", headers=BEARER).status_code == 200


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"}, {"X-Original-URL": "/healthz"},
    {"X-Rewrite-URL": "/healthz"}, {"X-Forwarded-Host": "localhost"}, {"Forwarded": "for=127.0.0.1;host=localhost"},
    {"X-HTTP-Method-Override": "OPTIONS"}, {"Host": "localhost"}, {"Host": "127.0.0.1"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"Authorization": f"Token {ADMIN_TOKEN}"},
    {"Authorization": f"Bearer{ADMIN_TOKEN}"}, {"Authorization": f"Bearer  {ADMIN_TOKEN[:-1]}"},
    {"Authorization": "Bearer " + ADMIN_TOKEN + "\u0000"}, {"X-Admin-Token": ADMIN_TOKEN},
    {"Cookie": f"{COOKIE}={ADMIN_TOKEN}"}, {"Cookie": f"{COOKIE}=" + "A" * 43},
])
def test_spoofed_proxy_and_credential_headers_open_nothing(client, seeded, headers):
    """Claiming to be local or proxied, another auth scheme, a near-miss bearer, the admin token as a
    cookie or under another header name: 401 and no data."""
    resp = client.get("/dashboard", headers=headers)
    assert resp.status_code == 401, headers
    assert_nothing_seeded(resp.get_data(as_text=True))


def test_the_admin_token_is_never_taken_from_the_url(client, seeded, redis_conn):
    """A token in the query string (where proxies, browser history and Referer headers keep it) opens
    nothing and signs nobody in."""
    assert client.get(f"/dashboard?token={ADMIN_TOKEN}").status_code == 401
    assert client.get(f"/dashboard?access_token={ADMIN_TOKEN}").status_code == 401
    resp = client.post(f"/dashboard/signin?token={ADMIN_TOKEN}")
    assert resp.status_code == 401 and "Set-Cookie" not in resp.headers
    resp = client.post("/dashboard/signin", json={"token": ADMIN_TOKEN})  # only the form is read
    assert resp.status_code == 401 and "Set-Cookie" not in resp.headers
    assert list(redis_conn.scan_iter(match="*dashboard-session*")) == []


def test_a_cookie_planted_before_sign_in_is_never_the_session(client, redis_conn, seeded):
    """Session fixation: a cookie value an attacker set before the operator signs in is replaced by a
    fresh random one, and the planted value opens nothing afterwards."""
    planted = "attacker-chosen-" + "x" * 27
    client.set_cookie(COOKIE, planted, path="/dashboard")
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    assert resp.status_code == 303
    fresh = client.get_cookie(COOKIE, path="/dashboard").value
    assert fresh != planted
    other = create_app(replace(client.application.extensions["agentgate"].settings), redis_conn).test_client()
    other.set_cookie(COOKIE, planted, path="/dashboard")
    assert other.get("/dashboard").status_code == 401


def test_the_session_cookie_goes_to_the_dashboard_only(client, seeded):
    """The cookie is host-only (no Domain), path /dashboard, HttpOnly and SameSite=Strict: it is never
    sent to the details pages, /metrics or another host name of the same site."""
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    set_cookie = resp.headers["Set-Cookie"]
    assert "Domain=" not in set_cookie and "Path=/dashboard" in set_cookie
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert client.get_cookie(COOKIE, path="/dashboard") is not None
    assert client.get_cookie(COOKIE, path="/") is None and client.get_cookie(COOKIE, path="/decisions") is None


def test_sign_out_and_sign_in_are_posts_only(client, seeded):
    """A link or an image (a GET) cannot sign an operator out or in."""
    client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    value_before = client.get_cookie(COOKIE, path="/dashboard").value
    assert client.get("/dashboard/signout").status_code == 405
    assert client.get(f"/dashboard/signin?token={ADMIN_TOKEN}").status_code == 405
    assert client.get_cookie(COOKIE, path="/dashboard").value == value_before
    assert client.get("/dashboard").status_code == 200


def test_a_cross_site_post_cannot_use_a_forged_host_to_pass_the_origin_check(client, seeded):
    """`Sec-Fetch-Site: cross-site` wins over everything else a request says about itself, also when
    its Origin matches a Host header it chose."""
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN},
                       headers={"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example",
                                "Host": "evil.example"})
    assert resp.status_code == 403 and "Set-Cookie" not in resp.headers


def _recording_hmac(calls: list[tuple[bytes, bytes]]) -> types.SimpleNamespace:
    def compare_digest(a: Any, b: Any) -> bool:
        calls.append((bytes(a), bytes(b)))
        return hmac.compare_digest(a, b)

    return types.SimpleNamespace(new=hmac.new, compare_digest=compare_digest)


def test_the_admin_token_comparison_reveals_nothing_about_its_length(client, seeded, monkeypatch):
    """The token an anonymous visitor sends is compared with the admin token only as fixed-length digests
    (e.g. both HMAC-SHA-256'd under a per-process key), so the time taken tells nothing, its length included."""
    calls: list[tuple[bytes, bytes]] = []
    monkeypatch.setattr(dashboard_web, "hmac", _recording_hmac(calls))
    client.get("/dashboard", headers={"Authorization": "Bearer x"})
    client.post("/dashboard/signin", data={"token": "a-much-longer-guess-" * 3})
    assert calls, "the token was not compared at all"
    assert all(len(a) == len(b) for a, b in calls), [(len(a), len(b)) for a, b in calls]


def test_a_weak_admin_token_is_refused_at_startup():
    """An admin token that could be guessed online (shorter than 32 characters) stops the process with a
    clear error instead of opening the dashboard behind it."""
    with pytest.raises(ValueError, match="AGENTGATE_ADMIN_TOKEN"):
        Settings.from_env({"AGENTGATE_ADMIN_TOKEN": "admin"})


def test_a_guessable_admin_token_never_opens_the_dashboard():
    """Sign-ins are not throttled per client (behind a proxy every visitor shares one address, so anyone
    could lock the operator out); instead an admin token shorter than 32 characters is refused at start,
    which puts it beyond online guessing."""
    from gatekeeper.settings import MIN_ADMIN_TOKEN

    assert MIN_ADMIN_TOKEN >= 32
    with pytest.raises(ValueError, match="at least 32"):
        Settings.from_env({"AGENTGATE_ADMIN_TOKEN": "x" * 31})
    assert Settings.from_env({"AGENTGATE_ADMIN_TOKEN": "x" * 32}).admin_token == "x" * 32


# -- the ASGI front: what reaches Flask ------------------------------------------------------------------------

def _asgi(front: Front, method: str, path: str,
          headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000),
             "client": ("203.0.113.9", 5555), "root_path": ""}
    asyncio.run(front(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_the_front_does_not_let_header_tricks_through(admin_settings, redis_conn, seeded):
    """Through `agentgate serve`'s ASGI front: a second Authorization header (joined, never the "last
    one wins"), an underscore name posing as Authorization, and a Bearer header with the token after a
    wrong one are all refused; the right bearer still opens the dashboard."""
    front = Front(create_app(admin_settings, redis_conn), threads=1)
    try:
        for headers in ([(b"authorization", b"Bearer wrong"), (b"authorization", f"Bearer {ADMIN_TOKEN}".encode())],
                        [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode()), (b"authorization", b"Bearer x")],
                        [(b"authorization_", f"Bearer {ADMIN_TOKEN}".encode())],
                        [(b"http_authorization", f"Bearer {ADMIN_TOKEN}".encode())]):
            status, _, body = _asgi(front, "GET", "/dashboard", headers)
            assert status == 401, headers
            assert_nothing_seeded(body.decode())
        status, _, body = _asgi(front, "GET", "/dashboard", [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())])
        assert status == 200 and b"Operator dashboard" in body
    finally:
        front.pool.shutdown(wait=True)


@pytest.mark.parametrize("path", ["//dashboard", "///dashboard", "/dashboard//", "//dashboard/", "/dashboard/./",
                                  "/webhooks/../dashboard"])
def test_doubled_slashes_through_the_front_reach_the_same_check(admin_settings, redis_conn, seeded, path):
    """Through the ASGI front (paths as the server hands them over, already percent-decoded), a doubled
    or trailing slash is either the dashboard's own 401 or a 404: never the dashboard."""
    front = Front(create_app(admin_settings, redis_conn), threads=1)
    try:
        for method in ("GET", "HEAD"):
            status, headers, body = _asgi(front, method, path, [])
            assert status in (401, 404), (path, method, status)
            assert_nothing_seeded(body.decode() + json.dumps(headers))
    finally:
        front.pool.shutdown(wait=True)


def test_no_header_is_injected_from_a_path(client, redis_conn):
    """A CR/LF in a requested path never becomes a header: 404, no cookie set, no extra header."""
    for path in ("/decisions/abc%0d%0aSet-Cookie:%20pwn=1", "/decisions/%0d%0aLocation:%20https://evil.example",
                 "/dashboard%0d%0aSet-Cookie:%20pwn=1"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert "Set-Cookie" not in resp.headers and "Location" not in resp.headers
        assert all("pwn" not in v and "evil" not in v for v in resp.headers.values())


# -- information for anonymous visitors -------------------------------------------------------------------------

def test_no_anonymous_route_lists_a_decision_or_a_repository(client, redis_conn, seeded):
    """Decision ids are the only key to their pages (144 random bits): no anonymous route (the index,
    /metrics, health, readiness, a 404 or an error) names one, nor any repository, login or title."""
    ids = [i.decode() for i in redis_conn.lrange(decisions.RECENT_KEY, 0, -1)]
    assert len(ids) > 10 and all(len(i) >= 24 for i in ids)
    for path in ("/", "/metrics", "/healthz", "/readyz", "/decisions/", "/decisions/not-a-real-decision-id",
                 "/dashboard", "/dashboard?format=json", "/nonexistent", "/decisions/" + ids[0][:-1] + "A"):
        resp = client.get(path)
        body = resp.get_data(as_text=True) + json.dumps(dict(resp.headers))
        assert not [i for i in ids if i in body], path
        for word in ("acme/", "copilot", "devin", "Fix the retry", "octocat", "maintainer-mia"):
            assert word not in body, (path, word)


def test_decision_ids_are_random_and_unrelated(redis_conn):
    """Ids are 24 URL-safe characters from the OS's CSPRNG: no shared prefix, no order, no timestamp."""
    ids = [decisions.new_id() for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", i) for i in ids)
    assert len({i[:4] for i in ids}) > 150  # nothing sequential or time-based up front
    assert ids != sorted(ids)


def test_metrics_need_the_metrics_token_when_one_is_configured(admin_settings, redis_conn, seeded):
    """With AGENTGATE_METRICS_TOKEN set, /metrics answers 401 without `Authorization: Bearer TOKEN`
    (Prometheus sends it with `authorization: {credentials: ...}`), and the metrics with it. (Without it
    /metrics stays open, as the interface says: restrict it at the network, as deploy/ does.)"""
    metrics_client = create_app(replace(admin_settings, metrics_token="m" * 40), redis_conn).test_client()
    assert metrics_client.get("/metrics").status_code == 401
    assert metrics_client.get("/metrics", headers=BEARER).status_code == 401
    assert metrics_client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40}).status_code == 200


@pytest.mark.xfail(strict=True, reason="the details page's verdict history is keyed by repository *name*: a public "
                                       "repository that reuses a private one's name (after a rename, transfer or "
                                       "deletion) lists the private pull request's decisions, with links, to anyone")
def test_history_never_crosses_into_another_repository_of_the_same_name(client, redis_conn):
    """The verdict history lists only decisions about the same repository, as the platform identifies it
    (its immutable id, recorded with each decision): never another repository that had that name."""
    def record(repo_id: int, title: str, at: str) -> str:
        facts = {"repo": "acme/site", "number": 3, "title": title, "author": {"login": "a", "kind": "agent"},
                 "head_sha": HEAD, "base_ref": "main"}
        return decisions.save(redis_conn, DecisionRecord(
            "github", "acme/site", "pull request #3", HEAD, {"outcome": "pending", "description": title, "reasons": []},
            facts, "-", {"event": "pull_request.opened"}, at, extra={"repository_id": repo_id}))

    private_id = record(111, "Private: migrate the billing keys", "2024-04-01T00:00:00+00:00")
    public_id = record(222, "Public PR", "2024-06-01T00:00:00+00:00")
    html = client.get(f"/decisions/{public_id}").get_data(as_text=True)
    assert private_id not in html and "billing keys" not in html


# -- stored XSS: every string a pull request's author controls -------------------------------------------------

def _hostile_pull_request_record(repo: str = "acme/api") -> DecisionRecord:
    person = {"login": EVIL, "kind": EVIL, "why": EVIL, "via_app": EVIL}
    facts = {
        "repo": repo, "number": 12, "title": EVIL, "author": person, "head_sha": HEAD, "base_sha": EVIL,
        "base_ref": EVIL, "head_ref": EVIL, "head_repo": EVIL, "default_branch": EVIL, "state": EVIL, "draft": False,
        "html_url": "javascript:alert(5)", "url": "javascript:alert(6)",
        "changed_files": [{"path": EVIL, "previous_path": EVIL + "2", "status": EVIL, "additions": 1, "deletions": 1},
                          {"path": "javascript:alert(7)", "status": "added"}],
        "changed_files_total": 2, "labels": [EVIL, "javascript:alert(8)"], "requesters": [EVIL],
        "reviews": [{"reviewer": person, "state": EVIL, "commit_sha": EVIL, "permission": EVIL, "submitted_at": EVIL,
                     "body": EVIL}],
        "commits": [{"author": person, "committer": {"login": EVIL + "c"}, "message": EVIL}],
        "tasks": [{"number": EVIL, "state": EVIL, "labels": [EVIL]}], "tasks_checked": True,
        EVIL: EVIL,
    }
    data = {"actor": EVIL, "actor_kind": EVIL, "subject": EVIL, "at": EVIL, "pusher": EVIL, "ref": EVIL, "sha": EVIL,
            "paths": [EVIL, "javascript:alert(9)"], "reviewer": EVIL, "state": EVIL, "why_not": EVIL, "commit": EVIL,
            "submitted_at": EVIL, "approvers": [EVIL], "approvers_from": [EVIL], "needed": 2}
    reasons = [{"code": code, "outcome": outcome, "message": EVIL, "unblock": EVIL, "data": data}
               for code, outcome in (("chain-command", "failure"), ("chain-push", "failure"),
                                     ("sensitive-paths", "success"), ("approval-not-counted", "success"),
                                     ("changes-requested", "pending"), (f"rule:{EVIL}", "pending"), (EVIL, EVIL))]
    verdict = {"outcome": "failure", "description": EVIL, "reasons": reasons, "approvals": [EVIL]}
    preview = "\n".join([f"# {EVIL}", f"**{EVIL}** `{EVIL}` {EVIL}<br>", f"- {EVIL}",
                         f"| {EVIL} | \" onmouseover=\"alert(1) |", "|---|---|", f"| {EVIL} | ✅ success |"])
    return DecisionRecord("github", repo, "pull request #12", HEAD, verdict, facts, EVIL,
                          {"event": EVIL, "sender": EVIL, "delivery": EVIL}, "2024-05-01T12:00:00+00:00",
                          extra={"lifted": {EVIL: EVIL}, "policy_layers": [EVIL], "policy_sha": EVIL,
                                 "policy_preview_markdown": preview})


def test_every_user_string_on_the_details_page_is_inert_text(client, redis_conn):
    """Title, branches, fork, files (and renames), statuses, labels, requesters, reviewers, commit authors,
    tasks, every reason's message, fix and data (actors, paths, reviewers, why-nots), the lifted findings,
    the policy source and layers, the trigger, the history and the policy preview: all shown as text.
    No element, handler or link comes from them; the only links go to github.com and to this site's pages."""
    decision_id = decisions.save(redis_conn, _hostile_pull_request_record())
    older = _hostile_pull_request_record()
    older.decided_at = "2024-04-01T00:00:00+00:00"
    decisions.save(redis_conn, older)  # in the verdict history, with its hostile description
    html = client.get(f"/decisions/{decision_id}").get_data(as_text=True)
    page = assert_inert(html, ("https://github.com/acme/api", "/decisions/", "#"))
    text = "".join(page.text)
    assert EVIL in text  # shown, whole, as the characters the author typed
    assert text.count("<x-pwn") >= 20


def test_a_hostile_generic_record_and_repository_name_are_inert(client, redis_conn):
    """A non-PR subject's free-form facts (keys and values) and a repository name that is itself markup
    or a javascript: URL never become markup, and no link is built from such a name."""
    record = DecisionRecord("github", "javascript:alert(1)//" + EVIL, EVIL, EVIL,
                            {"outcome": EVIL, "description": EVIL, "reasons": [{"code": EVIL, "message": EVIL}]},
                            {EVIL: EVIL, "nested": {EVIL: [EVIL]}, "list": [EVIL, 1]}, EVIL, {"event": EVIL},
                            EVIL)
    decision_id = decisions.save(redis_conn, record)
    html = client.get(f"/decisions/{decision_id}").get_data(as_text=True)
    page = assert_inert(html, ("/decisions/", "#"))
    assert "<x-pwn" in "".join(page.text)


def _hostile_dashboard(redis_conn) -> None:
    now = datetime.now(UTC)
    for n, kind in enumerate(("agent", "bot", EVIL)):
        record = _hostile_pull_request_record(repo=f"acme/{n}")
        record.facts = {**record.facts, "repo": f"acme/{n}", "number": 12 + n,
                        "author": {"login": f"{EVIL}{n}", "kind": kind}}
        record.subject = f"pull request #{12 + n}"
        record.decided_at = (now - timedelta(hours=n)).isoformat(timespec="seconds")
        record.verdict = {**record.verdict, "outcome": ("failure", "pending", EVIL)[n]}
        decision_id = decisions.save(redis_conn, record)
        redis_conn.hset(keys.verdicts("github", record.repo, HEAD), str(12 + n), json.dumps({"target": decision_id}))
    generic = DecisionRecord("github", EVIL, f"deployment to {EVIL}", HEAD,
                             {"outcome": "failure", "description": EVIL,
                              "reasons": [{"code": EVIL, "outcome": "failure", "message": EVIL,
                                           "data": {"actor": EVIL}}]},
                             {}, "-", {}, now.isoformat(timespec="seconds"))
    decisions.save(redis_conn, generic)
    at = now.isoformat(timespec="milliseconds")
    for action in ("grant", "refuse", "revoke"):
        audit.record(redis_conn, AuditEntry(at=at, platform=EVIL, delivery=EVIL, event="token", action=action,
                                            repo=EVIL, actor=EVIL, actor_kind=EVIL, via_app=EVIL, target=EVIL,
                                            detail=EVIL, on_behalf_of=EVIL))
    for action in ("remove_label", "deployment_rejected"):
        audit.record(redis_conn, AuditEntry(at=at, platform=EVIL, delivery="", event="agentgate", action=action,
                                            repo=EVIL, actor="agentgate", actor_kind="bot", target=EVIL, detail=EVIL))
    # Counter labels are chosen by agentgate; planted here to show the page would not trust them either.
    metrics.incr(redis_conn, "agentgate_webhooks", EVIL, EVIL, "bad-signature")
    metrics.incr(redis_conn, "agentgate_webhooks", "github", EVIL, EVIL)
    metrics.incr(redis_conn, "agentgate_job_failures", EVIL)
    metrics.incr(redis_conn, "agentgate_failed_deliveries", EVIL)


def test_every_stored_string_on_the_dashboard_is_inert_text(client, redis_conn):
    """Logins (in the tables, the SVG bars' titles and the chart labels), kinds, repositories, subjects,
    verdict descriptions and outcomes, chain findings, token audit entries, agentgate's own stops and
    counter labels: text only on the dashboard, whose only links go to this site's details pages."""
    _hostile_dashboard(redis_conn)
    resp = client.get("/dashboard", headers=BEARER)
    assert resp.status_code == 200
    page = assert_inert(resp.get_data(as_text=True), ("/decisions/", "#"))
    text = "".join(page.text)
    assert text.count("<x-pwn") >= 10
    as_json = client.get("/dashboard?format=json", headers=BEARER)
    assert as_json.mimetype == "application/json" and as_json.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.e2e
@pytest.mark.skipif(chromium_missing() is not None, reason=f"no browser: {chromium_missing()}")
def test_hostile_pages_run_nothing_in_a_real_browser_even_without_their_csp(client, redis_conn):
    """Headless Chromium parses the hostile details page and dashboard as a browser does (SVG and all),
    loaded *without* their CSP so the escaping alone is tested: no script runs (no alert is raised, the title
    stays the page's own), and no attacker-named element, handler or javascript: link exists in the DOM."""
    decision_id = decisions.save(redis_conn, _hostile_pull_request_record())
    _hostile_dashboard(redis_conn)
    pages = [client.get(f"/decisions/{decision_id}").get_data(), client.get("/dashboard", headers=BEARER).get_data()]
    driver = chrome()
    try:
        for html in pages:
            driver.get("data:text/html;base64," + base64.b64encode(html).decode())
            found = driver.execute_script("""
                const all = [...document.querySelectorAll('*')];
                return {
                  named: document.querySelectorAll('x-pwn, script, img, iframe').length,
                  handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                  js: all.filter(e => [...e.attributes].some(a => /^\\s*(javascript|data):/i.test(a.value))).length,
                  text: document.body.innerText.includes('<x-pwn'),
                };""")
            assert found == {"named": 0, "handlers": 0, "js": 0, "text": True}, found
            assert "pwn" not in driver.title
            try:
                driver.switch_to.alert.dismiss()
                raise AssertionError("a script raised an alert")
            except Exception as exc:  # noqa: BLE001 - selenium's NoAlertPresentException: what must happen
                if isinstance(exc, AssertionError):
                    raise
    finally:
        driver.quit()


def _csp(resp: Any) -> dict[str, list[str]]:
    policy: dict[str, list[str]] = {}
    for part in resp.headers["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        policy[name] = values
    return policy


def test_the_csp_allows_no_script_no_framing_and_a_fresh_style_nonce(client, redis_conn, seeded):
    """Every HTML answer (details page, dashboard, sign-in, refusal, closed) carries a CSP with nothing
    but a per-response style nonce: no script source at all, no 'unsafe-*', no wildcard or scheme
    source, no <base>, no framing (plus X-Frame-Options: DENY), forms only to this site or nowhere."""
    pages = [client.get(f"/decisions/{seeded.blocked_id}"), client.get("/dashboard"),
             client.get("/dashboard", headers=BEARER), client.post("/dashboard/signin", data={"token": "x"}),
             client.get("/")]
    nonces = set()
    for resp in pages:
        assert resp.mimetype == "text/html"
        csp = _csp(resp)
        assert csp["default-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
        assert csp["frame-ancestors"] == ["'none'"] and resp.headers["X-Frame-Options"] == "DENY"
        assert "script-src" not in csp and "script-src-elem" not in csp and "object-src" not in csp
        assert csp["form-action"] in (["'none'"], ["'self'"])
        flat = " ".join(v for values in csp.values() for v in values)
        assert "unsafe" not in flat and "*" not in flat and "http:" not in flat and "https:" not in flat
        [style] = csp["style-src"]
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", style)
        assert nonce, style
        assert f'nonce="{nonce.group(1)}"' in resp.get_data(as_text=True)
        nonces.add(nonce.group(1))
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert len(nonces) == len(pages)


# -- doctor: a repository's own names in its output ----------------------------------------------------------

TERMINAL_ATTACK = "gate\x1b]0;owned\x07\x1b[2J\x1b[1A\x9b31m\rfake [ok]"


def test_doctor_text_output_carries_no_terminal_control_from_platform_names(github, capsys):  # noqa: F811
    """Ruleset and environment names are chosen by whoever administers a repository: in doctor's text
    output every control character from them (C0 and C1, ESC and BEL included) is shown escaped, and each
    check stays on its own lines."""
    state = github.state
    admin.admin_of(state).repo(DOCTOR_REPO).protection.clear()
    state.installations[77]["permissions"]["administration"] = "write"
    admin.add_ruleset(state, DOCTOR_REPO, name=TERMINAL_ATTACK,
                      bypass_actors=[{"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}])
    admin.add_environment(state, DOCTOR_REPO, "prod-" + TERMINAL_ATTACK, apps=[])
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "owned" in out  # the name is shown ...
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), repr(out)  # ... but no control character


def test_doctor_json_output_escapes_control_characters(github, capsys):  # noqa: F811
    """`--format json` writes every control character of a platform name as a JSON escape: the raw
    output holds none, and a JSON reader gets the name back exactly."""
    state = github.state
    admin.admin_of(state).repo(DOCTOR_REPO).protection.clear()
    state.installations[77]["permissions"]["administration"] = "write"
    admin.add_ruleset(state, DOCTOR_REPO, name=TERMINAL_ATTACK,
                      bypass_actors=[{"actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always"}])
    assert main(["doctor", "--format", "json"]) == 1
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", out), repr(out)
    report = json.loads(out)
    assert any(TERMINAL_ATTACK in (c["fix"] or "") + c["message"] for c in report["checks"])


def test_a_policy_files_keys_reach_doctor_output_escaped():
    """An `.agentgate.yml` key written with YAML's `\\e` and `\\a` escapes is quoted in the policy error
    as an escaped Python literal: no raw control character in doctor's text or JSON."""
    text = 'version: 1\n"\\e]0;owned\\a\\e[2J": 1\n'
    check, _ = policy_check("acme/widgets", "main", PolicyFile(text))
    assert not check.ok and "owned" in check.message
    report = Report((check,))
    for out in (render_text(report), render_json(report)):
        assert "\x1b" not in out and "\x07" not in out


# -- setup github: a local attacker on the same machine --------------------------------------------------------

class _SetupServer:
    """The one-shot setup server on a free loopback port, serving requests in a thread."""

    def __init__(self) -> None:
        self.exchanged: list[str] = []
        self.state = "s" * 43

        def flow_for(port: int) -> setup_cli.Flow:
            return setup_cli.Flow(state=self.state, page_path="/page-secret", page=b"<form>the manifest</form>",
                                  hosts=frozenset({f"127.0.0.1:{port}", f"localhost:{port}"}),
                                  on_code=lambda code: (self.exchanged.append(code) or (True, "registered")))

        self.server = setup_cli._FlowServer(0, flow_for, "https://github.test")
        self.server.timeout = 0.5
        self.port = self.server.server_port
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set() and not self.server.flow.done:
            self.server.handle_request()

    def get(self, path: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("GET", path, skip_host=True)
            conn.putheader("Host", host or f"127.0.0.1:{self.port}")
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.server.server_close()


@pytest.fixture
def setup_server() -> Iterator[_SetupServer]:
    server = _SetupServer()
    try:
        yield server
    finally:
        server.close()


def test_setup_refuses_a_rebound_host_name(setup_server):
    """DNS rebinding: a web page whose own host name now resolves to 127.0.0.1 gets 400 for the page and
    the callback (its Host header is its own name), and the page can still be opened once by the real host."""
    for host in ("evil.example", f"evil.example:{setup_server.port}", "127.0.0.1", f"127.0.0.2:{setup_server.port}"):
        status, _, _ = setup_server.get("/page-secret", host=host)
        assert status == 400, host
        status, _, _ = setup_server.get(f"/callback?code=abc&state={setup_server.state}", host=host)
        assert status == 400, host
    assert setup_server.exchanged == []
    status, headers, body = setup_server.get("/page-secret")
    assert status == 200 and "the manifest" in body
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"


def test_setup_refuses_a_callback_without_the_state(setup_server, capsys):
    """Login CSRF on the callback: without this run's state (missing, wrong, a prefix, the same length) no
    code is exchanged and nothing ends; neither the state nor the code is printed."""
    for query in ("code=attackercode", "code=attackercode&state=", "code=attackercode&state=" + "s" * 42,
                  "code=attackercode&state=" + "t" * 43, "code=attackercode&state=" + "s" * 44):
        status, _, body = setup_server.get(f"/callback?{query}")
        assert status == 400 and "state does not match" in body
    assert setup_server.exchanged == [] and not setup_server.server.flow.done
    err = capsys.readouterr().err
    assert "attackercode" not in err and setup_server.state not in err


def test_a_page_taken_by_someone_else_ends_the_registration(setup_server):
    """When the one-time page is requested a second time, someone other than the operator's browser had
    its URL: the registration stops there, and no callback (even with the right state) is exchanged."""
    assert setup_server.get("/page-secret")[0] == 200  # the local attacker, first
    assert setup_server.get("/page-secret")[0] == 410  # the operator's browser
    assert setup_server.server.flow.done and not setup_server.server.flow.ok
    try:
        status = setup_server.get(f"/callback?code=attackers-app-code&state={setup_server.state}")[0]
    except OSError:
        status = 0  # the registration stopped, and its server with it
    assert setup_server.exchanged == [] and status != 200


def test_private_files_are_never_written_through_a_planted_symlink(tmp_path):
    """A local user who plants a symlink where the key or .env will go (to a file they can read) gets
    nothing: without --force the write is refused, with --force the symlink itself is replaced by a new
    0600 file and its target is left untouched."""
    bait = tmp_path / "attacker-readable.txt"
    bait.write_text("bait\n")
    os.chmod(bait, 0o644)
    link = tmp_path / ".env"
    link.symlink_to(bait)
    with pytest.raises(FileExistsError):
        setup_cli.write_private(link, "SECRET=1\n", force=False)
    setup_cli.write_private(link, "SECRET=1\n", force=True)
    assert bait.read_text() == "bait\n"
    assert not link.is_symlink() and link.read_text() == "SECRET=1\n"
    assert (link.stat().st_mode & 0o777) == 0o600
    dangling = tmp_path / "key.pem"
    dangling.symlink_to(tmp_path / "not-yet-there.pem")
    with pytest.raises(FileExistsError):
        setup_cli.write_private(dangling, "KEY\n", force=False)
    assert not (tmp_path / "not-yet-there.pem").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_conversion_answer_cannot_add_lines_to_the_env():
    """Only validated values reach the .env: an App slug, name or URL with a line break (from a hostile or
    broken API answer) is refused, or written so that it cannot start a line of its own."""
    answer = {"id": 7, "pem": "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n",
              "webhook_secret": "abc123", "slug": "agentgate\nAGENTGATE_GITHUB_API_URL=https://evil.example",
              "name": "agentgate\rAGENTGATE_ADMIN_TOKEN=x", "html_url": "https://github.com/apps/x\nAGENTGATE_X=1"}
    try:
        app = manifests._registered(answer)
    except manifests.ConversionError:
        return  # refused: nothing is written
    text = setup_cli.env_text(app, Path("/tmp/key.pem"), "https://agentgate.example", None)
    names = [line.split("=", 1)[0] for line in re.split(r"[\r\n]", text) if line and not line.startswith("#")]
    assert names == ["AGENTGATE_GITHUB_APP_ID", "AGENTGATE_GITHUB_PRIVATE_KEY_PATH", "AGENTGATE_GITHUB_WEBHOOK_SECRET",
                     "AGENTGATE_PUBLIC_URL"], text


def test_the_setup_page_escapes_the_manifest_and_its_form_target():
    """The page embeds the manifest (its name comes from --name) in an attribute and a <pre>: quotes and
    tags in it stay text, and the form posts only to GitHub."""
    manifest = manifests.build_manifest("https://agentgate.example", name="\"><x-pwn onclick=alert(1)>")
    html = setup_cli._page(manifest, "https://github.com/settings/apps/new?state=abc\"><x-pwn>").decode()
    page = assert_inert(html, ("https://github.com/settings/apps/new",))
    [form] = [attrs for tag, attrs in page.tags if tag == "form"]
    [field] = [dict(attrs) for tag, attrs in page.tags if tag == "input"]
    assert json.loads(field["value"] or "")["name"] == "\"><x-pwn onclick=alert(1)>"
    assert dict(form)["method"] == "post"


# -- metrics and logs -------------------------------------------------------------------------------------------

def test_anonymous_deliveries_add_no_metric_series(client, redis_conn):
    """Unsigned or malformed deliveries with made-up event names, delivery ids and content types count
    under one fixed label each: an anonymous sender cannot grow /metrics (or the store) per request."""
    for n in range(60):
        client.post("/webhooks/github", data=b"{}", headers={"X-GitHub-Event": f"made_up_{n}",
                                                             "X-GitHub-Delivery": f"id-{n}",
                                                             "X-Hub-Signature-256": f"sha256={n:064x}"})
        client.post("/webhooks/gitlab", data=json.dumps({"object_kind": f"kind_{n}"}),
                    headers={"X-Gitlab-Token": f"guess-{n}", "X-Gitlab-Event": f"Evil {n} Hook"})
    fields = {f.decode() for f in redis_conn.hkeys(keys.METRIC_COUNTERS)}
    assert len(fields) <= 2, fields
    scrape = client.get("/metrics").get_data(as_text=True)
    assert "made_up" not in scrape and "kind_" not in scrape and "Evil" not in scrape


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


LOG_ATTACK = "title\nFORGED 2024-01-01 INFO agentgate: approved\r\x1b[2K\u2028\u2029\x85\x9b31mend"


def test_json_log_lines_cannot_be_split_or_coloured(log_stream):
    """JSON logs: a logged string with CR, LF, ESC, NEL, CSI and the Unicode line separators stays inside
    one line and one field, with every non-ASCII character escaped."""
    logs.configure("json", stream=log_stream)
    logging.getLogger("agentgate.test").info("PR %s", LOG_ATTACK, extra={"repo": LOG_ATTACK})
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].isascii()
    entry = json.loads(lines[0])
    assert entry["message"] == f"PR {LOG_ATTACK}" and entry["repo"] == LOG_ATTACK


def test_text_log_lines_escape_c1_controls(log_stream):
    """Text logs (agentgate dev, a terminal): C1 controls are escaped like C0 ones, so a logged string can
    neither start a new line for a log reader nor drive the terminal."""
    logs.configure("text", stream=log_stream)
    logging.getLogger("agentgate.test").info("PR %s", LOG_ATTACK)
    out = log_stream.getvalue()
    assert len(out.splitlines()) == 1 and not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", out), repr(out)


def test_fields_named_like_a_credential_are_never_logged(log_stream):
    """Any extra field whose name says it is a credential (`*token`, `*secret`, `*password`, `*key`,
    authorization, cookie) is left out of a JSON log line, whatever its prefix."""
    logs.configure("json", stream=log_stream)
    fields = {"access_token": "ghs_leak1", "installation_token": "ghs_leak2", "webhook_secret": "leak3",
              "client_secret": "leak4", "admin_password": "leak5", "signing_key": "leak6", "Cookie": "leak7"}
    logging.getLogger("agentgate.test").info("x", extra=fields)
    line = log_stream.getvalue()
    assert not [v for v in fields.values() if v in line], line


def test_the_admin_token_and_session_never_reach_the_logs(admin_settings, redis_conn, seeded, log_stream):
    """Signing in, a wrong token and a request through the front log neither the admin token, a guess,
    nor the session cookie."""
    logs.configure("json", stream=log_stream)
    logging.getLogger().setLevel(logging.DEBUG)
    client = create_app(admin_settings, redis_conn).test_client()
    client.post("/dashboard/signin", data={"token": "guess-" + ADMIN_TOKEN[:8]})
    client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    cookie = client.get_cookie(COOKIE, path="/dashboard").value
    client.get("/dashboard")
    out = log_stream.getvalue()
    assert ADMIN_TOKEN not in out and cookie not in out and "guess-" not in out
    assert hashlib.sha256(cookie.encode()).hexdigest() not in out
