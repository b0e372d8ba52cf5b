"""The `agentgate` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gatekeeper.settings import Settings

if TYPE_CHECKING:
    from gatekeeper.worker.runtime import Runtime

DEV_WEBHOOK_SECRET = "agentgate-dev"  # noqa: S105 - only ever used by `agentgate dev` and `replay`


def _logging(verbose: bool = False, default_format: str = "text") -> None:
    """Logging as AGENTGATE_LOG_FORMAT says (`json`: one object a line on stdout; `text`), else
    `default_format`: `json` for `serve` and `worker`, `text` for `dev`."""
    import os

    from gatekeeper import logs

    try:
        fmt = logs.log_format(os.environ, default_format)
    except ValueError as exc:
        raise SystemExit(f"agentgate: {exc}") from None
    logs.configure(fmt, verbose=verbose)


def cmd_serve(args: argparse.Namespace) -> int:
    from gatekeeper.cli.serve import run_gunicorn

    settings = Settings.from_env(host=args.host, port=args.port)
    if not settings.github_webhook_secrets and not settings.gitlab_webhook_secret:
        print("agentgate serve: AGENTGATE_GITHUB_WEBHOOK_SECRET is required (unsigned webhooks are refused)",
              file=sys.stderr)
        return 2
    run_gunicorn(settings, args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from gatekeeper.forges.factory import build_runtime, delivery_logs
    from gatekeeper.state import store
    from gatekeeper.worker import recovery, runtime

    _logging(args.verbose, default_format="json")
    settings = Settings.from_env()
    conn = store.connect(settings.redis_url)
    rt = build_runtime(settings, conn)
    runtime.configure(rt)
    recovery.configure(delivery_logs(settings, conn))
    # Jobs run in this process (no fork per job): compiled policies and imports stay warm from one job
    # to the next. Job timeouts still apply (signals); a supervisor restarts a worker that dies.
    import gatekeeper.worker.jobs  # noqa: F401

    return _supervise(rt, burst=args.burst)


def _supervise(rt: Runtime, burst: bool) -> int:
    """Run RQ workers until asked to stop. RQ's worker quits when Redis goes away mid-job; it is replaced
    as soon as Redis answers again (backing off up to 30 s), so a restarted Redis needs no restarted
    worker. Each worker holds a lease the `recover` job reads; the periodic jobs are started here, never
    in burst mode (a burst drains the queue and leaves nothing scheduled)."""
    import time

    import redis
    from rq import Queue, SimpleWorker

    from gatekeeper.worker import recovery

    log = logging.getLogger("gatekeeper.worker")
    settings, conn = rt.settings, rt.conn
    backoff, failed = 0.5, False
    while True:
        worker = SimpleWorker([Queue(settings.queue_name, connection=conn)], connection=conn,
                              maintenance_interval=settings.worker_maintenance_interval)
        try:
            with recovery.Lease(conn, worker.name, settings.worker_lease):
                if not burst:
                    recovery.start_periodic(rt)
                worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
                backoff = 0.5
        except redis.RedisError as exc:
            log.warning("Redis is unavailable (%s)", type(exc).__name__)
            failed = True
        if burst:
            return 1 if failed else 0
        # RQ notes the time of a SIGINT/SIGTERM; any other return means it gave up on Redis.
        if getattr(worker, "_shutdown_requested_date", None) is not None:
            return 0
        while True:
            try:
                conn.ping()
                break
            except redis.RedisError:
                log.warning("waiting %.1f s for Redis before starting a new worker", backoff)
                time.sleep(backoff)  # reconnect backoff, not synchronisation
                backoff = min(backoff * 2, 30.0)
        scheduler = getattr(worker, "scheduler", None)
        if scheduler is not None:
            try:
                # Its process stopped with the worker; a persisted lock would keep retries and periodic
                # jobs unscheduled for a minute.
                scheduler.release_locks()
            except redis.RedisError:
                pass


def cmd_dev(args: argparse.Namespace) -> int:
    from gatekeeper.cli.dev import run_dev

    _logging(args.verbose)
    settings = Settings.from_env(host=args.host, port=args.port, default_redis=None)
    return run_dev(settings, args.host, args.port, DEV_WEBHOOK_SECRET)


def cmd_replay(args: argparse.Namespace) -> int:
    from gatekeeper.cli.demo import replay

    return replay(args.url.rstrip("/"), args.secret, args.scenario)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gatekeeper.policy.load import check_policy, org_refs

    ok = True
    for path in args.paths:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}:1:1: cannot read: {getattr(exc, 'strerror', None) or exc}")
            ok = False
            continue
        errors = check_policy(text, source=path)
        for err in errors:
            print(err)
        if errors:
            ok = False
            continue
        skipped = org_refs(text)
        print(f"{path}: ok" + (f" (not checked: {', '.join(skipped)}, fetched by the worker)" if skipped else ""))
    return 0 if ok else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    import json

    if args.token_claims or args.agent_key:
        from gatekeeper.cli.simulate import simulate_token

        return simulate_token(args)
    if not args.event or not args.payload:
        print("agentgate simulate: --event and --payload are required (or --token-claims / --agent-key to try "
              "a token request)", file=sys.stderr)
        return 2

    from gatekeeper.cli import simulate
    from gatekeeper.policy import InvalidPolicy, load_policy
    from gatekeeper.policy.load import org_refs

    try:
        with open(args.policy, encoding="utf-8") as fh:
            text = fh.read()
        with open(args.payload, encoding="utf-8") as fh:
            payload = json.load(fh)
        files = list(args.files or [])
        if args.files_from:
            with open(args.files_from, encoding="utf-8") as fh:
                files.extend(line.strip() for line in fh if line.strip())
        org_texts: dict[str, str | None] = {}
        for ref, org_path in zip(org_refs(text), args.org_policy or [], strict=False):
            with open(org_path, encoding="utf-8") as fh:
                org_texts[ref] = fh.read()
        policy = load_policy(text, source=args.policy, extends=org_texts)
        reviews = [simulate.ReviewSpec.parse(r) for r in args.review or []]
        facts = simulate.facts_from_github(args.event, payload, policy, files=files if files else None,
                                           reviews=reviews, labels=args.label or [],
                                           requesters=args.requester or [])
    except (OSError, ValueError) as exc:
        print(f"agentgate simulate: {exc}", file=sys.stderr)
        return 2
    verdict = simulate.simulate(policy, facts)
    render = simulate.render_json if args.json else simulate.render_text
    print(render(verdict, facts, args.policy))
    return 1 if isinstance(policy, InvalidPolicy) else 0


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    import redis

    from gatekeeper.state import audit, store

    settings = Settings.from_env()
    # `--kind token`: agent tokens granted, refused and revoked (their entries' event is "token").
    kinds = {"automated": {"bot", "agent"}}.get(args.kind, {args.kind}) if args.kind and args.kind != "token" else None
    event = "token" if args.kind == "token" else args.event
    try:
        conn = store.connect(settings.redis_url)
        entries = audit.query(conn, since=args.since, until=args.until, repo=args.repo, kinds=kinds,
                              actor=args.actor, event=event, limit=args.limit)
        if args.format == "table":
            for e in entries:
                print(audit.printable(
                    f"{e.at}  {e.repo}  {e.actor} ({e.actor_kind}{', via ' + e.via_app if e.via_app else ''})  "
                    f"{e.event}{'.' + e.action if e.action else ''}  {e.target}  {e.detail}"
                    + (f"  for {e.on_behalf_of}" if e.on_behalf_of else "")))
        else:
            for line in audit.export(entries, args.format):
                sys.stdout.write(line)
    except redis.RedisError as exc:
        print(f"agentgate audit: cannot read the audit log from Redis: {exc}", file=sys.stderr)
        return 2
    return 0


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

    p = sub.add_parser("audit", help="query and export the audit log (agents' actions apart from humans')")
    p.add_argument("--kind", choices=["agent", "bot", "human", "automated", "token"],
                   help="actor kind (automated: bots and agents), or token: agent tokens granted, refused, revoked")
    p.add_argument("--actor", help="one login")
    p.add_argument("--repo", help="owner/name")
    p.add_argument("--event", help="a webhook event name, e.g. issue_comment")
    p.add_argument("--since", type=_when, help="ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00Z")
    p.add_argument("--until", type=_when)
    p.add_argument("--limit", type=int)
    p.add_argument("--format", choices=["table", "jsonl", "csv"], default="table")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("check-config", help="validate .agentgate.yml files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("simulate", help="dry run: the verdict a policy gives for an event payload")
    p.add_argument("--policy", required=True, metavar="FILE", help="the .agentgate.yml to evaluate under")
    p.add_argument("--event", metavar="NAME", help="pull_request or pull_request_review")
    p.add_argument("--payload", metavar="FILE", help="the webhook payload (JSON)")
    p.add_argument("--files", nargs="+", metavar="F", help="changed paths")
    p.add_argument("--files-from", metavar="FILE", help="a file of changed paths, one a line")
    p.add_argument("--review", action="append", metavar="LOGIN:STATE[:SHA][:PERMISSION]",
                   help="a review (SHA defaults to the head, PERMISSION to write); repeatable")
    p.add_argument("--label", action="append", metavar="L", help="an extra label on the pull request; repeatable")
    p.add_argument("--requester", action="append", metavar="LOGIN", help="who set the agent on the task")
    p.add_argument("--org-policy", action="append", metavar="FILE",
                   help="the text of each extends: org:REPO file, in the order the policy names them")
    p.add_argument("--json", action="store_true", help="print the verdict and facts as JSON")
    g = p.add_argument_group("a token request (the policy's `tokens` section) instead of a pull request")
    g.add_argument("--token-claims", metavar="FILE", help="an OIDC ID token's claims (JSON), as if verified")
    g.add_argument("--agent-key", metavar="NAME", help="an agent key's name, as if presented")
    g.add_argument("--permissions", metavar="NAME=LEVEL,...", help="what the agent asks for (default: the grant)")
    g.add_argument("--task-state", choices=["open", "closed"], default="open")
    g.add_argument("--task-label", action="append", metavar="LABEL:LOGIN[:PERMISSION]",
                   help="a label on the task, who applied it and their permission (default write); repeatable")
    p.set_defaults(func=cmd_simulate)

    # Commands with modules of their own; each adds its parsers (imports stay lazy until it runs).
    from gatekeeper.cli import doctor, setup, tokens

    tokens.register(sub)
    doctor.register(sub)
    setup.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from gatekeeper.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"agentgate {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
