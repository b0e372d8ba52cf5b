"""Attacks on the just-in-time agent tokens (issue 10): an agent, or a thief of its CI credential, trying
to get more than the policy and a human allowed, to keep a token alive longer, or to act unattributed.

Each test states the rule it checks. A test that passes documents a defence that holds; a test marked
`xfail(strict=True)` demonstrates a weakness of the current code (it fails today, and turns the suite red
the moment the weakness is fixed, so the mark is removed with the fix).

The platform is an in-memory forge behind a recording issuer that, like GitHub's API ("the name is not
case sensitive"), resolves a repository whatever the case of its name; the OIDC issuer is real
(tests/oidc_issuer.py), Redis is real; the GitLab tests use the fake GitLab server."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gatekeeper.core import grants
from gatekeeper.core.facts import User
from gatekeeper.core.identity import classify
from gatekeeper.forges.port import Event, ForgeError, Issue, IssueEvent
from gatekeeper.settings import Settings
from gatekeeper.state import audit, keys
from gatekeeper.state import tokens as store
from gatekeeper.tokens import agentkeys
from gatekeeper.tokens.revoke import SWEEP_BATCH, revoke, revoke_task, sweep
from gatekeeper.tokens.service import TokenService
from gatekeeper.worker import gather, handlers
from tests.oidc_issuer import running_oidc_issuer
from tests.tokenworld import RecordingIssuer, TaskForge, grant_policy

MAIN, TIGHTENED = "m" * 40, "t" * 40
ALICE, BOB, BOT = User("alice"), User("bob"), User("helper[bot]", bot=True)
APPROVED = "agent-approved"
KEY_MATERIAL = "test-key-material"
REPO = "acme/widgets"


def cipher() -> store.Cipher:
    return store.Cipher((), [KEY_MATERIAL])


@dataclass
class World:
    service: TokenService
    platform: RecordingIssuer
    forge: TaskForge
    conn: Any
    issuer: Any

    def ask(self, credential: str | None = None, **body: Any):
        payload = {"repository": REPO, "task": 12, **body}
        return self.service.issue(f"Bearer {credential or self.issuer.mint()}", json.dumps(payload).encode())

    def issuers(self, platform: str) -> RecordingIssuer | None:
        return self.platform if platform == self.platform.platform else None

    def deliver(self, kind: str, number: int, data: dict[str, Any], actor: User = ALICE, repo: str = REPO) -> None:
        """A delivery as the worker handles it: the handler, then its revocations (as `jobs.apply`)."""
        event = Event(self.platform.platform, f"d-{kind}-{number}-{len(data)}", kind, repo, 1, actor, number, data)
        rt = type("RT", (), {"conn": self.conn, "settings": Settings()})()
        handler, _ = handlers.HANDLERS[kind]
        result = handler(handlers.Context(rt, replace(self.forge, repo=repo), event))  # type: ignore[arg-type]
        for ask in result.revoke_tokens:
            revoke_task(self.conn, self.issuers, cipher(), event.platform, event.repo, ask.task, ask.reason,
                        label=ask.label, kind=ask.kind)


@pytest.fixture
def issuer():
    with running_oidc_issuer() as found:
        yield found


def make_world(conn, issuer, platform: str = "github", **settings: Any) -> World:
    forge = TaskForge(repo=REPO, branches={"main": MAIN}, permissions={"alice": "write", "bob": "write"})
    forge.texts[MAIN] = grant_policy(issuer.url)
    forge.issues[12] = Issue(12, "open", ())
    forge.label(12, APPROVED, ALICE)
    recording = RecordingIssuer(forge, platform=platform)
    options = {"max_active_tokens": 3, **settings}
    config = Settings(redis_url="unused", oidc_issuers=((issuer.url, issuer.audience),), token_keys=(),
                      github_private_key=KEY_MATERIAL, **options)
    world = World(None, recording, forge, conn, issuer)  # type: ignore[arg-type]
    world.service = TokenService(conn, config, world.issuers, cipher)
    return world


@pytest.fixture
def world(redis_conn, issuer) -> World:
    return make_world(redis_conn, issuer)


# ==== weaknesses (xfail: each fails on the current code) ================================================

def test_a_bots_reapplied_label_on_a_pr_task_is_not_the_humans(world):
    """Rule: whose application of the approved label counts is read from the task's current history. On a
    pull request task, after a human removed the approved label (un-approving the agent), a bot putting it
    back does not approve the task, even when agentgate read the history minutes before."""
    forge = world.forge
    forge.branches["feature"] = "f" * 40
    forge.add_pull(30, BOT, "f" * 40, ["src/app.py"])
    forge.issues[30] = Issue(30, "open", (), is_pull_request=True)
    forge.label(30, APPROVED, ALICE)
    world.deliver("label", 30, {"action": "labeled", "label": APPROVED})
    first = world.ask(task=30)
    assert first.status == 201, first.body
    # A human takes the approval back: the token dies.
    forge.unlabel(30, APPROVED, BOB)
    world.deliver("label", 30, {"action": "unlabeled", "label": APPROVED}, actor=BOB)
    assert world.platform.revoked == [first.body["token"]]
    # The agent's helper bot puts the label back; the agent asks again.
    forge.label(30, APPROVED, BOT)
    world.deliver("label", 30, {"action": "labeled", "label": APPROVED}, actor=BOT)
    again = world.ask(task=30)
    assert again.status == 403 and again.body["error"] == "task-unapproved", again.body
    assert len(world.platform.minted) == 1


def test_another_spelling_of_the_repository_does_not_escape_revocation(world):
    """Rule: a token dies with its task whatever spelling of the repository's name the agent asked with
    (GitHub and GitLab resolve names case-insensitively; deliveries name the repository canonically)."""
    answer = world.ask(repository="ACME/Widgets")
    assert answer.status == 201, answer.body  # GitHub finds the repository, so the grant stands
    world.forge.issues[12] = replace(world.forge.issues[12], state="closed")
    world.deliver("task", 12, {"action": "closed"})
    assert world.platform.revoked == [answer.body["token"]]


def test_another_spelling_of_the_repository_does_not_lift_the_cap(world):
    """Rule: an agent holds at most AGENTGATE_MAX_ACTIVE_TOKENS live tokens per repository, however it
    spells the repository's name."""
    assert [world.ask().status for _ in range(3)] == [201, 201, 201]
    answer = world.ask(repository="Acme/Widgets")
    assert answer.status == 429, answer.body
    assert len(world.platform.minted) == 3


def test_another_spelling_does_not_read_a_stale_label_history(world):
    """Rule: after a human removes the approved label and a bot puts it back, no spelling of the repository's
    name gets a token (the history each spelling cached earlier is not the task's current one)."""
    assert world.ask(repository="ACME/widgets").status == 201  # reads (and caches) the history
    world.forge.unlabel(12, APPROVED, BOB)
    world.deliver("task", 12, {"action": "unlabeled", "label": APPROVED}, actor=BOB)
    world.forge.label(12, APPROVED, BOT)
    world.deliver("task", 12, {"action": "labeled", "label": APPROVED}, actor=BOT)
    assert world.ask(repository="acme/widgets").body["error"] == "task-unapproved"  # canonical: fresh
    answer = world.ask(repository="ACME/widgets")
    assert answer.status == 403 and answer.body["error"] == "task-unapproved", answer.body


def test_a_task_closed_while_its_token_is_minted_does_not_leave_it_alive(world):
    """Rule: a token never outlives its task. When the task closes between the grant decision and the
    record being saved (the mint is a platform round trip), the token is refused or revoked at once."""
    def close_meanwhile() -> None:
        world.forge.issues[12] = replace(world.forge.issues[12], state="closed")
        world.deliver("task", 12, {"action": "closed"})

    world.platform.on_mint = close_meanwhile
    answer = world.ask()
    assert world.platform.minted, "the mint happened"
    assert answer.status != 201 or answer.body["token"] in world.platform.revoked, answer.status


def test_a_grant_removed_from_the_default_branch_stops_at_once(world):
    """Rule: the grant is the default branch's policy as it is now. Once an admin removed the `tokens`
    rule (a new head on the default branch), the next request is refused, even before (or without) the
    push delivery being processed: a backlog or a lost delivery must not extend a revoked grant."""
    assert world.ask().status == 201
    world.forge.texts[TIGHTENED] = "version: 1\n"
    world.forge.branches["main"] = TIGHTENED
    answer = world.ask()
    assert answer.status == 403 and answer.body["error"] == "no-rule", answer.body


def test_an_id_token_for_several_audiences_is_refused(world):
    """Rule (OIDC Core 3.1.3.7): an ID token that also names audiences agentgate does not trust is refused
    (401): any of those relying parties could replay it here. GitLab CI lets a job ask for such a token."""
    answer = world.ask(world.issuer.mint({"aud": [world.issuer.audience, "https://vault.example"]}))
    assert answer.status == 401, answer.body
    assert world.platform.minted == []


def test_a_replayed_id_token_gets_no_more_than_the_cap(world):
    """Rule: an ID token is a credential until it expires, as the interface says (an agent may ask again
    with it); what a stolen copy can get is bounded by the live-token cap per agent and repository."""
    credential = world.issuer.mint()
    answers = [world.ask(credential).status for _ in range(5)]
    assert answers == [201, 201, 201, 429, 429]
    assert len(world.platform.minted) == 3


def test_a_token_agentgate_cannot_record_is_never_left_minted(world):
    """Rule: a platform token exists only while agentgate holds it (encrypted, to revoke it). When the
    token cannot be encrypted (a malformed AGENTGATE_TOKEN_KEYS), nothing is minted, or what was minted is
    revoked before answering."""
    world.service._cipher = lambda: store.Cipher(("not-a-fernet-key",), ())
    try:
        answer = world.service.issue(f"Bearer {world.issuer.mint()}",
                                     json.dumps({"repository": REPO, "task": 12}).encode())
        assert answer.status != 201
    except ValueError:
        pass  # an uncaught error is a 500: what matters is the platform's side
    minted = world.platform.counter
    assert minted == 0 or len(world.platform.revoked) == minted, "a minted token was left unrecorded and live"


def test_removing_an_agent_key_ends_its_tokens(world, monkeypatch):
    """Rule: removing an agent key (an operator's answer to a leaked key) also ends the tokens it already
    obtained, now or at the next `expire` sweep, not at their ttl."""
    import argparse

    from gatekeeper.cli import tokens as cli
    from gatekeeper.forges import factory
    from gatekeeper.tokens import revoke as revoke_module

    monkeypatch.setattr(factory, "token_issuers", lambda settings, conn: world.issuers)
    monkeypatch.setattr(revoke_module, "cipher_for", lambda settings: cipher())
    key = agentkeys.add(world.conn, "runner-1")
    body = world.ask(key).body
    assert cli._agents_remove(world.conn, argparse.Namespace(name="runner-1")) == 0
    sweep(world.conn, world.issuers, cipher())
    assert body["token"] in world.platform.revoked
    assert store.load(world.conn, body["id"]).state == store.REVOKED


def test_closing_a_gitlab_merge_request_spares_the_issue_of_the_same_number(redis_conn, issuer):
    """Rule: on GitLab a task is an issue (merge requests are numbered apart): an agent closing its own merge
    request !12 does not revoke the tokens other agents hold for issue #12."""
    world = make_world(redis_conn, issuer, platform="gitlab")
    answer = world.ask(platform="gitlab")
    assert answer.status == 201, answer.body
    world.deliver("task", 12, {"action": "closed", "is_pull_request": True}, actor=BOT)
    assert world.platform.revoked == []
    assert store.load(redis_conn, answer.body["id"]).state == store.ACTIVE


@pytest.mark.parametrize("permissions", [{"issues": "write"}, {"pull_requests": "write", "contents": "read"}])
def test_a_gitlab_token_without_contents_write_cannot_push(permissions):
    """Rule: least privilege on GitLab. A grant without `contents: write` never yields a project access
    token that can write the repository: `api` (which includes the repository files and commits API) with
    the Developer role can. Either the narrower role (Reporter) is used or the grant is refused (422)."""
    from gatekeeper.forges.gitlab.tokens import DEVELOPER, scopes_for

    try:
        scopes, level = scopes_for(permissions)
    except ForgeError as exc:
        assert exc.status == 422
        return
    assert not ("api" in scopes and level >= DEVELOPER), (scopes, level)
    assert "write_repository" not in scopes


def test_a_long_gitlab_label_history_does_not_hide_the_last_application(redis_conn):
    """Rule: a task is approved only by whoever applied its approved label *last*. On GitLab, a bot that
    floods an issue with label events (500, with the agent's own `api` token) and then re-applies the
    approved label a human removed does not inherit the human's first application: an incomplete history
    approves nothing (fail closed)."""
    from gatekeeper.forges.gitlab.client import GitLabForge
    from tests.fakegitlab import FakeGitLabState, running_fake_gitlab

    state = FakeGitLabState()
    state.add_project(REPO)
    state.add_user("project_9_bot_1f2e", bot=True)
    state.set_member(REPO, "maria", "maintainer")
    state.set_member(REPO, "dev", "developer")
    state.add_issue(REPO, 3, author="maria")
    state.label_issue(REPO, 3, APPROVED, "maria")
    for n in range(520):
        state.label_issue(REPO, 3, f"noise-{n % 7}", "project_9_bot_1f2e", remove=bool(n % 2))
    state.label_issue(REPO, 3, APPROVED, "dev", remove=True)  # a human takes the approval back
    state.label_issue(REPO, 3, APPROVED, "project_9_bot_1f2e")  # ...and the bot puts the label back
    with running_fake_gitlab(state) as gitlab:
        forge = GitLabForge(REPO, gitlab.url, state.token, redis_conn)
        try:
            task = gather.task_ref(redis_conn, forge, 3, classify, issues_only=False)
        except ForgeError:
            return  # the history could not be read whole: no grant (the service answers 503)
    assert task is not None and APPROVED in task.labels
    approved = grants.task_approval(task, grants.TaskApproval((APPROVED,), "write"))
    assert approved is None, f"approved by {approved}"


def test_an_agent_editing_agentgates_comment_is_judged(world, redis_conn):
    """Rule: on GitHub an agent's token is an installation token of agentgate's own App, so what the agent
    does bears agentgate's login. An edit that turns agentgate's one PR comment into a command for another
    bot (`/deploy production`) is the agent's action, judged as a bot's command, not skipped as "our own
    comment" because the comment's id is agentgate's."""
    forge = world.forge
    forge.add_pull(40, BOT, "e" * 40, ["src/app.py"])
    forge.texts[MAIN] = "version: 1\n"
    redis_conn.set(keys.comment("github", REPO, 40), 555)  # the comment agentgate wrote on this PR
    ours = User("agentgate[bot]", bot=True)
    event = Event("github", "d-edit", "comment", REPO, 1, ours, 40, {
        "action": "edited", "is_pull_request": True, "comment_id": 555, "body": "/deploy production",
        "author": ours.to_dict(), "created_at": "2026-12-01T10:00:00Z", "edited_at": "2026-12-01T11:00:00Z",
        "source": "comment", "mentions": []})
    rt = type("RT", (), {"conn": redis_conn, "settings": Settings()})()
    result = handlers.on_comment(handlers.Context(rt, forge, event))  # type: ignore[arg-type]
    assert result.info.get("ignored") != "our own comment"
    assert result.findings, result.info


def test_concurrent_requests_do_not_lift_the_cap(world):
    """Rule: the cap on live tokens per agent and repository holds under concurrency: a request that arrives
    while another is being minted counts that one (the cap is reserved atomically before minting)."""
    assert [world.ask().status for _ in range(2)] == [201, 201]
    during: list[int] = []

    def another_request() -> None:
        world.platform.on_mint = None  # only one arrives meanwhile
        during.append(world.ask().status)

    world.platform.on_mint = another_request
    assert world.ask().status == 201  # the third, and meanwhile a fourth arrives
    assert during == [429], during
    assert len(world.platform.minted) == 3


# ==== defences that hold ================================================================================

def test_a_label_removed_and_reapplied_by_a_bot_is_the_bots(world):
    """Rule: the approved label counts only as applied by whoever applied it last: a human's application,
    removed and put back by a bot, approves nothing (on an issue, whose deliveries forget the history)."""
    world.forge.unlabel(12, APPROVED, BOT)
    world.deliver("task", 12, {"action": "unlabeled", "label": APPROVED}, actor=BOT)
    world.forge.label(12, APPROVED, BOT)
    world.deliver("task", 12, {"action": "labeled", "label": APPROVED}, actor=BOT)
    answer = world.ask()
    assert answer.status == 403 and answer.body["error"] == "task-unapproved"
    assert world.platform.minted == []


def test_a_label_applied_through_an_app_for_a_human_is_not_the_humans(world):
    """Rule: a human's credentials used by an app (GitHub's `performed_via_github_app`) are the app's
    action: such an application of the approved label does not approve the task."""
    world.forge.events[12] = [IssueEvent("labeled", User("alice", via_app="some-agent"), label=APPROVED)]
    answer = world.ask()
    assert answer.status == 403 and answer.body["error"] == "task-unapproved"


def test_the_approver_is_named_with_the_agent(world, redis_conn):
    """Rule: composite identity. The grant's record and audit entry name the human whose label approved
    the task (`on_behalf_of`), and the revocation's entry names them too."""
    body = world.ask().body
    world.service.give_back(f"Bearer {world.issuer.mint()}", body["id"])
    entries = [e for e in audit.query(redis_conn, event="token")]
    assert [e.action for e in entries] == ["grant", "revoke"]
    assert all(e.on_behalf_of == "alice" and e.actor.startswith("oidc:") for e in entries)


@pytest.mark.parametrize("repository", ["acme/widgets/", "/acme/widgets", "acme//widgets", "acme/widgets\n",
                                        "acme/../widgets", "acme/widgets ", "acme/wіdgets", "acme/wid%67ets",
                                        "acme", "acme/widgets?x=1", "acme/widgets#1"])
def test_odd_repository_names_are_refused_before_the_platform(world, repository):
    """Rule: a repository that is not OWNER/NAME in the platform's characters (trailing slash, empty or
    dot segments, whitespace, a Cyrillic look-alike, escapes, query strings) is a 400 and nothing is
    asked of the platform."""
    answer = world.ask(repository=repository)
    assert answer.status == 400 and answer.body["error"] == "malformed", (repository, answer.body)
    assert world.forge.reads == [] and world.platform.minted == []


@pytest.mark.parametrize("task", [True, 12.0, "12", -1, 0, 2**31, None, [12]])
def test_odd_task_numbers_are_refused(world, task):
    """Rule: `task` is a positive JSON integer (not a boolean, float, string or list): anything else is 400."""
    answer = world.ask(task=task)
    assert answer.status == 400, (task, answer.body)
    assert world.platform.minted == []


def test_huge_bodies_and_credentials_are_refused_without_the_platform(world):
    """Rule: a body over 16 KB is 400 and a credential over 16 KB is 401, before anything is parsed for
    the platform or asked of it."""
    big = json.dumps({"repository": REPO, "task": 12, "pad": "x" * 20_000}).encode()
    assert world.service.issue(f"Bearer {world.issuer.mint()}", big).status == 400
    assert world.service.issue("Bearer " + "a." * 10_000 + "b", b"{}").status == 401
    assert world.service.issue("Bearer agk_" + "x" * 5000, b"{}").status == 401
    assert world.forge.reads == [] and world.platform.minted == []


def test_claims_that_are_not_strings_never_match_a_glob(issuer):
    """Rule: a claim the rule names must be a string (or an integer or boolean, as JSON writes it); a list,
    an object or a float never matches, not even `*`; `sub` with glob characters is taken literally."""
    rule = grants.AgentMatch(issuer=issuer.url, subject="repo:acme/agent-runner:*", claims={"environment": "*"})
    literal = grants.AgentMatch(issuer=issuer.url, subject="repo:acme/agent-runner:ref:refs/heads/main")

    def agent(claims: dict[str, Any], sub: str = "repo:acme/agent-runner:ref:refs/heads/main"):
        from gatekeeper.tokens.oidc import _string_claims

        return grants.AgentIdentity("oidc", issuer=issuer.url, subject=sub, claims=_string_claims(claims))

    for value in (["prod"], {"name": "prod"}, 1.5, None):
        assert not grants.matches(rule, agent({"environment": value})), value
    assert grants.matches(rule, agent({"environment": "prod"}))
    assert not grants.matches(literal, agent({}, sub="repo:acme/agent-runner:ref:refs/heads/*"))
    assert not grants.matches(grants.AgentMatch(issuer=issuer.url, subject="repo:acme/?"),
                              agent({}, sub="repo:acme/ab"))


def test_issuers_match_exactly_up_to_a_trailing_slash(issuer):
    """Rule: a rule's issuer names the configured issuer exactly (a trailing slash aside); another case or
    another path never matches."""
    who = grants.AgentIdentity("oidc", issuer=issuer.url, subject="repo:acme/x:ref:refs/heads/main")
    assert grants.matches(grants.AgentMatch(issuer=issuer.url + "/", subject="repo:acme/*"), who)
    for other in (issuer.url.upper(), issuer.url + "/sub", issuer.url.replace("http://", "https://")):
        assert not grants.matches(grants.AgentMatch(issuer=other, subject="repo:acme/*"), who), other


@pytest.mark.parametrize("subject", ["repo:*", "repo:acm?/x:*", "repo:*/agent-runner:*", "repo:acme*", "*",
                                     "repo:acme", "sub:acme/x"])
def test_shared_issuers_need_a_literal_owner(subject):
    """Rule: for GitHub Actions (which signs for every repository on GitHub) a rule's subject names the
    owner literally: `check-config` refuses globs in it, or a subject without an owner."""
    from pydantic import ValidationError

    from gatekeeper.policy.schema import TokenAgent

    with pytest.raises(ValidationError):
        TokenAgent(issuer="https://token.actions.githubusercontent.com/", subject=subject)


def test_another_agents_token_cannot_be_given_back(world, redis_conn):
    """Rule: only the agent that got a token may give it back: another `sub` of the same issuer, or an
    agent key, gets 404 and the token lives on."""
    body = world.ask().body
    other = world.issuer.mint({"sub": "repo:acme/agent-runner:ref:refs/heads/other"})
    assert world.service.give_back(f"Bearer {other}", body["id"]).status == 404
    key = agentkeys.add(redis_conn, "runner-1")
    assert world.service.give_back(f"Bearer {key}", body["id"]).status == 404
    assert world.service.give_back(f"Bearer {world.issuer.mint()}", body["id"] + "*").status == 404
    assert world.platform.revoked == [] and store.load(redis_conn, body["id"]).state == store.ACTIVE


def test_two_revocations_at_once_call_the_platform_once(world, redis_conn):
    """Rule: one process revokes a token at a time: a revocation that starts while another is at the
    platform returns 'not done' without calling the platform, and the first one finishes it."""
    body = world.ask().body
    inner: list[Any] = []
    world.platform.on_revoke = lambda: inner.append(
        revoke(redis_conn, world.issuers, cipher(), body["id"], "concurrent") if not inner else None)
    outcome = revoke(redis_conn, world.issuers, cipher(), body["id"], "the task was closed")
    assert outcome.done and inner[0].done is False
    assert world.platform.revoked == [body["token"]]
    assert store.load(redis_conn, body["id"]).state == store.REVOKED


def test_a_revocation_that_keeps_failing_says_so_and_stays_listed(world, redis_conn):
    """Rule: a revocation the platform keeps refusing is never reported as done: the record says
    `revoke-failed` with the platform's answer, `tokens list` (live) shows it, the audit records each
    failure, and the sweep keeps retrying with backoff."""
    body = world.ask().body
    record = store.load(redis_conn, body["id"])
    world.platform.fail_revoke = True
    at = record.expires_at + 1
    for _ in range(6):
        sweep(redis_conn, world.issuers, cipher(), now=at)
        at += 901
    failed = store.load(redis_conn, body["id"])
    assert failed.state == store.RETRYING and failed.attempts == 6 and "502" in failed.reason
    assert [r.id for r in store.live(redis_conn)] == [body["id"]]
    assert store.encrypted(redis_conn, body["id"]) is not None  # still needed to revoke it
    assert [e.action for e in audit.query(redis_conn, event="token")].count("revoke-failed") == 6
    world.platform.fail_revoke = False
    assert sweep(redis_conn, world.issuers, cipher(), now=at)["revoked"] == 1
    assert list(store.live(redis_conn)) == []


def test_the_expire_sweep_cannot_be_starved(redis_conn):
    """Rule: every token whose ttl passed is revoked within a few sweeps, however many are due: batches of
    SWEEP_BATCH go oldest first, and tokens whose revocation keeps failing are pushed back (backoff), so
    they never hold a newer token's place for more than one sweep."""
    failing: set[str] = set()

    @dataclass
    class Flaky:
        platform: str = "github"
        revoked: list[str] = field(default_factory=list)

        def revoke(self, repo: str, token: str, handle: str) -> None:
            if token in failing:
                raise ForgeError("GitHub answered 502", 502)
            self.revoked.append(token)

    flaky = Flaky()
    now = 1_000_000.0
    ids = []
    for n in range(2 * SWEEP_BATCH + 50):
        token = f"ghs_{n:05d}"
        record = store.TokenRecord(id=store.new_id(), platform="github", repo=REPO, task=1, agent="key:a",
                                   requester="alice", permissions={"contents": "read"}, issued_at=now - 600,
                                   expires_at=now - 500 + n, sha256=store.digest(token))
        store.save(redis_conn, record, cipher().encrypt(token), now - 600)
        ids.append(record.id)
        if n < SWEEP_BATCH:
            failing.add(token)  # the oldest hundred can never be revoked
    late = ids[-1]
    for sweeps in range(1, 5):
        sweep(redis_conn, lambda p: flaky, cipher(), now=now + 15 * sweeps)
        if store.load(redis_conn, late).state == store.REVOKED:
            break
    assert sweeps <= 3, f"the newest due token waited {sweeps} sweeps"
    assert len(flaky.revoked) == SWEEP_BATCH + 50
    assert all(store.load(redis_conn, i).state == store.RETRYING for i in ids[:SWEEP_BATCH])


def test_no_secret_reaches_a_log_an_answer_or_the_audit(world, redis_conn, caplog):
    """Rule: the platform token appears only in the 201 answer; the agent key and the ID token appear
    nowhere: not in log lines (any level), refusals, the audit log, nor in a revocation failure's record."""
    caplog.set_level(logging.DEBUG)
    key = agentkeys.add(redis_conn, "runner-1")
    id_token = world.issuer.mint()
    answers = [world.ask(id_token), world.ask(key), world.ask(key, permissions={"workflows": "write"}),
               world.ask(world.issuer.mint({"aud": "other"})), world.ask(key, task=99)]
    granted = [a.body["token"] for a in answers if a.status == 201]
    assert len(granted) == 2
    world.platform.fail_revoke = True
    world.service.give_back(f"Bearer {key}", answers[1].body["id"])
    world.platform.fail_revoke = False
    world.service.give_back(f"Bearer {id_token}", answers[0].body["id"])
    secrets_ = [*granted, key, id_token, id_token.split(".")[2]]
    logged = "\n".join(r.getMessage() + str(r.args) + str(r.exc_info or "") for r in caplog.records)
    others = json.dumps([a.body for a in answers if a.status != 201])
    trail = json.dumps([e.to_dict() for e in audit.query(redis_conn)])
    records = json.dumps([store.load(redis_conn, a.body["id"]).public() for a in answers if a.status == 201])
    for secret in secrets_:
        for where, text in (("a log line", logged), ("a refusal", others), ("the audit log", trail),
                            ("a token record", records)):
            assert secret not in text, f"a secret reached {where}"


@pytest.mark.parametrize("delivery", ["issues.transferred", "issues.deleted", "issues.closed",
                                      "pull_request.closed", "installation_repositories.removed"])
def test_a_task_gone_or_the_app_removed_revokes(world, delivery):
    """Rule: a token dies when its task is closed, deleted or transferred to another repository, when a
    PR task is closed or merged, and when agentgate is removed from the repository, as GitHub's
    deliveries say it (parsed by the real webhook parser, handled by the real handlers)."""
    from gatekeeper.forges.github.webhooks import parse

    event_name, action = delivery.split(".")
    number = 30 if event_name == "pull_request" else 12
    if number == 30:
        world.forge.add_pull(30, BOT, "f" * 40, ["src/app.py"])
        world.forge.issues[30] = Issue(30, "open", (), is_pull_request=True)
        world.forge.label(30, APPROVED, ALICE)
    body = world.ask(task=number).body
    payload: dict[str, Any] = {"action": action, "repository": {"full_name": REPO, "default_branch": "main"},
                               "installation": {"id": 1}, "sender": {"login": "alice", "type": "User", "id": 1}}
    if event_name == "issues":
        payload["issue"] = {"number": 12, "state": "closed", "labels": []}
    elif event_name == "pull_request":
        payload["pull_request"] = {"number": 30, "head": {"sha": "f" * 40}, "merged": True}
    else:
        payload["repositories_removed"] = [{"full_name": REPO}]
    events = [e for e in parse(event_name, payload, "d-1") if e.kind in ("task", "uninstalled")]
    assert events, delivery
    rt = type("RT", (), {"conn": world.conn, "settings": Settings()})()
    for event in events:
        handler, _ = handlers.HANDLERS[event.kind]
        result = handler(handlers.Context(rt, world.forge, event))  # type: ignore[arg-type]
        for ask in result.revoke_tokens:
            revoke_task(world.conn, world.issuers, cipher(), event.platform, event.repo, ask.task, ask.reason,
                        label=ask.label, kind=ask.kind)
        if result.revoke_repo:
            from gatekeeper.tokens.revoke import revoke_repo

            revoke_repo(world.conn, world.issuers, cipher(), event.platform, event.repo, "uninstalled")
    assert world.platform.revoked == [body["token"]]
