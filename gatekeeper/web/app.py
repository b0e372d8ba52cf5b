"""`create_app(settings)`: the Flask application factory."""

from __future__ import annotations

import logging

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from gatekeeper.settings import Settings
from gatekeeper.state import store
from gatekeeper.state.queue import JobQueue

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB; anything larger is not from it

log = logging.getLogger(__name__)


def create_app(settings: Settings, conn: redis.Redis | None = None) -> Flask:
    app = Flask(__name__, template_folder="../templates")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    conn = conn if conn is not None else store.connect(settings.redis_url)
    app.extensions["agentgate"] = AppContext(settings, conn, JobQueue(conn, settings.queue_name))

    from gatekeeper.web import pages, receiver

    app.register_blueprint(receiver.blueprint)
    app.register_blueprint(pages.blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        # Never a bare 500 page for client input; log it and say the delivery can be retried.
        log.exception("unhandled error in request")
        return jsonify(error="Service Unavailable", message="internal error; retry later"), 503

    return app


class AppContext:
    def __init__(self, settings: Settings, conn: redis.Redis, queue: JobQueue):
        self.settings = settings
        self.conn = conn
        self.queue = queue
