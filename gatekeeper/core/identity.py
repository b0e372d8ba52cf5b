"""Who is acting: a human, a bot, or an AI coding agent."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gatekeeper.core.facts import Actor, ActorKind

# Accounts AI coding agents act through on GitHub (as of 2026). Compared case-insensitively; the
# `[bot]` suffix is optional so both the app's bot user and the display name match.
KNOWN_AGENTS: frozenset[str] = frozenset(
    {
        "copilot",
        "copilot-swe-agent",
        "github-copilot",
        "devin-ai-integration",
        "claude",
        "anthropic-claude",
        "cursor",
        "cursoragent",
        "chatgpt-codex-connector",
        "openai-codex",
        "codex",
        "google-labs-jules",
        "jules",
        "amazon-q-developer",
        "sweep-ai",
        "codegen-sh",
        "openhands-agent",
        "openhands",
        "aider",
        "factory-droid",
        "coderabbitai",
        "gemini-code-assist",
    }
)

# Commit trailers and footers AI tools write into commits they author.
_AI_TRAILER = re.compile(
    r"^(?:co-authored-by:\s*(?:claude|copilot|cursor(?: agent)?|aider|devin|codex|jules|gemini|openhands)\b"
    r"|generated (?:with|by) \[?(?:claude code|cursor|aider|copilot|codex|devin)\b"
    r"|co-authored-by:.*<(?:noreply@anthropic\.com|cursoragent@cursor\.com|[^>]*copilot[^>]*)>)",
    re.IGNORECASE | re.MULTILINE,
)


def _bare(login: str) -> str:
    login = login.strip().lower()
    return login[: -len("[bot]")] if login.endswith("[bot]") else login


def classify(
    login: str | None,
    *,
    account_type: str | None = None,
    via_app: str | None = None,
    agents: Iterable[str] = (),
    bots: Iterable[str] = (),
    account_id: int | None = None,
) -> Actor:
    """Classify one account. Configured agents and bots add to the built-in knowledge, never remove."""
    name = login or "ghost"
    bare = _bare(name)
    configured_agents = {_bare(a) for a in agents}
    platform_bot = (account_type or "").lower() == "bot" or name.lower().endswith("[bot]")
    if bare in configured_agents:
        return Actor(name, ActorKind.AGENT, account_id, via_app, "configured agent")
    # Built-in names count only for bot accounts: a person may well be called "jules" or "cursor".
    if platform_bot and bare in KNOWN_AGENTS:
        return Actor(name, ActorKind.AGENT, account_id, via_app, "known AI coding agent")
    if platform_bot:
        return Actor(name, ActorKind.BOT, account_id, via_app, "platform marks it as a bot")
    if bare in {_bare(b) for b in bots}:
        return Actor(name, ActorKind.BOT, account_id, via_app, "configured bot")
    if via_app:
        # A human's token used by an app: the app decided what to do, so it is governed as a bot,
        # and as an agent when the app is one.
        app = _bare(via_app)
        kind = ActorKind.AGENT if app in KNOWN_AGENTS or app in configured_agents else ActorKind.BOT
        return Actor(name, kind, account_id, via_app, f"acted through the app {via_app}")
    return Actor(name, ActorKind.HUMAN, account_id, None, "")


def classify_github_user(
    user: Mapping[str, Any] | None,
    *,
    via_app: Mapping[str, Any] | None = None,
    agents: Iterable[str] = (),
    bots: Iterable[str] = (),
) -> Actor:
    user = user or {}
    app_name = None
    if via_app:
        app_name = str(via_app.get("slug") or via_app.get("name") or "app")
    return classify(
        user.get("login"),
        account_type=user.get("type"),
        via_app=app_name,
        agents=agents,
        bots=bots,
        account_id=user.get("id"),
    )


def has_ai_trailer(message: str) -> bool:
    return bool(_AI_TRAILER.search(message or ""))
