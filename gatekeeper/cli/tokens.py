"""`agentgate agents add|list|remove`: agent keys for agents outside CI; `agentgate tokens`: the tokens
agentgate issued to agents."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from gatekeeper.settings import Settings


def _with_redis(command: str, run: Callable[[Any, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run `run(conn, args)` against the configured Redis; Redis errors are a message and exit 2."""

    def handler(args: argparse.Namespace) -> int:
        import redis

        from gatekeeper.state import store

        try:
            conn = store.connect(Settings.from_env().redis_url)
            return run(conn, args)
        except redis.RedisError as exc:
            print(f"agentgate {command}: Redis is unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2

    return handler


def _agents_add(conn: Any, args: argparse.Namespace) -> int:
    from gatekeeper.tokens import agentkeys

    try:
        key = agentkeys.add(conn, args.name)
    except ValueError as exc:
        print(f"agentgate agents add: {exc}", file=sys.stderr)
        return 1
    print(key)
    print(f"This is the key of agent {args.name!r}. It is shown only once: agentgate keeps only its SHA-256. "
          "Give it to the agent as `Authorization: Bearer KEY`.", file=sys.stderr)
    return 0


def _agents_list(conn: Any, args: argparse.Namespace) -> int:
    from gatekeeper.tokens import agentkeys

    found = agentkeys.list_keys(conn)
    if not found:
        print("no agent keys (add one with: agentgate agents add NAME)", file=sys.stderr)
        return 0
    width = max(len("NAME"), *(len(k.name) for k in found))
    print(f"{'NAME':<{width}}  CREATED")
    for k in found:
        print(f"{k.name:<{width}}  {k.created_at}")
    return 0


def _agents_remove(conn: Any, args: argparse.Namespace) -> int:
    from gatekeeper.tokens import agentkeys

    if not agentkeys.remove(conn, args.name):
        print(f"agentgate agents remove: no agent named {args.name!r}", file=sys.stderr)
        return 1
    print(f"removed agent {args.name!r}: its key is refused from now on")
    # A key is removed because it leaked or its agent is gone: the tokens it already got end now too (a
    # revocation that fails is retried by the workers' `expire` sweep).
    from gatekeeper.forges.factory import token_issuers
    from gatekeeper.state import tokens as store
    from gatekeeper.tokens.revoke import cipher_for, revoke

    settings = Settings.from_env()
    issuers, cipher = token_issuers(settings, conn), cipher_for(settings)
    mine = [r for r in store.live(conn) if r.agent == f"key:{args.name}"]
    done = sum(revoke(conn, issuers, cipher, r.id, "its agent key was removed").done for r in mine)
    if mine:
        rest = "; the rest are retried" if done < len(mine) else ""
        print(f"revoked {done} of its {len(mine)} live token(s){rest}")
    return 0


def _when(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else "-"


def _tokens_list(conn: Any, args: argparse.Namespace) -> int:
    import json

    from gatekeeper.state import tokens as store

    if args.repo:
        found = [r for tid in store.of_repo(conn, args.platform, args.repo)
                 if (r := store.load(conn, tid)) is not None and (args.all or r.live)]
        found.sort(key=lambda r: r.issued_at)
    else:
        found = list(store.live(conn))
    for record in found:
        if args.format == "jsonl":
            print(json.dumps(record.public(), sort_keys=True))
            continue
        perms = ",".join(f"{k}:{v}" for k, v in sorted(record.permissions.items()))
        print(f"{record.id}  {record.state:<13}  {record.platform}:{record.repo}#{record.task}  {record.agent}  "
              f"for {record.requester or '?'}  {perms}  until {_when(record.expires_at)}"
              + (f"  ({record.reason})" if record.reason else ""))
    if not found and args.format == "table":
        print("no live agent tokens" + (f" for {args.repo}" if args.repo else ""), file=sys.stderr)
    return 0


def _tokens_revoke(conn: Any, args: argparse.Namespace) -> int:
    from gatekeeper.forges.factory import token_issuers
    from gatekeeper.state import tokens as store
    from gatekeeper.tokens.revoke import cipher_for, revoke

    settings = Settings.from_env()
    record = store.load(conn, args.id)
    if record is None:
        print(f"agentgate tokens revoke: no token {args.id!r}", file=sys.stderr)
        return 1
    outcome = revoke(conn, token_issuers(settings, conn), cipher_for(settings), args.id,
                     f"revoked by an operator{': ' + args.reason if args.reason else ''}")
    if not outcome.done:
        state = outcome.record.state if outcome.record else "unknown"
        print(f"agentgate tokens revoke: {args.id} is not revoked yet ({state}: "
              f"{outcome.record.reason if outcome.record else ''}); agentgate keeps retrying", file=sys.stderr)
        return 1
    print(f"{args.id} revoked at {record.platform} ({record.repo}#{record.task}, {record.agent})")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the `agentgate` parser's subcommands."""
    agents = sub.add_parser("agents", help="agent keys, for agents that have no OIDC ID token")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    p = agents_sub.add_parser("add", help="make a key for an agent (printed once; only its SHA-256 is kept)")
    p.add_argument("name", metavar="NAME", help="the agent's name, as `tokens` rules name it (key: NAME)")
    p.set_defaults(func=_with_redis("agents add", _agents_add))
    p = agents_sub.add_parser("list", help="the agents that have a key (never the keys)")
    p.set_defaults(func=_with_redis("agents list", _agents_list))
    p = agents_sub.add_parser("remove", help="remove an agent's key: it is refused at once")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_with_redis("agents remove", _agents_remove))

    tokens = sub.add_parser("tokens", help="the agent tokens agentgate issued (never the tokens themselves)")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    p = tokens_sub.add_parser("list", help="live tokens (active, or their revocation pending)")
    p.add_argument("--repo", metavar="OWNER/NAME", help="one repository (with --all: revoked ones too)")
    p.add_argument("--platform", choices=["github", "gitlab"], default="github")
    p.add_argument("--all", action="store_true", help="with --repo: also tokens already revoked")
    p.add_argument("--format", choices=["table", "jsonl"], default="table")
    p.set_defaults(func=_with_redis("tokens list", _tokens_list))
    p = tokens_sub.add_parser("revoke", help="revoke a token at the platform now")
    p.add_argument("id", metavar="ID")
    p.add_argument("--reason", default="", help="said in the audit log")
    p.set_defaults(func=_with_redis("tokens revoke", _tokens_revoke))
