"""The fake GitLab answers as GitLab's API documentation says: raw HTTP against it, no adapter."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.fakegitlab import FakeGitLabState, running_fake_gitlab

REPO = "acme/widgets"
ENC = "acme%2Fwidgets"
HEAD = "a" * 40


@pytest.fixture
def fake():
    state = FakeGitLabState()
    state.add_project(REPO)
    state.add_mr(REPO, 1, author="alice", head_sha=HEAD, source_branch="feature", files=["a.py", "b.py", "c.py"])
    with running_fake_gitlab(state) as running:
        yield running


def get(fake, path, **params):
    return requests.get(f"{fake.url}/api/v4{path}", params=params, headers={"PRIVATE-TOKEN": fake.state.token},
                        timeout=5)


def post(fake, path, body):
    return requests.post(f"{fake.url}/api/v4{path}", json=body, headers={"PRIVATE-TOKEN": fake.state.token},
                         timeout=5)


def test_tokens_and_hidden_projects(fake):
    assert requests.get(f"{fake.url}/api/v4/user", timeout=5).status_code == 401
    assert get(fake, "/user").json()["username"] == fake.state.token_user
    missing = get(fake, "/projects/acme%2Fnothing")
    assert missing.status_code == 404 and missing.json() == {"message": "404 Project Not Found"}
    assert get(fake, f"/projects/{ENC}").json()["path_with_namespace"] == REPO
    project_id = fake.state.projects[REPO].id
    assert get(fake, f"/projects/{project_id}").json()["path_with_namespace"] == REPO  # by id too


def test_offset_pagination_headers(fake):
    first = get(fake, f"/projects/{ENC}/merge_requests/1/diffs", per_page=2)
    assert [d["new_path"] for d in first.json()] == ["a.py", "b.py"]
    assert first.headers["X-Next-Page"] == "2" and first.headers["X-Total"] == "3"
    last = get(fake, f"/projects/{ENC}/merge_requests/1/diffs", per_page=2, page=2)
    assert [d["new_path"] for d in last.json()] == ["c.py"] and last.headers["X-Next-Page"] == ""


def test_files_by_url_encoded_path_at_a_ref(fake):
    fake.state.add_file(REPO, "main", "ci/deploy.yml", "deploy: true\n")
    found = get(fake, f"/projects/{ENC}/repository/files/ci%2Fdeploy.yml", ref="main").json()
    assert base64.b64decode(found["content"]) == b"deploy: true\n" and found["encoding"] == "base64"
    sha = fake.state.projects[REPO].branches["main"]
    assert get(fake, f"/projects/{ENC}/repository/files/ci%2Fdeploy.yml", ref=sha).status_code == 200
    assert get(fake, f"/projects/{ENC}/repository/files/nope.yml", ref="main").json() == {
        "message": "404 File Not Found"}
    assert get(fake, f"/projects/{ENC}/repository/files/nope.yml", ref="gone").json() == {
        "message": "404 Commit Not Found"}


def test_commit_status_state_machine(fake):
    path = f"/projects/{ENC}/statuses/{HEAD}"
    assert post(fake, path, {"state": "pending", "name": "agentgate"}).status_code == 201
    again = post(fake, path, {"state": "pending", "name": "agentgate"})
    assert again.status_code == 400 and again.json()["message"].startswith(
        "Cannot transition status via :enqueue from :pending")
    assert post(fake, path, {"state": "running", "name": "agentgate"}).status_code == 201
    assert post(fake, path, {"state": "running", "name": "agentgate"}).status_code == 400
    assert post(fake, path, {"state": "success", "name": "agentgate"}).json()["status"] == "success"
    assert post(fake, path, {"state": "success", "name": "agentgate"}).status_code == 201  # a new one
    assert post(fake, path, {"state": "bogus", "name": "agentgate"}).status_code == 400
    assert [s["status"] for s in fake.state.statuses(REPO, HEAD)] == ["success", "success"]
    latest = get(fake, f"/projects/{ENC}/repository/commits/{HEAD}/statuses", name="agentgate").json()
    assert len(latest) == 1


def test_approvals_versions_and_notes(fake):
    fake.state.tick(2)
    fake.state.approve(REPO, 1, "bob")
    approvals = get(fake, f"/projects/{ENC}/merge_requests/1/approvals").json()
    assert [e["user"]["username"] for e in approvals["approved_by"]] == ["bob"]
    assert approvals["approved_by"][0]["approved_at"].endswith("Z")
    [version] = get(fake, f"/projects/{ENC}/merge_requests/1/versions").json()
    assert version["head_commit_sha"] == HEAD
    notes = get(fake, f"/projects/{ENC}/merge_requests/1/notes", sort="asc").json()
    assert [(n["body"], n["system"]) for n in notes] == [("approved this merge request", True)]
    created = post(fake, f"/projects/{ENC}/merge_requests/1/notes", {"body": "hi"})
    assert created.status_code == 201 and created.json()["author"]["username"] == fake.state.token_user


def test_labels_are_removed_with_remove_labels(fake):
    fake.state.add_label(REPO, 1, "automerge", "project_9_bot_aa11")
    updated = requests.put(f"{fake.url}/api/v4/projects/{ENC}/merge_requests/1", json={"remove_labels": "automerge"},
                           headers={"PRIVATE-TOKEN": fake.state.token}, timeout=5)
    assert updated.json()["labels"] == []
    events = get(fake, f"/projects/{ENC}/merge_requests/1/resource_label_events").json()
    assert [e["action"] for e in events] == ["add", "remove"]


def test_calls_are_recorded_with_their_encoded_paths(fake):
    get(fake, f"/projects/{ENC}/merge_requests/1")
    assert fake.state.calls[-1].path == f"/api/v4/projects/{ENC}/merge_requests/1"
    assert fake.state.calls[-1].status == 200
    listed = requests.get(f"{fake.url}/_fake/calls", timeout=5).json()
    assert listed[-1]["path"] == f"/api/v4/projects/{ENC}/merge_requests/1"


def test_faults(fake):
    fake.state.fail("GET", r"/merge_requests/1$", 429, headers={"Retry-After": "7"})
    limited = get(fake, f"/projects/{ENC}/merge_requests/1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert get(fake, f"/projects/{ENC}/merge_requests/1").status_code == 200
