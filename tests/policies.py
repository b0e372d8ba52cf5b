"""Shared test helpers for policies and actors."""

from __future__ import annotations

from gatekeeper.core.identity import classify
from gatekeeper.policy import Policy, load_policy

AGENT = classify("copilot-swe-agent[bot]", account_type="Bot")
HUMAN = classify("octocat", account_type="User")


def policy(text: str, source: str = ".agentgate.yml") -> Policy:
    """A valid policy from the lines after `version: 1` (the test fails if they are invalid)."""
    loaded = load_policy("version: 1\n" + text, source=source)
    assert isinstance(loaded, Policy), loaded
    return loaded
