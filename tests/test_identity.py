"""Recognising bots and agents, and keeping them apart from humans."""

from gatekeeper.core.facts import ActorKind
from gatekeeper.core.identity import classify, classify_github_user, has_ai_trailer


def test_platform_bot_flag_and_suffix():
    """`type: Bot` or a `[bot]` login makes a bot."""
    assert classify("renovate[bot]").kind is ActorKind.BOT
    assert classify("some-app", account_type="Bot").kind is ActorKind.BOT


def test_known_agents_are_agents_only_as_bot_accounts():
    """Known AI coding agents are agents; a person who happens to be called `jules` is a human."""
    assert classify("copilot-swe-agent[bot]", account_type="Bot").kind is ActorKind.AGENT
    assert classify("Copilot", account_type="Bot").kind is ActorKind.AGENT
    assert classify("devin-ai-integration[bot]").kind is ActorKind.AGENT
    assert classify("jules", account_type="User").kind is ActorKind.HUMAN


def test_configured_logins():
    """Logins configured as agents or bots are classified so, whatever the platform says."""
    assert classify("svc-coder", agents=["svc-coder"]).kind is ActorKind.AGENT
    assert classify("ci-robot", bots=["ci-robot"]).kind is ActorKind.BOT


def test_app_acting_for_a_user_is_a_bot():
    """A human's token used by an app (performed_via_github_app) is governed as the app."""
    actor = classify_github_user({"login": "alice", "type": "User"}, via_app={"slug": "some-integration"})
    assert actor.kind is ActorKind.BOT and actor.via_app == "some-integration"
    agent = classify_github_user({"login": "alice", "type": "User"}, via_app={"slug": "claude"})
    assert agent.kind is ActorKind.AGENT


def test_humans_are_everyone_else():
    """A plain user account is a human."""
    assert classify("octocat", account_type="User").kind is ActorKind.HUMAN


def test_ai_trailers():
    """AI tools' commit trailers are recognised; ordinary co-authors are not."""
    assert has_ai_trailer("fix\n\nCo-Authored-By: Claude <noreply@anthropic.com>")
    assert has_ai_trailer("feat\n\n🤖 Generated with [Claude Code](https://claude.com/claude-code)".replace("🤖 ", ""))
    assert has_ai_trailer("x\n\nCo-authored-by: Cursor Agent <cursoragent@cursor.com>")
    assert not has_ai_trailer("x\n\nCo-authored-by: Jane Doe <jane@example.com>")
