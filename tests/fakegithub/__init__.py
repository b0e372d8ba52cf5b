"""A small fake of GitHub's REST API for end-to-end tests.

Start it in-process::

    state = FakeState(app_id=123, public_key_pem=pem)
    state.add_installation(42, "acme", ["acme/widgets"])
    state.add_pull("acme/widgets", 7, title="Add thing", head_sha="a" * 40)
    with running_fake_github(state) as gh:
        run_agentgate(env={"AGENTGATE_GITHUB_API_URL": gh.url})
        assert gh.state.calls_matching("POST", r"/repos/acme/widgets/statuses/a+")

or as its own process: ``python -m tests.fakegithub --port 0 --public-key-file key.pub`` (prints
its URL on the first stdout line), seeded and inspected over HTTP via ``/_fake/state``,
``/_fake/calls``, ``/_fake/reset`` and ``/_fake/tokens``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import HOOK_ROUTES, ROUTES, GitHubError, create_app
from .state import Call, FakeState, Fault, Repo, Token

__all__ = ["HOOK_ROUTES", "ROUTES", "Call", "FakeGitHub", "FakeState", "Fault", "GitHubError", "Repo", "Token",
           "create_app", "running_fake_github"]


@dataclass(frozen=True)
class FakeGitHub:
    url: str  # e.g. http://127.0.0.1:54321 -- what AGENTGATE_GITHUB_API_URL should be
    state: FakeState

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


class FakeHandler(WSGIRequestHandler):
    """Answers carry the fake's own clock in ``Date`` (GitHub's clock, which clients correct skew by)."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is None:
            state = getattr(getattr(self.server, "app", None), "config", {}).get("FAKE_STATE")
            timestamp = state.now() if state is not None else None
        return super().date_time_string(timestamp)


class QuietHandler(FakeHandler):
    """Werkzeug logs every request to stderr; tests assert on ``state.calls`` instead."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@contextmanager
def running_fake_github(state: FakeState | None = None, port: int = 0, host: str = "127.0.0.1",
                        quiet: bool = True) -> Iterator[FakeGitHub]:
    """Serve the fake on a background thread. The socket is bound (and listening) before this
    yields, so clients can connect immediately; port 0 picks a free port."""
    state = state if state is not None else FakeState()
    server = make_server(host, port, create_app(state), threaded=True,
                         request_handler=QuietHandler if quiet else FakeHandler)
    # A short poll interval keeps shutdown() quick: it waits for the serve loop to notice.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"fakegithub:{server.server_port}", daemon=True)
    thread.start()
    try:
        yield FakeGitHub(url=f"http://{host}:{server.server_port}", state=state)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
