"""Health, metrics, the decision details page, and (in dev mode) a page of recent activity."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint, Response, abort, current_app, g, jsonify, render_template, request
from markupsafe import Markup, escape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gatekeeper.forges.recording import recorded_actions
from gatekeeper.policy.load import POLICY_PATH
from gatekeeper.state import decisions
from gatekeeper.state.metrics import StoreCollector

blueprint = Blueprint("pages", __name__)
_DECISION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

FILES_SHOWN = 20
_SEVERITY = {"success": 0, "pending": 1, "failure": 2, "error": 3}
_OUTCOME_WORDS = {"success": "Passes", "pending": "Waiting", "failure": "Blocked", "error": "Not evaluated"}


def _ctx():  # type: ignore[no-untyped-def]
    return current_app.extensions["agentgate"]


def _csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


@blueprint.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csp_nonce": _csp_nonce}


@blueprint.after_request
def _security_headers(resp: Response) -> Response:
    return security_headers(resp)


def security_headers(resp: Response, form_action: str = "'none'") -> Response:
    """HTML pages run no script at all; the one inline stylesheet is allowed by a per-response nonce.
    Forms may post only where `form_action` says (the details page has none)."""
    if resp.mimetype == "text/html":
        style = f"'nonce-{g.csp_nonce}'" if "csp_nonce" in g else "'none'"
        resp.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src {style}; img-src 'self' data:; base-uri 'none'; "
            f"form-action {form_action}; frame-ancestors 'none'")
        resp.headers["X-Frame-Options"] = "DENY"
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    # A decision URL is the only key to its page: never hand it to the sites the page links to.
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    try:
        _ctx().conn.ping()
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=type(exc).__name__), 503
    return jsonify(status="ok", redis="ok")


@blueprint.get("/metrics")
def metrics_page():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    wanted = ctx.settings.metrics_token
    if wanted is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        digest = lambda v: hashlib.sha256(v.encode("utf-8", "surrogatepass")).digest()  # noqa: E731 - equal lengths
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest(given.strip()), digest(wanted)):
            return Response("metrics need the metrics token (AGENTGATE_METRICS_TOKEN)\n", status=401,
                            mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = CollectorRegistry()
    registry.register(StoreCollector(ctx.conn, (ctx.settings.queue_name,)))
    try:
        body = generate_latest(registry)
    except redis.RedisError:
        return jsonify(status="unavailable"), 503
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/decisions/<decision_id>")
def decision_page(decision_id: str):  # type: ignore[no-untyped-def]
    if not _DECISION_ID.match(decision_id):
        abort(404)
    record = decisions.load(_ctx().conn, decision_id)
    if record is None:
        abort(404, "no such decision (decisions are kept for 90 days)")
    if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
        resp = jsonify(record.__dict__)
    else:
        settings = _ctx().settings
        view = decision_view(record, settings.github_api_url, settings.gitlab_url or "")
        view["history"] = history_view(_ctx().conn, record)
        resp = Response(render_template("decision.html", d=record, v=view, context=settings.status_context))
    # The page describes a possibly private repository: no shared caches, no copies kept.
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    ctx = _ctx()
    # Only `agentgate dev` (which records instead of acting) lists activity: a production web process,
    # even one started without the App key, shows decisions to nobody who lacks their link.
    dev = ctx.settings.dry_run
    recent = decisions.recent(ctx.conn) if dev else []
    actions = recorded_actions(ctx.conn) if dev else []
    resp = Response(render_template("index.html", dev=dev, recent=recent, actions=actions, settings=ctx.settings))
    if dev:
        resp.headers["Cache-Control"] = "private, no-store"
    return resp


# -- the details page, in human form ---------------------------------------------------------------


def decision_view(record: decisions.DecisionRecord, github_api_url: str = "", gitlab_url: str = "") -> dict[str, Any]:
    """What the template shows, worked out from a stored record (old records may lack any field).
    Everything comes from the reasons' structured `data` and the verdict's `approvals`: messages are
    shown as they are and never parsed, and nothing the decision judged is judged again here."""
    verdict = record.verdict if isinstance(record.verdict, dict) else {}
    outcome = str(verdict.get("outcome") or "error")
    raw_reasons = [r for r in verdict.get("reasons") or [] if isinstance(r, dict)]
    reasons = [_reason(r) for r in raw_reasons]
    # Records saved before reasons carried data have neither `data` nor the verdict's `approvals`.
    structured = "approvals" in verdict or any("data" in r for r in raw_reasons)
    blocking = sorted((r for r in reasons if r["outcome"] != "success"),
                      key=lambda r: -_SEVERITY.get(r["outcome"], 3))
    informational = [r for r in reasons if r["outcome"] == "success"]
    unblock: list[str] = []
    for r in blocking:
        step = r["unblock"] or r["message"]
        if step and step not in unblock:
            unblock.append(step)
    facts = record.facts if isinstance(record.facts, dict) else {}
    extra = record.extra if isinstance(record.extra, dict) else {}
    links = platform_links(record.platform, github_api_url, gitlab_url)
    sensitive = sensitive_paths(reasons)
    pr = pull_request_view(facts, sensitive, links)
    lifted = extra.get("lifted")
    return {
        "outcome": outcome,
        "outcome_word": _OUTCOME_WORDS.get(outcome, outcome),
        "description": str(verdict.get("description") or ""),
        "blocking": blocking,
        "informational": informational,
        "unblock": unblock,
        # Approvals that did not count explain nothing about a pass; they stay in "Every reason".
        "passes": [r["message"] for r in informational if r["code"] != "approval-not-counted"][:6],
        "pr": pr,
        "structured": structured,
        "sensitive": sensitive,
        "approvals": approvals_view(verdict, reasons),
        "lifted": sorted((str(k), str(v)) for k, v in lifted.items()) if isinstance(lifted, dict) else [],
        "layers": [str(x) for x in extra.get("policy_layers") or [] if isinstance(x, str)],
        "generic": None if pr is not None else generic_facts(facts),
        "repo_url": links.repo(record.repo) if links else None,
        "sha_url": links.commit(record.repo, record.sha) if links else None,
        "policy": policy_view(record, facts, links),
        "matches": rule_matches(reasons),
        "history": None,  # filled in by the page, which reads the store
        "preview": render_markdown(str(extra.get("policy_preview_markdown") or ""),
                                   drop_heading="Policy change preview")
        if extra.get("policy_preview_markdown") else None,
        "raw_facts": json.dumps(facts, indent=2, sort_keys=True, default=str),
    }


_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_SEGMENT = r"(?!\.+(?:/|$))[A-Za-z0-9_.-]+"  # a path segment, never "." or ".."
_GITHUB_REPO = re.compile(rf"^{_SEGMENT}/{_SEGMENT}$")
_GITLAB_PROJECT = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{1,20}}$")  # groups and subgroups
_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True)
class PlatformLinks:
    """Links back to the platform, built only from the configured base URL and validated names: never
    from a URL found in a payload, so a page can only link to http(s) pages of the platform itself."""

    platform: str
    base: str

    def _project(self, repo: str) -> str | None:
        pattern = _GITHUB_REPO if self.platform == "github" else _GITLAB_PROJECT
        return f"{self.base}/{repo}" if pattern.match(repo or "") else None

    def repo(self, repo: str) -> str | None:
        return self._project(repo)

    def pull(self, repo: str, number: Any) -> str | None:
        project = self._project(repo)
        if project is None or not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            return None
        return f"{project}/pull/{number}" if self.platform == "github" else f"{project}/-/merge_requests/{number}"

    def commit(self, repo: str, sha: str) -> str | None:
        project = self._project(repo)
        if project is None or not _SHA.match(sha or ""):
            return None
        return f"{project}/commit/{sha}" if self.platform == "github" else f"{project}/-/commit/{sha}"

    def file(self, repo: str, sha: str, path: str) -> str | None:
        project = self._project(repo)
        if project is None or not _SHA.match(sha or "") or path != POLICY_PATH:
            return None  # only the policy file is linked: no path from a payload becomes a URL
        return f"{project}/blob/{sha}/{path}" if self.platform == "github" else f"{project}/-/blob/{sha}/{path}"


def platform_links(platform: str, github_api_url: str = "", gitlab_url: str = "") -> PlatformLinks | None:
    """github.com, a GitHub Enterprise Server host, or the configured GitLab instance; None otherwise
    (e.g. a test server's plain-HTTP API, which has no web pages)."""
    if platform == "github":
        api = (github_api_url or "https://api.github.com").rstrip("/")
        if api == "https://api.github.com":
            return PlatformLinks("github", "https://github.com")
        if api.startswith("https://") and api.endswith("/api/v3") and _BASE_URL.match(api):
            return PlatformLinks("github", api[: -len("/api/v3")])
        return None
    if platform == "gitlab" and gitlab_url:
        base = gitlab_url.rstrip("/")
        return PlatformLinks("gitlab", base) if _BASE_URL.match(base) else None
    return None


def _reason(raw: dict[str, Any]) -> dict[str, Any]:
    data = raw.get("data")
    data = data if isinstance(data, dict) else {}
    code = str(raw.get("code") or "")
    return {"code": code, "outcome": str(raw.get("outcome") or "error"),
            "message": str(raw.get("message") or ""), "unblock": str(raw.get("unblock") or ""),
            "data": data, "detail": _detail(code, data)}


def _detail(code: str, data: dict[str, Any]) -> str:
    """Who and what a chain finding rests on, from its data (the message says it for humans)."""
    if code == "chain-push" and data.get("pusher"):
        return f"pushed by {data['pusher']} to {data.get('ref') or '?'} at {_short(data.get('sha'))}"
    if code.startswith("chain-") and data.get("actor"):
        kind = f" ({data['actor_kind']})" if data.get("actor_kind") else ""
        parts = [f"by {data['actor']}{kind}", str(data.get("subject") or ""), str(data.get("at") or "")]
        return " · ".join(p for p in parts if p)
    return ""


def _short(sha: Any) -> str:
    return str(sha or "")[:7]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: Any) -> list[str]:
    return [str(x) for x in value if isinstance(x, str | int)] if isinstance(value, list | tuple) else []


def sensitive_paths(reasons: list[dict[str, Any]]) -> list[str]:
    """Every sensitive changed path the verdict rests on, from the `sensitive-paths` reasons' data."""
    found: dict[str, None] = {}
    for r in reasons:
        if r["code"] == "sensitive-paths":
            found.update(dict.fromkeys(_strings(r["data"].get("paths"))))
    return list(found)


def approvals_view(verdict: dict[str, Any], reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """Each approval requirement and each reviewer the decision judged: counted ones (the verdict's
    `approvals` and each requirement's `approvers`), ones that did not count and why, change requests."""
    requirements = []
    for r in reasons:
        data = r["data"]
        if "needed" not in data or "approvers" not in data:
            continue  # `sensitive-paths` has `needed` too, but is not a requirement of its own
        rule = r["code"][len("rule:"):] if r["code"].startswith("rule:") else ""
        approvers = _strings(data.get("approvers"))
        requirements.append({"rule": rule, "needed": _int(data.get("needed")), "approvers": approvers,
                             "lowered": {a.lower() for a in approvers},
                             "from": _strings(data.get("approvers_from")), "met": r["outcome"] == "success",
                             "outcome": r["outcome"]})
    counted: dict[str, str] = {}  # lower-cased login -> as recorded
    for login in _strings(verdict.get("approvals")) + [a for req in requirements for a in req["approvers"]]:
        counted.setdefault(login.lower(), login)
    rows: list[dict[str, Any]] = []
    for key, login in counted.items():
        towards = [f"rule {req['rule']}" if req["rule"] else "the approval requirement"
                   for req in requirements if key in req["lowered"]]
        note = ("counts towards " + ", ".join(towards) if towards
                else "a qualifying approval; no requirement here asks for this reviewer" if requirements
                else "a qualifying approval")
        rows.append({"login": login, "state": "approved", "counts": True, "note": note, "commit": "", "at": ""})
    for r in reasons:
        data = r["data"]
        if r["code"] == "approval-not-counted" and data.get("reviewer"):
            rows.append({"login": str(data["reviewer"]),
                         "state": str(data.get("state") or "APPROVED").replace("_", " ").lower(),
                         "counts": False, "note": str(data.get("why_not") or ""), "commit": _short(data.get("commit")),
                         "at": str(data.get("submitted_at") or "")})
        elif r["code"] == "changes-requested" and data.get("reviewer"):
            rows.append({"login": str(data["reviewer"]), "state": "changes requested", "counts": None,
                         "note": "holds the pull request until they approve the current head", "commit": "",
                         "at": ""})
    for req in requirements:
        del req["lowered"]
    return {"requirements": requirements, "rows": rows}


HISTORY_SHOWN = 20


def history_view(conn: redis.Redis, record: decisions.DecisionRecord) -> dict[str, Any] | None:
    """The pull request's verdicts, newest first (None for other subjects, or when the store is down:
    the page is still worth showing without them)."""
    number = decisions.pull_request_number(record)
    if number is None:
        return None
    try:
        found = decisions.history(conn, record.platform, record.repo, number, limit=HISTORY_SHOWN)
    except redis.RedisError:
        return None
    rows = []
    for r in found:
        verdict = r.verdict if isinstance(r.verdict, dict) else {}
        trigger = r.trigger if isinstance(r.trigger, dict) else {}
        rows.append({"id": r.id, "outcome": str(verdict.get("outcome") or "error"),
                     "description": str(verdict.get("description") or ""), "decided_at": str(r.decided_at or ""),
                     "sha": _short(r.sha), "event": str(trigger.get("event") or ""), "current": r.id == record.id})
    return {"rows": rows, "capped": len(rows) >= HISTORY_SHOWN,
            "listed": any(row["current"] for row in rows)}


def policy_view(record: decisions.DecisionRecord, facts: dict[str, Any],
                links: PlatformLinks | None) -> dict[str, Any]:
    """Which policy judged: the file and the commit it was read at (when the record names it), the
    layers it was built from, and links to that exact version on the platform."""
    source = str(record.policy_source or "")
    extra = record.extra if isinstance(record.extra, dict) else {}
    sha = str(extra.get("policy_sha") or "")
    sha = sha if _SHA.match(sha) else ""
    is_file = source == POLICY_PATH
    return {
        "source": source,
        "kind": "none" if source in ("", "-") else "file" if is_file else "builtin",
        "layers": [str(x) for x in extra.get("policy_layers") or [] if isinstance(x, str)],
        "sha": sha,
        "branch": str(facts.get("base_ref") or facts.get("default_branch") or ""),
        "file_url": links.file(record.repo, sha, POLICY_PATH) if links and sha and is_file else None,
        "commit_url": links.commit(record.repo, sha) if links and sha else None,
    }


def rule_matches(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which changed files each rule matched, from the reasons' `paths` data; a policy rule that applied
    without recording paths is listed too, so its absence from the files is not read as "no match"."""
    rows = []
    for r in reasons:
        code, data = r["code"], r["data"]
        paths = _strings(data.get("paths"))
        if not paths and not code.startswith("rule:"):
            continue
        name = ("sensitive paths" if code == "sensitive-paths"
                else f"rule {code[len('rule:'):]}" if code.startswith("rule:") else code)
        rows.append({"name": name, "code": code, "outcome": r["outcome"], "message": r["message"],
                     "paths": paths[:FILES_SHOWN], "more": max(0, len(paths) - FILES_SHOWN),
                     "needed": _int(data.get("needed")), "recorded": bool(paths)})
    return rows


def pull_request_view(facts: dict[str, Any], sensitive: list[str],
                      links: PlatformLinks | None = None) -> dict[str, Any] | None:
    """A pull request's facts (`asdict(PullRequestFacts)`, files bounded) as a reviewer reads them; None
    for other subjects. `sensitive` is every sensitive path the verdict rests on: each is listed, even
    beyond the files shown or stored."""
    if not isinstance(facts.get("author"), dict) or "head_sha" not in facts or "base_ref" not in facts:
        return None
    author = facts["author"]
    head_sha = str(facts.get("head_sha") or "")

    marked = set(sensitive)
    stored: list[dict[str, Any]] = []
    for f in facts.get("changed_files") or []:
        if not isinstance(f, dict):
            continue
        path, previous = str(f.get("path") or ""), f.get("previous_path")
        hits = [p for p in (path, previous) if p and p in marked]
        stored.append({"path": path, "previous_path": str(previous) if previous else None,
                       "status": str(f.get("status") or ""), "additions": _int(f.get("additions")),
                       "deletions": _int(f.get("deletions")), "flagged": bool(hits),
                       "why": "sensitive path: " + ", ".join(hits) if hits else ""})
    covered = {p for f in stored for p in (f["path"], f["previous_path"]) if p}
    # Sensitive paths past the stored files (a record keeps the first few hundred) are listed all the same.
    unlisted = [{"path": p, "previous_path": None, "status": "", "additions": 0, "deletions": 0, "flagged": True,
                 "why": "sensitive path (past the files this record keeps)"} for p in sensitive if p not in covered]
    flagged = [f for f in stored if f["flagged"]] + unlisted
    others = [f for f in stored if not f["flagged"]]
    shown = flagged + others[: max(0, FILES_SHOWN - len(flagged))]
    total = facts.get("changed_files_total")
    total = total if isinstance(total, int) and not isinstance(total, bool) and total >= len(stored) \
        else len(stored) + len(unlisted)

    reviews = []
    for rev in facts.get("reviews") or []:
        if not isinstance(rev, dict) or not isinstance(rev.get("reviewer"), dict):
            continue
        who = rev["reviewer"]
        reviews.append({"login": str(who.get("login") or ""), "kind": str(who.get("kind") or ""),
                        "state_words": str(rev.get("state") or "").replace("_", " ").lower(),
                        "sha": str(rev.get("commit_sha") or ""),
                        "on_head": bool(head_sha) and rev.get("commit_sha") == head_sha,
                        "permission": str(rev.get("permission") or ""),
                        "submitted_at": str(rev.get("submitted_at") or "")})

    repo = str(facts.get("repo") or "")
    head_repo = facts.get("head_repo")
    fork = bool(head_repo) and str(head_repo).lower() != repo.lower()
    commits = [c for c in facts.get("commits") or [] if isinstance(c, dict)]
    number = facts.get("number")
    return {
        "author": {"login": str(author.get("login") or ""), "kind": str(author.get("kind") or ""),
                   "why": str(author.get("why") or ""), "via_app": author.get("via_app")},
        "title": str(facts.get("title") or ""),
        "number": number,
        "url": links.pull(repo, number) if links else None,
        "state": "draft" if facts.get("draft") else str(facts.get("state") or ""),
        "base_ref": str(facts.get("base_ref") or ""), "head_ref": str(facts.get("head_ref") or ""),
        "head_label": f"{head_repo}:{facts.get('head_ref')}" if fork else str(facts.get("head_ref") or ""),
        "fork": fork, "default_branch": str(facts.get("default_branch") or ""),
        "head_sha": head_sha, "base_sha": str(facts.get("base_sha") or ""),
        "files": shown, "files_total": total, "files_more": max(0, total - len(shown)),
        "files_stored": len(stored), "files_complete": facts.get("changed_files_complete", True) is not False,
        "files_flagged": len(sensitive),
        "additions": sum(f["additions"] for f in stored), "deletions": sum(f["deletions"] for f in stored),
        "reviews": reviews,
        "requesters": [str(x) for x in facts.get("requesters") or []],
        "labels": [str(x) for x in facts.get("labels") or []],
        "commits": len(commits), "commits_complete": facts.get("commits_complete", True) is not False,
        "commit_authors": sorted({str(a.get("login")) for c in commits for a in (c.get("author"), c.get("committer"))
                                  if isinstance(a, dict) and a.get("login")}),
        "tasks": [t for t in facts.get("tasks") or [] if isinstance(t, dict)],
        "tasks_checked": bool(facts.get("tasks_checked")),
    }


def generic_facts(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Any other subject's small free-form facts, as rows of a key/value table."""
    rows = []
    for k, value in facts.items():
        label = str(k).replace("_", " ")
        if value is None or value == "" or value == [] or value == {}:
            rows.append({"key": label, "text": "—", "code": False})
        elif isinstance(value, bool):
            rows.append({"key": label, "text": "yes" if value else "no", "code": False})
        elif isinstance(value, str | int | float):
            rows.append({"key": label, "text": str(value), "code": False})
        elif isinstance(value, list) and all(isinstance(x, str | int | float) for x in value):
            rows.append({"key": label, "text": ", ".join(str(x) for x in value), "code": False})
        else:
            rows.append({"key": label, "text": json.dumps(value, sort_keys=True, default=str), "code": True})
    return rows


# -- the small Markdown subset of the policy preview -------------------------------------------------
# Everything is escaped first: the preview quotes pull request titles, which agents write.

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_BADGE_CELLS = {"✅ success": "success", "⏳ pending": "pending", "⛔ failure": "failure", "❗ error": "error"}


def render_markdown(text: str, drop_heading: str = "") -> Markup:
    """Headings, paragraphs, bullet lists, pipe tables, `code`, **bold** and table `<br>`; nothing else.
    A first heading equal to `drop_heading` is left out (the page already shows it)."""
    out: list[str] = []
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if drop_heading and first is not None and (m := _HEADING.match(lines[first])) and m.group(2) == drop_heading:
        lines = lines[first + 1:]
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(s.strip() for s in para))}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = min(6, max(3, len(heading.group(1))))  # the page's own h1/h2 stay on top
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if _BULLET.match(line):
            flush()
            items = []
            while i < len(lines) and (m := _BULLET.match(lines[i])):
                items.append(f"<li>{_inline(m.group(1))}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            flush()
            head = _cells(line)
            i += 2
            body = []
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                body.append(_cells(lines[i]))
                i += 1
            html = ['<div class="scroll"><table class="stack"><thead><tr>']
            html += [f'<th scope="col">{_inline(c)}</th>' for c in head]
            html.append("</tr></thead><tbody>")
            for row in body:
                row = (row + [""] * len(head))[: max(len(head), 1)]
                html.append("<tr>" + "".join(f'<td data-label="{escape(h)}">{_cell(c)}</td>'
                                             for h, c in zip(head, row, strict=False)) + "</tr>")
            html.append("</tbody></table></div>")
            out.append("".join(html))
            continue
        para.append(line)
        i += 1
    flush()
    return Markup("\n".join(out))  # noqa: S704 - every piece of text went through escape() in _inline


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(s)]


def _cell(text: str) -> str:
    if text in _BADGE_CELLS:
        return f'<span class="badge {_BADGE_CELLS[text]}">{escape(text.split(" ", 1)[1])}</span>'
    return _inline(text)


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]+`)", text)
    html = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            html.append(f"<code>{escape(part[1:-1])}</code>")
        else:
            safe = str(escape(part))
            safe = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", safe)
            html.append(safe.replace("&lt;br&gt;", "<br>"))
    return "".join(html)
