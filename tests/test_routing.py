"""Which deliveries become which jobs (pure routing), on GitHub's example payloads."""

from __future__ import annotations

from gatekeeper.forges.github.webhooks import route_github
from tests.conftest import github_fixture


def _fixture(name: str, **changes) -> dict:
    payload = github_fixture(name) | {"installation": {"id": 9}}
    payload.update(changes)
    return payload


def _only(jobs):
    assert len(jobs) == 1
    return jobs[0]


def test_comment_on_pr_goes_to_comment_job():
    """A comment on a pull request carries its body, author and the PR number to the chain job."""
    payload = _fixture("issue_comment.created.1")
    payload["issue"]["pull_request"] = {"url": "x"}
    job = _only(route_github("issue_comment", payload))
    assert job.func == "gatekeeper.worker.handlers.on_comment"
    assert job.kwargs["is_pull_request"] is True
    assert job.kwargs["body"] == payload["comment"]["body"]
    assert job.kwargs["author"]["login"] == payload["comment"]["user"]["login"]
    assert job.kwargs["default_branch"] == payload["repository"]["default_branch"]


def test_huge_comment_body_is_cut():
    """Only the first 64 KB of a comment travel through the queue."""
    payload = _fixture("issue_comment.created.1")
    payload["comment"]["body"] = "x" * 200_000
    assert len(_only(route_github("issue_comment", payload)).kwargs["body"]) == 65536


def test_app_acting_for_user_is_kept():
    """performed_via_github_app on a comment travels with its author."""
    payload = _fixture("issue_comment.created.1")
    payload["comment"]["performed_via_github_app"] = {"slug": "some-bot", "name": "Some Bot"}
    assert _only(route_github("issue_comment", payload)).kwargs["author"]["via_app"] == "some-bot"


def test_label_goes_to_label_job():
    """pull_request.labeled carries the label and who applied it."""
    job = _only(route_github("pull_request", _fixture("pull_request.labeled.1")))
    assert job.func == "gatekeeper.worker.handlers.on_label"
    assert job.kwargs["label"] and job.kwargs["sender"]["login"]


def test_review_body_is_judged_like_a_comment():
    """A submitted review with a body (e.g. `bors r+`) is also judged for commands."""
    payload = _fixture("pull_request_review.submitted.1")
    payload["review"]["body"] = "bors r+"
    funcs = [j.func for j in route_github("pull_request_review", payload)]
    assert funcs == ["gatekeeper.worker.pipeline.evaluate_pull_request", "gatekeeper.worker.handlers.on_comment"]


def test_title_body_and_draft_changes_reevaluate():
    """Rules read titles, bodies and draft state, so every edit and draft conversion re-evaluates."""
    for action in ("edited", "converted_to_draft"):
        payload = _fixture("pull_request.opened.1", action=action)
        assert _only(route_github("pull_request", payload)).func == "gatekeeper.worker.pipeline.evaluate_pull_request"


def test_review_edited_by_someone_else_is_tampering():
    """A review edited by someone other than its author queues the tampering job (it also evaluates)."""
    payload = _fixture("pull_request_review.submitted.1", action="edited", sender={"login": "mallory", "type": "User"})
    funcs = [j.func for j in route_github("pull_request_review", payload)]
    assert funcs == ["gatekeeper.worker.handlers.on_tampering"]  # which evaluates, with the finding recorded


def test_workflow_run_carries_triggering_actor():
    """workflow_run.requested carries the triggering actor, event and PRs."""
    job = _only(route_github("workflow_run", _fixture("workflow_run.requested.1")))
    assert job.kwargs["triggering_actor"]["login"] == "Codertocat"
    assert job.kwargs["event"] == "repository_dispatch"


def test_push_to_branch_only():
    """Tag pushes and branch deletions are not governed pushes."""
    assert route_github("push", _fixture("push.event.1")) == []  # a tag
    payload = _fixture("push.event.1", ref="refs/heads/main")
    assert _only(route_github("push", payload)).kwargs["ref"] == "main"
    assert route_github("push", payload | {"deleted": True}) == []


def test_deployment_protection_rule_carries_callback():
    """The deployment protection request carries environment, callback URL and PRs."""
    job = _only(route_github("deployment_protection_rule", _fixture("deployment_protection_rule.requested.1")))
    assert job.kwargs["environment"] == "production"
    assert job.kwargs["callback_url"].endswith("/actions/runs/1234567890/deployment_protection_rule")
    assert job.kwargs["pull_numbers"] == [2]


def test_merge_group_and_status():
    """merge_group.checks_requested and status deliveries become jobs with their SHAs."""
    job = _only(route_github("merge_group", _fixture("merge_group.checks_requested.1")))
    assert job.kwargs["head_sha"] == "2ffea6db159f6b6c47a24e778fb9ef40cf6b1c7d"
    assert route_github("status", _fixture("status.event.1")) == []  # someone's CI context: not ours
    job = _only(route_github("status", _fixture("status.event.1", context="agentgate")))
    assert job.kwargs["context"] == "agentgate"


def test_check_suite_rerequest_reevaluates_its_prs():
    """check_suite.rerequested re-evaluates every PR of the suite."""
    payload = _fixture("check_suite.rerequested.1")
    payload["check_suite"]["pull_requests"] = [{"number": 3}, {"number": 4}]
    jobs = route_github("check_suite", payload)
    assert [j.kwargs["number"] for j in jobs] == [3, 4]
    assert len({j.name for j in jobs}) == 2  # distinct job ids


def test_issue_assigned_records_requester():
    """Assigning an issue goes to the requester job."""
    job = _only(route_github("issues", _fixture("issues.assigned.1")))
    assert job.func == "gatekeeper.worker.handlers.on_assigned"


def test_app_manifest_subscribes_to_every_routed_event():
    """The GitHub App manifest asks for exactly the events the receiver routes (and ping needs no asking)."""
    import json
    from pathlib import Path

    from gatekeeper.forges.github.webhooks import _GITHUB

    manifest = json.loads((Path(__file__).parents[1] / "deploy" / "github-app-manifest.json").read_text())
    assert set(manifest["default_events"]) == set(_GITHUB)
