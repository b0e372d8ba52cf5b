"""GitLab deliveries → the port's `Event`s: every documented example parses, and each GitLab event maps
onto the kind and `data` fields the GitHub parser produces for its GitHub equivalent."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.forges.github import webhooks as github_webhooks
from gatekeeper.forges.gitlab import users
from gatekeeper.forges.gitlab.webhooks import audit_entry, delivery_id, parse, utc
from gatekeeper.forges.port import Event

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"
HEADERS = {"push.json": "Push Hook", "tag_push.json": "Tag Push Hook", "issue.json": "Issue Hook",
           "note.commit.json": "Note Hook", "note.merge_request.json": "Note Hook", "note.issue.json": "Note Hook",
           "merge_request.json": "Merge Request Hook", "pipeline.json": "Pipeline Hook"}
BOT = {"id": 77, "name": "Deploy bot", "username": "project_14_bot_3b9f2c", "avatar_url": None,
       "email": "project_14_bot_3b9f2c@noreply.example.com"}
HUMAN = {"id": 6, "name": "User1", "username": "user1", "avatar_url": None}


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def github_fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parent / "fixtures" / "github" / f"{name}.json").read_text()))


def mr_update(changes: dict[str, Any], *, user: dict[str, Any] | None = None, **attrs: Any) -> dict[str, Any]:
    payload = fixture("merge_request.json")
    payload["object_attributes"]["action"] = "update"
    payload["object_attributes"].update(attrs)
    payload["changes"] = changes
    if user is not None:
        payload["user"] = user
    return payload


def labels(*titles: str) -> list[dict[str, Any]]:
    return [{"id": i, "title": t, "color": "#fff", "type": "ProjectLabel"} for i, t in enumerate(titles)]


def same_fields(gitlab: Event, github: Event) -> None:
    """The GitLab event has the kind and exactly the `data` fields of the GitHub one."""
    assert gitlab.kind == github.kind
    assert sorted(gitlab.data) == sorted(github.data)


def test_the_fixtures_are_gitlabs_documented_examples():
    readme = (FIXTURES / "README.md").read_text()
    assert "GitLab 18" in readme and "webhook_events.md" in readme
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(HEADERS)


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_every_fixture_parses(name):
    payload = fixture(name)
    events = parse(HEADERS[name], payload, "4f6c1d2e-0000-4000-8000-000000000001")
    for event in events:
        assert event.platform == "gitlab"
        assert event.repo == payload["project"]["path_with_namespace"]
        assert event.installation == payload["project"]["id"]
        assert event.default_branch == payload["project"]["default_branch"]
        assert Event.from_dict(json.loads(json.dumps(event.to_dict()))) == event  # travels through the queue
    entry = audit_entry(HEADERS[name], payload, "d", datetime(2026, 1, 1, tzinfo=UTC))
    assert entry.platform == "gitlab" and entry.repo == payload["project"]["path_with_namespace"]


def test_merge_request_open_evaluates_and_reports_labels_and_assignees_set_at_opening():
    evaluate, label, assigned = parse("Merge Request Hook", fixture("merge_request.json"), "d")
    assert (evaluate.kind, evaluate.subject) == ("evaluate", 1)
    assert evaluate.data == {"trigger": "merge_request.open", "head_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}
    assert evaluate.actor is not None and evaluate.actor.login == "root" and not evaluate.actor.bot
    assert label.data == {"action": "labeled", "label": "Platform", "at": "2017-09-15T16:52:00Z"}
    assert assigned.data["assignee"]["login"] == "user1" and assigned.data["is_pull_request"] is True
    github = github_webhooks.parse("pull_request", github_fixture("pull_request.opened.1"), "d")
    same_fields(evaluate, github[0])
    same_fields(label, github_webhooks.parse("pull_request", github_fixture("pull_request.labeled.1"), "d")[0])
    same_fields(assigned, github_webhooks.parse("pull_request", github_fixture("pull_request.assigned.1"), "d")[0])


@pytest.mark.parametrize("action", ["reopen", "close", "merge", "approved", "unapproved", "approval", "unapproval"])
def test_merge_request_actions_that_change_the_verdict_evaluate(action):
    payload = fixture("merge_request.json")
    payload["object_attributes"]["action"] = action
    [event] = [e for e in parse("Merge Request Hook", payload, "d") if e.kind == "evaluate"]
    assert event.data["trigger"] == f"merge_request.{action}" and event.subject == 1


def test_new_commits_record_the_pusher_like_a_synchronize():
    payload = mr_update({"updated_at": {"previous": "2026-01-01 10:00:00 UTC", "current": "2026-01-01 10:01:00 UTC"}},
                        user=BOT, oldrev="c" * 40)
    [pushed] = parse("Merge Request Hook", payload, "d")
    assert pushed.kind == "pushed" and pushed.data == {"head_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}
    assert pushed.actor is not None and pushed.actor.bot
    same_fields(pushed, github_webhooks.parse("pull_request", github_fixture("pull_request.synchronize.1"), "d")[0])


@pytest.mark.parametrize("field,change", [
    ("target_branch", {"previous": "develop", "current": "main"}),
    ("draft", {"previous": True, "current": False}),
    ("title", {"previous": "Draft: x", "current": "x"}),
    ("description", {"previous": "", "current": "Fixes #3"}),
])
def test_updates_that_change_what_the_verdict_reads_evaluate(field, change):
    [event] = parse("Merge Request Hook", mr_update({field: change}), "d")
    assert event.kind == "evaluate" and event.data["trigger"] == "merge_request.update"


def test_an_update_that_changes_nothing_the_verdict_reads_is_ignored():
    assert parse("Merge Request Hook", mr_update({}), "d") == []
    assert parse("Merge Request Hook", mr_update({"reviewers": {"previous": [], "current": [HUMAN]}}), "d") == []


def test_label_changes_give_one_event_per_label_added_or_removed_by_the_user():
    payload = mr_update({"labels": {"previous": labels("hold", "API"), "current": labels("API", "automerge", "deploy")},
                         "updated_at": {"previous": "2026-03-01 09:00:00 UTC", "current": "2026-03-01 09:00:05 UTC"}},
                        user=BOT)
    events = parse("Merge Request Hook", payload, "d")
    assert [(e.kind, e.data["action"], e.data["label"]) for e in events] == [
        ("label", "labeled", "automerge"), ("label", "labeled", "deploy"), ("label", "unlabeled", "hold")]
    assert all(e.actor is not None and e.actor.login == BOT["username"] and e.actor.bot for e in events)
    assert {e.data["at"] for e in events} == {"2026-03-01T09:00:05Z"}


def test_a_push_listing_every_label_as_new_is_not_a_label_change():
    # GitLab has been seen to send `labels.previous: []` with a push: that would read as the pusher
    # applying every label the MR has.
    payload = mr_update({"labels": {"previous": [], "current": labels("automerge")}}, user=BOT, oldrev="c" * 40)
    assert [e.kind for e in parse("Merge Request Hook", payload, "d")] == ["pushed"]


def test_a_merge_request_assignment_remembers_who_assigned():
    payload = mr_update({"assignees": {"previous": [], "current": [{"id": 9, "name": "Duo", "username": "GitLabDuo"}]}})
    [event] = parse("Merge Request Hook", payload, "d")
    assert event.kind == "assigned" and event.data["is_pull_request"] is True
    assert event.data["assignee"]["agent"] is True and event.actor is not None and event.actor.login == "root"


def test_a_note_on_a_merge_request_is_a_comment_with_githubs_fields():
    [event] = parse("Note Hook", fixture("note.merge_request.json"), "d")
    assert event.kind == "comment" and event.subject == 1
    assert event.data["is_pull_request"] is True and event.data["action"] == "created"
    assert event.data["body"] == "This MR needs work." and event.data["comment_id"] == 1244
    assert event.data["created_at"] == "2015-05-17T18:21:36Z" and event.data["source"] == "comment"
    same_fields(event, github_webhooks.parse("issue_comment", github_fixture("issue_comment.created.1"), "d")[0])


def test_a_note_on_an_issue_is_a_comment_not_on_a_pull_request():
    [event] = parse("Note Hook", fixture("note.issue.json"), "d")
    assert event.subject == 17 and event.data["is_pull_request"] is False


def test_an_edited_note_counts_from_the_edit():
    payload = fixture("note.merge_request.json")
    payload["object_attributes"].update(action="update", note="/deploy", updated_at="2015-05-18 09:00:00 UTC")
    [event] = parse("Note Hook", payload, "d")
    assert event.data["action"] == "edited" and event.data["edited_at"] == "2015-05-18T09:00:00Z"
    assert event.data["created_at"] == "2015-05-17T18:21:36Z"
    same_fields(event, github_webhooks.parse("issue_comment", github_fixture("issue_comment.edited.1"), "d")[0])


def test_a_note_edited_by_someone_else_names_its_author_apart_from_the_editor():
    payload = fixture("note.merge_request.json")
    payload["object_attributes"].update(action="update", author_id=42)
    [event] = parse("Note Hook", payload, "d")
    assert event.actor is not None and event.actor.login == "root"
    assert event.data["author"]["id"] == 42 and event.data["author"]["login"] != "root"


def test_system_notes_and_notes_on_commits_are_ignored():
    payload = fixture("note.merge_request.json")
    payload["object_attributes"]["system"] = True
    assert parse("Note Hook", payload, "d") == []
    assert parse("Note Hook", fixture("note.commit.json"), "d") == []


def test_a_bots_note_mentions_and_author():
    payload = fixture("note.merge_request.json")
    payload["user"] = BOT
    payload["object_attributes"].update(note="@GitLabDuo please /deploy", author_id=BOT["id"])
    [event] = parse("Note Hook", payload, "d")
    assert event.data["author"]["bot"] is True
    assert [(m["login"], m["agent"]) for m in event.data["mentions"]] == [("GitLabDuo", True)]


def test_issue_assignment_and_task_changes():
    events = parse("Issue Hook", fixture("issue.json"), "d")
    assert [e.kind for e in events] == ["assigned"]  # opened with an assignee
    assert events[0].data == {"assignee": {"login": "user1", "id": None, "bot": False, "via_app": None,
                                           "agent": False}, "is_pull_request": False}
    same_fields(events[0], github_webhooks.parse("issues", github_fixture("issues.assigned.1"), "d")[0])
    payload = fixture("issue.json")
    payload["object_attributes"]["action"] = "update"
    task, untask = parse("Issue Hook", payload, "d")  # the example's labels: API -> Platform
    assert (task.kind, task.subject, task.data) == ("task", 23, {"action": "labeled", "label": "Platform"})
    # Each removed label by name: removing the one that approved the task revokes its agent tokens.
    assert (untask.kind, untask.data) == ("task", {"action": "unlabeled", "label": "API"})
    same_fields(task, github_webhooks.parse("issues", github_fixture("issues.labeled.1"), "d")[0])
    for action, expected in (("close", "closed"), ("reopen", "reopened")):
        payload = fixture("issue.json")
        payload["object_attributes"]["action"] = action
        payload["changes"] = {}
        assert [(e.kind, e.data) for e in parse("Issue Hook", payload, "d")] == [("task", {"action": expected})]


def test_a_starting_pipeline_is_a_workflow_run_with_its_source_as_event():
    payload = fixture("pipeline.json")
    assert parse("Pipeline Hook", payload, "d") == []  # the example reports it finished: judged when it started
    payload["object_attributes"]["status"] = "pending"
    [run] = parse("Pipeline Hook", payload, "d")
    assert run.kind == "workflow_run" and run.subject == 0
    assert run.data["run_id"] == 31 and run.data["event"] == "pull_request"  # the fixture is a merge request pipeline
    assert run.data["head_sha"] == "bcbb5ec396a2c0f828686f14fac9b80b780504f2" and run.data["head_branch"] == "master"
    assert run.data["pull_numbers"] == [1] and run.data["path"] == ".gitlab-ci.yml"
    assert run.data["triggering_actor"]["login"] == "root"
    same_fields(run, github_webhooks.parse("workflow_run", github_fixture("workflow_run.requested.1"), "d")[0])


@pytest.mark.parametrize("source", ["push", "web", "trigger", "api", "schedule", "chat"])
def test_pipeline_sources_are_kept(source):
    payload = fixture("pipeline.json")
    payload["object_attributes"].update(status="created", source=source)
    [run] = parse("Pipeline Hook", payload, "d")
    assert run.data["event"] == source


def test_someone_posting_agentgates_status_is_a_status_event():
    payload = fixture("pipeline.json")
    payload["object_attributes"].update(source="external", status="success")
    payload["builds"] = [{**payload["builds"][1], "name": "agentgate", "status": "success", "user": BOT},
                         {**payload["builds"][2], "name": "other-ci", "status": "failed"}]
    [status] = parse("Pipeline Hook", payload, "d")
    assert status.kind == "status" and status.actor is not None and status.actor.login == BOT["username"]
    assert status.data["context"] == "agentgate" and status.data["state"] == "success"
    same_fields(status, github_webhooks.parse("status", github_fixture("status.event.1"), "d",
                                              status_context=github_fixture("status.event.1")["context"])[0])
    assert parse("Pipeline Hook", payload, "d", status_context="gate") == []


def test_a_push_to_a_branch():
    [push] = parse("Push Hook", fixture("push.json"), "d")
    assert push.kind == "push" and push.actor is not None and push.actor.login == "jsmith"
    assert push.data["ref"] == "master" and push.data["after"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert push.data["policy_changed"] is True  # 4 commits, 2 listed: unknown counts
    same_fields(push, github_webhooks.parse("push", github_fixture("push.event.5"), "d")[0])
    payload = fixture("push.json")
    payload["total_commits_count"] = 2
    assert parse("Push Hook", payload, "d")[0].data["policy_changed"] is False
    payload["commits"][0]["modified"].append(".agentgate.yml")
    assert parse("Push Hook", payload, "d")[0].data["policy_changed"] is True
    payload["after"] = "0" * 40
    assert parse("Push Hook", payload, "d") == []  # a deleted branch


def test_malformed_payloads_raise_for_a_400():
    for name in ("merge_request.json", "note.merge_request.json", "issue.json", "pipeline.json"):
        payload = fixture(name)
        del payload["object_attributes"]
        with pytest.raises((LookupError, TypeError, ValueError)):
            parse(HEADERS[name], payload, "d")
    assert parse("System Hook", {"event_name": "project_create"}, "d") == []


def test_delivery_ids():
    payload = fixture("merge_request.json")
    key = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
    assert delivery_id({"Idempotency-Key": key, "X-Gitlab-Event-UUID": "x"}, payload) == key
    assert delivery_id({"idempotency-key": key}, payload) == key
    event_uuid = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    found = delivery_id({"X-Gitlab-Event-UUID": event_uuid}, payload)
    assert found == f"{event_uuid}-merge-request-99-open"
    payload["object_attributes"]["action"] = "update"
    assert delivery_id({"X-Gitlab-Event-UUID": event_uuid}, payload) != found
    pipeline = fixture("pipeline.json")
    assert delivery_id({"X-Gitlab-Event-UUID": event_uuid}, pipeline) == f"{event_uuid}-pipeline-31-success"
    assert delivery_id({}, payload) is None
    assert delivery_id({"Idempotency-Key": "../../etc"}, payload) is None
    for headers in ({"Idempotency-Key": key}, {"X-Gitlab-Event-UUID": event_uuid}):
        for name in HEADERS:
            found_id = delivery_id(headers, fixture(name))
            assert found_id is not None and len(found_id) <= 100
            assert all(c.isalnum() or c == "-" for c in found_id)


def test_timestamps_compare_as_githubs():
    assert utc("2015-05-17 18:21:36 UTC") == "2015-05-17T18:21:36Z"
    assert utc("2016-06-08T21:20:42.470Z") == "2016-06-08T21:20:42Z"
    assert utc("2012-01-03T23:36:29+02:00") == "2012-01-03T21:36:29Z"
    assert utc("") == "" and utc("yesterday") == ""


@pytest.mark.parametrize("username,bot", [
    ("project_14_bot_3b9f2c", True), ("project_14_bot", True), ("project_14_bot1", True),
    ("group_45_bot_9f8e7d", True), ("service_account_group_45_2c4f", True), ("service_account_a1b2", True),
    ("alert-bot", True), ("GitLabDuo", True), ("root", False), ("jules", False), ("project_manager", False),
])
def test_bots_are_told_by_gitlabs_names(username, bot):
    user = users.gitlab_user({"id": 1, "username": username})
    assert user is not None and user.bot is bot


def test_users_and_agents():
    assert users.gitlab_user({"id": 1, "username": "someone", "bot": True}).bot  # type: ignore[union-attr]
    duo = users.gitlab_user({"id": 2, "username": "GitLabDuo"})
    assert duo is not None and duo.agent and duo.bot
    claude_bot = users.gitlab_user({"id": 3, "username": "claude"}, bot=True)
    assert claude_bot is not None and claude_bot.agent
    person = users.gitlab_user({"id": 4, "username": "claude"})
    assert person is not None and not person.agent  # a person may be called claude
    assert users.email_user("A", "12-alice@users.noreply.gitlab.com") == users.gitlab_user({"username": "alice"})
    bot = users.email_user("Bot", "project_9_bot_1f2e@noreply.gitlab.example")
    assert bot is not None and bot.bot and bot.login == "project_9_bot_1f2e"
    agent = users.email_user("Claude", "noreply@anthropic.com")
    assert agent is not None and agent.agent
    assert users.email_user("Alice", "alice@corp.example").login == "alice@corp.example"  # type: ignore[union-attr]
    assert users.co_author_logins("x\n\nCo-authored-by: Bob <5-bob@users.noreply.gitlab.com>") == ("bob",)
    assert users.push_user(fixture("push.json")).login == "jsmith"  # type: ignore[union-attr]


def test_github_and_gitlab_fixtures_stay_separate():
    assert copy.deepcopy(fixture("merge_request.json"))["object_kind"] == "merge_request"


def test_a_merge_request_pipeline_is_the_merge_requests_own_ci():
    """GitLab's `merge_request_event` pipelines are judged like GitHub's `pull_request` runs: ordinary CI
    for the policy's `chains.ci_events`, so a bot pushing to its merge request does not fail it."""
    import json
    from pathlib import Path

    from gatekeeper.forges.gitlab.webhooks import parse

    payload = json.loads((Path(__file__).parent / "fixtures" / "gitlab" / "pipeline.json").read_text())
    payload["object_attributes"].update(source="merge_request_event", status="pending")
    [event] = parse("Pipeline Hook", payload, "d-1")
    assert event.kind == "workflow_run" and event.data["event"] == "pull_request"
