"""Settings, read once from the environment when a process starts (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GITHUB_API_URL = "https://api.github.com"


def _split_secrets(raw: str | None) -> tuple[str, ...]:
    # Several secrets may be configured at once so a secret can be rotated without dropping deliveries.
    return tuple(s.strip() for s in (raw or "").split(",") if s.strip())


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    github_app_id: str | None = None
    github_private_key: str | None = field(default=None, repr=False)
    github_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    github_api_url: str = DEFAULT_GITHUB_API_URL
    gitlab_url: str | None = None
    gitlab_token: str | None = field(default=None, repr=False)
    gitlab_webhook_secret: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    status_context: str = "agentgate"
    web_workers: int = 1
    queue_name: str = "agentgate"
    # Also post a check run of the same name, whose page on GitHub shows every reason (needs Checks: write).
    check_runs: bool = False
    # Dev mode records the actions it would take instead of calling the platform.
    dry_run: bool = False

    @property
    def has_github_credentials(self) -> bool:
        return bool(self.github_app_id and self.github_private_key)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        default_redis: str | None = DEFAULT_REDIS_URL,
    ) -> Settings:
        env = os.environ if env is None else env
        key = env.get("AGENTGATE_GITHUB_PRIVATE_KEY")
        key_path = env.get("AGENTGATE_GITHUB_PRIVATE_KEY_PATH")
        if not key and key_path:
            with open(key_path, encoding="utf-8") as fh:
                key = fh.read()
        workers_raw = env.get("AGENTGATE_WEB_WORKERS") or env.get("WEB_CONCURRENCY")
        workers = int(workers_raw) if workers_raw else (os.cpu_count() or 1)
        return cls(
            redis_url=env.get("AGENTGATE_REDIS_URL") or default_redis,
            github_app_id=env.get("AGENTGATE_GITHUB_APP_ID") or None,
            github_private_key=key or None,
            github_webhook_secrets=_split_secrets(env.get("AGENTGATE_GITHUB_WEBHOOK_SECRET")),
            github_api_url=(env.get("AGENTGATE_GITHUB_API_URL") or DEFAULT_GITHUB_API_URL).rstrip("/"),
            gitlab_url=env.get("AGENTGATE_GITLAB_URL") or None,
            gitlab_token=env.get("AGENTGATE_GITLAB_TOKEN") or None,
            gitlab_webhook_secret=env.get("AGENTGATE_GITLAB_WEBHOOK_SECRET") or None,
            public_url=(env.get("AGENTGATE_PUBLIC_URL") or f"http://{host}:{port}").rstrip("/"),
            status_context=env.get("AGENTGATE_STATUS_CONTEXT") or "agentgate",
            web_workers=max(1, workers),
            check_runs=(env.get("AGENTGATE_CHECK_RUNS") or "").strip().lower() in ("1", "true", "yes", "on"),
        )
