"""The ASGI front of `agentgate serve` (gatekeeper/web/app.py), called directly: it reads every body
itself within a deadline and a size cap before a thread is spent on the request, sends the webhook to
the receiver and everything else to the Flask app, and never answers 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gatekeeper.web.app import Front, create_app
from tests.conftest import github_fixture, sign


@pytest.fixture
def front(settings, redis_conn) -> Front:
    return Front(create_app(settings, redis_conn), body_seconds=0.2, max_body=1024 * 1024)


def call(front: Front, method: str, path: str, headers: dict[str, str], messages: list[dict[str, Any]] | None,
         ) -> tuple[int, dict[str, str], bytes]:
    """Run one request through the front. `messages` are the body's ASGI messages; None: a client that
    sends headers and then nothing (the receive never completes)."""
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        stalled = asyncio.Event()
        queue = list(messages or [])

        async def receive() -> dict[str, Any]:
            if messages is None or not queue:
                await stalled.wait()  # never set: this client never sends its body
            return queue.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                 "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "scheme": "http",
                 "http_version": "1.1"}
        await front(scope, receive, send)

    asyncio.run(run())
    if not sent:
        return 0, {}, b""
    start, body = sent
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], out_headers, body["body"]


def signed(body: bytes, delivery: str = "front-1") -> dict[str, str]:
    return {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json", "Content-Length": str(len(body))}


def test_a_signed_delivery_in_chunks_is_received_and_queued(front, redis_conn):
    """A body that arrives in several messages is put together, verified and queued."""
    body = json.dumps(github_fixture("pull_request.opened.1") | {"installation": {"id": 42}}).encode()
    half = len(body) // 2
    status, _, out = call(front, "POST", "/webhooks/github", signed(body),
                          [{"type": "http.request", "body": body[:half], "more_body": True},
                           {"type": "http.request", "body": body[half:], "more_body": False}])
    assert status == 202 and json.loads(out) == {"result": "queued", "jobs": ["github-front-1-0"]}


def test_a_body_that_does_not_arrive_in_time_is_408_and_closes(front):
    """A client that announces a body and does not send it in time gets 408 and loses the connection."""
    status, headers, _ = call(front, "POST", "/webhooks/github", {"Content-Length": "1000"}, None)
    assert status == 408 and headers["connection"] == "close"


def test_an_announced_body_over_the_cap_is_413_before_it_is_read(front):
    """Content-Length over the cap is refused at once: nothing of the body is awaited."""
    status, headers, _ = call(front, "POST", "/webhooks/github", {"Content-Length": str(2 * 1024 * 1024)}, None)
    assert status == 413 and headers["connection"] == "close"


def test_a_chunked_body_over_the_cap_is_413(front):
    """A body without a length is counted as it arrives and refused once past the cap."""
    chunk = {"type": "http.request", "body": b" " * (600 * 1024), "more_body": True}
    status, _, _ = call(front, "POST", "/webhooks/github", {}, [chunk, chunk])
    assert status == 413


@pytest.mark.parametrize("length", ["-1", "ten", "1e3"])
def test_an_invalid_content_length_is_400(front, length):
    """A length that is not a number is a client error, not a crash."""
    status, _, _ = call(front, "POST", "/webhooks/github", {"Content-Length": length}, None)
    assert status == 400


def test_a_client_that_goes_away_gets_nothing(front):
    """A disconnect while the body arrives ends the request without an answer or an error."""
    status, _, _ = call(front, "POST", "/webhooks/github", {"Content-Length": "10"},
                        [{"type": "http.disconnect"}])
    assert status == 0


def test_other_routes_are_the_flask_apps(front):
    """Pages, health and metrics are served by the Flask app behind the same front."""
    status, headers, out = call(front, "GET", "/healthz", {}, [{"type": "http.request", "body": b""}])
    assert status == 200 and json.loads(out) == {"status": "ok"}
    status, _, _ = call(front, "GET", "/decisions/nonexistent-id", {}, [{"type": "http.request", "body": b""}])
    assert status == 404


def test_an_unexpected_error_is_503_never_500(front, monkeypatch):
    """Whatever goes wrong inside, the answer says the delivery can be retried."""
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(front.receivers["/webhooks/github"], "receive", broken)
    body = b"{}"
    status, _, out = call(front, "POST", "/webhooks/github", signed(body),
                          [{"type": "http.request", "body": body}])
    assert status == 503 and json.loads(out)["message"] == "internal error; retry later"
