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

    # tokens list / revoke: added by the lead
