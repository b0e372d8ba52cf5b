"""Platform-neutral facts: everything a decision may look at, gathered before it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class ActorKind(StrEnum):
    HUMAN = "human"
    BOT = "bot"
    AGENT = "agent"  # a known AI coding agent: a bot that writes code on someone's behalf

    @property
    def is_automated(self) -> bool:
        return self is not ActorKind.HUMAN


@dataclass(frozen=True)
class User:
    """An account as a platform reports it, before any policy classifies it."""

    login: str
    id: int | None = None
    bot: bool = False  # the platform marks it as a bot or service account
    via_app: str | None = None  # an app acting with this user's credentials
    # The adapter knows this account (or the app acting through it) as an AI coding agent.
    agent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> User | None:
        if not data:
            return None
        return cls(str(data.get("login") or "ghost"), data.get("id"), bool(data.get("bot")), data.get("via_app"),
                   bool(data.get("agent")))


@dataclass(frozen=True)
class Actor:
    login: str
    kind: ActorKind
    id: int | None = None
    # Set when a human's credentials were used by an app.
    via_app: str | None = None
    why: str = ""  # how the kind was recognised, shown on the details page


# Repository permission levels, weakest first. Each adapter maps its platform's roles or access levels
# onto these names.
PERMISSIONS = ("none", "read", "triage", "write", "maintain", "admin")


def permission_at_least(have: str, need: str) -> bool:
    try:
        return PERMISSIONS.index(have) >= PERMISSIONS.index(need)
    except ValueError:
        return False


@dataclass(frozen=True)
class Review:
    reviewer: Actor
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    # The head the approval was given for; None when the platform's approvals name no commit (the
    # adapter then sets it only when the approval came after the latest push).
    commit_sha: str | None
    permission: str = "none"  # the reviewer's permission on the repository
    submitted_at: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str = "modified"
    additions: int = 0
    deletions: int = 0
    previous_path: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        # A rename touches both names: moving a CI workflow out of its folder is a sensitive change too.
        return (self.path, self.previous_path) if self.previous_path else (self.path,)


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str = ""
    author: Actor | None = None
    committer: Actor | None = None


@dataclass(frozen=True)
class LabelApplied:
    label: str
    actor: Actor
    permission: str = "none"


@dataclass(frozen=True)
class TaskRef:
    """An issue the pull request says it resolves ("Fixes #12"), as the task that authorises it."""

    number: int
    state: str = "open"
    labels: tuple[str, ...] = ()
    applied: tuple[LabelApplied, ...] = ()  # who applied each current label, when known
    assignees: tuple[str, ...] = ()
    is_pull_request: bool = False  # a pull request as a task (some platforms number them apart from issues)


@dataclass(frozen=True)
class PullRequestFacts:
    repo: str  # owner/name
    number: int
    author: Actor
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    default_branch: str = "main"
    head_repo: str | None = None  # None or another name when the PR comes from a fork
    state: str = "open"
    draft: bool = False
    title: str = ""
    body: str = ""
    labels: tuple[str, ...] = ()
    changed_files: tuple[ChangedFile, ...] = ()
    changed_files_complete: bool = True  # False when the platform capped the list
    reviews: tuple[Review, ...] = ()
    commits: tuple[Commit, ...] = ()
    commits_complete: bool = True  # False when the platform capped the list
    # The human who set the agent on this task (assigned it, mentioned it), when known.
    requesters: tuple[str, ...] = ()
    # Who pushed to the pull request's branch (as the platform reported each push): commits may name
    # anyone as their author, the push cannot.
    pushers: tuple[Actor, ...] = ()
    # Issues referenced as the task; gathered only when the policy asks for task context.
    tasks: tuple[TaskRef, ...] = ()
    tasks_checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecordedFinding:
    """A chain finding stored against a pull request until a human repeats or approves the action."""

    id: str
    kind: str  # command | label | workflow_run | deployment | tampering | forged_status | push
    actor: str
    actor_kind: str
    subject: str
    message: str
    unblock: str
    at: str = ""  # ISO 8601 UTC, when it happened; an edit happens when it is edited
    key: str = ""  # what a human's repeat is compared with: the command verb, the label, the workflow path


@dataclass(frozen=True)
class Confirmation:
    """A human repeating an action a bot took (the same command, the same label, re-running the same
    workflow), stored until the next evaluation judges whether it lifts a finding."""

    kind: str  # command | label | workflow_run (the finding kinds it may lift)
    key: str  # compared with RecordedFinding.key
    login: str
    at: str  # ISO 8601 UTC
    permission: str = "none"  # filled in by the evaluation, from the platform
