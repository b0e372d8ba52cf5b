"""``python -m tests.fakegitlab [--port N] [--token T]``: serve the fake GitLab until interrupted; the
base URL is the first line of stdout."""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import make_server

from . import QuietHandler, create_app
from .state import FakeGitLabState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakegitlab", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default="glpat-fake-token")
    args = parser.parse_args(argv)
    state = FakeGitLabState(token=args.token)
    server = make_server(args.host, args.port, create_app(state), threaded=True, request_handler=QuietHandler)
    print(f"http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
