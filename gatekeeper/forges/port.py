"""What the worker needs from a forge, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    state: str
    draft: bool
    title: str
    body: str
    author: dict[str, Any]  # the platform's user object (login, type, id)
    head_sha: str
    head_ref: str
    head_repo: str | None
    base_ref: str
    base_sha: str
    default_branch: str
    labels: tuple[str, ...] = ()
    merged: bool = False
    changed_files: int | None = None  # the platform's count, to notice a capped file list


@dataclass(frozen=True)
class RawReview:
    id: int
    user: dict[str, Any]
    state: str
    commit_id: str
    submitted_at: str | None = None


@dataclass(frozen=True)
class RawFile:
    filename: str
    status: str
    additions: int = 0
    deletions: int = 0
    previous_filename: str | None = None


@dataclass(frozen=True)
class RawCommit:
    sha: str
    message: str
    author: dict[str, Any] | None = None
    committer: dict[str, Any] | None = None


@dataclass
class Action:
    """An action taken (or, in dry-run mode, that would have been taken) on the platform."""

    kind: str
    repo: str
    details: dict[str, Any] = field(default_factory=dict)


class ForgeError(Exception):
    """The platform could not be asked; the job will be retried and the change is not passed."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the platform's HTTP status, when it answered


class FileTooLarge(ForgeError):
    """The file exists but the platform will not return its content inline."""


class Forge(Protocol):
    repo: str

    def get_pull_request(self, number: int) -> PullRequestInfo: ...

    def get_file(self, path: str, ref: str) -> str | None: ...

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        """A file on another repository's default branch (the organisation's policy), or None."""
        ...

    def list_changed_files(self, number: int) -> tuple[list[RawFile], bool]:
        """The files and whether the list is complete (platforms cap it)."""
        ...

    def list_reviews(self, number: int) -> list[RawReview]: ...

    def list_commits(self, number: int) -> list[RawCommit]: ...

    def get_permission(self, login: str) -> str: ...

    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None: ...

    def upsert_check_run(self, sha: str, name: str, conclusion: str, title: str, summary: str, details_url: str,
                         check_run_id: int | None) -> int:
        """Create or update a completed check run; returns its id."""
        ...

    # ---- acting on the action path
    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        """Edit our one comment on the PR in place (or create it); returns its id."""
        ...

    def find_comment(self, number: int, marker: str) -> int | None:
        """The id of the comment on this issue/PR that agentgate wrote, found by its hidden marker."""
        ...

    def remove_label(self, number: int, label: str) -> None: ...

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None: ...

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        """Pull requests associated with a commit: {number, state, merged_at, head_sha}."""
        ...

    def branch_sha(self, branch: str) -> str | None: ...

    def get_workflow_run(self, run_id: int) -> dict[str, Any] | None: ...

    def get_commit(self, sha: str) -> RawCommit | None: ...

    def get_issue(self, number: int) -> dict[str, Any] | None: ...

    def list_open_pulls(self, limit: int) -> list[PullRequestInfo]:
        """The most recently updated open pull requests, at most `limit` (one page)."""
        ...

    def issue_events(self, number: int) -> list[dict[str, Any]]:
        """The events of an issue or PR (labeled, assigned, ...), oldest first, as the platform gives them."""
        ...
