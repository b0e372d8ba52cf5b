"""The operator dashboard: closed without an admin token, nothing for anyone without it, and what it
shows (recent decisions, blocked agents, chains stopped, agent tokens, failed deliveries, charts)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from gatekeeper.state import dashboard, decisions, keys
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.web import create_app
from gatekeeper.web.dashboard import COOKIE, per_agent_chart, per_day_chart
from tests.browser import ADMIN_TOKEN, COPILOT, DEVIN, XSS_IMG, seed

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def admin_settings(settings):
    return replace(settings, admin_token=ADMIN_TOKEN)


@pytest.fixture
def client(admin_settings, redis_conn):
    return create_app(admin_settings, redis_conn).test_client()


@pytest.fixture
def seeded(redis_conn):
    return seed(redis_conn)


def signed_in(client) -> str:
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    assert resp.status_code == 303 and resp.headers["Location"] == "/dashboard"
    cookie = client.get_cookie(COOKIE, path="/dashboard")
    assert cookie is not None
    return cookie.value


# Everything the seeded store would let a page say: none of it may reach an anonymous visitor.
SEEDED_DATA = ("acme/", "copilot", "devin", "renovate", "octocat", "pull request", "deployment", "bad-signature",
               "grant", "revoke", "#12", "decisions", "<svg", "failure", "pending")


def assert_no_data(body: str) -> None:
    """Nothing of the store in what the page says (its text and attributes; the stylesheet aside)."""
    said = re.sub(r"<style.*?</style>", "", body, flags=re.S).lower()
    leaked = [s for s in SEEDED_DATA if s.lower() in said]
    assert leaked == [], f"the refusal says {leaked}"
    assert not re.search(r'class="n"|<td|<table|<svg|/decisions/', said)  # no figures, rows, charts or links


# -- who may look -------------------------------------------------------------------------------------------

def test_without_an_admin_token_the_dashboard_is_closed(settings, redis_conn, seeded):
    """No AGENTGATE_ADMIN_TOKEN: /dashboard answers 401 saying how to open it, and nothing signs anyone in."""
    client = create_app(settings, redis_conn).test_client()
    resp = client.get("/dashboard")
    assert resp.status_code == 401
    body = resp.get_data(as_text=True)
    assert "AGENTGATE_ADMIN_TOKEN" in body
    assert_no_data(body)
    assert client.get("/dashboard", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/dashboard?format=json").get_json()["message"].startswith("The dashboard is closed")
    signin = client.post("/dashboard/signin", data={"token": ""})
    assert signin.status_code == 401 and "Set-Cookie" not in signin.headers


def test_anonymous_visitors_get_401_and_no_data_at_all(client, seeded):
    """Without the token: 401, a Bearer challenge, the sign-in form, and not one fact, count or chart."""
    for headers in ({}, {"Accept": "text/html"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}x"}, {"Authorization": f"bearer {ADMIN_TOKEN[:-1]}"}):
        resp = client.get("/dashboard", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.headers["Cache-Control"] == "private, no-store"
        assert_no_data(resp.get_data(as_text=True))
    form = client.get("/dashboard").get_data(as_text=True)
    assert '<form method="post" action="/dashboard/signin">' in form and 'type="password"' in form
    as_json = client.get("/dashboard?format=json")
    assert as_json.status_code == 401 and set(as_json.get_json()) == {"error", "message"}


def test_the_bearer_token_opens_it(client, seeded):
    """`Authorization: Bearer TOKEN` (scheme in any case) opens the dashboard, as HTML or JSON."""
    html = client.get("/dashboard", headers=BEARER)
    assert html.status_code == 200 and "Operator dashboard" in html.get_data(as_text=True)
    assert "Sign out" not in html.get_data(as_text=True)  # no session to end
    lower = client.get("/dashboard?format=json", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
    data = lower.get_json()
    assert lower.status_code == 200 and data["token_totals"] == {"grant": 1, "refuse": 1, "revoke": 1}


def test_sign_in_sets_a_strict_cookie_kept_in_redis_only_as_a_digest(client, redis_conn, seeded):
    """A right token sets a random cookie (HttpOnly, SameSite=Strict, Secure behind https, path
    /dashboard, lifetime DASHBOARD_SESSION_TTL); Redis holds only its HMAC-SHA-256 under the admin
    token, never the cookie or the token."""
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    assert resp.status_code == 303
    set_cookie = resp.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/dashboard",
                      f"Max-Age={keys.DASHBOARD_SESSION_TTL}"):
        assert attribute in set_cookie
    value = client.get_cookie(COOKIE, path="/dashboard").value
    assert len(value) >= 40
    digest = hmac.new(ADMIN_TOKEN.encode(), value.encode(), hashlib.sha256).hexdigest()
    name = keys.dashboard_session(digest)
    assert 0 < redis_conn.ttl(name) <= keys.DASHBOARD_SESSION_TTL
    for key in redis_conn.scan_iter(match="*dashboard*"):
        stored = key.decode() + (redis_conn.get(key) or b"").decode()
        assert value not in stored and ADMIN_TOKEN not in stored
        assert hashlib.sha256(value.encode()).hexdigest() not in stored
    assert client.get("/dashboard").status_code == 200
    assert "Sign out" in client.get("/dashboard").get_data(as_text=True)
    again = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    assert client.get_cookie(COOKIE, path="/dashboard").value != value  # a new session each time
    assert again.status_code == 303


def test_cookie_is_not_secure_on_a_plain_http_public_url(admin_settings, redis_conn):
    """Secure only when the public URL is https (a browser would drop a Secure cookie on http)."""
    client = create_app(replace(admin_settings, public_url="http://127.0.0.1:8000"), redis_conn).test_client()
    resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    assert resp.status_code == 303 and "Secure" not in resp.headers["Set-Cookie"]
    assert "HttpOnly" in resp.headers["Set-Cookie"] and "SameSite=Strict" in resp.headers["Set-Cookie"]


def test_a_wrong_token_signs_nobody_in(client, redis_conn, seeded):
    """A wrong, empty or oversized token: 401 with the form and a message, no cookie, no session."""
    for token in ("wrong", "", ADMIN_TOKEN + " ", ADMIN_TOKEN.upper(), "x" * 5000):
        resp = client.post("/dashboard/signin", data={"token": token})
        assert resp.status_code == 401 and "Set-Cookie" not in resp.headers
        assert "That is not the admin token." in resp.get_data(as_text=True)
        assert_no_data(resp.get_data(as_text=True))
    assert list(redis_conn.scan_iter(match="*dashboard-session*")) == []


def test_a_forged_cookie_is_refused(client, redis_conn, seeded):
    """A cookie that is not a stored session (guessed, or its digest planted without the admin token) is
    refused; a wrong Bearer header is refused even alongside a valid session."""
    client.set_cookie(COOKIE, "A" * 43, path="/dashboard")
    assert client.get("/dashboard").status_code == 401
    redis_conn.set(keys.dashboard_session(hashlib.sha256(b"B" * 43).hexdigest()), "{}")
    client.set_cookie(COOKIE, "B" * 43, path="/dashboard")
    assert client.get("/dashboard").status_code == 401
    signed_in(client)
    assert client.get("/dashboard").status_code == 200
    assert client.get("/dashboard", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_sign_out_ends_the_session(client, redis_conn, seeded):
    """Sign-out deletes the session in Redis and the cookie: the same cookie value is refused after."""
    value = signed_in(client)
    resp = client.post("/dashboard/signout")
    assert resp.status_code == 200 and "Signed out." in resp.get_data(as_text=True)
    assert "Max-Age=0" in resp.headers["Set-Cookie"] or "Expires=Thu, 01 Jan 1970" in resp.headers["Set-Cookie"]
    assert list(redis_conn.scan_iter(match="*dashboard-session*")) == []
    client.set_cookie(COOKIE, value, path="/dashboard")
    assert client.get("/dashboard").status_code == 401


def test_changing_the_admin_token_signs_every_browser_out(admin_settings, redis_conn, seeded):
    """Sessions are bound to the admin token: after it is rotated, an old cookie opens nothing."""
    old = create_app(admin_settings, redis_conn).test_client()
    value = signed_in(old)
    rotated = create_app(replace(admin_settings, admin_token="a-new-admin-token-" + "r" * 20), redis_conn).test_client()
    rotated.set_cookie(COOKIE, value, path="/dashboard")
    assert rotated.get("/dashboard").status_code == 401


def test_cross_site_form_posts_are_refused(client, redis_conn, seeded):
    """A sign-in or sign-out posted from another site (Sec-Fetch-Site, or Origin when that is absent)
    is refused with 403 and changes nothing."""
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example"}, {"Origin": "null"}):
        resp = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN}, headers=headers)
        assert resp.status_code == 403 and "Set-Cookie" not in resp.headers, headers
    signed_in(client)
    assert client.post("/dashboard/signout", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/dashboard").status_code == 200  # still signed in
    ok = client.post("/dashboard/signin", data={"token": ADMIN_TOKEN},
                     headers={"Origin": "https://agentgate.example", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 303


def test_pages_carry_the_security_headers(client, seeded):
    """Every dashboard answer: a CSP with no script and forms only to this site, no framing, no sniffing,
    no caching; the referrer stays on this site."""
    for resp in (client.get("/dashboard"), client.get("/dashboard", headers=BEARER),
                 client.post("/dashboard/signin", data={"token": "x"})):
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert resp.headers["Cache-Control"] == "private, no-store"
        assert "<script" not in resp.get_data(as_text=True)


# -- what it shows ------------------------------------------------------------------------------------------

def section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find('<section', start)
    return html[start: end if end > 0 else len(html)]


def test_blocked_agents_are_the_open_held_pull_requests_by_agent(client, seeded):
    """Agents' and bots' open PRs whose latest verdict is failure or pending, grouped by agent; a passing
    PR, a human's PR and a PR since closed are not listed."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    blocked = section(html, "blocked")
    assert COPILOT.login in blocked and DEVIN.login in blocked
    assert f'href="/decisions/{seeded.blocked_id}"' in blocked and f'href="/decisions/{seeded.devin_id}"' in blocked
    assert f'href="/decisions/{seeded.closed_id}"' not in blocked  # closed since: its head forgot it
    assert f'href="/decisions/{seeded.renovate_id}"' not in blocked and "octocat" not in blocked
    for outcome in ("failure", "pending"):
        assert f'<span class="badge {outcome}">{outcome}</span>' in blocked
    # An older, pending verdict of #12 is not its current one.
    assert f'href="/decisions/{seeded.history_ids[1]}"' not in blocked


def test_recent_decisions_link_to_their_details_pages_newest_first(client, redis_conn, seeded):
    """Recent decisions, newest decided first, each linking to its details page."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    recent = section(html, "recent")
    ids = re.findall(r'href="/decisions/([^"]+)"', recent)
    stored = redis_conn.llen(decisions.RECENT_KEY)
    assert ids[0] == seeded.blocked_id and seeded.deploy_id in ids and len(ids) == min(stored, dashboard.RECENT_SHOWN)
    times = re.findall(r'<time datetime="([^"]+)"', recent)
    assert times == sorted(times, reverse=True)


def test_chains_stopped_tokens_and_failed_deliveries(client, seeded):
    """Chain findings (each once, though every later decision repeats them), refused deployments and
    labels agentgate removed; token grants, refusals and revocations from the audit log; deliveries that
    were not taken, from the counters."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    chains = section(html, "chains")
    assert chains.count("chain-command") == 1 and "deployment-automated-requester" in chains
    assert "label removed" in chains and "automerge (applied by renovate[bot])" in chains
    tokens = section(html, "tokens")
    for action in ("grant", "refuse", "revoke"):
        assert f">{action}</span>" in tokens
    assert "task #40 is not approved for agents" in tokens
    assert "permissions=contents:write,pull_requests:write" in tokens
    assert tokens.count('<span class="muted">for maintainer-mia</span>') == 2  # the human the agent acts for
    deliveries = section(html, "deliveries")
    assert "5 of 45 webhook deliveries were not taken" in deliveries
    assert '<span class="no">bad-signature</span>' in deliveries and '<span class="no">unavailable</span>' in deliveries
    assert "<code>evaluate</code> 1" in deliveries
    assert "Failed deliveries found in the platform's own delivery log (recovery redelivers them): github 4" \
        in deliveries


def test_agent_written_text_is_escaped_on_the_dashboard(client, seeded):
    """A command quoted from an agent's review body, and any agent-written detail, is text, never markup."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    assert XSS_IMG not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html and "<script" not in html


def test_charts_are_inline_svg_with_a_title_and_the_numbers_in_a_table(client, seeded):
    """Both charts are server-rendered SVG (role img, a title and a description) and the per-day numbers
    are also in a table, matching what was decided each day."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    assert html.count('role="img"') == 2
    assert "<title id=\"per-day-title\">Verdicts per day by outcome, last 14 days</title>" in html
    assert f"{COPILOT.login}: 1" in html  # the per-agent chart's description
    today = datetime.now(UTC).date().isoformat()
    row = re.search(rf'<tr><th scope="row">{today}</th>(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r'data-label="(\w+)">(\d+)</td>', row.group(1))
    expected = seeded.per_day[today]
    assert {k: int(v) for k, v in cells} == {o: expected.get(o, 0) for o in dashboard.OUTCOMES}


def test_per_day_counts_only_the_window_by_outcome():
    """Decisions count on their UTC day within the 14 days ending today; older ones are left out."""
    today = date(2026, 5, 14)

    def at(day: str, outcome: str) -> dashboard.DecisionSummary:
        return dashboard.DecisionSummary("i", "github", "a/b", "s", 1, "", outcome, "", f"{day}T10:00:00+00:00",
                                         "", "")
    days = dashboard.per_day([at("2026-05-14", "failure"), at("2026-05-14", "success"), at("2026-05-01", "pending"),
                              at("2026-04-30", "success"), at("2026-05-02", "weird")], today)
    assert [d.day for d in days][0] == "2026-05-01" and days[-1].day == "2026-05-14" and len(days) == 14
    assert days[-1].counts == {"success": 1, "pending": 0, "failure": 1, "error": 0}
    assert days[0].counts["pending"] == 1 and days[1].counts["error"] == 1
    assert sum(d.total for d in days) == 4


def test_chart_geometry_stays_inside_the_drawing():
    """Bars are scaled to a round maximum and never leave the SVG's box; one agent per row."""
    days = [dashboard.DayCount(f"2026-05-{n:02d}", {"success": n, "pending": 1, "failure": 0, "error": 0})
            for n in range(1, 15)]
    chart = per_day_chart(days)
    assert chart["grid"][-1].label == "20"  # the busiest day has 15
    for bar in chart["bars"]:
        assert 0 <= bar.y and bar.y + bar.height <= chart["baseline"] + 0.1 and bar.x + bar.width <= chart["right"]
    summary = dashboard.DecisionSummary("i", "github", "a/b", "pull request #1", 1, "", "failure", "", "", "x", "agent")
    agents = [dashboard.BlockedAgent(f"agent-{n}", "agent", (summary,) * (n + 1)) for n in range(12)]
    drawn = per_agent_chart(agents)
    assert len(drawn["names"]) == 10 and drawn["more"] == 2
    assert max(b.x + b.width for b in drawn["bars"]) <= drawn["width"]


def test_reads_are_bounded_and_the_page_says_so(client, redis_conn):
    """The dashboard reads at most the last RECENT_KEEP decisions; when that cap falls inside the chart's
    fortnight it says the older days are incomplete."""
    now = datetime.now(UTC)
    pipe = redis_conn.pipeline()
    for n in range(decisions.RECENT_KEEP + 10):
        record = DecisionRecord("github", "acme/api", "merge group x", "a" * 40, {"outcome": "success"}, {}, "-",
                                decided_at=(now - timedelta(minutes=n)).isoformat(timespec="seconds"), id=f"dec{n:05d}")
        pipe.set(keys.decision(record.id), record.to_json())
        pipe.rpush(decisions.RECENT_KEY, record.id)  # oldest last, as lpush on save leaves them
    pipe.execute()
    decisions.save(redis_conn, DecisionRecord("github", "acme/api", "merge group y", "b" * 40,
                                              {"outcome": "failure"}, {}, "-", decided_at=now.isoformat()))
    view = dashboard.overview(redis_conn, now)
    assert view.decisions_scanned == decisions.RECENT_KEEP and not view.per_day_complete
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    assert f"The older days count only part of their decisions: the dashboard reads the last {decisions.RECENT_KEEP}" \
        in html


def test_an_empty_store_renders(client, redis_conn):
    """A fresh installation: every panel says there is nothing yet, nothing fails."""
    html = client.get("/dashboard", headers=BEARER).get_data(as_text=True)
    assert "No decisions yet." in html and "No delivery received yet." in html
    assert "No agent or bot has an open pull request held" in html
    data = json.loads(client.get("/dashboard?format=json", headers=BEARER).get_data(as_text=True))
    assert data["decisions_scanned"] == 0 and data["deliveries_failed"] == 0


def test_an_unreadable_record_is_skipped(client, redis_conn, seeded):
    """A record another version wrote with other fields is left out, never a failed page."""
    redis_conn.set(keys.decision("oddrecord1"), json.dumps({"unexpected": True}))
    redis_conn.lpush(decisions.RECENT_KEY, "oddrecord1")
    assert client.get("/dashboard", headers=BEARER).status_code == 200
