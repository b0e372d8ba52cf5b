"""Agent tokens end to end: `agentgate serve` and `agentgate worker` as real processes, the fake GitHub,
a locally served OIDC issuer (its own keys and JWKS), a real Redis.

What must hold: a valid ID token for an approved task gets a GitHub token restricted to that one
repository and exactly the granted permissions (the fake records the restricted request, and the token
is refused on another repository); every bad credential or unapproved request is refused with no
platform token minted; closing the task revokes the token at GitHub with the token itself; and no
token is ever in clear in Redis or in any log line."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import redis
import requests

from tests.conftest import github_fixture
from tests.e2e import APP_ID, E2E_REDIS_URL, INSTALLATION, REPO, agentgate_bin, redis_dump, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.fakegithub.state import DEFAULT_INSTALLATION_PERMISSIONS
from tests.keys import app_key_pair
from tests.oidc_issuer import generate_key, running_oidc_issuer

pytestmark = pytest.mark.e2e

OTHER = "acme/gadgets"
MAIN = "d" * 40
GRANT = """version: 1
tokens:
  - agents:
      - issuer: {issuer}
        subject: "repo:acme/agent-runner:ref:refs/heads/main"
        claims: {{job_workflow_ref: "acme/agent-runner/.github/workflows/agent.yml@*"}}
      - key: runner-1
    permissions: {{contents: write, pull_requests: write, issues: read}}
    ttl: 20m
"""
WANTED = {"contents": "write", "pull_requests": "write", "issues": "read"}


@pytest.fixture
def issuer():
    with running_oidc_issuer() as found:
        yield found


@pytest.fixture
def world(issuer, tmp_path):
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    # The App holds what it may grant agents (contents: write): GitHub never mints more than that.
    state.add_installation(INSTALLATION, "acme", [REPO, OTHER], permissions={
        **DEFAULT_INSTALLATION_PERMISSIONS, "contents": "write"})
    state.add_repo(REPO)
    state.add_repo(OTHER)
    state.repo(REPO).branches["main"] = MAIN
    state.repo(REPO).branches["feature"] = "f" * 40
    state.set_content(REPO, ".agentgate.yml", GRANT.format(issuer=issuer.url), ref=MAIN)
    state.set_permission(REPO, "lead", "write")
    state.set_permission(REPO, "reader", "read")
    for number, labeller, issue_state in ((12, "lead", "open"), (13, "reader", "open"), (14, "lead", "closed")):
        state.add_issue(REPO, number, title=f"Task {number}", state=issue_state, labels=["agent-approved"])
        state.add_event(REPO, number, {"event": "labeled", "label": {"name": "agent-approved"},
                                       "actor": {"login": labeller, "type": "User"}})
    env = {"AGENTGATE_OIDC_ISSUERS": f"{issuer.url}={issuer.audience}", "AGENTGATE_PERIODIC_JOBS": "off"}
    with running_fake_github(state) as fake, running_agentgate(fake, private, tmp_path, extra_env=env) as gate:
        yield state, gate


def ask(gate, credential: str, **body):
    return requests.post(f"{gate.url}/api/v1/tokens", json={"repository": REPO, "task": 12, **body},
                         headers={"Authorization": f"Bearer {credential}"}, timeout=20)


# What agentgate asks for itself to read the policy and the task (forges/github/forge.py, Capability.READ).
OWN_READ = {"contents": "read", "metadata": "read", "pull_requests": "read", "issues": "read"}


def minted(state: FakeState) -> list:
    """The tokens minted for agents: every access-token request but agentgate's own read token."""
    return [c for c in state.calls_matching("POST", rf"/app/installations/{INSTALLATION}/access_tokens$")
            if (c.body or {}).get("permissions") != OWN_READ]


def api(state_url: str, token: str, path: str) -> int:
    return requests.get(f"{state_url}{path}", headers={"Authorization": f"token {token}"}, timeout=10).status_code


def test_a_grant_is_one_repository_with_exactly_the_allowed_scope(world, issuer):
    """The token GitHub mints is restricted to that repository and those permissions; it works there and
    nowhere else; asking for less gets exactly that."""
    state, gate = world
    answer = ask(gate, issuer.mint())
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["repository"] == REPO and body["task"] == 12 and body["permissions"] == WANTED
    [call] = minted(state)
    assert call.body == {"repositories": ["widgets"], "permissions": WANTED}
    token = state.tokens[body["token"]]
    assert token.repositories == [REPO] and token.permissions == {"metadata": "read", **WANTED}
    assert api(gate.fake.url, body["token"], f"/repos/{REPO}/issues/12") == 200
    assert api(gate.fake.url, body["token"], f"/repos/{OTHER}/issues/1") in (403, 404)
    smaller = ask(gate, issuer.mint(), permissions={"contents": "read"}).json()
    assert smaller["permissions"] == {"contents": "read"}
    assert minted(state)[-1].body == {"repositories": ["widgets"], "permissions": {"contents": "read"}}


def test_every_refusal_mints_nothing(world, issuer):
    """Forged signature, `alg: none`, expired, wrong audience, unknown issuer, unknown or removed agent key
    (401); an unapproved or closed task, a grant only on a non-default branch, a permission beyond the
    grant (403): none of them makes GitHub mint a token."""
    state, gate = world
    import base64

    def unsigned() -> str:
        part = lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(issuer.claims())}."

    add = subprocess.run([agentgate_bin(), "agents", "add", "runner-1"], env=gate.env, capture_output=True,
                         text=True, timeout=30)
    assert add.returncode == 0, add.stderr
    key = add.stdout.strip()
    assert key.startswith("agk_")
    removed = subprocess.run([agentgate_bin(), "agents", "remove", "runner-1"], env=gate.env, capture_output=True,
                             text=True, timeout=30)
    assert removed.returncode == 0
    unauthenticated = {
        "forged": issuer.mint(key=generate_key("rsa", kid=issuer.keys[0].kid)),
        "alg-none": unsigned(),
        "expired": issuer.mint({"exp": 1_000_000, "iat": 999_000, "nbf": 999_000}),
        "wrong-audience": issuer.mint({"aud": "not-agentgate"}),
        "unknown-issuer": issuer.mint({"iss": "https://issuer.example"}),
        "unknown-key": "agk_" + "q" * 43,
        "removed-key": key,
    }
    for case, credential in unauthenticated.items():
        answer = ask(gate, credential)
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["reason"] and credential not in answer.text
    forbidden = {
        "unapproved (labelled by a reader)": ({"task": 13}, "task-unapproved"),
        "closed task": ({"task": 14}, "task-closed"),
        "beyond the grant": ({"permissions": {"contents": "write", "workflows": "write"}}, "beyond-grant"),
        "another repository": ({"repository": OTHER}, "no-rule"),
    }
    state.set_content(OTHER, ".agentgate.yml", GRANT.format(issuer=issuer.url), ref="feature")
    for case, (body, error) in forbidden.items():
        answer = ask(gate, issuer.mint(), **body)
        assert answer.status_code == 403 and answer.json()["error"] == error, (case, answer.text)
    assert minted(state) == []
    entries = redis.Redis.from_url(E2E_REDIS_URL).xrange("agentgate:audit")
    refusals = [e for _, e in entries if e[b"event"] == b"token" and e[b"action"] == b"refuse"]
    assert len(refusals) == len(forbidden)  # authenticated refusals are audited; anonymous ones are not


def test_closing_the_task_revokes_the_token_with_itself(world, issuer, tmp_path):
    """Closing the task issue (the delivery GitHub sends) makes the worker revoke the token at GitHub:
    `DELETE /installation/token` authenticated by that very token, which then stops working. Then no
    token was ever in clear in Redis or in any log line."""
    state, gate = world
    body = ask(gate, issuer.mint()).json()
    token = body["token"]
    closed = copy.deepcopy(github_fixture("issues.labeled.1"))
    closed["action"] = "closed"
    closed["issue"].update(number=12, state="closed")
    closed["repository"].update(full_name=REPO, name="widgets", default_branch="main")
    closed["installation"] = {"id": INSTALLATION}
    closed["sender"] = {"login": "lead", "type": "User", "id": 7}
    closed.pop("label", None)
    assert gate.deliver("issues", closed).status_code in (200, 202)
    done = gate.work()
    assert state.tokens[token].revoked
    deletes = state.calls_matching("DELETE", r"/installation/token$")
    assert len(deletes) == 1 and deletes[0].auth == "installation"
    assert api(gate.fake.url, token, f"/repos/{REPO}/issues/12") == 401
    listed = subprocess.run([agentgate_bin(), "tokens", "list", "--repo", REPO, "--all", "--format", "jsonl"],
                            env=gate.env, capture_output=True, text=True, timeout=30)
    [record] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["state"] == "revoked" and record["reason"] == "the task was closed"
    audit = subprocess.run([agentgate_bin(), "audit", "--kind", "token", "--format", "jsonl"], env=gate.env,
                           capture_output=True, text=True, timeout=30)
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["grant", "revoke"]
    # No token in clear: every Redis key and value, the web process's log and the worker's output.
    blob = redis_dump(redis.Redis.from_url(E2E_REDIS_URL))
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log")) + done.stdout + done.stderr
    for secret in {token, token[:40]} | {t for t in state.tokens if t != token and len(t) > 30}:
        assert secret.encode() not in blob
        assert secret not in logs


def test_audit_answers_what_one_agent_did_in_a_repository_since_a_date(world, issuer):
    """`agentgate audit --actor X --repo Y --since D --format jsonl`, from a recorded run: the agent's token
    (as an agent key of the same name) and the chain it tried (a `/deploy` comment on a PR) in one answer,
    and nothing of anyone else's."""
    from datetime import UTC, datetime

    state, gate = world
    since = datetime.now(UTC).isoformat(timespec="seconds")
    state.set_content(REPO, ".agentgate.yml", GRANT.format(issuer=issuer.url).replace("runner-1", "copilot-swe-agent"),
                      ref=MAIN)
    add = subprocess.run([agentgate_bin(), "agents", "add", "copilot-swe-agent"], env=gate.env, capture_output=True,
                         text=True, timeout=30)
    assert ask(gate, add.stdout.strip()).status_code == 201
    assert ask(gate, issuer.mint()).status_code == 201  # another agent: not in the answer
    pr = state.add_pull(REPO, 7, user="copilot-swe-agent[bot]", head_sha="7" * 40, head_ref="copilot/task-12",
                        base_ref="main", title="Task 12")
    state.add_file(REPO, 7, "src/widget.py")
    comment = copy.deepcopy(github_fixture("issue_comment.created.1"))
    comment["issue"].update(number=7, pull_request={"url": f"https://api.github.com/repos/{REPO}/pulls/7"})
    agent = {"login": "copilot-swe-agent[bot]", "id": 198982749, "type": "Bot"}
    comment["comment"].update(body="/deploy production", user=agent, id=555)
    comment.update(sender=agent, installation={"id": INSTALLATION})
    comment["repository"].update(full_name=REPO, name="widgets", default_branch="main")
    assert gate.deliver("issue_comment", comment).status_code in (200, 202)
    gate.work()
    assert [c for c in state.calls_matching("POST", rf"/repos/{REPO}/statuses/{pr['head']['sha']}")][-1].body[
        "state"] == "failure"
    found = subprocess.run([agentgate_bin(), "audit", "--actor", "copilot-swe-agent", "--repo", REPO, "--since",
                            since, "--format", "jsonl"], env=gate.env, capture_output=True, text=True, timeout=30)
    entries = [json.loads(line) for line in found.stdout.splitlines()]
    assert [(e["event"], e["action"], e["actor"]) for e in entries] == [
        ("token", "grant", "key:copilot-swe-agent"),
        ("issue_comment", "created", "copilot-swe-agent[bot]"),
    ]
    assert entries[0]["on_behalf_of"] == "lead" and "/deploy" in entries[1]["detail"]


def test_tokens_come_from_the_agent_app_when_one_is_configured(issuer, tmp_path):
    """With AGENTGATE_AGENT_APP_ID the token is minted by that App's installation (its bot, not agentgate's,
    then acts for the agent), while agentgate still reads the policy and the task with its own App."""
    from tests.keys import second_key_pair

    private, public = app_key_pair()
    agent_private, agent_public = second_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.other_apps[5151] = (agent_public, "agentgate-agents")
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.add_installation(77, "acme", [REPO], app_id=5151,
                           permissions={**DEFAULT_INSTALLATION_PERMISSIONS, "contents": "write"})
    state.repo(REPO).branches["main"] = MAIN
    state.set_content(REPO, ".agentgate.yml", GRANT.format(issuer=issuer.url), ref=MAIN)
    state.set_permission(REPO, "lead", "write")
    state.add_issue(REPO, 12, title="Task", labels=["agent-approved"])
    state.add_event(REPO, 12, {"event": "labeled", "label": {"name": "agent-approved"},
                               "actor": {"login": "lead", "type": "User"}})
    key_file = tmp_path / "agent-app.pem"
    key_file.write_text(agent_private)
    env = {"AGENTGATE_OIDC_ISSUERS": f"{issuer.url}={issuer.audience}", "AGENTGATE_PERIODIC_JOBS": "off",
           "AGENTGATE_AGENT_APP_ID": "5151", "AGENTGATE_AGENT_APP_PRIVATE_KEY_PATH": str(key_file)}
    with running_fake_github(state) as fake, running_agentgate(fake, private, tmp_path, extra_env=env) as gate:
        answer = ask(gate, issuer.mint())
        assert answer.status_code == 201, answer.text
        token = state.tokens[answer.json()["token"]]
        assert token.installation_id == 77 and token.permissions == {"metadata": "read", **WANTED}
        agent_mints = state.calls_matching("POST", r"/app/installations/77/access_tokens$")
        own_reads = state.calls_matching("POST", rf"/app/installations/{INSTALLATION}/access_tokens$")
        assert len(agent_mints) == 1 and [c.body["permissions"] for c in own_reads] == [OWN_READ]
