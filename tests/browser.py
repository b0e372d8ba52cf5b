"""Helpers for the dashboard and details-page tests: a realistic store to look at (decisions written
through `decisions.save` from real verdicts, audit entries, delivery counters), `agentgate serve` as a
real process, and a headless Debian Chromium driven by Selenium."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from gatekeeper.core import enforcement
from gatekeeper.core.decide import evaluate_pull_request
from gatekeeper.core.facts import ChangedFile, PullRequestFacts, RecordedFinding, Review
from gatekeeper.core.verdict import Outcome, Reason, Verdict
from gatekeeper.policy import DEFAULT_POLICY
from gatekeeper.state import audit, decisions, keys, metrics
from gatekeeper.state.audit import AuditEntry
from gatekeeper.state.decisions import DecisionRecord
from gatekeeper.state.store import text
from tests.e2e import agentgate_bin, free_port, wait_ready
from tests.policies import actor

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>document.title='pwned';alert(1)</script>"
HEAD = "eab0c84" + "1" * 33
OLD = "1f2e3d4" + "2" * 33
BASE = "9c0ffee" + "3" * 33
COPILOT = actor("copilot-swe-agent[bot]", "Bot")
DEVIN = actor("devin-ai-integration[bot]", "Bot")
RENOVATE = actor("renovate[bot]", "Bot")
MIA = actor("maintainer-mia", "User")
BOB = actor("bob", "User")
OCTOCAT = actor("octocat", "User")
ADMIN_TOKEN = "adm_" + "s3cret-dashboard-token-for-tests"


@dataclass
class Seeded:
    """What `seed` wrote, for assertions."""

    blocked_id: str  # the agent's blocked pull request (acme/api #12), its latest decision
    blocked_reasons: list[str]  # every reason message of that decision
    history_ids: list[str]  # #12's decisions, newest first
    devin_id: str
    renovate_id: str
    closed_id: str  # an agent's pull request since closed: not "blocked" any more
    deploy_id: str
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> outcome -> count


def _save(conn: redis.Redis, facts: PullRequestFacts, verdict: Verdict, at: datetime, event: str,
          extra: dict[str, Any] | None = None) -> str:
    record = DecisionRecord("github", facts.repo, f"pull request #{facts.number}", facts.head_sha, verdict.to_dict(),
                            facts.to_dict(), ".agentgate.yml", {"event": event, "delivery": "d-" + event},
                            at.isoformat(timespec="seconds"),
                            extra={"policy_layers": [".agentgate.yml"], "policy_sha": BASE, **(extra or {})})
    return decisions.save(conn, record)


def _open_at_head(conn: redis.Redis, facts: PullRequestFacts, verdict: Verdict, decision_id: str) -> None:
    """What the pipeline records for an open pull request at its head (a closed one is dropped)."""
    conn.hset(keys.verdicts("github", facts.repo, facts.head_sha), str(facts.number), json.dumps(
        {"number": facts.number, "outcome": verdict.outcome.value, "description": verdict.description(),
         "target": f"/decisions/{decision_id}"}))


def review_body_finding(at: datetime) -> RecordedFinding:
    """A command an agent wrote in a review body, quoting it as the chain rules do (agent-written text)."""
    body = f"/deploy {XSS_IMG}"
    who = f"{COPILOT.login} (an agent)"
    return RecordedFinding(
        id="review-77-deploy", kind="command", actor=COPILOT.login, actor_kind="agent", subject=body,
        message=f"{who} commented `{body}` in a review, a command another bot may act on",
        unblock=f"A human with write access comments `{body}` to confirm it, or approves the current head",
        at=at.isoformat(timespec="seconds"), key="deploy")


def seed(conn: redis.Redis, now: datetime | None = None) -> Seeded:
    """Two weeks of decisions on three repositories, agent tokens and deliveries."""
    now = now or datetime.now(UTC)
    day = timedelta(days=1)
    files = (ChangedFile("src/retry.py", "modified", 40, 12),
             ChangedFile(".github/workflows/deploy.yml", "modified", 3, 1),
             ChangedFile(f"docs/{XSS_IMG}.md", "added", 9, 0), ChangedFile("CODEOWNERS", "modified", 1, 1))
    pr12 = PullRequestFacts(repo="acme/api", number=12, author=COPILOT, head_sha=HEAD, head_ref="copilot/fix-retry",
                            base_ref="main", base_sha=BASE, title=f"Fix the retry loop {XSS_SCRIPT}",
                            labels=("ai", XSS_IMG), changed_files=files, requesters=(BOB.login,))
    history: list[str] = []
    # Opened: no review yet.
    first = evaluate_pull_request(DEFAULT_POLICY, replace(pr12, head_sha=OLD))
    history.insert(0, _save(conn, replace(pr12, head_sha=OLD), first, now - 3 * day, "pull_request.opened"))
    # Pushed again; a bot approved and a human approved the older commit.
    reviews = (Review(RENOVATE, "APPROVED", HEAD, "write", (now - 2 * day).isoformat()),
               Review(MIA, "APPROVED", OLD, "write", (now - 2 * day).isoformat()))
    second = evaluate_pull_request(DEFAULT_POLICY, replace(pr12, reviews=reviews))
    history.insert(0, _save(conn, replace(pr12, reviews=reviews), second, now - 2 * day, "pull_request.synchronize"))
    # The human approves the head, and the agent's review body carries a command: blocked.
    reviews += (Review(MIA, "APPROVED", HEAD, "write", (now - 1 * day).isoformat()),
                Review(BOB, "APPROVED", HEAD, "admin", now.isoformat()))
    facts = replace(pr12, reviews=reviews)
    latest = enforcement.with_findings(evaluate_pull_request(DEFAULT_POLICY, facts), [review_body_finding(now)])
    assert latest.outcome is Outcome.FAILURE
    blocked_id = _save(conn, facts, latest, now, "pull_request_review.submitted")
    history.insert(0, blocked_id)
    _open_at_head(conn, facts, latest, blocked_id)

    devin = PullRequestFacts(repo="acme/web", number=31, author=DEVIN, head_sha="d" * 40, head_ref="devin/ui",
                             base_ref="main", base_sha=BASE, title="Tidy the settings page",
                             changed_files=(ChangedFile("web/settings.tsx", "modified", 20, 4),))
    devin_verdict = evaluate_pull_request(DEFAULT_POLICY, devin)
    devin_id = _save(conn, devin, devin_verdict, now - 5 * day, "pull_request.opened")
    _open_at_head(conn, devin, devin_verdict, devin_id)

    # An agent's pull request that was closed since: its head no longer lists it.
    closed = replace(devin, number=29, head_sha="c" * 40, title="Abandoned attempt")
    closed_id = _save(conn, closed, evaluate_pull_request(DEFAULT_POLICY, closed), now - 6 * day, "pull_request.opened")

    renovate = PullRequestFacts(repo="acme/api", number=7, author=RENOVATE, head_sha="e" * 40, head_ref="renovate/x",
                                base_ref="main", base_sha=BASE, title="Update dependency requests to v2.32.3",
                                changed_files=(ChangedFile("requirements.txt", "modified", 1, 1),),
                                reviews=(Review(MIA, "APPROVED", "e" * 40, "write"),))
    renovate_verdict = evaluate_pull_request(DEFAULT_POLICY, renovate)
    assert renovate_verdict.outcome is Outcome.SUCCESS
    renovate_id = _save(conn, renovate, renovate_verdict, now - 4 * day, "pull_request_review.submitted")
    _open_at_head(conn, renovate, renovate_verdict, renovate_id)

    # Humans' pull requests over the fortnight: the chart has something to show on most days.
    for n in range(12):
        human = PullRequestFacts(repo="acme/docs", number=100 + n, author=OCTOCAT, head_sha=f"{n:x}" * 40,
                                 head_ref=f"docs-{n}", base_ref="main", base_sha=BASE, title=f"Docs update {n}",
                                 changed_files=(ChangedFile(f"docs/page-{n}.md", "modified", 5, 2),))
        _save(conn, human, evaluate_pull_request(DEFAULT_POLICY, human), now - (n % 13) * day - timedelta(hours=1),
              "pull_request.opened")

    deploy_verdict = Verdict.of([Reason(
        "deployment-automated-requester", Outcome.FAILURE,
        "copilot-swe-agent[bot] (an agent) started the run deploying to production",
        "A human with write access re-runs the deployment",
        data={"actor": COPILOT.login, "actor_kind": "agent"})])
    deploy_id = decisions.save(conn, DecisionRecord(
        "github", "acme/api", "deployment to production", HEAD, deploy_verdict.to_dict(),
        {"environment": "production", "run_id": 991, "requested_by": COPILOT.login}, ".agentgate.yml",
        {"event": "deployment_protection_rule.requested"}, (now - timedelta(hours=2)).isoformat(timespec="seconds")))

    _seed_audit(conn, now)
    metrics.incr(conn, "agentgate_webhooks", "github", "pull_request", "queued", by=40)
    metrics.incr(conn, "agentgate_webhooks", "github", "pull_request", "bad-signature", by=3)
    metrics.incr(conn, "agentgate_webhooks", "github", "issue_comment", "unavailable", by=2)
    metrics.incr(conn, "agentgate_job_failures", "evaluate", by=1)
    metrics.incr(conn, "agentgate_failed_deliveries", "github", by=4)

    seeded = Seeded(blocked_id, [r.message for r in latest.reasons], history, devin_id, renovate_id, closed_id,
                    deploy_id)
    for record in decisions.load_many(conn, [text(i) for i in conn.lrange(decisions.RECENT_KEY, 0, -1)]):
        counts = seeded.per_day.setdefault(record.decided_at[:10], {})
        outcome = str(record.verdict["outcome"])
        counts[outcome] = counts.get(outcome, 0) + 1
    return seeded


def _seed_audit(conn: redis.Redis, now: datetime) -> None:
    """Token grants, a refusal and a revocation, as the token API writes them; and a label agentgate
    removed. `actor` is the agent, `target` the task."""
    def entry(minutes: int, event: str, action: str, who: str, kind: str, target: str, detail: str,
              repo: str = "acme/api") -> AuditEntry:
        at = (now - timedelta(minutes=minutes)).isoformat(timespec="milliseconds")
        for_whom = {"on_behalf_of": MIA.login} if event == "token" and action != "refuse" else {}
        return AuditEntry(at=at, platform="github", delivery="", event=event, action=action, repo=repo, actor=who,
                          actor_kind=kind, target=target, detail=detail, **for_whom)

    for e in (
        entry(300, "token", "grant", COPILOT.login, "agent", "#12",
              "permissions=contents:write,pull_requests:write sha256=9f86d081884c7d65"),
        entry(200, "token", "refuse", DEVIN.login, "agent", "#40",
              "task-unapproved: task #40 is not approved for agents permissions=(the grant)"),
        entry(100, "token", "revoke", COPILOT.login, "agent", "#12",
              "permissions=contents:write,pull_requests:write sha256=9f86d081884c7d65 (task closed)"),
        entry(90, "pull_request_review", "submitted", COPILOT.login, "agent", "#12", f"commented: /deploy {XSS_IMG}"),
        entry(80, "agentgate", "remove_label", "agentgate", "bot", "#12", "automerge (applied by renovate[bot])"),
    ):
        audit.record(conn, e)


# -- a real server ---------------------------------------------------------------------------------------

@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: Path


@contextmanager
def served(tmp_path: Path, redis_url: str, admin_token: str | None = ADMIN_TOKEN) -> Iterator[Served]:
    """`agentgate serve` on a free port, one web process, links pointing at github.com."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")} | {
        "AGENTGATE_REDIS_URL": redis_url,
        "AGENTGATE_GITHUB_WEBHOOK_SECRET": "browser-test-secret",
        "AGENTGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AGENTGATE_WEB_WORKERS": "1",
    } | ({"AGENTGATE_ADMIN_TOKEN": admin_token} if admin_token else {})
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([agentgate_bin(), "serve", "--port", str(port)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path)
        yield Served(url, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


# -- the browser -----------------------------------------------------------------------------------------

def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None. `.ci/run` installs Debian's chromium and
    chromium-driver when they are missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in CHROMIUM:
        if not (os.path.exists(path) or shutil.which(os.path.basename(path))):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


def chrome(width: int = 1280, height: int = 900):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM[0] if os.path.exists(CHROMIUM[0]) else shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars", f"--window-size={width},{height}",
                "--lang=en-GB"):
        options.add_argument(arg)
    driver_path = CHROMIUM[1] if os.path.exists(CHROMIUM[1]) else shutil.which("chromedriver") or ""
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    return driver


def phone(driver: Any, width: int = 375, height: int = 812) -> None:
    """A phone's viewport: its width in CSS pixels, touch, and the page's viewport meta honoured."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True})


def desktop(driver: Any) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def screenshot(driver: Any, name: str, max_height: int = 4000) -> Path:
    """The whole page (up to `max_height` CSS pixels) as tests/artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": min(size[1], max_height), "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
