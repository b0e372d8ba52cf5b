"""``python -m tests.fakegithub --port N --public-key-file F [--app-id ID] [--seed-file S]``

Prints the base URL as the first line of stdout (useful with ``--port 0``), then serves until
interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from werkzeug.serving import make_server

from . import FakeHandler, QuietHandler, create_app
from .state import FakeState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakegithub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--public-key-file", type=Path, help="PEM of the App key that signs JWTs")
    parser.add_argument("--app-id", type=int, default=1)
    parser.add_argument("--app-slug", default="agentgate")
    parser.add_argument("--seed-file", type=Path, help="JSON merged into the state (as POST /_fake/state)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    state = FakeState(app_id=args.app_id, app_slug=args.app_slug,
                      public_key_pem=args.public_key_file.read_text() if args.public_key_file else None)
    if args.seed_file:
        state.merge(json.loads(args.seed_file.read_text()))
    server = make_server(args.host, args.port, create_app(state), threaded=True,
                         request_handler=FakeHandler if args.verbose else QuietHandler)
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
