"""The floor agentgate's receiver is measured against: the smallest Flask receiver that does what any
webhook receiver must (verify the signature, deduplicate the delivery, enqueue an RQ job), served by
gunicorn. `python -m bench.receiver` runs it side by side with `agentgate serve`.

    MINIMAL_REDIS_URL=redis://... MINIMAL_SECRET=... gunicorn -w 2 -k gthread bench.minimal_receiver:app

It passes the raw body to the job and parses nothing: the least work a receiver can do and still hand
a verified delivery to a worker. The job's function is never run (the benchmark runs no worker)."""

from __future__ import annotations

import hashlib
import hmac
import os

import redis
from flask import Flask, request
from rq import Queue

app = Flask(__name__)
_conn = redis.Redis.from_url(os.environ.get("MINIMAL_REDIS_URL", "redis://127.0.0.1:6379/2"))
_queue = Queue("minimal", connection=_conn)
_secret = os.environ.get("MINIMAL_SECRET", "").encode()


@app.post("/webhooks/github")
def github_webhook():  # type: ignore[no-untyped-def]
    body = request.get_data(cache=False)
    expected = "sha256=" + hmac.new(_secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), expected):
        return {"result": "bad-signature"}, 401
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not _conn.set(f"minimal:delivery:{delivery}", "", nx=True, ex=7 * 24 * 3600):
        return {"result": "duplicate"}, 200
    _queue.enqueue("bench.minimal_receiver.process", request.headers.get("X-GitHub-Event", ""), delivery, body)
    return {"result": "queued"}, 202


def process(event: str, delivery: str, body: bytes) -> None:  # pragma: no cover - never run by the benchmark
    """Where a real receiver's worker would parse and act on the delivery."""
