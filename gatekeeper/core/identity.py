"""Who is acting: a human, a bot, or an AI coding agent.

The platform says what it knows of an account (`User`: marked as a bot, acting through an app, known
to the adapter as an AI agent); the repository's policy adds the agents and bots it names. Configured
names only ever add to what the platform says, never remove."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gatekeeper.core.facts import Actor, ActorKind, User

# Commit trailers and footers AI tools write into commits they author.
_AI_TRAILER = re.compile(
    r"^(?:co-authored-by:\s*(?:claude|copilot|cursor(?: agent)?|aider|devin|codex|jules|gemini|openhands)\b"
    r"|generated (?:with|by) \[?(?:claude code|cursor|aider|copilot|codex|devin)\b"
    r"|co-authored-by:.*<(?:noreply@anthropic\.com|cursoragent@cursor\.com|[^>]*copilot[^>]*)>)",
    re.IGNORECASE | re.MULTILINE,
)


def bare(login: str) -> str:
    """A login compared case-insensitively, without an app account's `[bot]` suffix."""
    login = login.strip().lower()
    return login[: -len("[bot]")] if login.endswith("[bot]") else login


def classify(user: User | None, *, agents: Iterable[str] = (), bots: Iterable[str] = ()) -> Actor:
    """Classify one account under a policy's `identities`."""
    if user is None:
        return Actor("ghost", ActorKind.BOT, None, None, "unknown account")
    name, via_app = user.login or "ghost", user.via_app
    plain = bare(name)
    configured_agents = {bare(a) for a in agents}
    if plain in configured_agents:
        return Actor(name, ActorKind.AGENT, user.id, via_app, "configured agent")
    if via_app and bare(via_app) in configured_agents:
        return Actor(name, ActorKind.AGENT, user.id, via_app, f"acted through the agent {via_app}")
    if user.agent:
        why = f"acted through the AI coding agent {via_app}" if via_app and not user.bot else "known AI coding agent"
        return Actor(name, ActorKind.AGENT, user.id, via_app, why)
    if user.bot:
        return Actor(name, ActorKind.BOT, user.id, via_app, "the platform marks it as a bot")
    if plain in {bare(b) for b in bots}:
        return Actor(name, ActorKind.BOT, user.id, via_app, "configured bot")
    if via_app:
        # A human's credentials used by an app: the app decided what to do, so it is governed as a bot.
        return Actor(name, ActorKind.BOT, user.id, via_app, f"acted through the app {via_app}")
    return Actor(name, ActorKind.HUMAN, user.id, None, "")


def has_ai_trailer(message: str) -> bool:
    return bool(_AI_TRAILER.search(message or ""))
