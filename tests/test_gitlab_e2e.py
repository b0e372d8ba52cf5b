"""End to end on GitLab: real `agentgate serve` and `agentgate worker --burst` processes, the fake GitLab
(tests/fakegitlab) and a real Redis. Deliveries are GitLab's documented examples (tests/fixtures/gitlab)
pointed at the fake's project, posted to `POST /webhooks/gitlab` with GitLab's headers."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from tests.e2e import E2E_REDIS_URL, agentgate_bin, free_port, wait_ready
from tests.fakegitlab import FakeGitLab, FakeGitLabState, running_fake_gitlab

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"
WEBHOOK_TOKEN = "gitlab-webhook-secret"  # noqa: S105 - the test's own webhook secret
REPO = "acme/widgets"
AGENT = "project_12_bot_8c1e2f"  # a project access-token bot, as GitLab names them
HUMAN = "hana"
MAINTAINER = "maria"
HEAD = "1" * 40


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


@dataclass
class Gate:
    url: str
    env: dict[str, str]
    fake: FakeGitLab

    @property
    def state(self) -> FakeGitLabState:
        return self.fake.state

    def deliver(self, event: str, payload: dict[str, Any], key: str | None = None) -> requests.Response:
        body = json.dumps(payload).encode()
        return requests.post(f"{self.url}/webhooks/gitlab", data=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": WEBHOOK_TOKEN,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Instance": self.fake.url, "Idempotency-Key": key or str(uuid.uuid4()),
            "User-Agent": "GitLab/18.1.0"})

    def work(self) -> subprocess.CompletedProcess[str]:
        """Run a worker until the queue is empty; a job left failed or waiting for a retry fails the test."""
        done = subprocess.run([agentgate_bin(), "worker", "--burst"], env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        conn = redis.Redis.from_url(E2E_REDIS_URL)
        stuck = FailedJobRegistry("agentgate", connection=conn).get_job_ids() + \
            ScheduledJobRegistry("agentgate", connection=conn).get_job_ids()
        problems = [Job.fetch(job_id, connection=conn) for job_id in stuck]
        assert not problems, f"jobs failed: {[job.id for job in problems]}\n{done.stderr[-4000:]}"
        return done

    def statuses(self, sha: str = HEAD) -> list[dict[str, Any]]:
        return self.state.statuses(REPO, sha, "agentgate")

    def status_posts(self, sha: str = HEAD) -> list[dict[str, Any]]:
        return [c.body for c in self.state.calls_matching("POST", rf"/statuses/{sha}$")]


@contextmanager
def running_gate(fake: FakeGitLab, tmp_path: Path, *, token: str | None = None,
                 extra_env: dict[str, str] | None = None) -> Iterator[Gate]:
    """`agentgate serve` against the fake GitLab, acting with `token` (by default the fake's own token) and
    `extra_env` on top of its settings; Redis flushed before and after."""
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    conn.flushdb()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")} | {
        "AGENTGATE_REDIS_URL": E2E_REDIS_URL,
        "AGENTGATE_GITLAB_URL": fake.url,
        "AGENTGATE_GITLAB_TOKEN": token or fake.state.token,
        "AGENTGATE_GITLAB_WEBHOOK_SECRET": WEBHOOK_TOKEN,
        "AGENTGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AGENTGATE_WEB_WORKERS": "2",
        "AGENTGATE_PERIODIC_JOBS": "off",
    } | (extra_env or {})
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([agentgate_bin(), "serve", "--port", str(port)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, log_path)
        yield Gate(url, env, fake)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        conn.flushdb()


@pytest.fixture
def gitlab():
    state = FakeGitLabState()
    state.add_project(REPO)
    state.add_user(AGENT, bot=True)
    state.set_member(REPO, AGENT, "developer")
    state.set_member(REPO, HUMAN, "developer")
    state.set_member(REPO, MAINTAINER, "maintainer")
    state.set_member(REPO, "project_31_bot_d00d", "maintainer")  # another bot, e.g. a review bot
    with running_fake_gitlab(state) as fake:
        yield fake


@pytest.fixture
def gate(gitlab, tmp_path):
    with running_gate(gitlab, tmp_path) as running:
        yield running


def open_mr(gate: Gate, author: str, iid: int = 7, head: str = HEAD, files: tuple[str, ...] = ("src/widget.py",)
            ) -> dict[str, Any]:
    """The MR exists on the fake, and GitLab's "Merge Request Hook" example announces it, opened by `author`."""
    gate.state.add_mr(REPO, iid, author=author, head_sha=head, source_branch=f"{author}/change-{iid}",
                      target_branch="main", title="Fix the widget", files=list(files))
    return mr_event(gate, iid, "open", author)


def mr_event(gate: Gate, iid: int, action: str, user: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    project = gate.state.projects[REPO]
    mr = project.mrs[iid]
    payload = copy.deepcopy(fixture("merge_request.json"))
    payload["user"] = {**gate.state.user_ref(user), "email": "[REDACTED]"}
    payload["project"].update(id=project.id, path_with_namespace=REPO, default_branch="main",
                              name=REPO.split("/")[1])
    attrs = payload["object_attributes"]
    attrs.update(id=mr["id"], iid=iid, action=action, title=mr["title"], description=mr["description"],
                 source_branch=mr["source_branch"], target_branch=mr["target_branch"],
                 source_project_id=project.id, target_project_id=project.id, author_id=mr["author"]["id"],
                 last_commit={**attrs["last_commit"], "id": mr["sha"]}, labels=[])
    payload["labels"] = []
    payload["changes"] = changes if changes is not None else {}
    return payload


def note_event(gate: Gate, iid: int, user: str, body: str) -> dict[str, Any]:
    project = gate.state.projects[REPO]
    mr = project.mrs[iid]
    note = gate.state.add_note(REPO, iid, user, body)
    payload = copy.deepcopy(fixture("note.merge_request.json"))
    payload["user"] = {**gate.state.user_ref(user), "email": "[REDACTED]"}
    payload["project_id"] = project.id
    payload["project"].update(id=project.id, path_with_namespace=REPO, default_branch="main")
    payload["object_attributes"].update(id=note["id"], note=body, author_id=note["author"]["id"],
                                        project_id=project.id, noteable_id=mr["id"],
                                        created_at=note["created_at"], updated_at=note["updated_at"])
    payload["merge_request"].update(id=mr["id"], iid=iid, source_branch=mr["source_branch"], target_branch="main",
                                    source_project_id=project.id, target_project_id=project.id,
                                    last_commit={**payload["merge_request"]["last_commit"], "id": mr["sha"]})
    return payload


def test_a_bots_merge_request_into_main_is_not_success(gate):
    assert gate.deliver("Merge Request Hook", open_mr(gate, AGENT)).status_code == 202
    gate.work()
    [status] = gate.statuses()
    assert status["status"] == "pending" and status["name"] == "agentgate"
    assert "approval of 1111111" in status["description"]
    details = requests.get(status["target_url"], timeout=5)
    assert details.status_code == 200 and "Needs 1 more approval" in details.text


def test_a_humans_merge_request_is_success(gate):
    gate.deliver("Merge Request Hook", open_mr(gate, HUMAN))
    gate.work()
    assert [s["status"] for s in gate.statuses()] == ["success"]


def test_a_humans_approval_of_the_head_passes_the_bots_merge_request_and_a_bots_does_not(gate):
    gate.deliver("Merge Request Hook", open_mr(gate, AGENT))
    gate.work()
    assert [s["status"] for s in gate.statuses()] == ["pending"]

    gate.state.tick(5)
    gate.state.approve(REPO, 7, "project_31_bot_d00d")  # a bot's approval never counts
    gate.deliver("Merge Request Hook", mr_event(gate, 7, "approval", "project_31_bot_d00d"))
    gate.work()
    assert [s["status"] for s in gate.statuses()] == ["pending"]

    gate.state.approve(REPO, 7, MAINTAINER)
    gate.deliver("Merge Request Hook", mr_event(gate, 7, "approval", MAINTAINER))
    gate.work()
    final = gate.statuses()[-1]
    assert final["status"] == "success" and final["description"] == f"Approved by {MAINTAINER} (1/1 required)"


def test_an_approval_before_the_latest_push_does_not_count(gate):
    gate.deliver("Merge Request Hook", open_mr(gate, AGENT))
    gate.state.tick(5)
    gate.state.approve(REPO, 7, MAINTAINER)
    gate.state.tick(5)
    gate.state.push(REPO, 7, "2" * 40, ["src/widget.py"])  # GitLab kept the approval
    pushed = mr_event(gate, 7, "update", AGENT)
    pushed["object_attributes"]["oldrev"] = HEAD
    gate.deliver("Merge Request Hook", pushed)
    gate.work()
    statuses = gate.statuses("2" * 40)
    assert statuses and statuses[-1]["status"] == "pending"


def test_a_bots_deploy_note_fails_the_merge_request(gate):
    gate.deliver("Merge Request Hook", open_mr(gate, HUMAN))
    gate.work()
    assert gate.statuses()[-1]["status"] == "success"
    gate.deliver("Note Hook", note_event(gate, 7, AGENT, "/deploy production"))
    gate.work()
    final = gate.statuses()[-1]
    assert final["status"] == "failed" and "/deploy" in final["description"]
    notes = gate.state.projects[REPO].notes[("merge_requests", 7)]
    assert [n["author"]["username"] for n in notes if not n["system"]][-1] == gate.state.token_user  # the one note


def test_a_bots_automerge_label_is_removed(gate):
    gate.deliver("Merge Request Hook", open_mr(gate, HUMAN))
    gate.work()
    gate.state.add_label(REPO, 7, "automerge", AGENT)
    label = {"id": 41, "title": "automerge", "color": "#009966", "project_id": gate.state.projects[REPO].id,
             "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "template": False,
             "description": None, "type": "ProjectLabel", "group_id": None}
    gate.deliver("Merge Request Hook", mr_event(gate, 7, "update", AGENT,
                                                {"labels": {"previous": [], "current": [label]}}))
    gate.work()
    assert gate.state.labels(REPO, 7) == []
    assert gate.state.calls_matching("PUT", r"/merge_requests/7$")[-1].body == {"remove_labels": "automerge"}
    assert gate.statuses()[-1]["status"] == "failed"


def test_an_invalid_policy_on_the_target_branch_fails_with_the_errors_on_the_details_page(gate):
    gate.state.add_file(REPO, "main", ".agentgate.yml", "version: 1\nrules:\n  - name: x\n    bogus: [\n")
    gate.deliver("Merge Request Hook", open_mr(gate, HUMAN))
    gate.work()
    [status] = gate.statuses()
    assert status["status"] == "failed" and status["description"].startswith("Error: ")
    page = requests.get(f"{status['target_url']}?format=json", timeout=5).json()
    reasons = json.dumps(page)
    assert "invalid-policy" in reasons and ".agentgate.yml" in reasons
    html = requests.get(status["target_url"], timeout=5).text
    assert "Invalid .agentgate.yml" in html


def test_the_same_delivery_twice_acts_once(gate):
    payload = open_mr(gate, AGENT)
    key = str(uuid.uuid4())
    first = gate.deliver("Merge Request Hook", payload, key=key)
    second = gate.deliver("Merge Request Hook", payload, key=key)
    assert first.status_code == 202 and second.status_code == 200
    gate.work()
    assert len(gate.status_posts()) == 1
    assert len(gate.state.calls_matching("GET", r"/merge_requests/7$")) == 1
