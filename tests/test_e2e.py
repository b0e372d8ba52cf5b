"""End to end: real `agentgate serve` and `agentgate worker` processes, a fake GitHub, a real Redis."""

from __future__ import annotations

import pytest
import requests

from tests.e2e import APP_ID, INSTALLATION, REPO, pr_payload, review_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.keys import app_key_pair

pytestmark = pytest.mark.e2e

AGENT = "copilot-swe-agent[bot]"
HEAD = "1" * 40
OLD = "2" * 40


@pytest.fixture
def github():
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    with running_fake_github(state) as fake:
        yield fake


@pytest.fixture
def gate(github, tmp_path):
    with running_agentgate(github, app_key_pair()[0], tmp_path) as running:
        yield running


def test_agent_pr_pending_until_a_human_approves_the_head(gate, github):
    """Bot PR into main: pending; a bot's approval and a stale human approval leave it pending; a human
    approval of the head makes it success. Each evaluation makes only the documented API calls."""
    state = github.state
    pr = state.add_pull(REPO, 7, user=AGENT, head_sha=HEAD, head_ref="copilot/fix-7", base_ref="main",
                        title="Fix the widget")
    state.add_file(REPO, 7, "src/widget.py")
    state.set_permission(REPO, "maintainer", "write")
    state.set_permission(REPO, "lead", "admin")

    assert gate.deliver("pull_request", pr_payload(pr)).status_code == 202
    gate.work()
    [pending] = gate.statuses(HEAD)
    assert pending["state"] == "pending" and pending["context"] == "agentgate"
    assert "approval of 1111111" in pending["description"]
    calls = [(c.method, c.path) for c in state.calls]
    assert calls == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),  # once an hour per repository
        ("GET", f"/repos/{REPO}/pulls/7"),
        ("GET", f"/repos/{REPO}/branches/main"),  # the policy is read at the base branch's head...
        ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),  # ...once per SHA
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        ("GET", f"/repos/{REPO}/pulls/7/reviews"),
        ("GET", f"/repos/{REPO}/pulls/7/commits"),
        # (An agent's PR is never asked "opened through an app?": it is automated either way; and only a
        # passing verdict asks which other open PRs share its head, see test_e2e_chains.)
        ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
    ]
    details = requests.get(pending["target_url"], timeout=5)
    assert details.status_code == 200 and "Needs 1 more approval" in details.text

    bot_review = state.add_review(REPO, 7, "dependabot[bot]", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, bot_review))
    stale = state.add_review(REPO, 7, "lead", "APPROVED", commit_id=OLD)
    gate.deliver("pull_request_review", review_payload(pr, stale))
    gate.work()
    assert [s["state"] for s in gate.statuses(HEAD)][-1] == "pending"

    human = state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, human))
    gate.work()
    final = gate.statuses(HEAD)[-1]
    assert final["state"] == "success"
    assert final["description"] == "Approved by maintainer (1/1 required)"


def test_human_pr_passes_and_duplicates_act_once(gate, github):
    """A human's PR gets success; the same delivery redelivered is answered but not processed again."""
    pr = github.state.add_pull(REPO, 8, user="octocat", head_sha="3" * 40, base_ref="main")
    github.state.add_file(REPO, 8, "README.md")
    payload = pr_payload(pr)
    assert gate.deliver("pull_request", payload, delivery="dup-1").status_code == 202
    assert gate.deliver("pull_request", payload, delivery="dup-1").json()["result"] == "duplicate"
    gate.work()
    [status] = gate.statuses("3" * 40)
    assert status["state"] == "success"


def test_bad_input_gets_4xx_never_500(gate):
    """Forged, unsigned, malformed and oversized deliveries get their 4xx from the real server."""
    url = f"{gate.url}/webhooks/github"
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "x"}
    assert requests.post(url, data=b"{}", headers=headers, timeout=5).status_code == 401
    forged = headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert requests.post(url, data=b"{}", headers=forged, timeout=5).status_code == 401
    from tests.conftest import sign

    assert requests.post(url, data=b"{oops", timeout=5,
                         headers=headers | {"X-Hub-Signature-256": sign(b"{oops")}).status_code == 400
    huge = b"{" + b" " * (26 * 1024 * 1024) + b"}"
    resp = requests.post(url, data=huge, headers=headers, timeout=30)
    assert resp.status_code == 413


def test_org_policy_is_fetched_for_extends(gate, github):
    """A repository policy that extends the organisation's file (`org:.github`) gets it from the org's
    `.github` repository, with a read-only token scoped to that repository."""
    state = github.state
    state.installations[INSTALLATION]["repositories"].append("acme/.github")
    state.add_repo("acme/.github")
    state.set_content("acme/.github", ".agentgate.yml", "version: 1\napprovals:\n  required: 2\n")
    pr = state.add_pull(REPO, 11, user=AGENT, head_sha="4" * 40, base_ref="main")
    state.add_file(REPO, 11, "src/x.py")
    state.set_content(REPO, ".agentgate.yml", "version: 1\nextends: [\"org:.github\"]\n", ref=pr["base"]["sha"])
    state.set_permission(REPO, "maintainer", "write")
    state.add_review(REPO, 11, "maintainer", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr))
    gate.work()
    [status] = gate.statuses("4" * 40)
    assert status["state"] == "pending" and "Needs 1 more approval" in status["description"]  # 1 of 2
    org_reads = state.calls_matching("GET", r"/repos/acme/\.github/contents/\.agentgate\.yml")
    assert len(org_reads) == 1
    mints = [c.body for c in state.calls_matching("POST", r"/app/installations/\d+/access_tokens")]
    assert {"repositories": [".github"], "permissions": {"contents": "read", "metadata": "read"}} in mints


def test_optional_check_run_shows_every_reason(gate, github):
    """With AGENTGATE_CHECK_RUNS on, a check run of the same name accompanies the status: `action_required`
    while waiting for an approval, `success` after it, updated in place, with the reasons as markdown."""
    gate.env["AGENTGATE_CHECK_RUNS"] = "1"
    state = github.state
    pr = state.add_pull(REPO, 12, user=AGENT, head_sha="6" * 40, base_ref="main")
    state.add_file(REPO, 12, "src/x.py")
    state.set_permission(REPO, "maintainer", "write")
    gate.deliver("pull_request", pr_payload(pr))
    gate.work()
    [run] = state.repo(REPO).check_runs.values()
    assert run["name"] == "agentgate" and run["conclusion"] == "action_required"
    assert "What would unblock it" in run["output"]["summary"]
    review = state.add_review(REPO, 12, "maintainer", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    [run] = state.repo(REPO).check_runs.values()
    assert run["conclusion"] == "success"
    mint = state.calls_matching("POST", r"/app/installations/\d+/access_tokens")[0]
    assert mint.body["permissions"]["checks"] == "write"
