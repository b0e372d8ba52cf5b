"""Opening a GitHub forge for one job: an installation token for one repository with the permissions
the job's capabilities map to, and a read-only sibling for the organisation's policy repository."""

from __future__ import annotations

from functools import partial

import redis

from gatekeeper.forges.github.auth import InstallationTokens, app_slug
from gatekeeper.forges.github.client import GitHubForge
from gatekeeper.forges.port import Capability, ForgeError
from gatekeeper.settings import Settings

# Each capability as the narrowest GitHub App permissions that allow it.
PERMISSIONS: dict[Capability, dict[str, str]] = {
    Capability.READ: {"contents": "read", "metadata": "read", "pull_requests": "read", "issues": "read"},
    Capability.STATUSES: {"statuses": "write"},
    Capability.COMMENT: {"pull_requests": "write"},  # a PR's conversation comments
    Capability.LABELS: {"issues": "write"},
    Capability.DEPLOYMENTS: {"deployments": "write", "actions": "read"},
    Capability.CHECKS: {"checks": "write"},
}
ORG_POLICY_PERMISSIONS = {"contents": "read", "metadata": "read"}
_LEVEL = {"read": 1, "write": 2}


def permissions_for(capabilities: frozenset[Capability]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for capability in sorted(capabilities):
        for name, level in PERMISSIONS.get(capability, {}).items():
            if _LEVEL[level] > _LEVEL.get(merged.get(name, ""), 0):
                merged[name] = level
    return merged


def open_github(settings: Settings, conn: redis.Redis, installation: int | None, repo: str,
                capabilities: frozenset[Capability]) -> GitHubForge:
    if installation is None:
        raise ForgeError("the delivery names no App installation")
    if settings.check_runs:
        capabilities = capabilities | {Capability.CHECKS}
    tokens = InstallationTokens(conn, app_id=str(settings.github_app_id), private_key=str(settings.github_private_key),
                                api_url=settings.github_api_url)

    def sibling(other: str) -> GitHubForge:
        # Read-only, and only ever minted for the repository named by this repository's policy.
        return GitHubForge(other, tokens.token(installation, other, ORG_POLICY_PERMISSIONS), settings.github_api_url)

    token = partial(tokens.token, installation, repo, permissions_for(capabilities))
    return GitHubForge(repo, token, settings.github_api_url, sibling=sibling, app_slug=partial(app_slug, conn, tokens))
