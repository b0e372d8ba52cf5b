"""Policy as code: `.agentgate.yml`, always read from the base branch."""

from gatekeeper.policy.load import POLICY_PATH, load_policy
from gatekeeper.policy.model import DEFAULT_POLICY, ConfigError, InvalidPolicy, Policy

__all__ = ["POLICY_PATH", "DEFAULT_POLICY", "ConfigError", "InvalidPolicy", "Policy", "load_policy"]
