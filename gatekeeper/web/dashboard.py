"""The operator dashboard at /dashboard, behind `AGENTGATE_ADMIN_TOKEN`.

Two ways in: `Authorization: Bearer TOKEN` (scripts), or the sign-in form (browsers), which sets a
random session cookie (HttpOnly, SameSite=Strict, Secure behind https, path /dashboard) whose value
Redis keeps only as an HMAC-SHA-256 keyed with the admin token: a reader of Redis learns nothing usable,
and changing the admin token signs every browser out. Without either, the answer is 401 with the
sign-in form and no data at all; without an admin token configured, the dashboard does not exist (404).

Everything is rendered on the server, charts included (inline SVG, with the numbers in a table too):
no script runs, and the page's CSP forbids any."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request

from gatekeeper.state import dashboard as queries
from gatekeeper.state import keys
from gatekeeper.web.pages import security_headers

blueprint = Blueprint("dashboard", __name__)

COOKIE = "agentgate_dashboard"
COOKIE_PATH = "/dashboard"
MAX_TOKEN_LENGTH = 4096  # a longer "token" in the form is not one; refused before any comparison
OUTCOME_COLOURS = {"success": "#1a7f37", "pending": "#bf8700", "failure": "#cf222e", "error": "#6e7781"}


def _ctx():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"]


@blueprint.after_request
def _headers(resp: Response) -> Response:
    # The sign-in and sign-out forms post to this origin only.
    resp = security_headers(resp, form_action="'self'")
    # The dashboard links only to this site; "same-origin" lets the browser name this origin on its own
    # form posts (with "no-referrer" it sends `Origin: null`) and still tells other sites nothing.
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


# -- who may look ----------------------------------------------------------------------------------------

def _admin_token() -> str | None:
    return _ctx().settings.admin_token or None


_COMPARE_KEY = secrets.token_bytes(32)  # per process: only ever used to compare two values at equal length


def _equal(given: str, expected: str) -> bool:
    """Constant time, and the length of the admin token does not show either: both sides are compared as
    HMAC-SHA-256 digests."""
    def digest(value: bytes) -> bytes:
        return hmac.new(_COMPARE_KEY, value, hashlib.sha256).digest()

    return hmac.compare_digest(digest(given.encode("utf-8", "surrogatepass")), digest(expected.encode("utf-8")))


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _session_key(cookie: str, token: str) -> str:
    digest = hmac.new(token.encode("utf-8"), cookie.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return keys.dashboard_session(digest)


def _signed_in(token: str) -> bool:
    cookie = request.cookies.get(COOKIE)
    if not cookie or len(cookie) > 100:
        return False
    return bool(_ctx().conn.exists(_session_key(cookie, token)))


def _authorised(token: str) -> bool:
    bearer = _bearer()
    if bearer is not None:
        return _equal(bearer, token)  # a wrong bearer is a refusal, even with a valid cookie
    return _signed_in(token)


def _secure() -> bool:
    return _ctx().settings.public_url.lower().startswith("https://")


def _same_origin() -> bool:
    """A form post must come from this site. SameSite=Strict already keeps the cookie off cross-site
    posts; this refuses them outright where the browser says where they come from: `Sec-Fetch-Site`
    (which pages cannot forge), else `Origin` ("null" from a sandboxed or privacy-hiding context is
    not this site)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser that says: nothing to check, and no cookie rides a cross-site post
    allowed = {_origin(_ctx().settings.public_url), _origin(request.host_url)}
    return origin.rstrip("/").lower() in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _wants_json() -> bool:
    return request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json"


def _closed() -> Response:
    message = "The dashboard is closed: set AGENTGATE_ADMIN_TOKEN on the web processes to open it."
    if _wants_json():
        resp = jsonify(error="Unauthorized", message=message)
    else:
        resp = Response(render_template("signin.html", closed=True, message=message))
    # 401 like any refusal (the interface: 401 without the admin token), and no token can open it.
    resp.status_code = 401
    return resp


def _refused(message: str = "", status: int = 401) -> Response:
    """The answer without a valid token: the sign-in form, and nothing else at all."""
    if _wants_json() or _bearer() is not None:
        resp = jsonify(error="Unauthorized", message=message or "the admin token is required")
    else:
        resp = Response(render_template("signin.html", closed=False, message=message))
    resp.status_code = status
    resp.headers["WWW-Authenticate"] = 'Bearer realm="agentgate dashboard"'
    return resp


# -- routes ----------------------------------------------------------------------------------------------

@blueprint.get("/dashboard")
def dashboard_page():  # type: ignore[no-untyped-def]
    token = _admin_token()
    if token is None:
        return _closed()
    try:
        if not _authorised(token):
            return _refused()
        view = queries.overview(_ctx().conn, datetime.now(UTC))
    except redis.RedisError:
        return jsonify(error="Service Unavailable", message="the store is unavailable; retry later"), 503
    if _wants_json():
        return Response(queries.to_json(view), mimetype="application/json")
    return Response(render_template("dashboard.html", o=view, charts=charts(view),
                                    signed_in=_bearer() is None, context=_ctx().settings.status_context))


@blueprint.post("/dashboard/signin")
def sign_in():  # type: ignore[no-untyped-def]
    token = _admin_token()
    if token is None:
        return _closed()
    if not _same_origin():
        return _refused("Sign in from the dashboard's own page.", 403)
    given = request.form.get("token", "")
    if not given or len(given) > MAX_TOKEN_LENGTH or not _equal(given, token):
        return _refused("That is not the admin token.")
    cookie = secrets.token_urlsafe(32)
    try:
        _ctx().conn.set(_session_key(cookie, token),
                        json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds")}),
                        ex=keys.DASHBOARD_SESSION_TTL)
    except redis.RedisError:
        return jsonify(error="Service Unavailable", message="the store is unavailable; retry later"), 503
    resp = redirect("/dashboard", code=303)
    resp.set_cookie(COOKIE, cookie, max_age=keys.DASHBOARD_SESSION_TTL, path=COOKIE_PATH, secure=_secure(),
                    httponly=True, samesite="Strict")
    return resp


@blueprint.post("/dashboard/signout")
def sign_out():  # type: ignore[no-untyped-def]
    token = _admin_token()
    if token is None:
        return _closed()
    if not _same_origin():
        return _refused("Sign out from the dashboard's own page.", 403)
    cookie = request.cookies.get(COOKIE)
    if cookie and len(cookie) <= 100:
        try:
            _ctx().conn.delete(_session_key(cookie, token))
        except redis.RedisError:
            return jsonify(error="Service Unavailable", message="the store is unavailable; retry later"), 503
    resp = Response(render_template("signin.html", closed=False, message="Signed out."))
    resp.delete_cookie(COOKIE, path=COOKIE_PATH, secure=_secure(), httponly=True, samesite="Strict")
    return resp


# -- charts: geometry worked out here, drawn by the template (so every label goes through autoescape) --

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # the segment's <title>: "2024-05-01: 3 failure"


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str


def charts(view: queries.Overview) -> dict[str, Any]:
    return {"per_day": per_day_chart(view.per_day), "per_agent": per_agent_chart(view.blocked)}


def per_day_chart(days: list[queries.DayCount], width: float = 420, height: float = 170) -> dict[str, Any]:
    """Stacked columns, one per day, one segment per outcome."""
    left, right, top, bottom = 26.0, 4.0, 8.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((d.total for d in days), default=0)
    scale_max = _nice(peak)
    slot = plot_w / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[Tick] = []
    for n, day in enumerate(days):
        x = left + n * slot + slot * 0.15
        y = top + plot_h
        for outcome in queries.OUTCOMES:
            count = day.counts.get(outcome, 0)
            if not count:
                continue
            h = plot_h * count / scale_max
            y -= h
            bars.append(Bar(round(x, 1), round(y, 1), round(slot * 0.7, 1), round(h, 1), OUTCOME_COLOURS[outcome],
                            f"{day.day}: {count} {outcome}"))
        if n % 2 == len(days) % 2 or len(days) <= 7:  # every other day, always the last (today)
            labels.append(Tick(round(left + n * slot + slot / 2, 1), height - 8, day.day[5:]))
    grid = [Tick(left - 4, round(top + plot_h - plot_h * v / scale_max, 1), str(v))
            for v in sorted({0, scale_max // 2, scale_max})]
    total = sum(d.total for d in days)
    busiest = max(days, key=lambda d: d.total, default=None)
    summary = (f"{total} decisions over {len(days)} days" +
               (f"; the most on {busiest.day}: {busiest.total}" if busiest and busiest.total else ""))
    return {"width": width, "height": height, "bars": bars, "labels": labels, "grid": grid, "left": left,
            "right": width - right, "baseline": top + plot_h, "summary": summary, "empty": total == 0}


def per_agent_chart(agents: list[queries.BlockedAgent], width: float = 420, shown: int = 10) -> dict[str, Any]:
    """Horizontal bars, one per agent: its held pull requests, failing and pending."""
    label_w, row_h, pad = 170.0, 24.0, 8.0
    top = 4.0
    rows = agents[:shown]
    plot_w = width - label_w - 40
    peak = max((len(a.pulls) for a in rows), default=0)
    scale = plot_w / max(peak, 1)
    bars: list[Bar] = []
    names: list[Tick] = []
    counts: list[Tick] = []
    for n, agent in enumerate(rows):
        y = top + n * row_h
        x = label_w
        for outcome, count in (("failure", agent.failure), ("pending", agent.pending)):
            if count:
                bars.append(Bar(round(x, 1), y + 4, round(count * scale, 1), row_h - pad, OUTCOME_COLOURS[outcome],
                                f"{agent.login}: {count} {outcome}"))
                x += count * scale
        login = agent.login if len(agent.login) <= 28 else agent.login[:27] + "…"
        names.append(Tick(label_w - 6, y + row_h / 2 + 4, login))
        counts.append(Tick(round(x + 5, 1), y + row_h / 2 + 4, str(len(agent.pulls))))
    height = top * 2 + max(len(rows), 1) * row_h
    summary = (", ".join(f"{a.login}: {len(a.pulls)}" for a in rows) or "no agent is blocked")
    return {"width": width, "height": height, "bars": bars, "names": names, "counts": counts,
            "summary": f"Held pull requests per agent: {summary}", "empty": not rows,
            "more": max(0, len(agents) - shown)}


def _nice(peak: int) -> int:
    """A round maximum for an axis: 1, 2, 4, 5, 10, 20, 40, 50, 100..."""
    if peak <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 4, 5):
            if step * magnitude >= peak:
                return step * magnitude
        magnitude *= 10
