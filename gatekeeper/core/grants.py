"""Whether an agent gets a token, and with which permissions: a pure function of who the agent is
(already authenticated), what it asks for, the repository's `tokens` rules and its task.

Like octo-sts's trust policy check, nothing here reads a clock, the store or a platform: the service
gathers the facts (the verified claims, the task as the platform shows it, the rules from the default
branch), this decides, and issuing and revoking are separate steps around it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from gatekeeper.core.facts import TaskRef, permission_at_least

# Permission levels a token can carry, weakest first.
LEVELS = ("read", "write", "admin")


@dataclass(frozen=True)
class AgentIdentity:
    """An authenticated agent: an OIDC ID token's verified claims, or an agent key's name."""

    kind: str  # "oidc" | "key"
    issuer: str = ""  # oidc: `iss`
    subject: str = ""  # oidc: `sub`
    key_name: str = ""  # key: the name given to `agentgate agents add`
    claims: Mapping[str, str] = field(default_factory=dict)  # oidc: string-valued claims, verified

    @property
    def principal(self) -> str:
        """One string naming the agent in records and the audit log, and who may give a token back."""
        return f"key:{self.key_name}" if self.kind == "key" else f"oidc:{self.issuer}#{self.subject}"


@dataclass(frozen=True)
class AgentMatch:
    """One `agents` entry of a `tokens` rule: an issuer with globs on `sub` and other claims, or a key."""

    issuer: str = ""
    subject: str = ""
    claims: Mapping[str, str] = field(default_factory=dict)
    key: str = ""


@dataclass(frozen=True)
class TokenRule:
    agents: tuple[AgentMatch, ...]
    permissions: Mapping[str, str]  # the most a token may carry
    ttl: int  # seconds


@dataclass(frozen=True)
class TaskApproval:
    """What makes a task approved (the policy's `task` section)."""

    approved_labels: tuple[str, ...]
    min_permission: str


@dataclass(frozen=True)
class Grant:
    permissions: dict[str, str]
    ttl: int
    approved_label: str  # the label that approved the task: removing it revokes the token
    approved_by: str  # the human who approved the task: named beside the agent (composite identity)


@dataclass(frozen=True)
class Refusal:
    code: str  # no-rule | no-grant | beyond-grant | task-missing | task-closed | task-unapproved
    reason: str


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    # `*` matches any run of characters, `:` and `/` included (a `sub` is `repo:OWNER/NAME:ref:refs/...`);
    # `?` one character; nothing else is special. Path globs (policy/globs.py) stop `*` at `/`, which
    # would make `repo:acme/*` useless here, hence this separate, deliberately small syntax.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def glob_matches(pattern: str, value: str) -> bool:
    return _glob(pattern).fullmatch(value) is not None


def matches(match: AgentMatch, agent: AgentIdentity) -> bool:
    if match.key:
        return agent.kind == "key" and agent.key_name == match.key
    if agent.kind != "oidc" or match.issuer.rstrip("/") != agent.issuer.rstrip("/"):
        return False
    if not glob_matches(match.subject or "*", agent.subject):
        return False
    # Every claim the rule names must be present and match: a missing claim never matches a glob.
    return all(name in agent.claims and glob_matches(pattern, agent.claims[name])
               for name, pattern in match.claims.items())


def level_at_least(have: str, want: str) -> bool:
    return have in LEVELS and want in LEVELS and LEVELS.index(have) >= LEVELS.index(want)


def beyond(requested: Mapping[str, str], grant: Mapping[str, str]) -> list[str]:
    """The requested permissions the grant does not cover, as `name: level` strings."""
    return [f"{name}: {level}" for name, level in sorted(requested.items())
            if not level_at_least(grant.get(name, ""), level)]


def task_approval(task: TaskRef, approval: TaskApproval) -> tuple[str, str] | None:
    """(label, approver) when an approved label on the open task was applied by a human with enough
    permission; the same rule the pull request verdict applies to a task."""
    if task.state != "open":
        return None
    wanted = {label.lower() for label in approval.approved_labels}
    for applied in task.applied:
        if (applied.label.lower() in wanted and not applied.actor.kind.is_automated
                and permission_at_least(applied.permission, approval.min_permission)):
            return applied.label, applied.actor.login
    return None


def decide(rules: tuple[TokenRule, ...], agent: AgentIdentity, requested: Mapping[str, str] | None,
           task: TaskRef | None, approval: TaskApproval) -> Grant | Refusal:
    """The grant for this agent and request, or why there is none. Without `requested` the agent gets
    exactly the first matching rule's permissions; with it, exactly what it asked when one matching rule
    covers all of it (rules are not combined: each is a grant an admin wrote down as a whole)."""
    if not rules:
        return Refusal("no-rule", "the repository's policy (default branch) has no `tokens` section")
    mine = [rule for rule in rules if any(matches(m, agent) for m in rule.agents)]
    if not mine:
        return Refusal("no-grant", f"no `tokens` rule names this agent ({agent.principal})")
    if requested is not None:
        covering = [rule for rule in mine if not beyond(requested, rule.permissions)]
        if not covering:
            missing = beyond(requested, mine[0].permissions)
            return Refusal("beyond-grant", "asked for more than the policy grants: " + ", ".join(missing)
                           + f" (granted: {_show(mine[0].permissions)})")
        rule, permissions = covering[0], dict(requested)
    else:
        rule = mine[0]
        permissions = dict(rule.permissions)
    if not permissions:
        return Refusal("beyond-grant", "no permissions asked or granted")
    if task is None:
        return Refusal("task-missing", "the task is not an issue or pull request of this repository")
    if task.state != "open":
        return Refusal("task-closed", f"task #{task.number} is {task.state}")
    approved = task_approval(task, approval)
    if approved is None:
        labels = " or ".join(approval.approved_labels)
        return Refusal("task-unapproved", f"task #{task.number} is not approved: it needs the label {labels} "
                                          f"applied by a human with {approval.min_permission} access")
    label, approver = approved
    return Grant(permissions=permissions, ttl=rule.ttl, approved_label=label, approved_by=approver)


def _show(permissions: Mapping[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(permissions.items())) or "nothing"
