"""Which deliveries become which events (the GitHub webhook parser, pure), on GitHub's example payloads."""

from __future__ import annotations

import json

from gatekeeper.forges.github.webhooks import SUBSCRIBED, parse
from gatekeeper.forges.port import Event
from tests.conftest import github_fixture


def _fixture(name: str, **changes) -> dict:
    payload = github_fixture(name) | {"installation": {"id": 9}}
    payload.update(changes)
    return payload


def _parse(event: str, payload: dict, context: str = "agentgate") -> list[Event]:
    events = parse(event, payload, "delivery-1", context)
    for ev in events:
        assert Event.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev  # travels through the queue intact
    return events


def _only(events):
    assert len(events) == 1
    return events[0]


def test_comment_on_pr_becomes_a_comment_event():
    """A comment on a pull request carries its body, author and the PR number."""
    payload = _fixture("issue_comment.created.1")
    payload["issue"]["pull_request"] = {"url": "x"}
    ev = _only(_parse("issue_comment", payload))
    assert (ev.kind, ev.subject, ev.installation, ev.platform) == ("comment", payload["issue"]["number"], 9, "github")
    assert ev.data["is_pull_request"] is True
    assert ev.data["body"] == payload["comment"]["body"]
    assert ev.user("author").login == payload["comment"]["user"]["login"]
    assert ev.default_branch == payload["repository"]["default_branch"]


def test_huge_comment_body_is_cut_but_known_to_be_longer():
    """Only the first 64 KB (and one more character, so the rule knows) travel through the queue."""
    payload = _fixture("issue_comment.created.1")
    payload["comment"]["body"] = "x" * 200_000
    assert len(_only(_parse("issue_comment", payload)).data["body"]) == 65537


def test_app_acting_for_user_is_kept():
    """performed_via_github_app on a comment travels with its author."""
    payload = _fixture("issue_comment.created.1")
    payload["comment"]["performed_via_github_app"] = {"slug": "some-bot", "name": "Some Bot"}
    assert _only(_parse("issue_comment", payload)).user("author").via_app == "some-bot"


def test_edited_comment_carries_when_it_was_edited():
    """An edit is a new action: the event carries the edit time, not only the creation time."""
    payload = _fixture("issue_comment.edited.1")
    ev = _only(_parse("issue_comment", payload))
    assert ev.data["action"] == "edited" and ev.data["edited_at"] == payload["comment"]["updated_at"]


def test_label_event_carries_label_and_actor():
    """pull_request.labeled carries the label and who applied it."""
    ev = _only(_parse("pull_request", _fixture("pull_request.labeled.1")))
    assert ev.kind == "label" and ev.data["label"] and ev.actor.login


def test_review_body_is_judged_like_a_comment():
    """A submitted review with a body (e.g. `bors r+`) is evaluated and also judged for commands."""
    payload = _fixture("pull_request_review.submitted.1")
    payload["review"]["body"] = "bors r+"
    assert [e.kind for e in _parse("pull_request_review", payload)] == ["evaluate", "comment"]


def test_title_body_draft_and_close_reevaluate():
    """Rules read titles, bodies and draft state; a closed PR leaves its head's status to the others."""
    for action in ("edited", "converted_to_draft", "closed"):
        payload = _fixture("pull_request.opened.1", action=action)
        ev = _parse("pull_request", payload)[0]
        assert ev.kind == "evaluate" and ev.evaluates_only


def test_a_closed_pull_request_is_also_a_closed_task():
    """A pull request can be an agent's task: closing it also reports a closed task (its tokens go)."""
    events = _parse("pull_request", _fixture("pull_request.opened.1", action="closed"))
    assert [e.kind for e in events] == ["evaluate", "task"]
    assert events[1].data == {"action": "closed", "is_pull_request": True}


def test_uninstalling_names_each_repository():
    """The App removed from repositories, or uninstalled: one `uninstalled` event per repository."""
    payload = _fixture("installation.deleted.1")
    events = _parse("installation", payload)
    assert [e.repo for e in events] == [r["full_name"] for r in payload["repositories"]]
    assert all(e.kind == "uninstalled" and e.installation == payload["installation"]["id"] for e in events)
    removed = {"action": "removed", "installation": {"id": 5}, "sender": payload["sender"],
               "repositories_removed": [{"id": 1, "full_name": "acme/widgets", "name": "widgets"}]}
    assert [(e.kind, e.repo) for e in _parse("installation_repositories", removed)] == [("uninstalled", "acme/widgets")]
    assert _parse("installation", _fixture("installation.created.1")) == []


def test_edited_review_is_judged_as_an_edited_comment():
    """An edited review (its body may now be a command; an editor other than its author is tampering)
    is judged as an edited comment."""
    payload = _fixture("pull_request_review.submitted.1", action="edited", sender={"login": "mallory", "type": "User"})
    ev = _only(_parse("pull_request_review", payload))
    assert ev.kind == "comment" and ev.data["action"] == "edited" and ev.actor.login == "mallory"


def test_workflow_run_carries_triggering_actor():
    """workflow_run.requested carries the triggering actor, event and PRs; other actions are ignored."""
    ev = _only(_parse("workflow_run", _fixture("workflow_run.requested.1")))
    assert ev.user("triggering_actor").login == "Codertocat"
    assert ev.data["event"] == "repository_dispatch"
    assert _parse("workflow_run", _fixture("workflow_run.completed.1")) == []


def test_push_to_branch_only():
    """Tag pushes and branch deletions are not governed pushes (tags are judged by the runs they start)."""
    assert _parse("push", _fixture("push.event.1")) == []  # a tag
    payload = _fixture("push.event.1", ref="refs/heads/main")
    assert _only(_parse("push", payload)).data["ref"] == "main"
    assert _parse("push", payload | {"deleted": True}) == []


def test_deployment_protection_rule_carries_the_run():
    """The deployment protection request carries environment, the run id from the callback and PRs."""
    ev = _only(_parse("deployment_protection_rule", _fixture("deployment_protection_rule.requested.1")))
    assert ev.data["environment"] == "production"
    assert ev.data["run_id"] == 1234567890
    assert ev.data["pull_numbers"] == [2]


def test_merge_group_and_status():
    """merge_group.checks_requested and status deliveries become events with their SHAs."""
    ev = _only(_parse("merge_group", _fixture("merge_group.checks_requested.1")))
    assert ev.data["head_sha"] == "2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d"
    assert _parse("status", _fixture("status.event.1")) == []  # someone's CI context: not ours
    ev = _only(_parse("status", _fixture("status.event.1", context="agentgate")))
    assert ev.data["context"] == "agentgate"


def test_check_suite_rerequest_reevaluates_its_prs():
    """check_suite.rerequested re-evaluates every PR of the suite."""
    payload = _fixture("check_suite.rerequested.1")
    payload["check_suite"]["pull_requests"] = [{"number": 3}, {"number": 4}]
    assert [e.subject for e in _parse("check_suite", payload)] == [3, 4]


def test_issue_assigned_records_requester():
    """Assigning an issue becomes an assignment event with its assignee."""
    ev = _only(_parse("issues", _fixture("issues.assigned.1")))
    assert ev.kind == "assigned" and ev.user("assignee") is not None


def test_app_manifest_subscribes_to_every_parsed_event():
    """The GitHub App manifest asks for exactly the events the receiver parses (and ping needs no asking)."""
    from pathlib import Path

    manifest = json.loads((Path(__file__).parents[1] / "deploy" / "github-app-manifest.json").read_text())
    assert set(manifest["default_events"]) == set(SUBSCRIBED)


def test_a_check_run_named_like_agentgates_status_is_judged_as_that_status():
    """A check run named `agentgate`, created or completed by any App, reaches the worker as a status in
    agentgate's context posted by that App's bot (agentgate's own optional check run is then its own);
    every other check run is ignored, so CI's many check runs cost nothing."""
    payload = _fixture("check_run.completed.1")
    payload["check_run"].update(name="agentgate", conclusion="success")
    [ev] = _parse("check_run", payload)
    slug = payload["check_run"]["app"]["slug"]
    assert ev.kind == "status" and ev.actor.login == f"{slug}[bot]" and ev.actor.bot
    assert ev.data["context"] == "agentgate" and ev.data["state"] == "success"
    payload["check_run"]["name"] = "build"
    assert _parse("check_run", payload) == []
