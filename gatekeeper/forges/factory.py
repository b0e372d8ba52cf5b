"""Which forge a job gets: the composition root between settings and adapters. Only the processes
that start workers (the CLI, dev mode, tests) import it; the worker sees the `ForgeFactory` port."""

from __future__ import annotations

import redis

from gatekeeper.forges.port import Capability, Forge, ForgeError, ForgeFactory
from gatekeeper.settings import Settings


def forge_factory(settings: Settings, conn: redis.Redis) -> ForgeFactory:
    def open_forge(platform: str, installation: int | None, repo: str,
                   capabilities: frozenset[Capability]) -> Forge:
        if settings.dry_run or (platform == "github" and not settings.has_github_credentials):
            from gatekeeper.forges.recording import RecordingForge

            return RecordingForge(conn, repo)
        if platform == "github":
            from gatekeeper.forges.github.forge import open_github

            return open_github(settings, conn, installation, repo, capabilities)
        raise ForgeError(f"platform {platform!r} is not supported yet")

    return open_forge


def build_runtime(settings: Settings, conn: redis.Redis):  # type: ignore[no-untyped-def]
    """The worker's runtime for these settings: the store, the queue, and the forges they configure."""
    from gatekeeper.state.queue import JobQueue
    from gatekeeper.worker.runtime import Runtime

    return Runtime(settings, conn, forge_factory(settings, conn), JobQueue(conn, settings.queue_name))
