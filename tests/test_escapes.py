"""End to end, one test per escape of issue 7 ("Escapes found"): each walks around the gate the way an
agent (or a careless setup) would, through signed deliveries to a real `agentgate serve`, `agentgate
worker --burst` and the fake GitHub, and asserts what GitHub was told: the state of the last
`agentgate` status on a commit, the deployment protection answer, the pages. Nothing from `gatekeeper`
is imported: these tests hold whatever the code looks like inside. Messages are never asserted on,
only states, so the wording may change freely."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.conftest import github_fixture
from tests.e2e import (
    APP_ID,
    E2E_REDIS_URL,
    INSTALLATION,
    REPO,
    Agentgate,
    pr_payload,
    review_payload,
    running_agentgate,
)
from tests.fakegithub import FakeGitHub, FakeState, running_fake_github
from tests.keys import app_key_pair

pytestmark = pytest.mark.e2e

AGENT = "copilot-swe-agent[bot]"
HEAD = "7" * 40
DEFAULT_HEAD = "d" * 40
POLICY = ".agentgate.yml"


@dataclass
class Env:
    fake: FakeGitHub
    gate: Agentgate
    private_key: str
    tmp: pytest.TempPathFactory


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    with running_fake_github(state) as fake, \
            running_agentgate(fake, private, tmp_path_factory.mktemp("gate")) as gate:
        yield Env(fake, gate, private, tmp_path_factory)


@pytest.fixture
def world(env):
    """A fresh repository with an agent's PR #7 into main (one ordinary file); maintainer, alice and
    carol have write access, lead is an admin; the call log starts empty."""
    state = env.fake.state
    state.reset()
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()  # tokens, caches, findings and decisions of the last test
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.repo(REPO).branches["main"] = DEFAULT_HEAD
    pr = state.add_pull(REPO, 7, user=AGENT, head_sha=HEAD, head_ref="copilot/task-7", base_ref="main",
                        title="Bump widget")
    state.add_file(REPO, 7, "src/widget.py")
    for login in ("maintainer", "alice", "carol"):
        state.set_permission(REPO, login, "write")
    state.set_permission(REPO, "lead", "admin")
    return state, env.gate, pr


# -- helpers ---------------------------------------------------------------------------------------------

def ts(seconds_from_now: float = 0) -> str:
    """A GitHub timestamp (UTC, second precision, `Z`) relative to now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).strftime("%Y-%m-%dT%H:%M:%SZ")


def bot(login: str) -> dict[str, Any]:
    return {"login": login, "id": 900 + len(login), "type": "Bot"}


def human(login: str) -> dict[str, Any]:
    return {"login": login, "id": 100 + len(login), "type": "User"}


def repo_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """Point one of GitHub's example payloads at the fake's repository and installation."""
    base = pr_payload({"number": 7, "user": {"login": AGENT}, "title": "", "head": {"sha": HEAD, "ref": "x"},
                       "base": {"sha": "0" * 40, "ref": "main"}})
    payload.update(repository=base["repository"], installation={"id": INSTALLATION})
    return payload


def set_policy(state: FakeState, text: str) -> None:
    """`.agentgate.yml` at the head of main, where agentgate reads it."""
    state.set_content(REPO, POLICY, text, ref=DEFAULT_HEAD)


def states(state: FakeState, sha: str) -> list[str]:
    """The states of every `agentgate` status posted on a commit, oldest first."""
    return [c.body["state"] for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}$")
            if (c.body or {}).get("context") == "agentgate"]


def last_status(state: FakeState, sha: str) -> dict[str, Any]:
    posted = [c.body for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{sha}$")
              if (c.body or {}).get("context") == "agentgate"]
    assert posted, f"no agentgate status was posted on {sha[:7]}"
    return posted[-1]


def last_state(state: FakeState, sha: str) -> str:
    return str(last_status(state, sha)["state"])


def deliver_pr(gate: Agentgate, pr: dict[str, Any], action: str = "synchronize") -> None:
    gate.deliver("pull_request", pr_payload(pr, action=action))


def evaluate(gate: Agentgate, pr: dict[str, Any], action: str = "synchronize") -> None:
    deliver_pr(gate, pr, action)
    gate.work()


def comment_payload(body: str, author: dict[str, Any], *, action: str = "created",
                    sender: dict[str, Any] | None = None, number: int = 7, comment_id: int = 555,
                    created_at: str | None = None, updated_at: str | None = None,
                    previous_body: str | None = None) -> dict[str, Any]:
    payload = copy.deepcopy(github_fixture("issue_comment.created.1"))
    payload["action"] = action
    payload["issue"].update(number=number, pull_request={"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"})
    created = created_at or ts(-5)
    payload["comment"].update(body=body, user=author, id=comment_id, created_at=created,
                              updated_at=updated_at or created)
    if action == "edited":
        payload["changes"] = {"body": {"from": previous_body or ""}}
    payload["sender"] = sender or author
    return repo_fields(payload)


def label_payload(pr: dict[str, Any], label: str, sender: dict[str, Any], action: str = "labeled") -> dict[str, Any]:
    payload = pr_payload(pr, action=action)
    payload["label"] = {"id": 1, "name": label, "color": "ededed", "default": False}
    payload["pull_request"]["updated_at"] = ts()  # GitHub stamps the PR with the label change
    payload["sender"] = sender
    return payload


def assigned_payload(issue: int, assignee: dict[str, Any], sender: dict[str, Any]) -> dict[str, Any]:
    payload = copy.deepcopy(github_fixture("issues.assigned.1"))
    payload["issue"].update(number=issue, assignee=assignee, assignees=[assignee])
    payload["issue"].pop("pull_request", None)
    payload.update(assignee=assignee, sender=sender)
    return repo_fields(payload)


def deployment_payload(state: FakeState, sha: str, pulls: list[int], requester: dict[str, Any], *,
                       run_id: int = 4242, environment: str = "production",
                       head_branch: str = "copilot/task-7") -> dict[str, Any]:
    """A `deployment_protection_rule.requested` for a run the fake knows, started by `requester`."""
    state.add_workflow_run(REPO, run_id, head_sha=sha, head_branch=head_branch, event="workflow_dispatch",
                           name="Deploy", actor=requester, triggering_actor=requester, pull_requests=pulls)
    payload = copy.deepcopy(github_fixture("deployment_protection_rule.requested.1"))
    template = payload["pull_requests"][0]
    payload["pull_requests"] = [dict(template, number=n, id=state.repo(REPO).pulls[n]["id"]) for n in pulls]
    payload["deployment_callback_url"] = (f"https://api.github.com/repos/{REPO}/actions/runs/{run_id}"
                                          "/deployment_protection_rule")
    payload["deployment"].update(sha=sha, ref=head_branch, environment=environment, creator=requester)
    payload.update(environment=environment, sha=sha, ref=head_branch, sender=requester)
    return repo_fields(payload)


def protection_answer(state: FakeState, run_id: int) -> str:
    answers = [c["state"] for c in state.repo(REPO).protection_rule_callbacks if c["run_id"] == run_id]
    assert answers, f"no deployment protection answer for run {run_id}"
    return str(answers[-1])


def workflow_run_payload(*, event: str, head_branch: str, name: str, path: str, starter: dict[str, Any],
                         pulls: list[int], run_id: int = 5151, sha: str = HEAD) -> dict[str, Any]:
    payload = copy.deepcopy(github_fixture("workflow_run.requested.1"))
    run = payload["workflow_run"]
    run.update(id=run_id, event=event, head_sha=sha, head_branch=head_branch, name=name, path=path,
               triggering_actor=starter, actor=starter,
               pull_requests=[{"number": n, "id": n, "url": f"https://api.github.com/repos/{REPO}/pulls/{n}",
                               "head": {"ref": head_branch, "sha": sha}, "base": {"ref": "main", "sha": DEFAULT_HEAD}}
                              for n in pulls])
    payload["sender"] = starter
    return repo_fields(payload)


def second_pr_on_head(state: FakeState, base_ref: str = "feature/x") -> dict[str, Any]:
    """PR #8: the same agent, the same head commit as PR #7, into an unprotected branch."""
    pr = state.add_pull(REPO, 8, user=AGENT, head_sha=HEAD, head_ref="copilot/task-7", base_ref=base_ref,
                        title="Bump widget (feature)")
    state.add_file(REPO, 8, "src/widget.py")
    return pr


# -- 1. a second PR on the same commit ---------------------------------------------------------------------

def test_second_pr_on_the_same_commit_does_not_turn_it_green(world):
    """Rule: a commit status belongs to a commit, not to a PR. The `agentgate` status on a SHA is the most
    severe verdict over every open PR whose head is that SHA: an agent's PR A into main waits for an
    approval (pending); the same agent opening PR B with the same head into an unprotected branch (B alone
    would pass) must not post `success` over it."""
    state, gate, pr_a = world
    pr_b = second_pr_on_head(state)
    deliver_pr(gate, pr_a, "opened")  # the queue is first in, first out: A is judged, then B
    deliver_pr(gate, pr_b, "opened")
    gate.work()
    assert states(state, HEAD)[0] == "pending"  # A on its own
    assert last_state(state, HEAD) == "pending", \
        f"PR #8's verdict was posted over PR #7's on the shared head: {states(state, HEAD)}"


def test_deploying_the_shared_commit_through_the_other_pr_is_rejected(world):
    """Rule: no PR's verdict stands for another's. With PR A (into main, unapproved) and PR B (same head,
    unprotected branch) open, a production deployment of that commit started by a human is rejected,
    whether GitHub names PR B in the request or names no pull request at all."""
    state, gate, pr_a = world
    pr_b = second_pr_on_head(state)
    deliver_pr(gate, pr_a, "opened")
    deliver_pr(gate, pr_b, "opened")
    gate.deliver("deployment_protection_rule", deployment_payload(state, HEAD, [8], human("lead"), run_id=4242))
    gate.deliver("deployment_protection_rule", deployment_payload(state, HEAD, [], human("lead"), run_id=4243))
    gate.work()
    assert protection_answer(state, 4242) == "rejected", \
        "deploying the pending PR #7's head through PR #8 was approved"
    assert protection_answer(state, 4243) == "rejected"


def test_bot_merging_the_pending_pr_is_flagged_although_another_pr_passed_its_head(world):
    """Rule: the record "agentgate passed this commit", which the push check trusts, is the verdict over
    every open PR on the commit. PR A (pending) and PR B (same head, unprotected, passing) are open; a bot
    with bypass rights merges PR A into main: the merge commit is a push that went around review and gets
    `failure`, however PR B was judged."""
    state, gate, pr_a = world
    pr_b = second_pr_on_head(state)
    deliver_pr(gate, pr_a, "opened")
    deliver_pr(gate, pr_b, "opened")
    gate.work()
    merge = "4" * 40
    state.repo(REPO).pulls[7].update(state="closed", merged=True, merged_at=ts(), closed_at=ts(),
                                     merge_commit_sha=merge)
    state.repo(REPO).branches["main"] = merge
    payload = copy.deepcopy(github_fixture("push.event.1"))
    payload.update(ref="refs/heads/main", before=DEFAULT_HEAD, after=merge, created=False, deleted=False,
                   forced=False, sender=bot("merge-robot[bot]"), pusher={"name": "merge-robot[bot]", "email": None})
    payload["commits"] = [{"id": merge, "message": "Merge pull request #7 from acme/copilot/task-7",
                           "added": [], "removed": [], "modified": ["src/widget.py"],
                           "author": {"username": "merge-robot[bot]"}}]
    gate.deliver("push", repo_fields(payload))
    gate.work()
    assert states(state, merge) and last_state(state, merge) == "failure", \
        f"the bot's merge of the pending PR #7 was taken for a passed merge: {states(state, merge)}"


# -- 2. an edited comment is not backdated -----------------------------------------------------------------

def _approved_by_maintainer(state: FakeState, gate: Agentgate, pr: dict[str, Any], approved_at: str) -> None:
    """maintainer approved the head at `approved_at` and the PR was evaluated (the caller checks with
    `_started_approved` that it passed before what follows)."""
    state.add_review(REPO, 7, "maintainer", "APPROVED", submitted_at=approved_at)
    evaluate(gate, pr)


def _started_approved(state: FakeState) -> None:
    assert states(state, HEAD)[0] == "success"  # the starting point: an approved agent PR


def test_bot_editing_its_old_comment_into_a_command_counts_from_the_edit(world):
    """Rule: an edit is a new action, counted from the moment of the edit. A human approved the head at T;
    afterwards a bot edits its own comment written before T into `/deploy production`: the approval
    predates the command, so the PR fails until a human repeats the command or approves afresh."""
    state, gate, pr = world
    approved_at = ts(-3600)
    _approved_by_maintainer(state, gate, pr, approved_at)
    helper = bot("helper-bot[bot]")
    old = state.add_comment(REPO, 7, "/deploy production", user=helper, created_at=ts(-7200), updated_at=ts(-1))
    gate.deliver("issue_comment", comment_payload(
        "/deploy production", helper, action="edited", comment_id=old["id"], created_at=old["created_at"],
        updated_at=old["updated_at"], previous_body="Thanks, looks fine to me."))
    gate.work()
    _started_approved(state)
    assert last_state(state, HEAD) == "failure", \
        f"the command edited in after the approval was lifted by it: {states(state, HEAD)}"


def test_bot_editing_a_humans_old_comment_counts_from_the_edit(world):
    """Rule: a comment edited by someone other than its author is tampering, and like any edit it counts
    from the moment of the edit: a bot rewriting a maintainer's comment (written before the approval)
    into `/deploy production` after the approval fails the PR until a fresh approval."""
    state, gate, pr = world
    _approved_by_maintainer(state, gate, pr, ts(-3600))
    theirs = state.add_comment(REPO, 7, "/deploy production", user=human("maintainer"), created_at=ts(-7200),
                               updated_at=ts(-1))
    gate.deliver("issue_comment", comment_payload(
        "/deploy production", human("maintainer"), action="edited", sender=bot("helper-bot[bot]"),
        comment_id=theirs["id"], created_at=theirs["created_at"], updated_at=theirs["updated_at"],
        previous_body="Will look at this tomorrow."))
    gate.work()
    _started_approved(state)
    assert last_state(state, HEAD) == "failure", \
        f"the bot's edit of an old comment was lifted by an earlier approval: {states(state, HEAD)}"


# -- 3. production deployment of an agent change into an unprotected branch ---------------------------------

def test_production_deploy_of_an_unapproved_agent_change_into_an_unprotected_branch_is_rejected(world):
    """Rule: a deployment to a protected environment rests on a qualifying human approval of the agent's
    change, not on a verdict that needed none: an agent's PR into `feature/x` passes without approval,
    but deploying its head to production, even when a human starts it, is rejected."""
    state, gate, _ = world
    head = "8" * 40
    feature = state.add_pull(REPO, 8, user=AGENT, head_sha=head, head_ref="copilot/task-8", base_ref="feature/x",
                             title="Tune widget")
    state.add_file(REPO, 8, "src/widget.py")
    deliver_pr(gate, feature, "opened")
    gate.deliver("deployment_protection_rule",
                 deployment_payload(state, head, [8], human("lead"), head_branch="copilot/task-8"))
    gate.work()
    assert last_state(state, head) == "success"  # unprotected base: nothing to approve for the merge
    assert protection_answer(state, 4242) == "rejected", \
        "an agent's change no human approved was deployed to production"


# -- 4. the requester exclusion, without "Fixes #N" -------------------------------------------------------------

def _assignment_of_issue_5(state: FakeState, assignee: dict[str, Any], assigner: dict[str, Any]) -> None:
    state.add_issue(REPO, 5, title="Widgets are slow", user=assigner["login"])
    state.add_event(REPO, 5, {"event": "assigned", "assignee": assignee, "assigner": assigner, "actor": assigner,
                              "created_at": ts(-7200)})


def test_requester_who_assigned_the_issue_cannot_approve_without_a_fixes_link(world):
    """Rule: the human who set the agent on the task cannot be its approval, however the agent words its PR.
    alice assigns issue #5 to the agent (the `issues.assigned` delivery arrives); the agent's PR #7 does
    not mention #5; alice's approval of the head must not count (the PR keeps waiting)."""
    state, gate, pr = world
    _assignment_of_issue_5(state, bot(AGENT), human("alice"))
    gate.deliver("issues", assigned_payload(5, bot(AGENT), human("alice")))
    pr["body"] = "Makes widgets faster by caching the lookup."
    review = state.add_review(REPO, 7, "alice", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    assert last_state(state, HEAD) == "pending", \
        f"alice, who set the agent on #5, approved its work: {states(state, HEAD)}"


def test_requester_found_through_the_prs_timeline_when_the_delivery_was_lost(world):
    """Rule: the requester is read from every link the platform keeps, not only from "Fixes #N" in a body
    the agent writes. The assignment delivery was lost; the PR's body names no issue, but the PR's own
    timeline shows it `cross-referenced` from issue #5 (the agent reported on #5 that it opened #7), and
    issue #5's history shows alice assigned it to the agent: alice's approval must not count.

    (Chosen link: a `cross-referenced` timeline event on PR #7 whose `source.issue` is issue #5, as
    GET /repos/{o}/{r}/issues/7/timeline returns it; a `connected` event would not name the other side
    in the REST API.)"""
    state, gate, pr = world
    _assignment_of_issue_5(state, bot(AGENT), human("alice"))
    state.add_comment(REPO, 5, "I've opened #7 for this.", user=bot(AGENT))
    state.repo(REPO).timeline.setdefault(7, []).append(  # the fake renders issue 5 in full as the source
        {"event": "cross-referenced", "actor": bot(AGENT), "created_at": ts(-600),
         "source": {"type": "issue", "issue": 5}})
    pr["body"] = "Makes widgets faster by caching the lookup."
    review = state.add_review(REPO, 7, "alice", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    assert last_state(state, HEAD) == "pending", \
        f"alice, who assigned #5 to the agent, approved its work: {states(state, HEAD)}"


def _runner_pr(state: FakeState) -> dict[str, Any]:
    """`.agentgate.yml` declares `my-runner` (a plain User account) an agent; my-runner opens PR #7."""
    set_policy(state, "version: 1\nidentities:\n  agents: [my-runner]\n")
    return state.add_pull(REPO, 7, user={"login": "my-runner", "type": "User", "id": 4711}, head_sha=HEAD,
                          head_ref="runner/task-5", base_ref="main", title="Speed up widgets", body="Fixes #5")


def test_requester_of_an_agent_the_policy_declares_is_excluded(world):
    """Rule: actors are classified with the repository's policy everywhere, not only with the built-in
    lists. With `identities.agents: [my-runner]`, alice assigning issue #5 to the User `my-runner` sets an
    agent on the task; my-runner's PR says "Fixes #5"; alice's approval must not count.

    (Here the delivery is the only record of the assignment: issue #5's event list is empty in the fake,
    so the check rests on how the `issues.assigned` delivery is classified.)"""
    state, gate, _ = world
    pr = _runner_pr(state)
    state.add_issue(REPO, 5, title="Widgets are slow", user="alice")
    gate.deliver("issues", assigned_payload(5, {"login": "my-runner", "type": "User", "id": 4711}, human("alice")))
    review = state.add_review(REPO, 7, "alice", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    assert last_state(state, HEAD) == "pending", \
        f"alice set the policy's agent my-runner on #5 and approved its work: {states(state, HEAD)}"


def test_requester_mentioning_an_agent_the_policy_declares_is_excluded(world):
    """Rule: as above, for the other way of setting an agent on a task: alice comments `@my-runner please
    address the review` on my-runner's PR (my-runner is an agent by the policy's `identities.agents`), so
    alice is its requester there and her approval must not count."""
    state, gate, _ = world
    pr = _runner_pr(state)
    gate.deliver("issue_comment", comment_payload("@my-runner please address the review comments", human("alice")))
    review = state.add_review(REPO, 7, "alice", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    assert last_state(state, HEAD) == "pending", \
        f"alice summoned the policy's agent my-runner and approved its work: {states(state, HEAD)}"


# -- 6. one approval rule for verdicts and findings ------------------------------------------------------------

def test_committer_approval_does_not_lift_a_chain_finding(world):
    """Rule: one approval rule for the verdict and for findings: a committer's approval never counts. carol
    (write access) wrote a commit of the agent's PR; a bot comments `/deploy` (failure); carol approving
    the head afterwards must not lift the finding."""
    state, gate, pr = world
    state.add_commit(REPO, 7, "a" * 40, message="Add widget cache", author=AGENT)
    state.add_commit(REPO, 7, HEAD, message="Fix the cache test", author="carol")
    gate.deliver("issue_comment", comment_payload("/deploy", bot("helper-bot[bot]"), created_at=ts(-120)))
    gate.work()
    assert last_state(state, HEAD) == "failure"
    review = state.add_review(REPO, 7, "carol", "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    assert last_state(state, HEAD) == "failure", \
        f"carol, a committer, lifted the bot's /deploy by approving: {states(state, HEAD)}"


def test_repeating_a_command_needs_the_policys_min_permission(world):
    """Rule: a human's repeat of a bot's command lifts its finding only if that human's approval could
    count: with `approvals.min_permission: admin`, maintainer (write) repeating `/deploy` leaves the PR
    failing."""
    state, gate, pr = world
    set_policy(state, "version: 1\napprovals:\n  min_permission: admin\n")
    gate.deliver("issue_comment", comment_payload("/deploy", bot("helper-bot[bot]"), created_at=ts(-120)))
    gate.deliver("issue_comment", comment_payload("/deploy", human("maintainer"), comment_id=556))
    gate.work()
    assert states(state, HEAD)[0] == "failure"  # the bot's command, judged first
    assert last_state(state, HEAD) == "failure", \
        f"a write-access repeat lifted the finding under min_permission admin: {states(state, HEAD)}"


# -- 7. smaller escapes ----------------------------------------------------------------------------------------

def test_review_body_edited_into_a_command_is_a_finding(world):
    """Rule: review bodies are scanned for commands when edited too, and the edit counts from its moment: a
    bot edits its own earlier review (before the maintainer's approval) into `/deploy production`; the PR
    fails."""
    state, gate, pr = world
    helper = bot("helper-bot[bot]")
    remark = state.add_review(REPO, 7, helper, "COMMENTED", body="Nice work", submitted_at=ts(-7200))
    _approved_by_maintainer(state, gate, pr, ts(-3600))
    remark["body"] = "/deploy production"
    payload = review_payload(pr, remark, action="edited")
    payload["review"].update(body="/deploy production", submitted_at=remark["submitted_at"])
    payload["changes"] = {"body": {"from": "Nice work"}}
    gate.deliver("pull_request_review", payload)
    gate.work()
    _started_approved(state)
    assert last_state(state, HEAD) == "failure", \
        f"a review edited into a command was not judged: {states(state, HEAD)}"


def test_bot_removing_a_hold_label_does_not_lift_the_block(world):
    """Rule: a `block` rule on a label is lifted only by a human: with a rule blocking PRs labelled `hold`,
    a bot removing `hold` from an approved agent PR leaves it failing."""
    state, gate, pr = world
    set_policy(state, "version: 1\nrules:\n  - name: hold\n    when: {labels: [hold]}\n"
                      "    block: On hold until a maintainer removes the hold label\n")
    state.set_labels(REPO, 7, ["hold"])
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    evaluate(gate, pr)
    assert last_state(state, HEAD) == "failure"
    state.set_labels(REPO, 7, [])
    gate.deliver("pull_request", label_payload(pr, "hold", bot("helper-bot[bot]"), action="unlabeled"))
    gate.work()
    assert last_state(state, HEAD) == "failure", \
        f"a bot removing the hold label lifted the block: {states(state, HEAD)}"


@pytest.mark.parametrize("writer", [AGENT, "sneaky-bot[bot]"], ids=["agent-commits", "other-bot-commits"])
def test_trusted_bot_waiver_needs_the_trusted_bots_own_commits(world, writer):
    """Rule: a trusted bot's waiver (`identities.trusted_bots`: dependabot, lockfiles only, 0 approvals) is for
    the trusted bot's own work: a PR dependabot opened whose commit an agent or another bot wrote is not
    waived, and into main it does not pass without a human's approval."""
    state, gate, _ = world
    set_policy(state, 'version: 1\nidentities:\n  trusted_bots:\n    - login: "dependabot[bot]"\n'
                      '      only_paths: ["**/package-lock.json"]\n      approvals: 0\n')
    pr = state.add_pull(REPO, 7, user="dependabot[bot]", head_sha=HEAD, base_ref="main",
                        head_ref="dependabot/npm_and_yarn/lodash-4.17.21", title="Bump lodash from 4.17.20 to 4.17.21")
    state.repo(REPO).files[7] = []
    state.add_file(REPO, 7, "package-lock.json", additions=12, deletions=12)
    state.add_commit(REPO, 7, HEAD, message="Bump lodash from 4.17.20 to 4.17.21", author=writer)
    evaluate(gate, pr, "opened")
    assert last_state(state, HEAD) != "success", \
        f"dependabot's waiver covered a commit {writer} wrote: {states(state, HEAD)}"


def test_tag_triggered_workflow_run_is_a_chain(world):
    """Rule: a run a bot starts by pushing a tag is not ordinary CI of its own branch (a tag is not a
    branch; release workflows run on tags with the repository's secrets): it is a chain finding on the
    PR(s) whose head it ran, until a human re-runs it or approves."""
    state, gate, pr = world
    state.repo(REPO).tags["v1.2.3"] = HEAD  # the bot tagged the agent's head (GET git/ref/tags/v1.2.3 finds it)
    gate.deliver("workflow_run", workflow_run_payload(
        event="push", head_branch="v1.2.3", name="Release", path=".github/workflows/release.yml",
        starter=bot("release-bot[bot]"), pulls=[]))
    gate.work()
    assert states(state, HEAD) and last_state(state, HEAD) == "failure", \
        f"a bot's tag-triggered release run was taken for branch CI: {states(state, HEAD)}"


def test_run_with_several_prs_that_changed_its_workflow_is_flagged(world):
    """Rule: CI that runs a workflow file the PR itself changes is a chain finding, however many PRs the run
    lists: the agent's PR #7 changes `.github/workflows/ci.yml`, and a `pull_request` run of that file
    started by the agent lists PRs #7 and #8 (same head); PR #7 fails."""
    state, gate, pr = world
    state.add_file(REPO, 7, ".github/workflows/ci.yml")
    second_pr_on_head(state)
    gate.deliver("workflow_run", workflow_run_payload(
        event="pull_request", head_branch="copilot/task-7", name="CI", path=".github/workflows/ci.yml",
        starter=bot(AGENT), pulls=[7, 8]))
    gate.work()
    assert states(state, HEAD) and last_state(state, HEAD) == "failure", \
        f"a run of the workflow PR #7 changed went unflagged because it listed two PRs: {states(state, HEAD)}"


def test_pr_with_more_than_250_commits_gets_a_status(world):
    """Rule: a list the platform caps (GitHub lists at most 250 commits of a PR) is incomplete, not proof the
    head moved: an agent's PR with 260 commits still gets an `agentgate` status, and not `success`."""
    state, gate, pr = world
    for i in range(259):
        state.add_commit(REPO, 7, message=f"Step {i}", author=AGENT)
    state.add_commit(REPO, 7, HEAD, message="Last step", author=AGENT)
    evaluate(gate, pr, "opened")
    assert states(state, HEAD), "a PR with more commits than GitHub lists never got a status"
    assert last_state(state, HEAD) != "success"


def test_index_without_the_app_key_lists_no_decisions(env, world):
    """Rule: decision pages are reached only by their unguessable link: `agentgate serve` started without the
    App's id and key (a web process given only the webhook secret) does not list recent decisions on `/`."""
    state, gate, pr = world
    evaluate(gate, pr, "opened")
    decision_id = str(last_status(state, HEAD)["target_url"]).rstrip("/").rsplit("/", 1)[-1]
    with running_agentgate(env.fake, env.private_key, Path(env.tmp.mktemp("keyless")), app_credentials=False,
                           fresh_redis=False) as keyless:
        page = requests.get(f"{keyless.url}/", timeout=10)
    assert decision_id not in page.text, "/ lists recent decisions of a web process without the App key"
    assert f"{REPO} pull request #7" not in page.text


# -- 8. the details page shows every sensitive path -----------------------------------------------------------------

def test_details_page_shows_every_sensitive_path(world):
    """Rule: every sensitive path a verdict rests on is on its details page: an agent's PR changing 30 files,
    5 of them under `.github/workflows/` (listed last), shows all 5 on the page outside the raw facts, and
    the JSON names all 5 outside the raw facts too."""
    state, gate, pr = world
    state.repo(REPO).files[7] = []
    for i in range(25):
        state.add_file(REPO, 7, f"src/module_{i:02}.py")
    workflows = [f".github/workflows/job_{i}.yml" for i in range(1, 6)]
    for path in workflows:
        state.add_file(REPO, 7, path)
    evaluate(gate, pr, "opened")
    target = str(last_status(state, HEAD)["target_url"])
    html = requests.get(target, timeout=10).text
    shown = re.sub(r"<pre\b.*?</pre>", "", html, flags=re.DOTALL | re.IGNORECASE)  # the raw facts dump
    assert [p for p in workflows if p not in shown] == [], "sensitive paths missing from the details page"
    record = requests.get(target, params={"format": "json"}, timeout=10).json()
    decided = json.dumps({k: v for k, v in record.items() if k != "facts"})
    assert [p for p in workflows if p not in decided] == [], "sensitive paths the decision does not name"


# -- found while closing these: identities borrowed, judgements rewritten -----------------------------------

def test_agent_pushing_commits_under_a_humans_name_is_an_agents_change(world):
    """Rule: who pushed is part of who made the change. A human opens a PR into main; an agent pushes a
    commit whose author and committer name that human (git lets anyone write any name): the push's sender
    is the agent, so the PR is governed as an agent's change and waits for another human's approval."""
    state, gate, _ = world
    pr = state.add_pull(REPO, 9, user="octocat", head_sha="9" * 40, head_ref="octocat/fix", base_ref="main",
                        title="Fix")
    state.add_file(REPO, 9, "src/widget.py")
    state.add_commit(REPO, 9, "9" * 40, message="Fix", author="octocat")
    evaluate(gate, pr, "opened")
    assert last_state(state, "9" * 40) == "success"  # a human's PR
    pushed = "a" * 40
    state.add_commit(REPO, 9, pushed, message="Tweak", author="octocat")
    state.repo(REPO).pulls[9]["head"]["sha"] = pushed
    pr["head"]["sha"] = pushed
    gate.deliver("pull_request", pr_payload(pr, action="synchronize", sender=AGENT) | {"sender": bot(AGENT)})
    gate.work()
    assert last_state(state, pushed) == "pending", \
        f"an agent's push under a human's name passed as the human's: {states(state, pushed)}"


def test_agent_dismissing_a_humans_change_request_is_tampering(world):
    """Rule: a bot or agent must not rewrite a human's judgement. lead requested changes and maintainer
    approved; the agent dismisses lead's review: the PR fails (it would otherwise pass on maintainer's
    approval alone) until a human reviews the head again."""
    state, gate, pr = world
    blocking = state.add_review(REPO, 7, "lead", "CHANGES_REQUESTED")
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    evaluate(gate, pr)
    assert last_state(state, HEAD) == "pending"
    blocking["state"] = "DISMISSED"
    payload = review_payload(pr, blocking, action="dismissed")
    payload["review"]["state"] = "dismissed"
    payload["sender"] = bot(AGENT)
    gate.deliver("pull_request_review", payload)
    gate.work()
    assert last_state(state, HEAD) == "failure", \
        f"an agent dismissing a human's change request passed the PR: {states(state, HEAD)}"
