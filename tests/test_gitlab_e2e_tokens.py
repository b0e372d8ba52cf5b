"""Agent tokens end to end on GitLab: `agentgate serve` and `agentgate worker` as real processes, the fake
GitLab (tests/fakegitlab), a locally served OIDC issuer shaped like GitLab's (its keys at
`/oauth/discovery/keys`, GitLab CI's ID token claims) and a real Redis.

What must hold: an agent in GitLab CI whose ID token names an approved task of `acme/widgets` gets a
project access token for that one project, with the fewest scopes and the lowest role its permissions
need and the earliest expiry date GitLab accepts; every bad credential or unapproved request is
refused with no token minted; closing the task (GitLab's "Issue Hook") and the ttl sweep revoke it at
GitLab (`DELETE /projects/:id/access_tokens/:token_id`), after which GitLab refuses it; and no token
is ever in clear in Redis or in any log line.

agentgate's own GitLab token here is a service account's (Maintainer of the projects): GitLab refuses
project and group access tokens as creators of project access tokens."""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from gatekeeper.forges.gitlab.tokens import GitLabTokenIssuer
from gatekeeper.settings import Settings
from gatekeeper.state import tokens as store
from gatekeeper.tokens.revoke import cipher_for, sweep
from tests.e2e import E2E_REDIS_URL, Worker, agentgate_bin, redis_dump
from tests.fakegitlab import FakeGitLabState, running_fake_gitlab
from tests.oidc_issuer import GITLAB_SUBJECT, OIDCIssuer, running_oidc_issuer
from tests.test_gitlab_e2e import Gate, fixture, running_gate

pytestmark = pytest.mark.e2e

REPO, OTHER = "acme/widgets", "acme/gadgets"
SERVICE_ACCOUNT = "service_account_agentgate"  # agentgate's own GitLab identity: a Maintainer's token
LEAD, READER = "lena", "rudi"  # a Developer and a Reporter of acme/widgets
TTL = 20 * 60
GRANT = """version: 1
tokens:
  - agents:
      - issuer: {issuer}
        subject: "{subject}"
        claims: {{project_path: acme/agent-runner, ref_protected: "true"}}
    permissions: {{contents: write, pull_requests: write, issues: read}}
    ttl: 20m
"""
WANTED = {"contents": "write", "pull_requests": "write", "issues": "read"}
# forges/gitlab/tokens.py: contents write -> read_repository + write_repository; any other write -> api
# (read_api dropped beside it); a write anywhere -> Developer (30).
WANTED_SCOPES, WANTED_LEVEL = ["api", "read_repository", "write_repository"], 30


def enc(path: str) -> str:
    return urllib.parse.quote(path, safe="")


@pytest.fixture
def issuer() -> Iterator[OIDCIssuer]:
    with running_oidc_issuer(jwks_path="/oauth/discovery/keys") as found:
        yield found


@dataclass
class World:
    state: FakeGitLabState
    gate: Gate
    issuer: OIDCIssuer
    service_token: str


@pytest.fixture
def world(issuer: OIDCIssuer, tmp_path: Path) -> Iterator[World]:
    state = FakeGitLabState()
    state.add_project(REPO)
    state.add_project(OTHER)
    service_token = state.add_token(SERVICE_ACCOUNT, bot=True)
    for project in (REPO, OTHER):
        state.set_member(project, SERVICE_ACCOUNT, "maintainer")
    state.set_member(REPO, LEAD, "developer")
    state.set_member(REPO, READER, "reporter")
    state.add_file(REPO, "main", ".agentgate.yml", GRANT.format(issuer=issuer.url, subject=GITLAB_SUBJECT))
    # acme/gadgets grants the agent only on a branch that is not its default one: never read.
    state.set_branch(OTHER, "feature", "f" * 40)
    state.add_file(OTHER, "feature", ".agentgate.yml", GRANT.format(issuer=issuer.url, subject=GITLAB_SUBJECT))
    for project, number, labeller in ((REPO, 12, LEAD), (REPO, 13, READER), (REPO, 14, LEAD), (OTHER, 12, LEAD)):
        state.add_issue(project, number, author=LEAD, title=f"Task {number}")
        state.label_issue(project, number, "agent-approved", labeller)
    state.close_issue(REPO, 14, LEAD)
    env = {"AGENTGATE_OIDC_ISSUERS": f"{issuer.url}={issuer.audience}"}
    with running_fake_gitlab(state) as fake, running_gate(fake, tmp_path, token=service_token, extra_env=env) as gate:
        yield World(state, gate, issuer, service_token)


def ask(world: World, credential: str | None = None, **body: Any) -> requests.Response:
    credential = credential if credential is not None else world.issuer.mint(shape="gitlab")
    return requests.post(f"{world.gate.url}/api/v1/tokens", timeout=20,
                         json={"platform": "gitlab", "repository": REPO, "task": 12, **body},
                         headers={"Authorization": f"Bearer {credential}"})


def minted(state: FakeGitLabState) -> list[Any]:
    return state.calls_matching("POST", r"/projects/[^/]+/access_tokens$")


def revocations(state: FakeGitLabState) -> list[Any]:
    return state.calls_matching("DELETE", r"/projects/[^/]+/access_tokens/\d+$")


def api(world: World, token: str, path: str) -> int:
    return requests.get(f"{world.gate.fake.url}/api/v4{path}", headers={"PRIVATE-TOKEN": token},
                        timeout=10).status_code


def earliest_expiry(now: float, ttl: int) -> date:
    """GitLab's expiry is a date, the token dying at 00:00 UTC that day, and never earlier than
    tomorrow: the first midnight after `now + ttl`, at least tomorrow's."""
    tomorrow = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return max(tomorrow, datetime.fromtimestamp(now + ttl, UTC).date() + timedelta(days=1))


def issue_hook(world: World, number: int, user: str, action: str = "close",
               changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """GitLab's "Issue Hook" example, as GitLab sends it when `user` closes (or updates) issue `number`."""
    project = world.state.projects[REPO]
    issue = project.issues[number]
    payload = copy.deepcopy(fixture("issue.json"))
    payload["user"] = {**world.state.user_ref(user), "email": "[REDACTED]"}
    payload["project"].update(id=project.id, path_with_namespace=REPO, default_branch="main", name="widgets")
    payload["object_attributes"].update(id=issue["id"], iid=number, project_id=project.id, action=action,
                                        state=issue["state"], title=issue["title"], labels=[], assignee_ids=[],
                                        assignee_id=None)
    if changes is None:
        changes = {"state_id": {"previous": 1, "current": 2}} if action == "close" else {}
    payload.update(labels=[], assignees=[], changes=changes)
    payload.pop("assignee", None)
    return payload


def test_a_grant_is_a_project_access_token_with_the_fewest_scopes_and_the_earliest_date(world):
    """An approved task gets a project access token of `acme/widgets` only: scopes and role mapped from
    the granted permissions and nothing more, the earliest expiry date that outlives the ttl; it works
    on that project and not on another; asking for less gets less (read only: Reporter)."""
    before = time.time()
    answer = ask(world)
    after = time.time()
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert (body["platform"], body["repository"], body["task"], body["permissions"]) == ("gitlab", REPO, 12, WANTED)
    [call] = minted(world.state)
    assert call.path == f"/api/v4/projects/{enc(REPO)}/access_tokens" and call.user == SERVICE_ACCOUNT
    assert sorted(call.body["scopes"]) == WANTED_SCOPES and call.body["access_level"] == WANTED_LEVEL
    assert date.fromisoformat(call.body["expires_at"]) in {earliest_expiry(before, TTL), earliest_expiry(after, TTL)}
    record = world.state.token_record(body["token"])
    assert record is not None and record["_project"] == REPO and not record["revoked"]
    # agentgate revokes it at the ttl, long before GitLab's date.
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + TTL - 1 <= expires <= after + TTL + 1
    assert api(world, body["token"], f"/projects/{enc(REPO)}/issues/12") == 200
    assert api(world, body["token"], f"/projects/{enc(OTHER)}/issues/12") == 404  # not a member there
    assert api(world, body["token"], f"/projects/{enc(OTHER)}") == 404

    smaller = ask(world, permissions={"contents": "read"})
    assert smaller.status_code == 201, smaller.text
    assert smaller.json()["permissions"] == {"contents": "read"}
    last = minted(world.state)[-1].body
    assert (last["scopes"], last["access_level"]) == (["read_repository"], 20)
    read_only = smaller.json()["token"]
    assert api(world, read_only, f"/projects/{enc(REPO)}/repository/files/.agentgate.yml?ref=main") == 200
    assert api(world, read_only, f"/projects/{enc(REPO)}/issues/12") == 403  # no API scope


def test_every_refusal_mints_nothing(world):
    """An expired ID token and one for another audience (401); an unapproved task (labelled by a
    Reporter), a closed task, a permission beyond the grant, and a project whose grant is only on a
    non-default branch (403): none makes GitLab mint a token, and only the authenticated refusals are audited."""
    issuer = world.issuer
    unauthenticated = {
        "expired": issuer.mint({"exp": 1_000_000, "iat": 999_000, "nbf": 999_000}, shape="gitlab"),
        "wrong audience": issuer.mint({"aud": "not-agentgate"}, shape="gitlab"),
    }
    for case, credential in unauthenticated.items():
        answer = ask(world, credential)
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["reason"] and credential not in answer.text
    forbidden = {
        "unapproved (labelled by a Reporter)": ({"task": 13}, "task-unapproved"),
        "closed task": ({"task": 14}, "task-closed"),
        "beyond the grant": ({"permissions": {"contents": "write", "workflows": "write"}}, "beyond-grant"),
        "grant only on a non-default branch": ({"repository": OTHER}, "no-rule"),
    }
    for case, (body, error) in forbidden.items():
        answer = ask(world, **body)
        assert answer.status_code == 403 and answer.json()["error"] == error, (case, answer.text)
    assert minted(world.state) == [] and world.state.access_tokens == {}
    entries = redis.Redis.from_url(E2E_REDIS_URL).xrange("agentgate:audit")
    refusals = [e for _, e in entries if e[b"event"] == b"token" and e[b"action"] == b"refuse"]
    assert len(refusals) == len(forbidden)


def test_closing_the_task_revokes_the_token_at_gitlab(world, tmp_path):
    """GitLab's "Issue Hook" for the task's close makes the worker revoke the token:
    `DELETE /projects/:id/access_tokens/:token_id` with agentgate's own token, after which GitLab
    answers 401 to it. Then no token (nor the agent's ID token, nor agentgate's own) was ever in clear in
    Redis or in any log line."""
    id_token = world.issuer.mint(shape="gitlab")
    body = ask(world, id_token).json()
    token = body["token"]
    token_id = world.state.token_record(token)["id"]
    assert api(world, token, f"/projects/{enc(REPO)}/issues/12") == 200
    world.state.close_issue(REPO, 12, LEAD)
    delivered = world.gate.deliver("Issue Hook", issue_hook(world, 12, LEAD))
    assert delivered.status_code == 202, delivered.text
    done = world.gate.work()
    [delete] = revocations(world.state)
    assert delete.path == f"/api/v4/projects/{enc(REPO)}/access_tokens/{token_id}"
    assert delete.user == SERVICE_ACCOUNT and delete.status == 204
    assert world.state.access_tokens[token_id]["revoked"]
    assert api(world, token, f"/projects/{enc(REPO)}/issues/12") == 401
    listed = subprocess.run([agentgate_bin(), "tokens", "list", "--platform", "gitlab", "--repo", REPO, "--all",
                             "--format", "jsonl"], env=world.gate.env, capture_output=True, text=True, timeout=30)
    [record] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (record["state"], record["reason"], record["platform"]) == ("revoked", "the task was closed", "gitlab")
    audit = subprocess.run([agentgate_bin(), "audit", "--kind", "token", "--format", "jsonl"], env=world.gate.env,
                           capture_output=True, text=True, timeout=30)
    assert [json.loads(line)["action"] for line in audit.stdout.splitlines()] == ["grant", "revoke"]
    blob = redis_dump(redis.Redis.from_url(E2E_REDIS_URL))
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log")) + done.stdout + done.stderr
    for secret in (token, world.service_token, id_token):
        assert secret.encode() not in blob
        assert secret not in logs


def test_the_ttl_sweep_revokes_a_token_whose_ttl_passed(world):
    """The `expire` job's sweep revokes nothing before a token's ttl and revokes it at GitLab after,
    whatever GitLab's later expiry date; the token then gets 401."""
    body = ask(world).json()
    token = body["token"]
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    record = store.load(conn, body["id"])
    assert record is not None and record.handle == str(world.state.token_record(token)["id"])
    settings = Settings.from_env(world.gate.env)
    issuer = GitLabTokenIssuer(settings, conn)
    cipher = cipher_for(settings)
    assert sweep(conn, lambda platform: issuer, cipher, now=record.expires_at - 1) == {"revoked": 0, "failed": 0}
    assert revocations(world.state) == []
    assert sweep(conn, lambda platform: issuer, cipher, now=record.expires_at + 1) == {"revoked": 1, "failed": 0}
    [delete] = revocations(world.state)
    assert delete.path == f"/api/v4/projects/{enc(REPO)}/access_tokens/{record.handle}"
    assert api(world, token, f"/projects/{enc(REPO)}/issues/12") == 401
    after = store.load(conn, body["id"])
    assert after is not None and after.state == store.REVOKED and after.reason == "its ttl passed"


def test_a_worker_with_the_expire_job_revokes_a_token_once_its_ttl_passed(world, tmp_path):
    """A running `agentgate worker` with the `expire` job every second revokes, on its own, a token whose
    revocation time has come (moved to the past here: a ttl is at least a minute)."""
    body = ask(world).json()
    token = body["token"]
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    assert revocations(world.state) == []
    conn.zadd(store.keys.AGENT_TOKENS_ACTIVE, {body["id"]: time.time() - 1})  # its ttl passed
    env = world.gate.env | {"AGENTGATE_PERIODIC_JOBS": "expire", "AGENTGATE_EXPIRE_INTERVAL": "1"}
    log_path = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen([agentgate_bin(), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  text=True)
    running = Worker(worker, log_path)
    try:
        deadline = time.monotonic() + 30
        while not revocations(world.state) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)  # polling a condition with a deadline
        assert revocations(world.state), running.log()[-3000:]
    finally:
        running.stop()
    assert api(world, token, f"/projects/{enc(REPO)}/issues/12") == 401
    record = store.load(conn, body["id"])
    assert record is not None and record.state == store.REVOKED and record.reason == "its ttl passed"
    assert token not in log_path.read_text()


def test_a_label_applied_by_a_bot_account_does_not_approve_the_task(world):
    """A service account with a name of its own (GitLab lets an admin choose it; only the users API's
    `bot: true` says it is a machine) that applies `agent-approved` as a Developer does not approve the
    task: an agent must not approve its own work, and nothing is minted."""
    world.state.add_user("ci-runner-svc", bot=True)
    world.state.set_member(REPO, "ci-runner-svc", "developer")
    world.state.add_issue(REPO, 15, author=LEAD, title="Task 15")
    world.state.label_issue(REPO, 15, "agent-approved", "ci-runner-svc")
    answer = ask(world, task=15)
    assert answer.status_code == 403 and answer.json()["error"] == "task-unapproved", answer.text
    assert minted(world.state) == []


def test_with_a_project_access_token_of_its_own_agentgate_mints_nothing_and_says_which_token_it_needs(
        issuer, tmp_path):
    """GitLab refuses a project access token (its bot user) as the creator of project access tokens: the
    agent is refused (403 `platform-refused`) with the reason naming what agentgate's own token must be,
    and no token exists."""
    state = FakeGitLabState()  # its seeded token is a project access token's bot, Maintainer of the project
    state.add_project(REPO)
    state.set_member(REPO, LEAD, "developer")
    state.add_file(REPO, "main", ".agentgate.yml", GRANT.format(issuer=issuer.url, subject=GITLAB_SUBJECT))
    state.add_issue(REPO, 12, author=LEAD)
    state.label_issue(REPO, 12, "agent-approved", LEAD)
    env = {"AGENTGATE_OIDC_ISSUERS": f"{issuer.url}={issuer.audience}"}
    with running_fake_gitlab(state) as fake, running_gate(fake, tmp_path, token=state.token, extra_env=env) as gate:
        answer = ask(World(state, gate, issuer, state.token))
    assert answer.status_code == 403 and answer.json()["error"] == "platform-refused", answer.text
    assert "personal or service account token" in answer.json()["reason"]
    [call] = minted(state)
    assert call.status == 400 and state.access_tokens == {}


def test_a_label_history_too_long_to_read_whole_approves_nothing(world):
    """Who applied the approving label is read from the issue's label events; when there are more than
    agentgate reads, a stale "a Developer applied it" from the first pages must not approve the task: a
    Reporter that buries the Developer's removal under hundreds of label events and re-applies the
    label gets nothing minted (503: agentgate could not read enough to decide)."""
    state = world.state
    state.add_issue(REPO, 16, author=LEAD, title="Task 16")
    state.label_issue(REPO, 16, "agent-approved", LEAD)
    for _ in range(250):  # 500 events of another label, by the Reporter
        state.label_issue(REPO, 16, "noise", READER)
        state.label_issue(REPO, 16, "noise", READER, remove=True)
    state.label_issue(REPO, 16, "agent-approved", LEAD, remove=True)
    state.label_issue(REPO, 16, "agent-approved", READER)
    answer = ask(world, task=16)
    assert answer.status_code == 503 and "label events" in answer.json()["reason"], answer.text
    assert minted(state) == []


def test_removing_the_approving_label_revokes_the_token(world):
    """GitLab's "Issue Hook" update whose `changes.labels` lost `agent-approved` revokes the task's token at
    GitLab; the agent asking again is refused (the task is no longer approved) and nothing more is minted."""
    body = ask(world).json()
    token = body["token"]
    world.state.label_issue(REPO, 12, "agent-approved", LEAD, remove=True)
    label = {"id": 206, "title": "agent-approved", "color": "#009966", "project_id": world.state.projects[REPO].id,
             "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "template": False,
             "description": None, "type": "ProjectLabel", "group_id": None}
    payload = issue_hook(world, 12, LEAD, "update", {"labels": {"previous": [label], "current": []}})
    assert world.gate.deliver("Issue Hook", payload).status_code == 202
    world.gate.work()
    [delete] = revocations(world.state)
    assert delete.path.endswith(f"/access_tokens/{world.state.token_record(token)['id']}")
    assert api(world, token, f"/projects/{enc(REPO)}/issues/12") == 401
    again = ask(world)
    assert again.status_code == 403 and again.json()["error"] == "task-unapproved", again.text
    assert len(minted(world.state)) == 1
