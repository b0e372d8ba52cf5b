"""GitLab accounts as the port's `User`.

GitLab's webhook payloads carry no bot flag, so an account is a bot when:
- its username is one GitLab gives its machine users: project and group access-token bots
  (`project_123_bot_9a2f…`, `group_45_bot_…`, and the older `project_123_bot1`), service accounts
  (`service_account_…`, `service_account_group_45_…`), and GitLab's internal bots (`alert-bot`,
  `support-bot`, the security-policy bot, …);
- the users API says `bot: true` (the client asks it, cached, for accounts the name does not settle);
- or it is a known AI agent's account (GitLab Duo's, and the agents agentgate knows on every platform).
The repository's policy can add more (`identities`); that happens in the core, not here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gatekeeper.core.facts import User
from gatekeeper.core.identity import bare

# Accounts of AI coding agents on GitLab, compared case-insensitively: GitLab Duo's own accounts and
# the agents that reach GitLab through service accounts or access tokens named after them.
KNOWN_AGENTS: frozenset[str] = frozenset({
    "gitlabduo", "gitlab-duo", "duo-developer", "duo_developer", "duo-code-review-bot", "duo_code_review_bot",
    "gitlab-duo-agent", "duo-workflow", "duo-agent",
    "copilot", "copilot-swe-agent", "github-copilot", "devin-ai-integration", "devin", "claude", "claude-code",
    "anthropic-claude", "cursor", "cursoragent", "chatgpt-codex-connector", "openai-codex", "codex",
    "google-labs-jules", "jules", "amazon-q-developer", "amazonq", "sweep-ai", "codegen-sh", "openhands-agent",
    "openhands", "aider", "factory-droid", "coderabbitai", "gemini-code-assist",
})

# GitLab's own machine users (instance-wide internal bots), by username.
INTERNAL_BOTS: frozenset[str] = frozenset({
    "alert-bot", "support-bot", "visual-review-bot", "security-bot", "automation-bot", "admin-bot", "ghost",
    "gitlab-security-policy-bot", "security-policy-bot", "gitlab-llm-bot", "gitlab-bot", "gitlab-import-bot",
})

_TOKEN_BOT = re.compile(r"^(?:project|group)_\d+_bot(?:_[0-9a-z]+|\d*)$", re.IGNORECASE)
_SERVICE_ACCOUNT = re.compile(r"^service_account(?:_[0-9a-z]+)+$", re.IGNORECASE)
# `<id>-<username>@users.noreply.<host>`: the address GitLab commits with for a user who hides theirs.
_NOREPLY = re.compile(r"^(?:\d+-)?([A-Za-z0-9_][A-Za-z0-9_.-]*)@users\.noreply\.", re.IGNORECASE)
# Access-token bots and service accounts commit as `<username>@noreply.<host>`.
_BOT_EMAIL = re.compile(r"^([A-Za-z0-9_.-]+)@noreply\.", re.IGNORECASE)
_COAUTHOR = re.compile(r"^co-authored-by:[^<\n]*<([^>\n]+)>", re.IGNORECASE | re.MULTILINE)
_MENTION = re.compile(r"(?<![\w@/])@([A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z0-9_])")
# Addresses AI agents commit with, when they commit under their own name on GitLab.
AGENT_EMAILS: dict[str, str] = {
    "noreply@anthropic.com": "claude",
    "cursoragent@cursor.com": "cursor",
    "devin-ai-integration[bot]@users.noreply.github.com": "devin-ai-integration",
    "198982749+copilot@users.noreply.github.com": "copilot",
}


def machine_username(username: str) -> bool:
    """Whether GitLab itself names this account as a machine user (token bot, service account, internal bot)."""
    name = username.strip()
    return bool(_TOKEN_BOT.match(name) or _SERVICE_ACCOUNT.match(name)) or name.lower() in INTERNAL_BOTS


def known_agent(username: str) -> bool:
    return bare(username) in KNOWN_AGENTS


def gitlab_user(raw: Mapping[str, Any] | None, *, bot: bool | None = None) -> User | None:
    """A GitLab user object (`id`, `username`, `name`, optionally the users API's `bot`) as a `User`.
    `bot` overrides what the object says when the caller asked the users API. Built-in agent names
    count for machine users only, except GitLab Duo's accounts, which are always Duo."""
    if not raw:
        return None
    login = str(raw.get("username") or "").strip() or "ghost"
    is_bot = bool(raw.get("bot")) if bot is None else bot
    is_bot = is_bot or machine_username(login) or login.lower().endswith("[bot]")
    duo = bare(login) in {"gitlabduo", "gitlab-duo", "duo-developer", "duo_developer", "duo-code-review-bot",
                          "duo_code_review_bot", "gitlab-duo-agent", "duo-workflow", "duo-agent"}
    agent = duo or (is_bot and known_agent(login))
    uid = raw.get("id")
    return User(login=login, id=int(uid) if isinstance(uid, int) else None, bot=is_bot or duo, agent=agent)


def push_user(payload: Mapping[str, Any]) -> User | None:
    """The pusher of a Push Hook (`user_id`, `user_username`: no user object there)."""
    username = payload.get("user_username")
    if not username:
        return None
    return gitlab_user({"id": payload.get("user_id"), "username": username})


def email_user(name: str | None, email: str | None) -> User | None:
    """A commit's author or committer, who GitLab names only by name and address. The username is
    recovered where the address says it (GitLab's noreply addresses, token bots, agents' addresses);
    otherwise the address itself stands for the account, so it never matches another person's login."""
    address = (email or "").strip().lower()
    if not address and not name:
        return None
    if address in AGENT_EMAILS:
        return User(login=AGENT_EMAILS[address], bot=True, agent=True)
    found = _NOREPLY.match(address)
    if found:
        return gitlab_user({"username": found.group(1)})
    found = _BOT_EMAIL.match(address)
    if found and machine_username(found.group(1)):
        return gitlab_user({"username": found.group(1)})
    return User(login=address or str(name), bot=False)


def co_author_logins(message: str) -> tuple[str, ...]:
    """Usernames credited through GitLab noreply addresses in `Co-authored-by:` trailers."""
    found = []
    for address in _COAUTHOR.findall(message or ""):
        match = _NOREPLY.match(address.strip())
        if match:
            found.append(match.group(1))
    return tuple(dict.fromkeys(found))


def mentioned_users(body: str, limit: int = 20) -> list[User]:
    """Accounts `@`-mentioned in a note (`@GitLabDuo fix this`), as far as the text tells."""
    logins = list(dict.fromkeys(_MENTION.findall(body or "")))[:limit]
    # As on every platform: a mentioned name agentgate knows as an agent's is taken as that agent; the
    # worker decides under the policy whether the writer summoned it.
    return [User(login=m, bot=machine_username(m) or known_agent(m), agent=known_agent(m)) for m in logins]
