"""The GitLab adapter (`GitLabForge`) against the fake GitLab: what it reads into the port's records,
what it posts, and the worker's pipeline driven through it (in-process, real Redis)."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from gatekeeper.forges.gitlab import client as gl_client
from gatekeeper.forges.gitlab.client import GitLabForge, permission_name
from gatekeeper.forges.gitlab.forge import open_gitlab
from gatekeeper.forges.gitlab.webhooks import parse
from gatekeeper.forges.port import EVALUATE, ForgeError, RateLimited
from gatekeeper.state.queue import JobQueue
from gatekeeper.worker import runtime
from tests.fakegitlab import FakeGitLabState, running_fake_gitlab

REPO = "acme/widgets"
BOT = "project_9_bot_1f2e"
HEAD = "a" * 40
NEXT = "b" * 40


@pytest.fixture
def state():
    state = FakeGitLabState()
    state.add_project(REPO)
    state.add_user(BOT, bot=True)
    for name, role in (("maria", "maintainer"), ("dev", "developer"), ("rita", "reporter"), ("gus", "guest"),
                       ("olga", "owner")):
        state.set_member(REPO, name, role)
    state.add_mr(REPO, 7, author=BOT, head_sha=HEAD, source_branch="bot/fix-7", files=["src/app.py"],
                 title="Fix the widget", description="Fixes #3")
    return state


@pytest.fixture
def gitlab(state):
    with running_fake_gitlab(state) as fake:
        yield fake


@pytest.fixture
def forge(gitlab, redis_conn):
    return GitLabForge(REPO, gitlab.url, gitlab.state.token, redis_conn)


def paths(state):
    return [(c.method, c.path.removeprefix("/api/v4")) for c in state.calls]


def test_a_merge_request_as_a_pull_request(forge, state):
    pr = forge.get_pull_request(7)
    assert (pr.number, pr.state, pr.draft, pr.title, pr.body) == (7, "open", False, "Fix the widget", "Fixes #3")
    assert pr.author.login == BOT and pr.author.bot
    assert (pr.head_sha, pr.head_ref, pr.base_ref, pr.head_repo) == (HEAD, "bot/fix-7", "main", REPO)
    assert pr.base_sha == state.projects[REPO].branches["main"] and pr.default_branch == "main"
    assert pr.changed_files == 1 and not pr.merged
    state.projects[REPO].mrs[7]["state"] = "merged"
    state.projects[REPO].mrs[7]["merge_commit_sha"] = "c" * 40
    merged = forge.get_pull_request(7)
    assert merged.state == "closed" and merged.merged and merged.merge_commit_sha == "c" * 40


def test_an_author_the_users_api_marks_a_bot_is_one(forge, state, redis_conn):
    state.add_user("release-helper", bot=True)  # a service account with a name of its own
    state.set_member(REPO, "release-helper", "developer")
    state.add_mr(REPO, 8, author="release-helper", head_sha=NEXT, source_branch="release")
    assert forge.get_pull_request(8).author.bot
    state.reset_calls()
    again = GitLabForge(REPO, forge._gl.url, state.token, redis_conn)
    assert again.get_pull_request(8).author.bot
    assert not [p for p in paths(state) if p[1].startswith("/users/")]  # cached


def test_files_commits_and_permissions(forge, state):
    state.push(REPO, 7, NEXT, ["src/app.py", ".gitlab-ci.yml"])
    files, complete = forge.list_changed_files(7)
    assert [(f.path, f.status, f.additions, f.deletions) for f in files] == [
        ("src/app.py", "modified", 1, 1), (".gitlab-ci.yml", "modified", 1, 1)] and complete
    commits, complete = forge.list_commits(7)
    assert [c.sha for c in commits] == [HEAD, NEXT] and complete  # oldest first, ends at the head
    assert commits[0].author is not None and commits[0].author.login == BOT and commits[0].author.bot
    assert {name: forge.get_permission(name) for name in ("olga", "maria", "dev", "rita", "gus", "nobody")} == {
        "olga": "admin", "maria": "maintain", "dev": "write", "rita": "read", "gus": "none", "nobody": "none"}
    assert [permission_name(level) for level in (50, 40, 30, 20, 15, 10, 5, 0)] == [
        "admin", "maintain", "write", "read", "read", "none", "none", "none"]


def test_a_human_committer_is_known_by_the_public_email(forge, state):
    state.push(REPO, 7, NEXT, ["src/app.py"], author="dev")
    commits, _ = forge.list_commits(7)
    assert commits[-1].author is not None and commits[-1].author.login == "dev"


def test_renames_and_removals(forge, state):
    state.projects[REPO].diffs[7] = [
        {"old_path": "a.py", "new_path": "b.py", "renamed_file": True, "new_file": False, "deleted_file": False,
         "diff": ""},
        {"old_path": "gone.py", "new_path": "gone.py", "renamed_file": False, "new_file": False,
         "deleted_file": True, "diff": "@@ -1 +0,0 @@\n-x\n"}]
    files, _ = forge.list_changed_files(7)
    assert [(f.path, f.status, f.previous_path, f.deletions) for f in files] == [
        ("b.py", "renamed", "a.py", 0), ("gone.py", "removed", None, 1)]


def test_the_policy_file_at_a_commit(forge, state):
    main = state.projects[REPO].branches["main"]
    state.add_file(REPO, "main", ".agentgate.yml", "version: 1\n")
    assert forge.get_file(".agentgate.yml", main) == "version: 1\n"
    assert forge.get_file("nothing.yml", main) is None
    with pytest.raises(ForgeError):
        forge.get_file(".agentgate.yml", "no-such-branch")  # not "no policy": the commit was not found
    assert forge.branch_sha("main") == main and forge.branch_sha("nope") is None
    state.add_project("acme/.github")
    state.add_file("acme/.github", "main", ".agentgate.yml", "version: 1\nextends: []\n")
    sibling = GitLabForge(REPO, forge._gl.url, state.token, None,
                          sibling=lambda other: GitLabForge(other, forge._gl.url, state.token, None))
    assert sibling.get_repo_file("acme/.github", ".agentgate.yml") == "version: 1\nextends: []\n"


def test_an_approval_counts_for_the_head_only_after_the_latest_push(forge, state):
    state.tick(5)
    state.approve(REPO, 7, "maria")
    [review] = forge.list_reviews(7)
    assert (review.user.login, review.state, review.commit_sha) == ("maria", "APPROVED", HEAD)
    state.tick(5)
    state.push(REPO, 7, NEXT, ["src/app.py"])  # GitLab keeps the approval; it is now stale
    fresh = GitLabForge(REPO, forge._gl.url, state.token, None)
    fresh.get_pull_request(7)
    [stale] = fresh.list_reviews(7)
    assert stale.state == "APPROVED" and stale.commit_sha is None


def test_approval_times_from_system_notes_when_the_api_gives_none(gitlab, state):
    state.approvals_with_time = False
    state.tick(5)
    state.approve(REPO, 7, "maria")
    forge = GitLabForge(REPO, gitlab.url, state.token, None)
    forge.get_pull_request(7)
    [review] = forge.list_reviews(7)
    assert review.commit_sha == HEAD and review.submitted_at
    assert ("GET", "/projects/acme%2Fwidgets/merge_requests/7/notes") in paths(state)


def test_a_bots_approval_is_a_bots_and_changes_requested_are_reviews(forge, state):
    state.set_member(REPO, "project_3_bot_77aa", "developer")
    state.tick(5)
    state.approve(REPO, 7, "project_3_bot_77aa")
    state.request_changes(REPO, 7, "dev")
    reviews = forge.list_reviews(7)
    assert [(r.user.login, r.user.bot, r.state) for r in reviews] == [
        ("dev", False, "CHANGES_REQUESTED"), ("project_3_bot_77aa", True, "APPROVED")]


def test_statuses_in_gitlabs_states(forge, state):
    forge.get_pull_request(7)
    forge.set_status(HEAD, "pending", "Needs 1 more approval", "https://gate/decisions/1", "agentgate")
    forge.set_status(HEAD, "pending", "Needs 2 more approvals", "https://gate/decisions/2", "agentgate")  # no change
    forge.set_status(HEAD, "failure", "A bot commented /deploy", "https://gate/decisions/3", "agentgate")
    forge.set_status(HEAD, "error", "Invalid .agentgate.yml", "https://gate/decisions/4", "agentgate")
    forge.set_status(HEAD, "success", "Approved by maria", "https://gate/decisions/5", "agentgate")
    assert [(s["status"], s["description"], s["ref"]) for s in state.statuses(REPO, HEAD)] == [
        ("failed", "A bot commented /deploy", "bot/fix-7"),  # the pending one, moved on
        ("failed", "Error: Invalid .agentgate.yml", "bot/fix-7"),
        ("success", "Approved by maria", "bot/fix-7")]
    latest = forge.latest_status(HEAD, "agentgate")
    assert latest is not None and (latest.state, latest.own) == ("success", True)
    assert forge.status_description_limit == 255


def test_a_status_goes_to_the_source_project_of_a_fork(forge, state):
    fork = state.add_project("bot/widgets-fork")
    mr = state.projects[REPO].mrs[7]
    mr["source_project_id"] = fork.id
    state.add_commit("bot/widgets-fork", HEAD)
    pr = forge.get_pull_request(7)
    assert pr.head_repo != REPO  # a fork
    forge.set_status(HEAD, "pending", "waiting", "https://gate/d", "agentgate")
    assert state.statuses("bot/widgets-fork", HEAD) and not state.statuses(REPO, HEAD)


def test_external_status_checks_are_answered(forge, state):
    check = state.add_status_check(REPO, "agentgate")
    state.add_status_check(REPO, "someone-else")
    forge.get_pull_request(7)
    forge.set_status(HEAD, "pending", "waiting", "https://gate/d", "agentgate")
    forge.set_status(HEAD, "success", "approved", "https://gate/d", "agentgate")
    answers = state.projects[REPO].status_check_responses
    assert [(a["external_status_check"]["id"], a["status"], a["sha"]) for a in answers] == [
        (check["id"], "failed", HEAD), (check["id"], "passed", HEAD)]


def test_labels_and_the_one_note(forge, state):
    state.add_label(REPO, 7, "automerge", BOT)
    forge.remove_label(7, "automerge")
    assert state.labels(REPO, 7) == []
    first = forge.upsert_comment(7, "<!-- agentgate --> one", None)
    assert forge.find_comment(7, "<!-- agentgate -->") == first
    assert forge.upsert_comment(7, "<!-- agentgate --> two", first) == first
    notes = state.projects[REPO].notes[("merge_requests", 7)]
    assert [n["body"] for n in notes] == ["<!-- agentgate --> two"]
    notes.clear()  # someone deleted it
    assert forge.upsert_comment(7, "<!-- agentgate --> three", first) != first


def test_history_of_a_merge_request_and_an_issue(forge, state):
    project = state.projects[REPO]
    project.issues[3] = {"id": 1, "iid": 3, "project_id": project.id, "title": "Task", "state": "opened",
                         "labels": ["agent-approved"], "assignees": [state.user_ref("GitLabDuo")]}
    state._note(project, "issues", 3, "maria", "assigned to @GitLabDuo", system=True)
    state.tick(1)
    state._label_event(project, "issues", 3, "agent-approved", "add", "maria")
    project.closes[7] = [3]
    issue = forge.get_issue(3)
    assert issue is not None and issue.labels == ("agent-approved",) and issue.assignees == ("GitLabDuo",)
    events = forge.issue_events(3)
    assert [(e.kind, e.actor.login if e.actor else None) for e in events] == [("assigned", "maria"),
                                                                            ("labeled", "maria")]
    assert events[0].assignee is not None and events[0].assignee.agent
    # GitLab numbers merge requests and issues apart: the caller says which history it wants.
    assert [(e.kind, e.other) for e in forge.issue_events(7, pull_request=True)] == [("connected", 3)]
    assert forge.get_issue(99) is None and forge.issue_events(99) == []


def test_open_merge_requests_and_merge_requests_of_a_commit(forge, state):
    assert [p.number for p in forge.list_open_pulls(10)] == [7]
    assert [p.number for p in forge.pulls_for_commit(HEAD)] == [7]
    assert forge.pulls_for_commit("f" * 40) == []
    [activity] = forge.list_open_pull_activity(10)
    assert activity.number == 7 and activity.head_sha == HEAD and activity.updated_at.endswith("Z")


def test_errors_and_rate_limits(forge, state):
    state.fail("GET", r"/merge_requests/7$", 502)
    with pytest.raises(ForgeError) as failed:
        forge.get_pull_request(7)
    assert failed.value.status == 502
    state.fail("GET", r"/merge_requests/7$", 429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited) as limited:
        forge.get_pull_request(7)
    assert limited.value.retry_after == 30
    with pytest.raises(RateLimited):
        forge.get_pull_request(7)  # nothing more is asked before the reset
    assert forge.rate_budget() == (1999, 2000)


def test_who_agentgate_is(forge, state):
    from gatekeeper.core.facts import User

    assert forge.is_own(User(state.token_user, bot=True))
    assert not forge.is_own(User(BOT, bot=True))
    with pytest.raises(ForgeError):
        forge.review_deployment(1, "production", "approved", "")
    assert forge.upsert_check_run(HEAD, "agentgate", "success", "t", "r", "u", None) is None


def test_open_gitlab_needs_url_and_token(settings, redis_conn, gitlab):
    with pytest.raises(ForgeError):
        open_gitlab(settings, redis_conn, REPO, EVALUATE)
    configured = replace(settings, gitlab_url=gitlab.url, gitlab_token=gitlab.state.token)
    forge = open_gitlab(configured, redis_conn, REPO, EVALUATE)
    assert forge.repo == REPO and forge.get_pull_request(7).number == 7


def test_cache_keys_are_agentgates():
    for name in (gl_client.user_bot_key(1), gl_client.project_key(REPO), gl_client.self_key("t"),
                 gl_client.status_checks_key(REPO), gl_client.email_key("a@b")):
        assert name.startswith("agentgate:gitlab:")


# ---- the worker's pipeline through the adapter (in-process; the receiver and factory are the lead's) ----

@pytest.fixture
def worker(settings, redis_conn, gitlab):
    configured = replace(settings, gitlab_url=gitlab.url, gitlab_token=gitlab.state.token)
    rt = runtime.Runtime(configured, redis_conn, lambda platform, installation, repo, caps: open_gitlab(
        configured, redis_conn, repo, caps), JobQueue(redis_conn, configured.queue_name, is_async=False))
    runtime.configure(rt)
    yield rt
    runtime.configure(None)


def mr_delivery(state, action="open", user=BOT, **changes):
    import json
    from pathlib import Path

    payload = json.loads((Path(__file__).parent / "fixtures" / "gitlab" / "merge_request.json").read_text())
    project = state.projects[REPO]
    mr = project.mrs[7]
    payload["project"].update(id=project.id, path_with_namespace=REPO, default_branch="main")
    payload["object_attributes"].update(iid=7, action=action, last_commit={"id": mr["sha"]},
                                        target_branch="main", source_branch=mr["source_branch"])
    payload["user"] = state.user_ref(user)
    payload["changes"] = changes
    return payload


def deliver(rt, payload, delivery):
    events = parse("Merge Request Hook", payload, delivery)
    rt.queue.enqueue_events("gitlab", delivery, events)


def test_the_pipeline_through_the_adapter(worker, state):
    deliver(worker, mr_delivery(state), "d-open")
    assert [s["status"] for s in state.statuses(REPO, HEAD)] == ["pending"]
    state.tick(5)
    state.approve(REPO, 7, "maria")
    deliver(worker, mr_delivery(state, action="approval", user="maria"), "d-approval")
    assert [s["status"] for s in state.statuses(REPO, HEAD)] == ["success"]
    assert state.statuses(REPO, HEAD)[-1]["description"] == "Approved by maria (1/1 required)"


def test_a_bots_label_through_the_adapter(worker, state):
    state.add_label(REPO, 7, "automerge", BOT)
    payload = mr_delivery(state, action="update", labels={"previous": [], "current": [
        {"id": 1, "title": "automerge", "color": "#fff", "type": "ProjectLabel"}]})
    deliver(worker, payload, "d-label")
    assert state.labels(REPO, 7) == []
    assert [s["status"] for s in state.statuses(REPO, HEAD)][-1] == "failed"


def test_encoded_content_is_base64():
    assert base64.b64decode(base64.b64encode(b"x")) == b"x"


def test_an_events_users_are_resolved_through_the_users_api(forge, state):
    from gatekeeper.core.facts import User
    from gatekeeper.forges.port import Event

    helper = state.add_user("release-helper", bot=True)
    person = state.add_user("hana")
    event = Event("gitlab", "d", "comment", REPO, None, User("release-helper", helper["id"]), 7,
                  {"author": User("hana", person["id"]).to_dict(), "body": "/deploy"})
    resolved = forge.resolve_event(event)
    assert resolved.actor is not None and resolved.actor.bot
    assert resolved.user("author") == User("hana", person["id"]) and resolved.data["body"] == "/deploy"
