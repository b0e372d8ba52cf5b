"""End to end on the whole action path: chain events delivered to a real `agentgate serve`, processed by
`agentgate worker`, against the fake GitHub. Each test asserts the exact calls GitHub received."""

from __future__ import annotations

import copy

import pytest
import redis
import requests

from tests.conftest import github_fixture
from tests.e2e import APP_ID, E2E_REDIS_URL, INSTALLATION, REPO, pr_payload, review_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.keys import app_key_pair

pytestmark = pytest.mark.e2e

AGENT = "copilot-swe-agent[bot]"
HEAD = "7" * 40
DEFAULT_HEAD = "d" * 40
INSTALL = {"id": INSTALLATION}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    with running_fake_github(state) as fake, \
            running_agentgate(fake, private, tmp_path_factory.mktemp("gate")) as gate:
        yield fake, gate


@pytest.fixture
def world(env):
    """A fresh repository with an agent's PR #7 into main; the call log starts empty."""
    fake, gate = env
    state = fake.state
    state.reset()
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()  # tokens, caches and findings of the previous test
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.repo(REPO).branches["main"] = DEFAULT_HEAD
    pr = state.add_pull(REPO, 7, user=AGENT, head_sha=HEAD, head_ref="copilot/task-7", base_ref="main",
                        title="Bump widget")
    state.add_file(REPO, 7, "src/widget.py")
    state.set_permission(REPO, "maintainer", "write")
    state.set_permission(REPO, "lead", "admin")
    return state, gate, pr


def _repo_fields(payload: dict) -> dict:
    base = pr_payload({"number": 7, "user": {"login": AGENT}, "title": "", "head": {"sha": HEAD, "ref": "x"},
                       "base": {"sha": "0" * 40, "ref": "main"}})
    payload.update(repository=base["repository"], installation=INSTALL)
    return payload


def _bot(login: str) -> dict:
    return {"login": login, "id": 99, "type": "Bot"}


def _human(login: str) -> dict:
    return {"login": login, "id": 100 + len(login), "type": "User"}


def comment_payload(body: str, author: dict, *, action: str = "created", sender: dict | None = None) -> dict:
    payload = copy.deepcopy(github_fixture("issue_comment.created.1"))
    payload["action"] = action
    payload["issue"].update(number=7, pull_request={"url": f"https://api.github.com/repos/{REPO}/pulls/7"})
    payload["comment"].update(body=body, user=author, id=555)
    payload["sender"] = sender or author
    return _repo_fields(payload)


def label_payload(pr: dict, label: str, sender: dict) -> dict:
    payload = pr_payload(pr, action="labeled")
    payload["label"] = {"id": 1, "name": label, "color": "ededed", "default": False}
    payload["sender"] = sender
    return payload


def calls(state) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in state.calls]


def status_posts(state, sha: str) -> list[dict]:
    return [c.body for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}$")]


BASE_POLICY = [  # the policy of PR #7: at its base branch's head
    ("GET", f"/repos/{REPO}/pulls/7"),
    ("GET", f"/repos/{REPO}/branches/main"),
    ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),
]
# What a chain job adds to evaluate PR #7 after judging: it reuses the policy and files it already read.
AFTER_JUDGING = [
    ("GET", f"/repos/{REPO}/pulls/7"),  # read again under the PR's lock
    ("GET", f"/repos/{REPO}/pulls/7/reviews"),
    ("GET", f"/repos/{REPO}/pulls/7/commits"),
    ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
]
# A first evaluation of PR #7 (approved by maintainer) that a finding fails, with its first comment.
APPROVED_PR_FLAGGED = [
    ("GET", f"/repos/{REPO}/pulls/7"),
    ("GET", f"/repos/{REPO}/branches/main"),
    ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),
    ("GET", f"/repos/{REPO}/pulls/7/files"),
    ("GET", f"/repos/{REPO}/pulls/7/reviews"),
    ("GET", f"/repos/{REPO}/pulls/7/commits"),
    ("GET", f"/repos/{REPO}/collaborators/maintainer/permission"),
    ("GET", f"/repos/{REPO}/issues/7/timeline"),  # a human approved: did they set the agent on this work?
    ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
    ("GET", f"/repos/{REPO}/issues/7/comments"),
    ("POST", f"/repos/{REPO}/issues/7/comments"),
]
EVALUATION = [  # a first evaluation of PR #7 once its policy is cached
    ("GET", f"/repos/{REPO}/pulls/7"),
    ("GET", f"/repos/{REPO}/branches/main"),
    ("GET", f"/repos/{REPO}/pulls/7/files"),
    ("GET", f"/repos/{REPO}/pulls/7/reviews"),
    ("GET", f"/repos/{REPO}/pulls/7/commits"),
    ("POST", f"/repos/{REPO}/statuses/{HEAD}"),
]


def test_bot_deploy_comment_fails_the_pr_with_one_comment(world):
    """A bot commenting `/deploy` on an agent's PR: the status fails and one explanatory comment is
    posted; a second bot command edits that comment instead of adding another."""
    state, gate, pr = world
    gate.deliver("issue_comment", comment_payload("/deploy production", _bot("helper-bot[bot]")))
    gate.work()
    [failure] = status_posts(state, HEAD)
    assert failure["state"] == "failure"
    assert "/deploy" in failure["description"]
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        *BASE_POLICY,
        ("GET", "/app"),  # who am I: our own comments are never judged
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        *AFTER_JUDGING,
        ("GET", f"/repos/{REPO}/issues/7/comments"),  # is there a comment of ours already?
        ("POST", f"/repos/{REPO}/issues/7/comments"),
    ]
    [comment] = state.repo(REPO).comments[7]
    assert "/deploy" in comment["body"] and "To unblock" in comment["body"]

    state.calls.clear()
    gate.deliver("issue_comment", comment_payload("@mergify[bot] merge", _bot("helper-bot[bot]")) | {})
    gate.work()
    assert len(state.repo(REPO).comments[7]) == 1  # edited in place, never a stream
    assert ("PATCH", f"/repos/{REPO}/issues/comments/{comment['id']}") in calls(state)


def test_human_repeating_the_command_lifts_the_block(world):
    """After a bot's `/deploy`, a maintainer commenting `/deploy` takes responsibility: the block lifts."""
    state, gate, pr = world
    gate.deliver("issue_comment", comment_payload("/deploy", _bot("helper-bot[bot]")))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"
    gate.deliver("issue_comment", comment_payload("/deploy", _human("maintainer")))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "pending"  # back to waiting for an approval
    assert "nothing is blocked" in state.repo(REPO).comments[7][0]["body"]


def test_bot_automerge_label_is_removed_and_fails(world):
    """A bot applying `automerge`: the label is removed and the PR fails until a human re-applies it."""
    state, gate, pr = world
    state.set_labels(REPO, 7, ["automerge"])
    gate.deliver("pull_request", label_payload(pr, "automerge", _bot("renovate[bot]")))
    gate.work()
    assert calls(state) == [
        ("GET", "/app"),  # who am I: our own label changes are not a bot's
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        *BASE_POLICY,
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        # Removing a label needs issues: write, a credential of its own (cached like any other).
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("DELETE", f"/repos/{REPO}/issues/7/labels/automerge"),
        *AFTER_JUDGING,
        ("GET", f"/repos/{REPO}/issues/7/comments"),
        ("POST", f"/repos/{REPO}/issues/7/comments"),
    ]
    assert state.repo(REPO).labels[7] == []
    assert status_posts(state, HEAD)[-1]["state"] == "failure"


def test_human_automerge_label_is_allowed(world):
    """A human applying `automerge` is the human in the loop: no removal, no failure, no comment (the PR
    is re-evaluated, since rules may read labels, and still just waits for its approval)."""
    state, gate, pr = world
    state.set_labels(REPO, 7, ["automerge"])
    gate.deliver("pull_request", label_payload(pr, "automerge", _human("maintainer")))
    gate.work()
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        *BASE_POLICY,  # is the human one of the policy's configured bots?
        ("GET", f"/repos/{REPO}/pulls/7"),
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        *AFTER_JUDGING[1:],
    ]
    assert state.repo(REPO).labels[7] == ["automerge"]
    assert status_posts(state, HEAD)[-1]["state"] == "pending"


def test_workflow_dispatched_by_an_agent_fails_its_pr(world):
    """A workflow run whose triggering actor is an agent (workflow_dispatch) marks the PR failed."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("workflow_run.requested.1"))
    run = payload["workflow_run"]
    run.update(event="workflow_dispatch", head_sha=HEAD, head_branch="copilot/task-7", name="Deploy",
               path=".github/workflows/deploy.yml", triggering_actor=_bot(AGENT), actor=_bot(AGENT),
               pull_requests=[{"number": 7, "id": 1, "url": "x", "head": {}, "base": {}}])
    payload["sender"] = _bot(AGENT)
    gate.deliver("workflow_run", _repo_fields(payload))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"
    assert "Deploy" in status_posts(state, HEAD)[-1]["description"]
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("GET", f"/repos/{REPO}/pulls/7"),
        ("GET", f"/repos/{REPO}/branches/main"),  # the default branch's policy judges the run
        ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),
        ("GET", f"/repos/{REPO}/pulls/7/files"),  # did the PR change the workflow that ran?
        *AFTER_JUDGING,
        ("GET", f"/repos/{REPO}/issues/7/comments"),
        ("POST", f"/repos/{REPO}/issues/7/comments"),
    ]


def _deployment(state, sender: dict, triggering_actor: dict | None = None, pulls: bool = True,
                sha: str = HEAD) -> dict:
    state.add_workflow_run(REPO, 4242, head_sha=sha, head_branch="copilot/task-7", event="workflow_dispatch",
                           name="Deploy", actor=sender, pull_requests=[7] if pulls else [],
                           triggering_actor=triggering_actor or sender)
    payload = copy.deepcopy(github_fixture("deployment_protection_rule.requested.1"))
    payload["deployment_callback_url"] = f"https://api.github.com/repos/{REPO}/actions/runs/4242/deployment_protection_rule"
    payload["pull_requests"][0].update(number=7)
    if not pulls:
        payload["pull_requests"] = []
    payload["sha"] = sha
    payload["sender"] = sender
    return _repo_fields(payload)


def test_production_deploy_of_unapproved_agent_pr_is_rejected(world):
    """The deployment protection callback says `rejected` for an agent's unapproved change."""
    state, gate, pr = world
    gate.deliver("deployment_protection_rule", _deployment(state, _human("maintainer")))
    gate.work()
    [callback] = state.repo(REPO).protection_rule_callbacks
    assert callback["state"] == "rejected" and callback["environment_name"] == "production"
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("GET", f"/repos/{REPO}/branches/main"),  # the default branch's policy, never the deployed ref's
        ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),
        ("GET", f"/repos/{REPO}/actions/runs/4242"),  # who triggered (or re-ran) the run
        ("GET", f"/repos/{REPO}/commits/{HEAD}/pulls"),  # every open PR at the deployed commit
        ("GET", f"/repos/{REPO}/pulls/7"),  # the PR's verdict, without posting a status
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        ("GET", f"/repos/{REPO}/pulls/7/reviews"),
        ("GET", f"/repos/{REPO}/pulls/7/commits"),
        ("POST", f"/repos/{REPO}/actions/runs/4242/deployment_protection_rule"),
    ]


def test_production_deploy_of_approved_agent_pr_is_approved(world):
    """Once a human with write access approved the agent's head, its production deployment is approved."""
    state, gate, pr = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("deployment_protection_rule", _deployment(state, _human("lead")))
    gate.work()
    [callback] = state.repo(REPO).protection_rule_callbacks
    assert callback["state"] == "approved"


def test_deploy_started_by_an_agent_is_rejected_even_when_approved(world):
    """An agent that may not deploy cannot start a production deployment, approved change or not."""
    state, gate, pr = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("deployment_protection_rule", _deployment(state, _bot(AGENT)))
    gate.work()
    assert state.repo(REPO).protection_rule_callbacks[0]["state"] == "rejected"


def test_merge_group_gets_a_verdict_on_its_sha(world):
    """The merge-group SHA gets a status: failure while a queued agent PR lacks approval, success after."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("merge_group.checks_requested.1"))
    group_sha = "9" * 40
    state.repo(REPO).extra_shas.add(group_sha)
    payload["merge_group"].update(head_sha=group_sha,
                                  head_ref=f"refs/heads/gh-readonly-queue/main/pr-7-{HEAD}",
                                  head_commit=dict(payload["merge_group"]["head_commit"], message="Bump widget (#7)"))
    payload = _repo_fields(payload)
    gate.deliver("merge_group", payload)
    gate.work()
    [status] = status_posts(state, group_sha)
    assert status["state"] == "failure" and status["context"] == "agentgate"
    assert calls(state) == [  # the queued PR is evaluated, and only the group's SHA gets a status
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        *BASE_POLICY,
        ("GET", f"/repos/{REPO}/pulls/7/files"),
        ("GET", f"/repos/{REPO}/pulls/7/reviews"),
        ("GET", f"/repos/{REPO}/pulls/7/commits"),
        ("POST", f"/repos/{REPO}/statuses/{group_sha}"),
    ]

    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("merge_group", payload)
    gate.work()
    assert status_posts(state, group_sha)[-1]["state"] == "success"


def test_forged_status_is_overwritten(world):
    """An `agentgate` status posted by anyone but the App is overwritten with the real verdict, and a bot
    forging it fails the PR."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("status.event.1"))
    payload.update(sha=HEAD, context="agentgate", state="success", description="looks good",
                   sender=_bot("sneaky[bot]"))
    payload["commit"]["sha"] = HEAD
    gate.deliver("status", _repo_fields(payload))
    gate.work()
    posted = status_posts(state, HEAD)
    assert posted and posted[-1]["state"] == "failure"
    assert "sneaky[bot]" in posted[-1]["description"]


def test_status_forged_by_a_human_fails_too(world):
    """Anyone but agentgate posting the `agentgate` status fails the PR, a human included, until a fresh
    approval of the head; exactly these calls are made."""
    state, gate, pr = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    payload = copy.deepcopy(github_fixture("status.event.1"))
    payload.update(sha=HEAD, context="agentgate", state="success", description="trust me", sender=_human("mallory"))
    gate.deliver("status", _repo_fields(payload))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "failure" and "mallory" in last["description"]
    assert calls(state) == [
        # (A human's account is never agentgate's own App: no need to ask who agentgate is.)
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("GET", f"/repos/{REPO}/commits/{HEAD}/pulls"),  # whose head is this commit?
        *APPROVED_PR_FLAGGED,
    ]


def test_own_status_event_is_ignored(world):
    """agentgate's own statuses come back as `status` events; they cause no calls beyond identifying itself."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("status.event.1"))
    payload.update(sha=HEAD, context="agentgate", state="pending", sender=_bot("agentgate[bot]"))
    gate.deliver("status", _repo_fields(payload))
    gate.work()
    assert not status_posts(state, HEAD)
    assert all(path in ("/app",) for _, path in calls(state))


def test_approval_edited_by_someone_else_is_tampering(world):
    """A review edited by someone other than its author fails the PR."""
    state, gate, pr = world
    review = state.add_review(REPO, 7, "maintainer", "APPROVED")
    payload = review_payload(pr, review, action="edited")
    payload["sender"] = _human("mallory")
    gate.deliver("pull_request_review", payload)
    gate.work()
    [only] = status_posts(state, HEAD)  # never a passing status in between
    assert only["state"] == "failure" and "mallory" in only["description"]
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        *APPROVED_PR_FLAGGED,
    ]


def test_agent_push_to_protected_branch_is_marked_failed(world):
    """An agent's direct push to main (protection bypassed) gets a failure status on the pushed commit."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("push.event.1"))
    pushed = "8" * 40
    state.repo(REPO).extra_shas.add(pushed)
    payload.update(ref="refs/heads/main", before=DEFAULT_HEAD, after=pushed, created=False, deleted=False,
                   forced=True, sender=_bot(AGENT), pusher={"name": AGENT, "email": None})
    gate.deliver("push", _repo_fields(payload))
    gate.work()
    [status] = status_posts(state, pushed)
    assert status["state"] == "failure" and "pushed 8888888 directly" in status["description"]
    assert calls(state) == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("GET", f"/repos/{REPO}/contents/.agentgate.yml"),  # the policy before the push
        ("GET", f"/repos/{REPO}/commits/{pushed}/pulls"),  # a merge agentgate passed?
        ("POST", f"/repos/{REPO}/statuses/{pushed}"),
    ]


def test_requester_cannot_approve_the_agents_work(world):
    """The human who assigned the issue to the agent cannot be the approval of the agent's PR that fixes it;
    another maintainer can."""
    state, gate, pr = world
    payload = copy.deepcopy(github_fixture("issues.assigned.1"))
    payload["issue"]["number"] = 3
    payload.update(assignee=_bot(AGENT), sender=_human("lead"))
    gate.deliver("issues", _repo_fields(payload))
    pr["body"] = "Implements the widget.\n\nFixes #3"
    state.add_review(REPO, 7, "lead", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr, action="synchronize"))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "pending"
    details = requests.get(last["target_url"], params={"format": "json"}, timeout=5).json()
    assert "Approval not counted: lead set the agent on this task" in [
        r["message"] for r in details["verdict"]["reasons"]]
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr, action="synchronize"))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "success"


def test_human_summoning_an_agent_becomes_its_requester(world):
    """A human commenting `@copilot please fix` on the PR is the agent's requester there."""
    state, gate, pr = world
    gate.deliver("issue_comment", comment_payload("@copilot please fix the tests", _human("lead")))
    state.add_review(REPO, 7, "lead", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr, action="synchronize"))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "pending"


def test_policy_change_is_judged_by_base_and_previews_flips(world):
    """A PR whose head loosens `.agentgate.yml` is judged by the base policy (it touches a sensitive
    path, so it waits for two approvals). A preview re-reads the open PRs, so only a human with write
    access gets one: the agent's PR gets none, a maintainer's comment lists the PRs the new policy flips."""
    state, gate, pr = world
    loosen = state.add_pull(REPO, 9, user=AGENT, head_sha="5" * 40, head_ref="copilot/policy", base_ref="main",
                            title="Relax agentgate")
    state.add_file(REPO, 9, ".agentgate.yml")
    state.set_content(REPO, ".agentgate.yml", "version: 1\napprovals:\n  required: 0\n  sensitive: 0\n",
                      ref="5" * 40)
    gate.deliver("pull_request", pr_payload(loosen))
    gate.work()
    [status] = status_posts(state, "5" * 40)
    assert status["state"] == "pending" and "Needs 2 more approvals" in status["description"]
    assert 9 not in state.repo(REPO).comments
    relax = state.add_pull(REPO, 10, user="lead", head_sha="6" * 40, head_ref="policy", base_ref="main",
                           title="Relax agentgate")
    state.add_file(REPO, 10, ".agentgate.yml")
    state.set_content(REPO, ".agentgate.yml", "version: 1\napprovals:\n  required: 0\n  sensitive: 0\n",
                      ref="6" * 40)
    gate.deliver("pull_request", pr_payload(relax))
    gate.work()
    [comment] = state.repo(REPO).comments[10]
    assert "Policy change preview" in comment["body"]
    assert "#7 Bump widget" in comment["body"] and "success" in comment["body"]
    assert "lets bots and agents do more" in comment["body"]
    # Evaluating again (nothing changed) neither recomputes nor re-posts the preview.
    state.calls.clear()
    gate.deliver("pull_request", pr_payload(relax, action="synchronize"))
    gate.work()
    assert not state.calls_matching("GET", rf"/repos/{REPO}/pulls")
    assert len(state.repo(REPO).comments[10]) == 1
    assert "at `6666666`, against 2 open pull request(s)" in state.repo(REPO).comments[10][0]["body"]


def test_policy_preview_rate_limited_is_rescheduled(world):
    """A new head pushed within the preview interval is not dropped: its preview is scheduled for later."""
    from rq.registry import ScheduledJobRegistry

    state, gate, pr = world
    first = state.add_pull(REPO, 9, user="lead", head_sha="5" * 40, head_ref="policy", base_ref="main",
                           title="Policy")
    state.add_file(REPO, 9, ".agentgate.yml")
    state.set_content(REPO, ".agentgate.yml", "version: 1\n", ref="5" * 40)
    gate.deliver("pull_request", pr_payload(first))
    gate.work()
    second = state.add_pull(REPO, 9, user="lead", head_sha="6" * 40, head_ref="policy", base_ref="main",
                            title="Policy")
    state.set_content(REPO, ".agentgate.yml", "version: 1\napprovals: {required: 0}\n", ref="6" * 40)
    gate.deliver("pull_request", pr_payload(second, action="synchronize"))
    gate.work(allow_scheduled=True)
    scheduled = ScheduledJobRegistry("agentgate", connection=redis.Redis.from_url(E2E_REDIS_URL)).get_job_ids()
    assert scheduled == ["preview-9-666666666666"]
    assert "`5555555`" in state.repo(REPO).comments[9][0]["body"]  # the older preview stays until then


def test_a_comment_in_agentgates_name_it_did_not_write_is_judged(world):
    """A comment in agentgate's name with agentgate's marker that agentgate did not write (an agent holding
    one of its tokens) is judged like any bot's command; agentgate's genuine comments are recognised by
    their id or the body it is posting, never by the login or the marker."""
    state, gate, pr = world
    body = "<!-- agentgate:pr-comment -->\n/deploy\n- x commented `/deploy`"
    gate.deliver("issue_comment", comment_payload(body, _bot("agentgate[bot]")))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"


def test_agent_rerunning_a_humans_deploy_is_rejected(world):
    """The run's triggering actor counts: an agent re-running a human's approved deploy is still an agent's."""
    state, gate, pr = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("deployment_protection_rule", _deployment(state, _human("lead"), triggering_actor=_bot(AGENT)))
    gate.work()
    assert state.repo(REPO).protection_rule_callbacks[0]["state"] == "rejected"


def test_deploy_without_a_pr_is_judged_by_its_commit(world):
    """With no pull request, the deployed commit decides: an agent's commit is rejected, a human's approved."""
    state, gate, pr = world
    agent_sha, human_sha = "a1" * 20, "b2" * 20
    state.repo(REPO).extra_shas.update({agent_sha, human_sha})
    state.add_commit(REPO, 99, agent_sha, message="change", author=AGENT, parents=[DEFAULT_HEAD])
    state.add_commit(REPO, 98, human_sha, message="change", author="lead", parents=[DEFAULT_HEAD])
    gate.deliver("deployment_protection_rule", _deployment(state, _human("lead"), pulls=False, sha=agent_sha))
    gate.work()
    assert state.repo(REPO).protection_rule_callbacks[-1]["state"] == "rejected"
    gate.deliver("deployment_protection_rule", _deployment(state, _human("lead"), pulls=False, sha=human_sha))
    gate.work()
    assert state.repo(REPO).protection_rule_callbacks[-1]["state"] == "approved"


def test_comment_found_again_when_the_store_forgot_it(world):
    """If the store lost which comment is ours, agentgate finds it by its marker and edits it: still one."""
    state, gate, pr = world
    gate.deliver("issue_comment", comment_payload("/deploy", _bot("helper-bot[bot]")))
    gate.work()
    redis.Redis.from_url(E2E_REDIS_URL).delete(*redis.Redis.from_url(E2E_REDIS_URL).keys("agentgate:comment*"))
    gate.deliver("issue_comment", comment_payload("/merge", _bot("helper-bot[bot]")))
    gate.work()
    [comment] = state.repo(REPO).comments[7]
    assert "/merge" in comment["body"] and "/deploy" in comment["body"]


def test_policy_pushed_to_main_reevaluates_open_prs(world):
    """A human merging a stricter `.agentgate.yml` into main re-evaluates the open PRs into main at once."""
    state, gate, pr = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr, action="synchronize"))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "success"
    new_head = "e" * 40
    state.repo(REPO).branches["main"] = new_head
    state.set_content(REPO, ".agentgate.yml", "version: 1\napprovals:\n  required: 2\n", ref=new_head)
    payload = copy.deepcopy(github_fixture("push.event.1"))
    payload.update(ref="refs/heads/main", before=DEFAULT_HEAD, after=new_head, created=False, deleted=False,
                   forced=False, sender=_human("lead"), pusher={"name": "lead", "email": None})
    payload["commits"] = [{"id": new_head, "message": "Tighten policy", "added": [], "removed": [],
                           "modified": [".agentgate.yml"], "author": {"username": "lead"}}]
    gate.deliver("push", _repo_fields(payload))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "pending" and "Needs 1 more approval" in last["description"]


def test_task_context_from_an_issue_a_maintainer_approved(world):
    """With `task.required`, an agent's PR must resolve an issue a human with write access labelled
    `agent-approved`: until then it waits for that label (a human can give it); then for the usual approval."""
    state, gate, pr = world
    state.set_content(REPO, ".agentgate.yml", "version: 1\ntask:\n  required: true\n", ref=DEFAULT_HEAD)
    state.add_issue(REPO, 3, title="Make widgets faster")
    pr["body"] = "Speeds up widgets.\n\nFixes #3"
    gate.deliver("pull_request", pr_payload(pr, action="edited"))
    gate.work()
    waiting = status_posts(state, HEAD)[-1]
    assert waiting["state"] == "pending" and "label #3 agent-approved" in waiting["description"]
    state.set_labels(REPO, 3, ["agent-approved"])
    state.add_event(REPO, 3, {"event": "labeled", "label": {"name": "agent-approved"}, "actor": {"login": "lead"}})
    labeled = copy.deepcopy(github_fixture("issues.labeled.1"))
    labeled["issue"].update(number=3)
    labeled.update(label={"name": "agent-approved"}, sender=_human("lead"))
    gate.deliver("issues", _repo_fields(labeled))  # labelling the task re-evaluates the PR resolving it
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "pending" and last["description"].startswith("Needs 1 more approval")


def test_requester_found_in_the_issue_history_without_the_delivery(world):
    """Even if the assignment delivery was never received, the resolved issue's history names the human
    who assigned it to the agent, and that human's approval does not count."""
    state, gate, pr = world
    state.add_issue(REPO, 3, title="Make widgets faster")
    state.add_event(REPO, 3, {"event": "assigned", "assignee": _bot(AGENT), "assigner": _human("lead"),
                              "actor": _human("lead")})
    pr["body"] = "Fixes #3"
    state.add_review(REPO, 7, "lead", "APPROVED")
    gate.deliver("pull_request", pr_payload(pr, action="edited"))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "pending"
    assert ("GET", f"/repos/{REPO}/issues/3/timeline") in calls(state)


def test_agentgate_own_actions_are_audited(world):
    """What agentgate did (removed a bot's label, posted the status, commented) is in the audit log, next to
    the bot's action that caused it."""
    from gatekeeper.state import audit

    state, gate, pr = world
    state.set_labels(REPO, 7, ["automerge"])
    gate.deliver("pull_request", label_payload(pr, "automerge", _bot("renovate[bot]")))
    gate.work()
    entries = list(audit.query(redis.Redis.from_url(E2E_REDIS_URL)))
    assert [(e.actor, e.actor_kind, e.event, e.action) for e in entries] == [
        ("renovate[bot]", "bot", "pull_request", "labeled"),
        ("agentgate", "bot", "agentgate", "remove_label"),
        ("agentgate", "bot", "agentgate", "status"),
        ("agentgate", "bot", "agentgate", "comment"),
    ]


def test_an_agent_acting_with_agentgates_identity_is_judged_like_any_bot(world):
    """On GitHub an agent's token comes from agentgate's own App, so its actions bear agentgate's login.
    A command comment, a trigger label and the removal of a label agentgate did not remove are judged
    like any bot's: only what agentgate itself just did is recognised as its own."""
    state, gate, pr = world
    me = _bot("agentgate[bot]")
    gate.deliver("issue_comment", comment_payload("/deploy production", me))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"
    [comment] = state.repo(REPO).comments[7]
    assert "/deploy" in comment["body"]
    state.set_labels(REPO, 7, ["automerge"])
    gate.deliver("pull_request", label_payload(pr, "automerge", me))
    gate.work()
    assert ("DELETE", f"/repos/{REPO}/issues/7/labels/automerge") in calls(state)
    # agentgate's own comment (its delivery names the same login) is still not judged: the body is its own.
    state.calls.clear()
    own = comment_payload(comment["body"], me)
    own["comment"]["id"] = comment["id"]
    gate.deliver("issue_comment", own)
    gate.work()
    assert not any(m == "POST" and "/statuses/" in p for m, p in calls(state))
