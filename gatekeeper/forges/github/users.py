"""GitHub accounts as the port's `User`: which are bots, which are known AI coding agents, which act
through an app, and the logins behind GitHub's noreply co-author addresses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gatekeeper.core.facts import User
from gatekeeper.core.identity import bare

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

_COAUTHOR = re.compile(r"^co-authored-by:.*<(?:\d+\+)?([A-Za-z0-9-]+)@users\.noreply\.github\.com>",
                       re.IGNORECASE | re.MULTILINE)
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9-]+(?:\[bot\])?)", re.IGNORECASE)


def app_name(app: Mapping[str, Any] | None) -> str | None:
    if not app:
        return None
    return str(app.get("slug") or app.get("name") or "app")


def github_user(raw: Mapping[str, Any] | None, via_app: Mapping[str, Any] | str | None = None) -> User | None:
    """A GitHub user object (`login`, `type`, `id`) as a `User`. Built-in agent names count only for
    bot accounts or apps: a person may well be called "jules" or "cursor"."""
    if not raw:
        return None
    login = str(raw.get("login") or "ghost")
    is_bot = str(raw.get("type") or "").lower() == "bot" or login.lower().endswith("[bot]")
    app = via_app if isinstance(via_app, str) or via_app is None else app_name(via_app)
    agent = (is_bot and bare(login) in KNOWN_AGENTS) or (app is not None and bare(app) in KNOWN_AGENTS)
    return User(login=login, id=raw.get("id"), bot=is_bot, via_app=app, agent=agent)


def co_author_logins(message: str) -> tuple[str, ...]:
    """Logins credited through GitHub's noreply addresses in `Co-authored-by:` trailers."""
    return tuple(dict.fromkeys(_COAUTHOR.findall(message or "")))


def mentioned_users(body: str, limit: int = 20) -> list[User]:
    """Accounts `@`-mentioned in a comment (`@copilot fix this`), as far as the text tells: the worker
    decides under the policy which of them are agents the writer summoned."""
    logins = list(dict.fromkeys(_MENTION.findall(body or "")))[:limit]
    return [User(login=m, bot=m.lower().endswith("[bot]"), agent=bare(m) in KNOWN_AGENTS) for m in logins]
