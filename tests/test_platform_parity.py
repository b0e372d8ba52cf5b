"""One table of cases, run against both platforms with the same policy files: GitHub (the fake GitHub)
and GitLab (the fake GitLab), each through its adapter and the one worker pipeline, in process with a
real Redis. The verdicts must be the same; only the adapter differs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from gatekeeper.forges.factory import build_runtime
from gatekeeper.state.queue import JobQueue
from gatekeeper.worker import jobs, runtime
from tests.fakegithub import FakeState, running_fake_github
from tests.fakegitlab import FakeGitLabState, running_fake_gitlab
from tests.keys import app_key_pair

REPO = "acme/widgets"
HEAD = "a" * 40
BASE = "b" * 40
INSTALLATION = 42

BLOCK_DOCS = """version: 1
rules:
  - name: no-agent-docs
    when: {actor: agent, paths: ["docs/**"]}
    block: Agents do not edit the docs
"""


@dataclass(frozen=True)
class Case:
    name: str
    author: str  # "agent" or "human"
    files: tuple[str, ...]
    approvals: tuple[str, ...]  # "human" (write access) or "bot"
    policy: str | None
    outcome: str


CASES = [
    Case("agent, no approval", "agent", ("src/app.py",), (), None, "pending"),
    Case("agent, a human approves the head", "agent", ("src/app.py",), ("human",), None, "success"),
    Case("agent, only a bot approves", "agent", ("src/app.py",), ("bot",), None, "pending"),
    Case("human author", "human", ("src/app.py",), (), None, "success"),
    Case("agent changes CI, one approval of two", "agent", ("ci/build.sh", ".gitlab-ci.yml"), ("human",), None,
         "pending"),
    Case("agent, a block rule applies", "agent", ("docs/readme.md",), ("human",), BLOCK_DOCS, "failure"),
    Case("invalid policy on the base", "human", ("src/app.py",), (), "version: 99\n", "error"),
]


def _evaluate(settings, redis_conn, platform: str, installation: int | None) -> str:
    """The verdict of PR (or MR) 7 through the one pipeline, with the forge the settings configure."""
    rt = build_runtime(settings, redis_conn)
    rt.queue = JobQueue(redis_conn, settings.queue_name, is_async=False)
    runtime.configure(rt)
    try:
        return str(jobs.evaluate(platform=platform, repo=REPO, number=7, installation=installation)["outcome"])
    finally:
        runtime.configure(None)


def _github(case: Case, settings, redis_conn) -> str:
    private, public = app_key_pair()
    state = FakeState(app_id=4242, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.repo(REPO).branches["main"] = BASE
    if case.policy is not None:
        state.set_content(REPO, ".agentgate.yml", case.policy, ref=BASE)
    author = "copilot-swe-agent[bot]" if case.author == "agent" else "octocat"
    state.add_pull(REPO, 7, user=author, head_sha=HEAD, head_ref="work", base_ref="main")
    for path in case.files:
        state.add_file(REPO, 7, path)
    state.set_permission(REPO, "maria", "write")
    for who in case.approvals:
        state.add_review(REPO, 7, "maria" if who == "human" else "dependabot[bot]", "APPROVED")
    with running_fake_github(state) as fake:
        configured = replace(settings, github_app_id="4242", github_private_key=private, github_api_url=fake.url)
        return _evaluate(configured, redis_conn, "github", INSTALLATION)


def _gitlab(case: Case, settings, redis_conn) -> str:
    state = FakeGitLabState()
    state.add_project(REPO)
    state.set_branch(REPO, "main", BASE)
    agent, other_bot = "duo-developer", "project_9_bot_2a3b"  # GitLab Duo's account, a project token's bot
    state.add_user(agent, bot=True)
    state.add_user(other_bot, bot=True)
    state.set_member(REPO, "maria", "developer")
    if case.policy is not None:
        state.add_file(REPO, BASE, ".agentgate.yml", case.policy)
    author = agent if case.author == "agent" else "octocat"
    if author == "octocat":
        state.add_user("octocat")
    state.add_mr(REPO, 7, author=author, head_sha=HEAD, source_branch="work", files=list(case.files))
    state.tick(5)  # approvals come after the latest push
    for who in case.approvals:
        state.approve(REPO, 7, "maria" if who == "human" else other_bot)
    with running_fake_gitlab(state) as fake:
        return _evaluate(replace(settings, gitlab_url=fake.url, gitlab_token=state.token), redis_conn, "gitlab", None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_same_policy_gives_the_same_verdict_on_both_platforms(case, settings, redis_conn):
    """Each case's verdict is the expected one on GitHub and on GitLab alike (the agent is Copilot on
    GitHub and GitLab Duo on GitLab; a bot's approval is a project access-token bot's; approvals on
    GitLab are given after the latest push)."""
    on_github = _github(case, settings, redis_conn)
    redis_conn.flushdb()
    on_gitlab = _gitlab(case, settings, redis_conn)
    assert (on_github, on_gitlab) == (case.outcome, case.outcome)
