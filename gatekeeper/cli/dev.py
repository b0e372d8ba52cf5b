"""`agentgate dev`: the receiver and a worker in one process, for a first look without any platform."""

from __future__ import annotations

import threading
from dataclasses import replace

from rq import Queue, SimpleWorker
from werkzeug.serving import make_server

from gatekeeper.forges.factory import build_runtime
from gatekeeper.settings import Settings
from gatekeeper.state import store
from gatekeeper.web import create_app
from gatekeeper.worker import runtime


def run_dev(settings: Settings, host: str, port: int, dev_secret: str) -> int:
    if not settings.github_webhook_secrets:
        settings = replace(settings, github_webhook_secrets=(dev_secret,))
    settings = replace(settings, dry_run=not settings.has_github_credentials)
    conn = store.connect(settings.redis_url)
    runtime.configure(build_runtime(settings, conn))
    app = create_app(settings, conn)
    if settings.dry_run:
        from gatekeeper.web import dev as dev_routes

        app.register_blueprint(dev_routes.blueprint)
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
    print(
        f"agentgate dev on http://{host}:{port}/\n"
        f"  store:   {'Redis at ' + settings.redis_url if settings.redis_url else 'embedded (in this process)'}\n"
        f"  GitHub:  {'none: actions are recorded, not sent' if settings.dry_run else settings.github_api_url}\n"
        f"  webhook: POST http://{host}:{port}/webhooks/github"
        f"{' (secret: ' + dev_secret + ')' if settings.github_webhook_secrets == (dev_secret,) else ''}\n"
        f"  try:     make demo   (or: agentgate replay --all)",
        flush=True,
    )
    # The worker runs in the main thread: RQ installs signal handlers, which only the main thread may do.
    worker = SimpleWorker([Queue(settings.queue_name, connection=conn)], connection=conn)
    try:
        worker.work(logging_level="INFO")
    finally:
        server.shutdown()
    return 0
