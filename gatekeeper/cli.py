"""The `agentgate` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gatekeeper.settings import Settings

DEV_WEBHOOK_SECRET = "agentgate-dev"  # noqa: S105 - only ever used by `agentgate dev` and `replay`


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    from gatekeeper.serve import run_gunicorn

    settings = Settings.from_env(host=args.host, port=args.port)
    if not settings.github_webhook_secrets and not settings.gitlab_webhook_secret:
        print("agentgate serve: AGENTGATE_GITHUB_WEBHOOK_SECRET is required (unsigned webhooks are refused)",
              file=sys.stderr)
        return 2
    run_gunicorn(settings, args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from rq import Queue, Worker

    from gatekeeper import runtime, store

    _logging(args.verbose)
    settings = Settings.from_env()
    conn = store.connect(settings.redis_url)
    runtime.configure(runtime.Runtime(settings, conn))
    worker = Worker([Queue(settings.queue_name, connection=conn)], connection=conn)
    worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from gatekeeper.dev import run_dev

    _logging(args.verbose)
    settings = Settings.from_env(host=args.host, port=args.port, default_redis=None)
    return run_dev(settings, args.host, args.port, DEV_WEBHOOK_SECRET)


def cmd_replay(args: argparse.Namespace) -> int:
    from gatekeeper.demo import replay

    return replay(args.url.rstrip("/"), args.secret, args.scenario)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gatekeeper.policy import InvalidPolicy, load_policy

    ok = True
    for path in args.paths:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            print(f"{path}:1:1: cannot read: {exc.strerror}")
            ok = False
            continue
        result = load_policy(text, source=path)
        if isinstance(result, InvalidPolicy):
            ok = False
            for err in result.errors:
                print(err)
        else:
            print(f"{path}: ok")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentgate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="the webhook receiver and web pages (gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="an RQ worker (with scheduler) that evaluates and acts")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dev", help="receiver + worker in one process, embedded store, recorded actions")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("replay", help="send the bundled sample deliveries to a running agentgate")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--secret", default=DEV_WEBHOOK_SECRET)
    p.add_argument("--scenario", default="agent-pr", help="sample scenario name, or 'all'")
    p.add_argument("--all", dest="scenario", action="store_const", const="all")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("check-config", help="validate .agentgate.yml files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
