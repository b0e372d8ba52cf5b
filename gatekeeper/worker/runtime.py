"""What a worker process holds once it starts: settings, the shared store, and how to reach forges.

Set once by `agentgate worker` / `agentgate dev` before jobs run (RQ's forked work-horses inherit it)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from gatekeeper.forges.github.auth import ORG_POLICY_PERMISSIONS, InstallationTokens
from gatekeeper.forges.port import Forge, ForgeError
from gatekeeper.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    conn: redis.Redis

    def forge(self, platform: str, installation_id: int | None, repo: str, permissions: dict[str, str]) -> Forge:
        if self.settings.dry_run or (platform == "github" and not self.settings.has_github_credentials):
            from gatekeeper.forges.recording import RecordingForge

            return RecordingForge(self.conn, repo)
        if platform != "github":
            raise ForgeError(f"platform {platform!r} is not supported yet")
        if installation_id is None:
            raise ForgeError("the delivery names no App installation")
        if self.settings.check_runs:
            permissions = permissions | {"checks": "write"}
        from gatekeeper.forges.github.client import GitHubForge

        tokens = InstallationTokens(self.conn, app_id=str(self.settings.github_app_id),
                                    private_key=str(self.settings.github_private_key),
                                    api_url=self.settings.github_api_url)

        def sibling(other: str) -> GitHubForge:
            # Read-only, and only ever minted for the repository named by this repository's policy.
            return GitHubForge(other, tokens.token(installation_id, other, ORG_POLICY_PERMISSIONS),
                               self.settings.github_api_url)

        return GitHubForge(repo, tokens.token(installation_id, repo, permissions), self.settings.github_api_url,
                           sibling=sibling)


_current: Runtime | None = None


def configure(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the worker runtime is not configured; start jobs through `agentgate worker`")
    return _current
