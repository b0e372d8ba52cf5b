"""`agentgate serve`: the web process on gunicorn (threads for I/O-bound webhook bursts)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from gatekeeper.settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from gatekeeper.web import create_app

        # Built in each worker after the fork: every process gets its own Redis connections.
        return create_app(self.settings)


def run_gunicorn(settings: Settings, host: str, port: int) -> None:
    _Gunicorn(settings, {
        "bind": f"{host}:{port}",
        "workers": settings.web_workers,
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": "-",
        # Webhook bodies are read in full before verification; keep slow senders from pinning threads.
        "keepalive": 5,
        "limit_request_field_size": 16384,
    }).run()
