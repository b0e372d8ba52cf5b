"""A small fake of GitLab's REST API v4 for the GitLab adapter's tests and end-to-end tests.

Start it in-process::

    state = FakeGitLabState()
    state.add_project("acme/widgets")
    state.add_mr("acme/widgets", 7, author="project_9_bot_1f2e", head_sha="a" * 40, source_branch="fix")
    with running_fake_gitlab(state) as gl:
        run_agentgate(env={"AGENTGATE_GITLAB_URL": gl.url, "AGENTGATE_GITLAB_TOKEN": state.token})
        assert gl.state.statuses("acme/widgets", "a" * 40)

or as its own process: ``python -m tests.fakegitlab --port 0`` (prints its URL first). Every API
request is recorded in ``state.calls`` (``GET /_fake/calls`` over HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import ROUTES, GitLabError, create_app
from .state import DEVELOPER, GUEST, MAINTAINER, OWNER, REPORTER, Call, FakeGitLabState, Fault, Project, fake_sha, iso

__all__ = ["DEVELOPER", "GUEST", "MAINTAINER", "OWNER", "REPORTER", "ROUTES", "Call", "FakeGitLab",
           "FakeGitLabState", "Fault", "GitLabError", "Project", "create_app", "fake_sha", "iso",
           "running_fake_gitlab"]


@dataclass(frozen=True)
class FakeGitLab:
    url: str  # e.g. http://127.0.0.1:54321 -- what AGENTGATE_GITLAB_URL should be (the API is under /api/v4)
    state: FakeGitLabState


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@contextmanager
def running_fake_gitlab(state: FakeGitLabState | None = None, port: int = 0,
                        host: str = "127.0.0.1") -> Iterator[FakeGitLab]:
    """Serve the fake on a background thread; the socket listens before this yields (port 0: a free one)."""
    state = state if state is not None else FakeGitLabState()
    server = make_server(host, port, create_app(state), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name=f"fakegitlab:{server.server_port}", daemon=True)
    thread.start()
    try:
        yield FakeGitLab(url=f"http://{host}:{server.server_port}", state=state)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
