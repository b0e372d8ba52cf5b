"""Which forge a job gets: the composition root between settings and adapters. Only the processes
that start workers (the CLI, dev mode, tests) import it; the worker sees the `ForgeFactory` port."""

from __future__ import annotations

from typing import Any

import redis

from gatekeeper.forges.port import (
    Capability,
    DeliveryLog,
    DeliveryLogs,
    Forge,
    ForgeError,
    ForgeFactory,
    TokenIssuer,
    TokenIssuers,
)
from gatekeeper.settings import Settings


def forge_factory(settings: Settings, conn: redis.Redis) -> ForgeFactory:
    def open_forge(platform: str, installation: int | None, repo: str,
                   capabilities: frozenset[Capability]) -> Forge:
        if settings.dry_run or (platform == "github" and not settings.has_github_credentials):
            from gatekeeper.forges.recording import RecordingForge

            return RecordingForge(conn, repo)
        if platform == "github":
            from gatekeeper.forges.github.forge import open_github

            forge = open_github(settings, conn, installation, repo, capabilities)
            forge.http_timeout = settings.github_timeout
            return forge
        if platform == "gitlab":
            from gatekeeper.forges.gitlab.forge import open_gitlab

            return open_gitlab(settings, conn, repo, capabilities)
        raise ForgeError(f"platform {platform!r} is not supported")

    return open_forge


def delivery_logs(settings: Settings, conn: redis.Redis) -> DeliveryLogs:
    """Each platform's webhook delivery log, read as the App; None without credentials (dev mode)."""

    def open_log(platform: str) -> DeliveryLog | None:
        if platform != "github" or settings.dry_run or not settings.has_github_credentials:
            return None
        from gatekeeper.forges.github.auth import InstallationTokens
        from gatekeeper.forges.github.deliveries import GitHubDeliveryLog

        return GitHubDeliveryLog(InstallationTokens(conn, app_id=str(settings.github_app_id),
                                                    private_key=str(settings.github_private_key),
                                                    api_url=settings.github_api_url))

    return open_log


def token_issuers(settings: Settings, conn: redis.Redis) -> TokenIssuers:
    """Who mints agent tokens on each platform; None where agentgate holds no credentials to do it (dev
    mode records actions but never invents a credential)."""

    def open_issuer(platform: str) -> TokenIssuer | None:
        if settings.dry_run:
            return None
        if platform == "github" and settings.has_github_credentials:
            from gatekeeper.forges.github.tokens import token_issuer as github_issuer

            return github_issuer(settings, conn)
        if platform == "gitlab" and settings.gitlab_url and settings.gitlab_token:
            from gatekeeper.forges.gitlab.tokens import token_issuer as gitlab_issuer

            return gitlab_issuer(settings, conn)
        return None

    return open_issuer


def build_runtime(settings: Settings, conn: redis.Redis):  # type: ignore[no-untyped-def]
    """The worker's runtime for these settings: the store, the queue, and the forges they configure."""
    from gatekeeper.state.queue import JobQueue
    from gatekeeper.worker.runtime import Runtime

    rotate = None
    if settings.gitlab_url and settings.gitlab_token and settings.gitlab_rotate_days > 0 and not settings.dry_run:
        from gatekeeper.forges.gitlab.credentials import rotate as rotate_gitlab

        def rotate() -> dict[str, Any]:
            return rotate_gitlab(conn, settings)

    return Runtime(settings, conn, forge_factory(settings, conn), JobQueue(conn, settings.queue_name),
                   token_issuers(settings, conn), rotate)
