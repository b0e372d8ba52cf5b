"""What a worker process holds once it starts: settings, the shared store, the queue, and how to open
a forge. Built by whoever starts the worker (`agentgate worker`, `agentgate dev`, a test) and handed
to `configure`; jobs reach it through `current()`. The worker never names a platform: the forge
factory comes from outside."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from gatekeeper.forges.port import ForgeFactory, TokenIssuers
from gatekeeper.settings import Settings
from gatekeeper.state.queue import JobQueue


@dataclass
class Runtime:
    settings: Settings
    conn: redis.Redis
    forges: ForgeFactory
    queue: JobQueue
    issuers: TokenIssuers | None = None  # who revokes agent tokens on each platform
    # Rotates agentgate's own standing credentials when due (GitLab's token); None where there are none.
    rotate_credentials: Callable[[], dict[str, Any]] | None = None

    def token_issuers(self) -> TokenIssuers:
        return self.issuers if self.issuers is not None else (lambda platform: None)


_current: Runtime | None = None


def configure(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the worker runtime is not configured; start jobs through `agentgate worker`")
    return _current
