"""`create_app(settings)`: the Flask application; `Front`: the ASGI application `agentgate serve` runs.

The front reads every request body itself, asynchronously, within a deadline and a size cap, before
any Python thread is spent on the request: a client that announces a large body and trickles it costs
an idle coroutine until the deadline, never a worker thread (see docs/production.md). A complete
`POST /webhooks/github` goes straight to the receiver; every other route goes to the Flask app."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from gatekeeper.settings import Settings
from gatekeeper.state import store
from gatekeeper.state.queue import JobQueue

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB; anything larger is not from it
# A whole body must arrive within this. GitHub sends a delivery at once and gives up on an answer after
# 10 s, so a slower body is not GitHub's; its connection is closed with 408.
BODY_SECONDS = 5.0
WEB_THREADS = 8  # per process: requests run here once their body is in (CPU-bound, plus Redis waits)

log = logging.getLogger(__name__)


def create_app(settings: Settings, conn: redis.Redis | None = None) -> Flask:
    app = Flask(__name__, template_folder="../templates")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    conn = conn if conn is not None else store.connect(settings.redis_url)
    app.extensions["agentgate"] = AppContext(settings, conn, JobQueue(conn, settings.queue_name))

    from gatekeeper.web import dashboard, pages, receiver, tokens_api

    app.register_blueprint(receiver.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(tokens_api.blueprint)

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
        from gatekeeper.web.receiver import GitHubReceiver, GitLabReceiver

        self.settings = settings
        self.conn = conn
        self.queue = queue
        self.github = GitHubReceiver(settings, conn, queue)
        self.gitlab = GitLabReceiver(settings, conn, queue)
        self._tokens: Any = None  # the TokenService, built on first use

    def token_service(self):  # type: ignore[no-untyped-def]
        """Built on first use: the receiver's processes never load the token machinery otherwise."""
        if self._tokens is None:
            from gatekeeper.forges.factory import token_issuers
            from gatekeeper.tokens.revoke import cipher_for
            from gatekeeper.tokens.service import TokenService

            settings = self.settings
            self._tokens = TokenService(self.conn, settings, token_issuers(settings, self.conn),
                                        lambda: cipher_for(settings))
        return self._tokens


# -- the ASGI front ---------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Refused(Exception):
    """A request answered before its body was read in full (too large, too slow, malformed length)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Gone(Exception):
    """The client disconnected before its body was in."""


class Front:
    """The ASGI application of `agentgate serve` (one per web process), around the Flask app."""

    def __init__(self, app: Flask, *, threads: int = WEB_THREADS, max_body: int = MAX_BODY_BYTES,
                 body_seconds: float = BODY_SECONDS):
        self.app = app
        context = app.extensions["agentgate"]
        self.receivers = {"/webhooks/github": context.github, "/webhooks/gitlab": context.gitlab}
        self.max_body = max_body
        self.body_seconds = body_seconds
        self._too_large = f"body over {max_body // (1024 * 1024)} MB"
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="agentgate-web")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here
        headers = _headers(scope)
        try:
            body = await self._body(headers, receive)
        except _Refused as refused:
            # Answered without reading the rest: the connection cannot carry another request.
            status, out_headers, out = _json(refused.status, {"error": str(refused)}, close=True)
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": out})
            return
        except _Gone:
            return
        loop = asyncio.get_running_loop()
        try:
            receiver = self.receivers.get(scope["path"]) if scope["method"] == "POST" else None
            if receiver is not None:
                # In a thread: the loop goes on reading other requests' bodies while this one waits on Redis.
                answer = await loop.run_in_executor(self.pool, receiver.receive, _getter(headers), body)
                status, out_headers, out = _json(answer.status, answer.body)
            else:
                status, out_headers, out = await loop.run_in_executor(
                    self.pool, _call_wsgi, self.app, _environ(scope, headers, body))
        except Exception:  # noqa: BLE001 - never a 500 for client input: log it, say it can be retried
            log.exception("unhandled error in request")
            status, out_headers, out = _json(503, {"error": "Service Unavailable",
                                                   "message": "internal error; retry later"})
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": out})

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            raise _Refused(413 if declared.isdigit() else 400,
                           self._too_large if declared.isdigit() else "invalid Content-Length")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:  # a chunked body, which announced no length
                        raise _Refused(413, self._too_large)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, f"body not received within {self.body_seconds:g} s") from None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; a repeated header is joined with commas, as HTTP defines."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


def _getter(headers: dict[str, str]) -> Callable[[str], str | None]:
    return lambda name: headers.get(name.lower())


def _json(status: int, body: dict[str, Any], *, close: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = json.dumps(body).encode()
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:
        out.append((b"connection", b"close"))
    return status, out, data


def _environ(scope: Scope, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A WSGI environ for a request whose body is already read."""
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": (scope.get("query_string") or b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    for name, value in headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name != "content-length" and "_" not in name:  # `X_Foo` must not pose as `X-Foo`
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _call_wsgi(app: Flask, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        started[:] = [status, headers]
        return lambda data: None  # the write() callable, which Flask never uses

    result: Iterable[bytes] = app(environ, start_response)
    try:
        out = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    return int(status.split(" ", 1)[0]), [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers], out


def serve_front() -> Front:
    """The ASGI factory `agentgate serve` names: settings from the environment, in each web process."""
    # A web process is forked with the server's own SIGTERM handler, which would swallow a stop asked
    # for while it starts (and leave it running); until Granian installs its own, SIGTERM just ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    settings = Settings.from_env()
    import os

    from gatekeeper import logs

    logs.configure(logs.log_format(os.environ, "json"))  # one JSON object a line (AGENTGATE_LOG_FORMAT=text)
    return Front(create_app(settings))
