"""`agentgate serve`: the web processes, on Granian (HTTP in Rust) running the ASGI front of
gatekeeper/web/app.py.

Chosen by measurement (docs/production.md, `python -m bench.receiver`): with the body read by the
front before a thread is spent on it, slow senders cannot pin the web tier, and HTTP parsing costs
little Python time. Limits set here: a client has HEADER_SECONDS to send its headers and (app.py)
BODY_SECONDS for its body; each process handles at most MAX_REQUESTS requests at once and leaves
the rest waiting in the listen backlog."""

from __future__ import annotations

import os

from gatekeeper.settings import Settings

HEADER_SECONDS = 5
MAX_REQUESTS = 256  # per web process: in flight, counting those whose body is still arriving
BACKLOG = 1024
STOP_SECONDS = 10  # a web process still busy this long after SIGTERM is killed


def run_server(settings: Settings, host: str, port: int) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    # Imported once here, before the web processes fork: each starts in milliseconds instead of a
    # second, so one asked to stop while starting is rarely still starting.
    import gatekeeper.web.pages
    import gatekeeper.web.receiver  # noqa: F401

    # Each web process builds its app from the environment (gatekeeper.web.app.serve_front); the
    # public URL is the one thing `serve` decides from its own arguments.
    os.environ.setdefault("AGENTGATE_PUBLIC_URL", settings.public_url)
    Granian(
        "gatekeeper.web.app:serve_front",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,
        http=HTTPModes.http1,
        workers=settings.web_workers,
        backlog=BACKLOG,
        backpressure=MAX_REQUESTS,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_SECONDS * 1000),
        websockets=False,
        respawn_failed_workers=True,
        workers_kill_timeout=STOP_SECONDS,
        log_access=False,
    ).serve()


# The name gatekeeper/cli/main.py calls (from when `serve` ran gunicorn).
run_gunicorn = run_server
