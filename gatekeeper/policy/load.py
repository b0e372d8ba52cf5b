"""Turn the text of `.agentgate.yml` into a policy, or into the errors that make it invalid."""

from __future__ import annotations

from gatekeeper.policy.model import DEFAULT_POLICY, ConfigError, InvalidPolicy, Policy

POLICY_PATH = ".agentgate.yml"


def load_policy(text: str | None, *, source: str = POLICY_PATH) -> Policy | InvalidPolicy:
    """No file means the secure default; a file is never ignored, even one we cannot read."""
    if text is None:
        return DEFAULT_POLICY
    # The policy language arrives with its own issue; until then a present file is not understood,
    # and not understanding a policy must fail closed rather than fall back to the default.
    return InvalidPolicy(
        (ConfigError(source, 1, 1, "this agentgate version does not understand policy files yet"),),
        source=source,
    )
