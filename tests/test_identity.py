"""Recognising bots and agents, and keeping them apart from humans: the GitHub adapter says what the
platform knows of an account (`github_user`), the core classifies it under a policy (`classify`)."""

from gatekeeper.core.facts import ActorKind, User
from gatekeeper.core.identity import classify, has_ai_trailer
from gatekeeper.forges.github.users import co_author_logins, github_user, mentioned_users
from tests.policies import actor


def test_platform_bot_flag_and_suffix():
    """`type: Bot` or a `[bot]` login makes a bot."""
    assert actor("renovate[bot]").kind is ActorKind.BOT
    assert actor("some-app", "Bot").kind is ActorKind.BOT


def test_known_agents_are_agents_only_as_bot_accounts():
    """Known AI coding agents are agents; a person who happens to be called `jules` is a human."""
    assert actor("copilot-swe-agent[bot]", "Bot").kind is ActorKind.AGENT
    assert actor("Copilot", "Bot").kind is ActorKind.AGENT
    assert actor("devin-ai-integration[bot]").kind is ActorKind.AGENT
    assert actor("jules", "User").kind is ActorKind.HUMAN


def test_configured_logins():
    """Logins configured as agents or bots are classified so, whatever the platform says."""
    assert actor("svc-coder", agents=["svc-coder"]).kind is ActorKind.AGENT
    assert actor("ci-robot", bots=["ci-robot"]).kind is ActorKind.BOT
    assert actor("renovate[bot]", "Bot", agents=["renovate"]).kind is ActorKind.AGENT


def test_app_acting_for_a_user_is_a_bot():
    """A human's token used by an app (performed_via_github_app) is governed as the app."""
    acting = actor("alice", "User", via_app="some-integration")
    assert acting.kind is ActorKind.BOT and acting.via_app == "some-integration"
    assert actor("alice", "User", via_app="claude").kind is ActorKind.AGENT
    assert actor("alice", "User", via_app="my-runner", agents=["my-runner"]).kind is ActorKind.AGENT


def test_humans_are_everyone_else():
    """A plain user account is a human; an unknown account (deleted, `ghost`) is not."""
    assert actor("octocat", "User").kind is ActorKind.HUMAN
    assert classify(None).kind.is_automated


def test_the_core_reads_only_what_the_adapter_reports():
    """The core knows no platform's names: an account the adapter marks as an agent is one."""
    assert classify(User("anything", bot=True, agent=True)).kind is ActorKind.AGENT
    assert classify(User("copilot-swe-agent[bot]")).kind is ActorKind.HUMAN  # the adapter said nothing
    assert github_user({"login": "copilot-swe-agent[bot]", "type": "Bot"}) == User(
        "copilot-swe-agent[bot]", None, True, None, True)


def test_co_authors_and_mentions():
    """GitHub noreply co-author addresses name logins; @-mentions of agents are found."""
    assert co_author_logins("x\n\nCo-authored-by: Alice <1234+alice@users.noreply.github.com>") == ("alice",)
    assert [u.login for u in mentioned_users("@copilot please fix, cc @bob") if u.agent] == ["copilot"]


def test_ai_trailers():
    """AI tools' commit trailers are recognised; ordinary co-authors are not."""
    assert has_ai_trailer("fix\n\nCo-Authored-By: Claude <noreply@anthropic.com>")
    assert has_ai_trailer("feat\n\n🤖 Generated with [Claude Code](https://claude.com/claude-code)".replace("🤖 ", ""))
    assert has_ai_trailer("x\n\nCo-authored-by: Cursor Agent <cursoragent@cursor.com>")
    assert not has_ai_trailer("x\n\nCo-authored-by: Jane Doe <jane@example.com>")
