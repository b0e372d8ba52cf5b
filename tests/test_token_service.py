"""The agent-token service against a real Redis and a real (local) OIDC issuer, with the platform as an
in-memory forge and a recording issuer: who gets a token, with what, and what is asked of the platform
when the answer is no (nothing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper.core.facts import User
from gatekeeper.forges.port import Event, Issue, IssueEvent
from gatekeeper.settings import Settings
from gatekeeper.state import audit, keys
from gatekeeper.state import tokens as store
from gatekeeper.tokens import agentkeys
from gatekeeper.tokens.revoke import revoke_task, sweep
from gatekeeper.tokens.service import TokenService
from gatekeeper.worker import handlers
from tests.e2e import redis_entries
from tests.oidc_issuer import running_oidc_issuer
from tests.tokenworld import RecordingIssuer, TaskForge, grant_policy

MAIN, FEATURE = "m" * 40, "f" * 40
WORKFLOW_CLAIMS = '{job_workflow_ref: "acme/agent-runner/.github/workflows/agent.yml@*"}'
HUMAN, BOT = User("alice"), User("renovate[bot]", bot=True)


@pytest.fixture
def issuer():
    with running_oidc_issuer() as found:
        yield found


@pytest.fixture
def world(redis_conn, issuer):
    forge = TaskForge(repo="acme/widgets", branches={"main": MAIN, "feature": FEATURE},
                      permissions={"alice": "write", "bob": "read"})
    forge.texts[MAIN] = grant_policy(issuer.url, claims=WORKFLOW_CLAIMS)
    forge.issues[12] = Issue(12, "open", ("agent-approved",))
    forge.events[12] = [IssueEvent("labeled", HUMAN, label="agent-approved", at="2026-12-01T10:00:00Z")]
    platform = RecordingIssuer(forge, token_padding="x" * 500)
    settings = Settings(redis_url="unused", oidc_issuers=((issuer.url, issuer.audience),), token_keys=(),
                        github_private_key="test-key-material", max_active_tokens=3)
    service = TokenService(redis_conn, settings, lambda p: platform if p == "github" else None,
                           lambda: store.Cipher((), ["test-key-material"]))
    return service, platform, forge


def ask(service: TokenService, credential: str, **body: Any):
    payload = {"repository": "acme/widgets", "task": 12, **body}
    return service.issue(f"Bearer {credential}", json.dumps(payload).encode())


def test_an_approved_task_gets_exactly_the_grant(world, issuer, redis_conn):
    """A valid ID token for an approved task gets a token for that one repository with exactly the
    policy's permissions and ttl; the record holds the token only encrypted and as its SHA-256."""
    service, platform, _ = world
    answer = ask(service, issuer.mint())
    assert answer.status == 201, answer.body
    assert platform.minted == [("acme/widgets", {"contents": "write", "pull_requests": "write", "issues": "read"},
                                600)]
    body = answer.body
    assert body["permissions"] == {"contents": "write", "pull_requests": "write", "issues": "read"}
    assert body["token"].startswith("ghs_0001") and len(body["token"]) > 500
    record = store.load(redis_conn, body["id"])
    assert record.requester == "alice"
    assert record.agent == f"oidc:{issuer.url}#repo:acme/agent-runner:ref:refs/heads/main"
    assert record.sha256 == store.digest(body["token"]) and record.approved_label == "agent-approved"
    assert record.expires_at - record.issued_at == pytest.approx(600)
    [entry] = list(audit.query(redis_conn, event="token"))
    assert entry.action == "grant" and entry.on_behalf_of == "alice" and record.sha256 in entry.detail
    assert body["token"] not in json.dumps(entry.to_dict())


def test_asking_for_less_gets_exactly_that_and_more_is_refused(world, issuer):
    """With `permissions` the agent gets exactly what it asked when the grant covers it; a permission
    beyond the grant is refused, naming it, and nothing is minted."""
    service, platform, _ = world
    assert ask(service, issuer.mint(), permissions={"contents": "read"}).body["permissions"] == {"contents": "read"}
    answer = ask(service, issuer.mint(), permissions={"contents": "write", "workflows": "write"})
    assert answer.status == 403 and answer.body["error"] == "beyond-grant"
    assert "workflows: write" in answer.body["reason"]
    assert [m[1] for m in platform.minted] == [{"contents": "read"}]


@pytest.mark.parametrize("case", ["forged", "alg-none", "expired", "wrong-audience", "no-audience",
                                  "unknown-issuer", "claims-mismatch-is-403"])
def test_bad_credentials_ask_nothing_of_the_platform(world, issuer, case):
    """Forged, unsigned, expired, for another audience or from an unknown issuer: 401 and the platform is
    never asked (no read, no mint). A valid token whose claims match no rule is a policy refusal (403)."""
    service, platform, forge = world
    from tests.oidc_issuer import generate_key

    credential = {
        "forged": lambda: issuer.mint(key=generate_key("rsa", kid=issuer.keys[0].kid)),
        "alg-none": lambda: issuer.mint(alg="none", key=None) if False else _unsigned(issuer),
        "expired": lambda: issuer.mint({"exp": 1_000_000, "iat": 999_000, "nbf": 999_000}),
        "wrong-audience": lambda: issuer.mint({"aud": "someone-else"}),
        "no-audience": lambda: issuer.mint({"aud": None}),
        "unknown-issuer": lambda: issuer.mint({"iss": "https://evil.example"}),
        "claims-mismatch-is-403": lambda: issuer.mint({"job_workflow_ref": "acme/other/.github/workflows/x.yml@main"}),
    }[case]()
    answer = ask(service, credential)
    if case == "claims-mismatch-is-403":
        assert answer.status == 403 and answer.body["error"] == "no-grant"
        assert "issue 12" not in forge.reads  # the task is not even read for an agent no rule names
    else:
        assert answer.status == 401, answer.body
        assert forge.reads == []
    assert platform.minted == []


def _unsigned(issuer) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(issuer.claims())}."


def test_agent_keys_work_until_removed(world, redis_conn):
    """An agent key named by a rule gets a token; an unknown key, or one removed, is 401 at once."""
    service, platform, _ = world
    key = agentkeys.add(redis_conn, "runner-1")
    assert ask(service, key).status == 201
    assert ask(service, "agk_" + "z" * 43).status == 401
    agentkeys.remove(redis_conn, "runner-1")
    answer = ask(service, key)
    assert answer.status == 401 and len(platform.minted) == 1


@pytest.mark.parametrize("task", ["unlabelled", "bot-labelled", "reader-labelled", "closed", "missing"])
def test_an_unapproved_or_closed_task_is_refused(world, issuer, task):
    """The task must be an open issue carrying an approved label applied by a human with write access."""
    service, platform, forge = world
    if task == "unlabelled":
        forge.issues[12] = Issue(12, "open", ())
    elif task == "bot-labelled":
        forge.events[12] = [IssueEvent("labeled", BOT, label="agent-approved")]
    elif task == "reader-labelled":
        forge.events[12] = [IssueEvent("labeled", User("bob"), label="agent-approved")]
    elif task == "closed":
        forge.issues[12] = Issue(12, "closed", ("agent-approved",))
    else:
        del forge.issues[12]
    answer = ask(service, issuer.mint())
    assert answer.status == 403 and answer.body["error"].startswith("task-"), answer.body
    assert platform.minted == []


def test_a_grant_only_on_another_branch_gives_nothing(world, issuer):
    """Only the default branch's policy grants tokens: a `tokens` section on a feature branch (or in a
    pull request) is never read."""
    service, platform, forge = world
    forge.texts[FEATURE] = forge.texts.pop(MAIN)
    forge.texts[MAIN] = "version: 1\n"
    answer = ask(service, issuer.mint())
    assert answer.status == 403 and answer.body["error"] == "no-rule"
    assert not any(FEATURE in r for r in forge.reads) and platform.minted == []


def test_an_invalid_default_policy_issues_nothing(world, issuer):
    """Fail closed: an invalid policy on the default branch grants nothing."""
    service, platform, forge = world
    forge.texts[MAIN] = "version: 1\ntokens: [oops\n"
    answer = ask(service, issuer.mint())
    assert answer.status == 403 and answer.body["error"] == "policy-invalid" and platform.minted == []


def test_malformed_bodies_are_400(world, issuer):
    """A body that is not the documented request is a 400 naming the field."""
    service, _, _ = world
    credential = issuer.mint()
    for body in (b"not json", b"[]", json.dumps({"repository": "acme/widgets"}).encode(),
                 json.dumps({"repository": "acme/widgets", "task": "12"}).encode(),
                 json.dumps({"repository": "../etc", "task": 1}).encode(),
                 json.dumps({"repository": "acme/widgets", "task": 1, "permissions": {"secrets": "write"}}).encode(),
                 json.dumps({"repository": "acme/widgets", "task": 1, "extra": True}).encode()):
        answer = service.issue(f"Bearer {credential}", body)
        assert answer.status == 400 and answer.body["error"] == "malformed", body


def test_live_tokens_are_capped_per_agent_and_repository(world, issuer):
    """An agent cannot stockpile tokens: past the cap it is told to give one back (429)."""
    service, platform, _ = world
    assert [ask(service, issuer.mint()).status for _ in range(4)] == [201, 201, 201, 429]
    assert len(platform.minted) == 3


def test_only_the_agent_that_got_it_can_give_it_back(world, issuer, redis_conn):
    """DELETE by another agent is a 404 (its tokens are none of their business); by the same agent it is
    revoked at the platform with the token itself, and the record keeps no ciphertext."""
    service, platform, _ = world
    body = ask(service, issuer.mint()).body
    other = agentkeys.add(redis_conn, "runner-2")
    assert service.give_back(f"Bearer {other}", body["id"]).status == 404
    assert service.give_back(f"Bearer {issuer.mint()}", body["id"]).status == 204
    assert platform.revoked == [body["token"]]
    assert store.load(redis_conn, body["id"]).state == store.REVOKED
    assert store.encrypted(redis_conn, body["id"]) is None
    assert service.give_back(f"Bearer {issuer.mint()}", body["id"]).status == 204  # idempotent
    assert platform.revoked == [body["token"]]


def test_closing_the_task_or_removing_its_label_revokes(world, issuer, redis_conn):
    """The task handler asks for revocation when the task closes or its approving label goes; another
    label's removal leaves the token alone."""
    service, platform, forge = world
    first = ask(service, issuer.mint()).body
    rt = type("RT", (), {"conn": redis_conn})()
    event = Event("github", "d1", "task", "acme/widgets", 1, HUMAN, 12, {"action": "unlabeled", "label": "bug"})
    result = handlers.on_task_changed(handlers.Context(rt, forge, event))  # type: ignore[arg-type]
    for revocation in result.revoke_tokens:
        revoke_task(redis_conn, lambda p: platform, store.Cipher((), ["test-key-material"]), "github",
                    "acme/widgets", revocation.task, revocation.reason, label=revocation.label, kind=revocation.kind)
    assert platform.revoked == []
    closed = Event("github", "d2", "task", "acme/widgets", 1, HUMAN, 12, {"action": "closed"})
    result = handlers.on_task_changed(handlers.Context(rt, forge, closed))  # type: ignore[arg-type]
    assert [(r.task, r.reason, r.label, r.kind) for r in result.revoke_tokens] == [
        (12, "the task was closed", None, "issue")]
    for revocation in result.revoke_tokens:
        revoke_task(redis_conn, lambda p: platform, store.Cipher((), ["test-key-material"]), "github",
                    "acme/widgets", revocation.task, revocation.reason, label=revocation.label, kind=revocation.kind)
    assert platform.revoked == [first["token"]]
    [entry] = [e for e in audit.query(redis_conn, event="token") if e.action == "revoke"]
    assert "closed" in entry.detail and first["token"] not in entry.detail


def test_the_sweep_revokes_at_the_ttl_and_retries_failures(world, issuer, redis_conn):
    """A token is revoked when its ttl passes, not at the platform's later expiry; a revocation that fails
    is retried with backoff and its record says so until it succeeds."""
    service, platform, _ = world
    body = ask(service, issuer.mint()).body
    record = store.load(redis_conn, body["id"])
    cipher = store.Cipher((), ["test-key-material"])
    assert sweep(redis_conn, lambda p: platform, cipher, now=record.expires_at - 1) == {"revoked": 0, "failed": 0}
    platform.fail_revoke = True
    assert sweep(redis_conn, lambda p: platform, cipher, now=record.expires_at + 1) == {"revoked": 0, "failed": 1}
    failed = store.load(redis_conn, body["id"])
    assert failed.state == store.RETRYING and "502" in failed.reason and failed.attempts == 1
    assert sweep(redis_conn, lambda p: platform, cipher, now=record.expires_at + 2)["failed"] == 0  # backing off
    platform.fail_revoke = False
    assert sweep(redis_conn, lambda p: platform, cipher, now=record.expires_at + 120) == {"revoked": 1, "failed": 0}
    assert store.load(redis_conn, body["id"]).state == store.REVOKED and platform.revoked == [body["token"]]


def test_no_token_in_clear_anywhere_in_redis(world, issuer, redis_conn):
    """Every key and value in Redis, after grants, a refusal and a revocation: no token in clear, no agent
    key in clear."""
    service, _, _ = world
    key = agentkeys.add(redis_conn, "runner-1")
    granted = [ask(service, issuer.mint()).body["token"], ask(service, key).body["token"]]
    ask(service, issuer.mint(), permissions={"workflows": "write"})
    service.give_back(f"Bearer {key}", store.of_task(redis_conn, "github", "acme/widgets", 12)[-1])
    secrets_ = [*granted, key, granted[0][:60]]
    for name, values in redis_entries(redis_conn, match=keys.KEY_PREFIX + "*"):
        blob = b"\n".join([name, *values])
        for secret in secrets_:
            assert secret.encode() not in blob, f"{name!r} holds a secret in clear"
