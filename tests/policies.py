"""Shared test helpers for policies and actors."""

from __future__ import annotations

from collections.abc import Iterable

from gatekeeper.core.facts import Actor
from gatekeeper.core.identity import classify
from gatekeeper.forges.github.users import github_user
from gatekeeper.policy import Policy, load_policy


def actor(login: str, account_type: str | None = None, *, via_app: str | None = None, agents: Iterable[str] = (),
          bots: Iterable[str] = ()) -> Actor:
    """An account as the GitHub adapter reports it, classified under `agents` and `bots`."""
    user = github_user({"login": login, "type": account_type}, via_app)
    return classify(user, agents=agents, bots=bots)


AGENT = actor("copilot-swe-agent[bot]", "Bot")
HUMAN = actor("octocat", "User")


def policy(text: str, source: str = ".agentgate.yml") -> Policy:
    """A valid policy from the lines after `version: 1` (the test fails if they are invalid)."""
    loaded = load_policy("version: 1\n" + text, source=source)
    assert isinstance(loaded, Policy), loaded
    return loaded
