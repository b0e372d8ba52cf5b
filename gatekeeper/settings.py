"""Settings, read once from the environment when a process starts (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
MIN_ADMIN_TOKEN = 32
PERIODIC_JOBS = ("redeliver", "reconcile", "recover", "expire", "rotate")


class SettingsError(ValueError):
    """A setting that cannot be used as given: the process stops with this message (exit 2)."""


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    return max(1, int(raw)) if raw else default


def _periodic(raw: str | None) -> tuple[str, ...]:
    value = (raw or "").strip().lower()
    if value in ("", "on", "1", "true", "yes", "all"):
        return PERIODIC_JOBS
    if value in ("off", "0", "false", "no", "none"):
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = set(names) - set(PERIODIC_JOBS)
    if unknown:
        raise SettingsError(f"AGENTGATE_PERIODIC_JOBS: unknown job(s) {sorted(unknown)}; known: {PERIODIC_JOBS}")
    return names


def _split_secrets(raw: str | None) -> tuple[str, ...]:
    # Several secrets may be configured at once so a secret can be rotated without dropping deliveries.
    return tuple(s.strip() for s in (raw or "").split(",") if s.strip())


def _issuers(raw: str | None) -> tuple[tuple[str, str], ...]:
    """`ISSUER=AUDIENCE,ISSUER=AUDIENCE` -> ((issuer, audience), ...). An issuer without an audience is
    refused: a token minted for any other relying party must not be accepted here."""
    pairs = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        issuer, sep, audience = item.rpartition("=")
        if not sep or not issuer.strip() or not audience.strip():
            raise SettingsError(f"AGENTGATE_OIDC_ISSUERS: {item!r} is not ISSUER=AUDIENCE")
        pairs.append((issuer.strip().rstrip("/"), audience.strip()))
    return tuple(pairs)


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
    # ---- faults and recovery (docs/redis-and-recovery.md)
    github_timeout: int = 15  # seconds per GitHub request
    # Backoff between a failed job's retries (seconds); empty: the queue's own (5, 20, 60, 180, 600 s).
    retry_intervals: tuple[int, ...] = ()
    # The periodic jobs `agentgate worker` (not --burst) keeps going: redeliver failed deliveries,
    # reconcile open PRs, recover jobs of dead workers (AGENTGATE_PERIODIC_JOBS: a list, or "off").
    periodic_jobs: tuple[str, ...] = PERIODIC_JOBS
    redeliver_interval: int = 300
    reconcile_interval: int = 600
    recover_interval: int = 30
    reconcile_max_prs: int = 100  # status reads per reconcile run, over every repository
    reconcile_max_evaluations: int = 25  # evaluations one reconcile run may queue
    # A worker's lease: a worker silent this long is dead and its job runs again elsewhere.
    worker_lease: int = 30
    # How often a worker runs RQ's maintenance (and takes over the scheduler of a dead worker).
    worker_maintenance_interval: int = 60
    # ---- agent tokens (docs/tokens.md)
    oidc_issuers: tuple[tuple[str, str], ...] = ()  # (issuer, audience)
    # Fernet keys (comma-separated, newest first) that encrypt issued tokens at rest; without one a key is
    # derived from the platform credentials (the App's private key, the GitLab token).
    token_keys: tuple[str, ...] = field(default=(), repr=False)
    expire_interval: int = 15  # how often agent tokens whose ttl passed are revoked (seconds)
    max_active_tokens: int = 10  # per agent and repository, at once
    # A second GitHub App agent tokens are minted from (recommended): an agent's actions then bear that
    # App's bot, not agentgate's, so they are attributed to agents and never mistaken for agentgate's.
    agent_app_id: str | None = None
    agent_app_private_key: str | None = field(default=None, repr=False)
    # Rotate agentgate's own GitLab token (a personal or service-account token) every this many days
    # (POST /personal_access_tokens/self/rotate); 0: never. Needs a Redis that persists (the new token
    # lives there, encrypted; the configured one stops working at the first rotation).
    gitlab_rotate_days: int = 0
    rotate_interval: int = 3600  # how often the `rotate` job checks whether a rotation is due
    # ---- operations
    admin_token: str | None = field(default=None, repr=False)  # opens /dashboard
    metrics_token: str | None = field(default=None, repr=False)  # when set, /metrics needs it (Bearer)

    def __post_init__(self) -> None:
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN:
            # Beyond online guessing: that is what makes throttling sign-ins unnecessary (and throttling per
            # client behind a proxy would let anyone lock the operator out).
            raise SettingsError(f"AGENTGATE_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")

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
        agent_key = env.get("AGENTGATE_AGENT_APP_PRIVATE_KEY")
        if not agent_key and env.get("AGENTGATE_AGENT_APP_PRIVATE_KEY_PATH"):
            with open(env["AGENTGATE_AGENT_APP_PRIVATE_KEY_PATH"], encoding="utf-8") as fh:
                agent_key = fh.read()
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
            github_timeout=_seconds(env, "AGENTGATE_GITHUB_TIMEOUT", 15),
            retry_intervals=tuple(max(0, int(x)) for x in (env.get("AGENTGATE_RETRY_INTERVALS") or "").split(",")
                                  if x.strip()),
            periodic_jobs=_periodic(env.get("AGENTGATE_PERIODIC_JOBS")),
            redeliver_interval=_seconds(env, "AGENTGATE_REDELIVER_INTERVAL", 300),
            reconcile_interval=_seconds(env, "AGENTGATE_RECONCILE_INTERVAL", 600),
            recover_interval=_seconds(env, "AGENTGATE_RECOVER_INTERVAL", 30),
            reconcile_max_prs=_seconds(env, "AGENTGATE_RECONCILE_MAX_PRS", 100),
            reconcile_max_evaluations=_seconds(env, "AGENTGATE_RECONCILE_MAX_EVALUATIONS", 25),
            worker_lease=_seconds(env, "AGENTGATE_WORKER_LEASE", 30),
            worker_maintenance_interval=_seconds(env, "AGENTGATE_WORKER_MAINTENANCE_INTERVAL", 60),
            oidc_issuers=_issuers(env.get("AGENTGATE_OIDC_ISSUERS")),
            token_keys=_split_secrets(env.get("AGENTGATE_TOKEN_KEYS")),
            expire_interval=_seconds(env, "AGENTGATE_EXPIRE_INTERVAL", 15),
            max_active_tokens=_seconds(env, "AGENTGATE_MAX_ACTIVE_TOKENS", 10),
            agent_app_id=env.get("AGENTGATE_AGENT_APP_ID") or None,
            agent_app_private_key=agent_key or None,
            gitlab_rotate_days=int(env.get("AGENTGATE_GITLAB_ROTATE_DAYS") or 0),
            rotate_interval=_seconds(env, "AGENTGATE_ROTATE_INTERVAL", 3600),
            admin_token=env.get("AGENTGATE_ADMIN_TOKEN") or None,
            metrics_token=env.get("AGENTGATE_METRICS_TOKEN") or None,
        )
