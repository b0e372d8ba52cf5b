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
class Actor:
    login: str
    kind: ActorKind
    id: int | None = None
    # Set when a human's credentials were used by an app (GitHub's `performed_via_github_app`).
    via_app: str | None = None
    why: str = ""  # how the kind was recognised, shown on the details page


# Repository permission levels, weakest first (GitHub's names; GitLab access levels map onto them).
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
    commit_sha: str
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
        # A rename touches both names: moving a workflow out of .github/ is a sensitive change too.
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
    commits_complete: bool = True  # False when the platform capped the list (GitHub: 250)
    # The human who set the agent on this task (assigned it, mentioned it), when known.
    requesters: tuple[str, ...] = ()
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
    at: str = ""  # ISO 8601, when it happened (from the platform's payload)
    key: str = ""  # what a human's repeat is compared with: the command verb, the label, the workflow path
