"""Attacks through agentgate's own identity. Without a second App (AGENTGATE_AGENT_APP_ID), an agent's
token on GitHub comes from agentgate's own App, so everything the agent does bears agentgate's bot login
(`agentgate[bot]`). agentgate must recognise its own actions only by what it just did (the comment body it
is posting, the label it is removing), never by the login, and must judge every other action in its
name as an agent's. Also: the rotation of agentgate's own GitLab token under races and half failures.

Each test states the rule it checks. A test that passes documents a defence that holds; a test marked
`xfail(strict=True)` demonstrates a weakness of the current code (it fails today, and turns the suite
red the moment the weakness is fixed, so the mark is removed with the fix).

Most tests run end to end (`agentgate serve` and `agentgate worker` against the fake GitHub, real
Redis: the `world` fixture of tests/test_e2e_chains.py); the label-marker and token tests call the
handlers and the token service directly, as tests/test_token_attacks.py does."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
import requests

from gatekeeper.core import chains
from gatekeeper.core.facts import User
from gatekeeper.core.identity import classify
from gatekeeper.forges.gitlab.credentials import current_token, rotate
from gatekeeper.forges.port import Event, ForgeError, IssueEvent
from gatekeeper.policy import DEFAULT_POLICY
from gatekeeper.policy.load import load_policy
from gatekeeper.policy.model import InvalidPolicy
from gatekeeper.settings import Settings
from gatekeeper.state import keys
from gatekeeper.worker import actions, handlers
from tests.conftest import github_fixture
from tests.e2e import INSTALLATION, REPO, pr_payload, review_payload
from tests.fakegitlab.admin import admin_of
from tests.oidc_issuer import running_oidc_issuer
from tests.test_e2e_chains import AGENT, DEFAULT_HEAD, HEAD, _bot, _repo_fields, calls, comment_payload, status_posts
from tests.test_e2e_chains import env as env  # fixture: the fake GitHub and agentgate, once per module
from tests.test_e2e_chains import world as world  # fixture: a fresh repository with PR #7
from tests.test_gitlab_rotation import TOKEN, settings_for
from tests.test_gitlab_rotation import fake as fake  # fixture: the fake GitLab with agentgate's service account
from tests.test_token_attacks import ALICE, TaskForge, make_world

ME = "agentgate[bot]"  # the fake GitHub's App slug is `agentgate`: this is agentgate's own bot login
SELF = User(ME, bot=True)
E2E = pytest.mark.e2e


def _decision(status: dict) -> dict:
    """The decision page behind a status, as JSON: every reason the verdict gave."""
    return dict(requests.get(status["target_url"], params={"format": "json"}, timeout=10).json())


def _messages(status: dict) -> list[str]:
    return [r["message"] for r in _decision(status)["verdict"]["reasons"]]


def _human_pull(state, number: int, head: str) -> dict:
    """A human's pull request into main, whose commits name the human as author and committer."""
    pr = state.add_pull(REPO, number, user="octocat", head_sha=head, head_ref="fix-typo", base_ref="main",
                        title="Fix typo")
    state.add_file(REPO, number, "src/widget.py")
    state.add_commit(REPO, number, head, author="octocat", committer="octocat")
    return pr


# ==== weaknesses (xfail: each fails on the current code) ================================================

@E2E
def test_agent_pushing_to_a_humans_pr_under_agentgates_login_needs_approval(world):
    """Rule: an agent pushing to a pull request's branch makes it an agent's change that needs a human's
    approval, even when its commits name a human as author and committer. An agent holding a token of
    agentgate's own App pushes as `agentgate[bot]`, and agentgate never pushes: that push is an agent's."""
    state, gate, _ = world
    pr = _human_pull(state, 8, "8" * 40)
    gate.deliver("pull_request", pr_payload(pr))
    gate.work()
    assert status_posts(state, "8" * 40)[-1]["state"] == "success"  # a human's PR needs no approval
    # The agent pushes a commit that names octocat, with its agentgate-App token.
    pushed = "9" * 40
    pr = state.add_pull(REPO, 8, user="octocat", head_sha=pushed, head_ref="fix-typo", base_ref="main",
                        title="Fix typo")
    state.add_commit(REPO, 8, pushed, author="octocat", committer="octocat")
    payload = pr_payload(pr, action="synchronize")
    payload["sender"] = _bot(ME)
    gate.deliver("pull_request", payload)
    gate.work()
    last = status_posts(state, pushed)[-1]
    assert last["state"] == "pending", (last, _messages(last))


@E2E
def test_a_known_agent_pushing_to_a_humans_pr_needs_approval(world):
    """Rule (the control for the test above): a known agent's push to a human's pull request makes it an
    agent's change, though its commits name the human."""
    state, gate, _ = world
    pushed = "9" * 40
    pr = _human_pull(state, 8, pushed)
    payload = pr_payload(pr, action="synchronize")
    payload["sender"] = _bot(AGENT)
    gate.deliver("pull_request", payload)
    gate.work()
    last = status_posts(state, pushed)[-1]
    assert last["state"] == "pending" and f"Commits pushed by {AGENT}, an agent" in _messages(last)


@E2E
def test_agent_rules_apply_to_an_agent_acting_under_agentgates_login(world):
    """Rule: a policy's rules for agents (`when: {actor: agent}`) apply to every agent, including one
    acting with a token of agentgate's own App: with `preset:coding-agents`, an agent's pull request from
    a branch outside agent/ (copilot/, claude/, ...) is blocked."""
    state, gate, _ = world
    state.set_content(REPO, ".agentgate.yml", "version: 1\nextends: preset:coding-agents\n", ref=DEFAULT_HEAD)
    pr = state.add_pull(REPO, 8, user=_bot(ME), head_sha="8" * 40, head_ref="feature", base_ref="main",
                        title="Refactor")
    state.add_file(REPO, 8, "src/widget.py")
    gate.deliver("pull_request", pr_payload(pr, sender=ME))
    gate.work()
    last = status_posts(state, "8" * 40)[-1]
    assert "Agents push only to their own branches" in _messages(last), _messages(last)


@E2E
def test_agent_rules_apply_to_a_known_agent(world):
    """Rule (the control for the test above): `preset:coding-agents` blocks a known agent's pull request
    from a branch outside agent/."""
    state, gate, _ = world
    state.set_content(REPO, ".agentgate.yml", "version: 1\nextends: preset:coding-agents\n", ref=DEFAULT_HEAD)
    pr = state.add_pull(REPO, 8, user=_bot(AGENT), head_sha="8" * 40, head_ref="feature", base_ref="main",
                        title="Refactor")
    state.add_file(REPO, 8, "src/widget.py")
    gate.deliver("pull_request", pr_payload(pr, sender=AGENT))
    gate.work()
    last = status_posts(state, "8" * 40)[-1]
    assert last["state"] == "failure" and "Agents push only to their own branches" in _messages(last)


@E2E
@pytest.mark.xfail(strict=True, reason="handlers.PLATFORM_MERGERS exempts github-actions[bot], the identity of "
                                       "every workflow's GITHUB_TOKEN, from the direct-push rule")
def test_a_workflow_token_pushing_straight_to_main_is_marked_failed(world):
    """Rule: a bot pushing straight to a protected branch (protection bypassed) gets a failure status on
    the pushed commit, unless it merged a pull request agentgate passed at that head. A workflow the agent
    dispatched (actions: write) pushes with its GITHUB_TOKEN as `github-actions[bot]`: not merge machinery."""
    state, gate, _ = world
    pushed = "8" * 40
    state.repo(REPO).extra_shas.add(pushed)
    payload = copy.deepcopy(github_fixture("push.event.1"))
    payload.update(ref="refs/heads/main", before=DEFAULT_HEAD, after=pushed, created=False, deleted=False,
                   forced=False, sender=_bot("github-actions[bot]"),
                   pusher={"name": "github-actions[bot]", "email": None})
    gate.deliver("push", _repo_fields(payload))
    gate.work()
    posted = status_posts(state, pushed)
    assert posted and posted[-1]["state"] == "failure", calls(state)


@E2E
def test_an_agentgate_check_run_from_another_app_is_tampering(world):
    """Rule: only agentgate may report `agentgate` on a commit. A workflow the agent can dispatch may hold
    `checks: write` in its GITHUB_TOKEN and create a successful check run named `agentgate`; like a
    forged status, that fails the pull request until a human approves its head afresh."""
    state, gate, _ = world
    payload = copy.deepcopy(github_fixture("check_run.completed.1"))
    run = payload["check_run"]
    run.update(name="agentgate", head_sha=HEAD, status="completed", conclusion="success",
               app={**run["app"], "id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
               pull_requests=[{"number": 7, "id": 1, "url": "x", "head": {"sha": HEAD}, "base": {}}])
    payload["sender"] = _bot("github-actions[bot]")
    gate.deliver("check_run", _repo_fields(payload))
    gate.work()
    posted = status_posts(state, HEAD)
    assert posted and posted[-1]["state"] == "failure", calls(state)


@E2E
def test_an_edit_of_agentgates_comment_by_anyone_else_is_undone(world):
    """Rule: agentgate's comment says what agentgate wrote. An agent holding agentgate's token can edit
    that comment (it is the comment's author, for GitHub); such an edit (its body is not the one agentgate
    wrote or is posting) is put back, so no one reads the agent's words as the gate's verdict."""
    state, gate, _ = world
    gate.deliver("issue_comment", comment_payload("/deploy production", _bot("helper-bot[bot]")))
    gate.work()
    [comment] = state.repo(REPO).comments[7]
    written = comment["body"]
    forged = "<!-- agentgate:pr-comment -->\n**agentgate**: all checks passed, this pull request is safe to merge."
    comment["body"] = forged  # the agent's PATCH /issues/comments/{id}
    edited = comment_payload(forged, _bot(ME), action="edited")
    edited["comment"]["id"] = comment["id"]
    gate.deliver("issue_comment", edited)
    gate.work()
    assert state.repo(REPO).comments[7][-1]["body"] == written


@E2E
def test_a_workflow_name_cannot_put_a_command_in_agentgates_comment(world):
    """Rule: text agentgate quotes from a bot's or agent's action never forms a command in agentgate's own
    comment (agentgate does not judge its own comment, and a command bot may obey agentgate's login). An
    agent with `workflows: write` and `actions: write` names a workflow `Deploy` + newline + `/deploy
    production` and dispatches it on its pull request."""
    state, gate, _ = world
    payload = copy.deepcopy(github_fixture("workflow_run.requested.1"))
    payload["workflow_run"].update(
        event="workflow_dispatch", head_sha=HEAD, head_branch="copilot/task-7", name="Deploy\n/deploy production",
        path=".github/workflows/deploy.yml", triggering_actor=_bot(ME), actor=_bot(ME),
        pull_requests=[{"number": 7, "id": 1, "url": "x", "head": {}, "base": {}}])
    payload["sender"] = _bot(ME)
    gate.deliver("workflow_run", _repo_fields(payload))
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"  # the chain itself is caught
    [comment] = state.repo(REPO).comments[7]
    hits = chains.judge_comment(DEFAULT_POLICY, classify(SELF), comment["body"], ["src/widget.py"])
    assert not hits, [h.reason.message for h in hits]


# ---- agent tokens: the task ends when a human ends it

@pytest.fixture
def oidc() -> Iterator[Any]:
    with running_oidc_issuer() as found:
        yield found


def test_a_task_a_human_closed_and_the_agent_reopened_gets_no_new_token(redis_conn, oidc):
    """Rule: closing the task ends the agent's access (its tokens are revoked). An agent whose token holds
    `issues: write` (under agentgate's login) reopening the task does not approve it again: only a human
    with the task's permission reopening it (or re-applying the approved label) does."""
    w = make_world(redis_conn, oidc)
    first = w.ask()
    assert first.status == 201, first.body
    forge = w.forge
    forge.issues[12] = replace(forge.issues[12], state="closed")
    forge.events[12].append(IssueEvent("closed", ALICE))
    w.deliver("task", 12, {"action": "closed"}, actor=ALICE)
    assert w.platform.revoked == [first.body["token"]]
    # The agent reopens its task with its agentgate-App token, and asks again.
    forge.issues[12] = replace(forge.issues[12], state="open")
    forge.events[12].append(IssueEvent("reopened", SELF))
    w.deliver("task", 12, {"action": "reopened"}, actor=SELF)
    again = w.ask()
    assert again.status == 403, again.body
    assert len(w.platform.minted) == 1


# ---- agentgate's own GitLab token

DAY = 86400.0


class _RecordingSession(requests.Session):
    """Records the token each rotation request presents; `lose_answer` drops GitLab's answer after
    GitLab acted on the request (a connection cut on the way back)."""

    def __init__(self, lose_answer: bool = False) -> None:
        super().__init__()
        self.presented: list[str] = []
        self.lose_answer = lose_answer

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.presented.append(str((kwargs.get("headers") or {}).get("PRIVATE-TOKEN")))
        answer = super().post(url, *args, **kwargs)
        if self.lose_answer:
            raise requests.ConnectionError("connection reset while reading the answer")
        return answer


class _OneFailedRead:
    """A Redis connection whose first read of the stored token fails (a failover, a timeout)."""

    def __init__(self, conn: redis.Redis) -> None:
        self._conn, self.failed = conn, False

    def hget(self, name: str, key: str) -> Any:
        if name == keys.GITLAB_OWN_TOKEN and key == "enc" and not self.failed:
            self.failed = True
            raise redis.ConnectionError("Redis went away for a moment")
        return self._conn.hget(name, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_failed_read_never_rotates_with_the_revoked_configured_token(fake, redis_conn):
    """Rule: after the first rotation the configured AGENTGATE_GITLAB_TOKEN is revoked, and GitLab answers
    a rotation presented with an already-rotated token by revoking the newest token of its line
    (gitlab-org/gitlab#524639). So a rotation that cannot read the current token from Redis must stop,
    never present the configured one."""
    settings = settings_for(fake)
    assert rotate(redis_conn, settings)["rotated"] is True
    live = current_token(redis_conn, settings)
    session = _RecordingSession()
    try:
        rotate(_OneFailedRead(redis_conn), settings, session=session, now=time.time() + 8 * DAY)  # type: ignore[arg-type]
    except (ForgeError, redis.RedisError):
        pass  # failing is fine; presenting the revoked token is not
    assert TOKEN not in session.presented, session.presented
    assert current_token(redis_conn, settings) in (live, *[new for _, new in admin_of(fake.state).rotations])


def test_a_rotation_whose_answer_was_lost_says_what_to_do(fake, redis_conn):
    """Rule: a rotation GitLab carried out but whose answer never arrived leaves agentgate without a working
    token (GitLab revoked the old one at once; the new one was shown once, to no one). The error then says
    so and names AGENTGATE_GITLAB_TOKEN, rather than blaming the token's scope."""
    settings = settings_for(fake)
    said: list[str] = []
    for attempt in (_RecordingSession(lose_answer=True), None):  # the lost answer, then the next hour's try
        try:
            said.append(str(rotate(redis_conn, settings, session=attempt, now=time.time() + 3600 * (not attempt))))
        except ForgeError as exc:
            said.append(str(exc))
        if attempt is not None:
            assert len(admin_of(fake.state).rotations) == 1  # GitLab did rotate: the configured token is dead
    assert any("AGENTGATE_GITLAB_TOKEN" in text for text in said), said


class _LockLostMeanwhile(requests.Session):
    """GitLab answers so slowly that the rotation lock's ttl passes: another process takes the lock."""

    def __init__(self, conn: redis.Redis) -> None:
        super().__init__()
        self.conn = conn

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.conn.set(keys.GITLAB_ROTATION_LOCK, "another-process", ex=keys.GITLAB_ROTATION_LOCK_TTL)
        return super().post(url, *args, **kwargs)


def test_a_rotation_releases_only_its_own_lock(fake, redis_conn):
    """Rule: one process rotates at a time. A rotation that outlived its lock (a slow answer) must not
    release the lock another process has taken since: a third process would then rotate at the same time
    with the same old token, and GitLab revokes the whole line on that reuse."""
    settings = settings_for(fake)
    assert rotate(redis_conn, settings, session=_LockLostMeanwhile(redis_conn))["rotated"] is True
    assert redis_conn.get(keys.GITLAB_ROTATION_LOCK) == b"another-process"


# ==== defences that hold ================================================================================

@E2E
def test_an_approval_under_agentgates_login_never_counts(world):
    """Rule: only approvals of humans with write access count; an agent approving its own pull request
    with agentgate's token (pull_requests: write) is a bot's approval."""
    state, gate, pr = world
    review = state.add_review(REPO, 7, _bot(ME), "APPROVED")
    gate.deliver("pull_request_review", review_payload(pr, review))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "pending" and last["description"].startswith("Needs 1 more approval")


@E2E
def test_dismissing_a_humans_review_under_agentgates_login_is_tampering(world):
    """Rule: agentgate never dismisses reviews, so a dismissal in its name is an agent's: dismissing a
    human's review is tampering, and the pull request fails until a human reviews its head."""
    state, gate, pr = world
    review = state.add_review(REPO, 7, "maintainer", "DISMISSED")
    payload = review_payload(pr, review, action="dismissed")
    payload["review"]["state"] = "dismissed"
    payload["sender"] = _bot(ME)
    gate.deliver("pull_request_review", payload)
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "failure" and f"{ME} (agent) dismissed maintainer's review" in _messages(last)


@E2E
def test_a_trigger_label_under_agentgates_login_is_removed_and_fails(world):
    """Rule: a trigger label applied in agentgate's name was not applied by agentgate (it only removes
    labels): it is judged as a bot's, removed, and the pull request fails."""
    state, gate, pr = world
    state.set_labels(REPO, 7, ["automerge"])
    payload = pr_payload(pr, action="labeled")
    payload.update(label={"id": 1, "name": "automerge", "color": "ededed", "default": False}, sender=_bot(ME))
    gate.deliver("pull_request", payload)
    gate.work()
    assert ("DELETE", f"/repos/{REPO}/issues/7/labels/automerge") in calls(state)
    assert status_posts(state, HEAD)[-1]["state"] == "failure"


@E2E
def test_a_workflow_dispatched_under_agentgates_login_fails_its_pr(world):
    """Rule: a workflow run an agent starts with agentgate's token (actions: write) is a bot's run: a
    dispatch fails the pull request it runs for until a human re-runs it or approves the head."""
    state, gate, _ = world
    payload = copy.deepcopy(github_fixture("workflow_run.requested.1"))
    payload["workflow_run"].update(
        event="workflow_dispatch", head_sha=HEAD, head_branch="copilot/task-7", name="Release",
        path=".github/workflows/release.yml", triggering_actor=_bot(ME), actor=_bot(ME),
        pull_requests=[{"number": 7, "id": 1, "url": "x", "head": {}, "base": {}}])
    payload["sender"] = _bot(ME)
    gate.deliver("workflow_run", _repo_fields(payload))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "failure" and "Release" in last["description"]


@E2E
def test_an_agentgate_status_from_a_workflow_token_is_forged(world):
    """Rule: agent tokens carry at most `statuses: read`, but a workflow the agent can dispatch posts with
    its own GITHUB_TOKEN as `github-actions[bot]`: an `agentgate` status from it is forged, and the pull
    request fails even though a maintainer had approved it."""
    state, gate, _ = world
    state.add_review(REPO, 7, "maintainer", "APPROVED")
    payload = copy.deepcopy(github_fixture("status.event.1"))
    payload.update(sha=HEAD, context="agentgate", state="success", description="all good",
                   sender=_bot("github-actions[bot]"))
    payload["commit"]["sha"] = HEAD
    gate.deliver("status", _repo_fields(payload))
    gate.work()
    last = status_posts(state, HEAD)[-1]
    assert last["state"] == "failure" and "github-actions[bot]" in last["description"]


@E2E
def test_merging_an_unapproved_pr_under_agentgates_login_is_marked_failed(world):
    """Rule: an agent merging its own unapproved pull request through the API with agentgate's token
    (where protection lets it) pushes to main as `agentgate[bot]`: that merge commit gets a failure
    status, since agentgate never passed the pull request at that head."""
    state, gate, _ = world
    merge = "e" * 40
    state.add_pull(REPO, 7, user=AGENT, head_sha=HEAD, head_ref="copilot/task-7", base_ref="main",
                   title="Bump widget", state="closed", merged=True, merge_commit_sha=merge)
    payload = copy.deepcopy(github_fixture("push.event.1"))
    payload.update(ref="refs/heads/main", before=DEFAULT_HEAD, after=merge, created=False, deleted=False,
                   forced=False, sender=_bot(ME), pusher={"name": ME, "email": None})
    gate.deliver("push", _repo_fields(payload))
    gate.work()
    [status] = status_posts(state, merge)
    assert status["state"] == "failure" and "directly to protected branch main" in status["description"]


@E2E
def test_agentgates_comment_edited_into_a_command_is_judged(world):
    """Rule: agentgate's comment is recognised by its id and the body agentgate wrote, never by the login:
    an agent editing agentgate's own comment into a command is judged like any bot's command."""
    state, gate, _ = world
    gate.deliver("issue_comment", comment_payload("/deploy", _bot("helper-bot[bot]")))
    gate.work()
    [comment] = state.repo(REPO).comments[7]
    edited = comment_payload(comment["body"] + "\n\n/merge", _bot(ME), action="edited")
    edited["comment"]["id"] = comment["id"]
    gate.deliver("issue_comment", edited)
    gate.work()
    assert status_posts(state, HEAD)[-1]["state"] == "failure"
    assert "`/merge`" in state.repo(REPO).comments[7][0]["body"]  # agentgate's comment now explains it


# ---- the label-removal marker, handler by handler

HOLD_POLICY = "version: 1\nrules:\n  - name: hold\n    when: {labels: [hold]}\n    block: {message: On hold}\n"


def _label_event(number: int, label: str, action: str, actor: User) -> Event:
    return Event("github", f"d-{action}-{number}-{label}-{actor.login}", "label", REPO, INSTALLATION, actor, number,
                 {"action": action, "label": label, "at": "2026-12-01T10:00:00Z"})


def _on_label(conn: redis.Redis, forge: TaskForge, event: Event) -> handlers.Result:
    rt = type("RT", (), {"conn": conn, "settings": Settings()})()
    return handlers.on_label(handlers.Context(rt, forge, event))  # type: ignore[arg-type]


def _hold_forge() -> TaskForge:
    forge = TaskForge(repo=REPO, platform="github", branches={"main": DEFAULT_HEAD})
    forge.texts[DEFAULT_HEAD] = HOLD_POLICY
    forge.add_pull(7, User(AGENT, bot=True, agent=True), HEAD, ["src/widget.py"])
    forge.add_pull(8, User(AGENT, bot=True, agent=True), "8" * 40, ["src/widget.py"])
    return forge


def test_agentgates_label_marker_covers_one_removal_of_one_label_on_one_pr(redis_conn):
    """Rule: agentgate recognises an `unlabeled` delivery in its name as its own only for the label it
    just removed, on that pull request, once. An agent removing a human's `hold` (a label a rule reads)
    while agentgate's marker for another label is set, on another pull request or after agentgate's own
    delivery used the marker, is judged: a finding."""
    forge = _hold_forge()
    actions.remove_label(redis_conn, forge, 7, "automerge", "helper[bot]")  # agentgate removes a bot's label
    held = _on_label(redis_conn, forge, _label_event(7, "hold", "unlabeled", SELF))
    assert [f.kind for _, f in held.findings] == ["label_removed"], held.info
    other_pr = _on_label(redis_conn, forge, _label_event(8, "automerge", "unlabeled", SELF))
    assert other_pr.info.get("ignored") != "our own label change"
    own = _on_label(redis_conn, forge, _label_event(7, "automerge", "unlabeled", SELF))
    assert own.info == {"ignored": "our own label change"}
    again = _on_label(redis_conn, forge, _label_event(7, "automerge", "unlabeled", SELF))
    assert again.info.get("ignored") != "our own label change" and again.reevaluate == [7]


def test_a_human_account_named_like_agentgate_is_no_own_action(redis_conn):
    """Rule: only a bot account can be agentgate's own: a user account with agentgate's bot login spelled
    out (not a bot) never uses agentgate's marker."""
    forge = _hold_forge()
    actions.remove_label(redis_conn, forge, 7, "hold", "helper[bot]")
    result = _on_label(redis_conn, forge, _label_event(7, "hold", "unlabeled", User(ME, bot=False)))
    assert result.info.get("ignored") != "our own label change"
    assert redis_conn.exists(keys.label_removal("github", REPO, 7, "hold"))  # still agentgate's to use


# ---- what a policy may grant an agent

@pytest.mark.parametrize("permission", ["statuses", "checks", "deployments", "administration", "environments"])
def test_a_policy_never_grants_an_agent_write_on_what_judges_it(permission):
    """Rule: an agent's token may come from agentgate's own App, so a policy granting `write` on statuses,
    checks, deployments, administration or environments is invalid (the agent could post agentgate's
    verdict, answer its deployment reviews or remove the protection requiring it); `read` is allowed."""
    grant = ("version: 1\ntokens:\n  - agents:\n      - key: runner-1\n"
             f"    permissions: {{contents: write, {permission}: LEVEL}}\n")
    refused = load_policy(grant.replace("LEVEL", "write"))
    assert isinstance(refused, InvalidPolicy)
    assert any(f"{permission} can be granted at most read" in str(e) for e in refused.errors), refused.errors
    assert not isinstance(load_policy(grant.replace("LEVEL", "read")), InvalidPolicy)


def test_a_token_request_cannot_name_a_permission_outside_the_schema():
    """Rule: an agent asks only for permissions the policy language knows: e.g. `secrets` or
    `repository_hooks` (which could read secrets or re-point webhooks) are refused by the request's shape."""
    from pydantic import ValidationError

    from gatekeeper.tokens.service import TokenRequest

    for name in ("secrets", "repository_hooks", "members", "organization_administration"):
        with pytest.raises(ValidationError):
            TokenRequest.model_validate_json(json.dumps({"repository": REPO, "task": 1,
                                                         "permissions": {name: "write"}}))
