"""The one port between the worker and a platform: typed, platform-neutral records, the events a
webhook parser produces, and what the worker may ask of a forge. No platform's JSON crosses it.

Each adapter (`forges/github/`, `forges/recording.py`) turns its platform's answers into these records
and maps `Capability` onto its own permissions; the worker never imports an adapter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from gatekeeper.core.facts import ChangedFile, User

__all__ = [
    "Capability", "ChangedFile", "Commit", "Event", "FileTooLarge", "Forge", "ForgeError", "ForgeFactory",
    "Issue", "IssueEvent", "PullRequest", "RateLimited", "Review", "User", "WorkflowRun",
    "CommitStatus", "Delivery", "DeliveryLog", "DeliveryLogs", "PullActivity",
]


class Capability(StrEnum):
    """What a job may do; each adapter asks its platform for the narrowest credential that allows it."""

    READ = "read"  # code, pull requests, issues, reviews
    STATUSES = "statuses"  # post the verdict
    COMMENT = "comment"  # the one comment per pull request
    LABELS = "labels"  # remove a bot's trigger label
    DEPLOYMENTS = "deployments"  # answer a deployment protection request
    CHECKS = "checks"  # the optional check run
    TOKENS = "tokens"  # mint tokens for agents


EVALUATE = frozenset({Capability.READ, Capability.STATUSES, Capability.COMMENT})


@dataclass(frozen=True)
class PullRequest:
    number: int
    state: str  # open | closed
    draft: bool
    title: str
    body: str
    author: User
    head_sha: str
    head_ref: str
    head_repo: str | None
    base_ref: str
    base_sha: str
    default_branch: str
    labels: tuple[str, ...] = ()
    merged: bool = False
    changed_files: int | None = None  # the platform's count, to notice a capped file list
    merge_commit_sha: str | None = None
    via_app: str | None = None  # the app it was opened through, when the platform says so inline


@dataclass(frozen=True)
class Review:
    id: int
    user: User
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    commit_sha: str | None  # None when the platform's approvals name no commit
    submitted_at: str | None = None
    body: str = ""


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    author: User | None = None
    committer: User | None = None
    co_authors: tuple[str, ...] = ()  # logins the adapter could tell from co-author trailers


@dataclass(frozen=True)
class Issue:
    number: int
    state: str
    labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    is_pull_request: bool = False
    via_app: str | None = None  # the app it was opened through on someone's behalf


@dataclass(frozen=True)
class IssueEvent:
    """One entry of an issue's or pull request's history, as far as agentgate reads it."""

    kind: str  # assigned | labeled | unlabeled | cross-referenced | connected | ...
    actor: User | None = None
    assignee: User | None = None
    label: str | None = None
    at: str = ""
    # For links: the other issue or pull request number (a PR that referenced this issue, or the
    # issue connected to this PR).
    other: int | None = None


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    name: str = ""
    path: str = ""
    event: str = ""
    head_sha: str | None = None
    head_branch: str | None = None
    actor: User | None = None
    triggering_actor: User | None = None
    pull_numbers: tuple[int, ...] = ()


class ForgeError(Exception):
    """The platform could not be asked; the job will be retried and the change is not passed."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the platform's HTTP status, when it answered


class FileTooLarge(ForgeError):
    """The file exists but the platform will not return its content inline."""


class RateLimited(ForgeError):
    """The platform asked us to wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float, status: int | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Event:
    """One delivery, as every platform's webhook parser reports it: what happened, by whom, to what.

    `kind` is one of the names the worker dispatches on (see `worker/handlers.py`); `subject` is the
    pull request, issue or merge request number where there is one, else 0; `data` holds the kind's
    own fields, JSON values only, with users as `User.to_dict()`. An Event travels through the queue
    as `to_dict()`."""

    platform: str
    delivery: str
    kind: str
    repo: str
    installation: int | None
    actor: User | None
    subject: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    default_branch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        raw = dict(raw)
        raw["actor"] = User.from_dict(raw.get("actor"))
        return cls(**raw)

    def user(self, name: str) -> User | None:
        """A user carried in `data` (a comment's author, a run's triggering actor)."""
        return User.from_dict(self.data.get(name))

    @property
    def evaluates_only(self) -> bool:
        """Kinds whose only consequence is a fresh evaluation of `subject`: coalesced in the queue."""
        return self.kind == "evaluate"


class Forge(Protocol):
    """What the worker may read and do on one repository (or project) of one platform."""

    platform: str
    repo: str
    # The platform's limit on a status description.
    status_description_limit: int

    # ---- reading
    def get_pull_request(self, number: int) -> PullRequest: ...

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
        """The most recently updated open pull requests, at most `limit` (one page)."""
        ...

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        """Pull requests (open or merged) whose head is this commit or that contain it."""
        ...

    def get_file(self, path: str, ref: str | None) -> str | None: ...

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        """A file on another repository's default branch of the same owner (the organisation's policy)."""
        ...

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        """The files and whether the list is complete (platforms cap it)."""
        ...

    def list_reviews(self, number: int) -> list[Review]: ...

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        """The commits, oldest first, and whether the list is complete (platforms cap it)."""
        ...

    def get_permission(self, login: str) -> str:
        """The account's permission on the repository, in `core.facts.PERMISSIONS` names."""
        ...

    def branch_sha(self, branch: str) -> str | None: ...

    def default_branch(self) -> str:
        """The repository's default branch (where agent-token policy is read)."""
        ...

    def get_commit(self, sha: str) -> Commit | None: ...

    def get_issue(self, number: int) -> Issue | None: ...

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        """An issue's or pull request's history (assignments, labels, links), oldest first."""
        ...

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None: ...

    def resolve_event(self, event: Event) -> Event:
        """The event with what its webhook left out about accounts filled in (GitLab's payloads carry no
        bot flag, its users API does); unchanged where the payload already said it."""
        ...

    def is_own(self, user: User) -> bool:
        """Whether this account is agentgate itself (its comments quote commands; its labels are
        removals it made)."""
        ...

    # ---- acting
    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None: ...

    def upsert_check_run(self, sha: str, name: str, outcome: str, title: str, reasons_markdown: str,
                         details_url: str, check_run_id: int | None) -> int | None:
        """Create or update the optional check run; returns its id (None where there are none)."""
        ...

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        """Edit our one comment on the PR in place (or create it); returns its id."""
        ...

    def find_comment(self, number: int, marker: str) -> int | None:
        """The id of agentgate's comment on this PR, found by its hidden marker."""
        ...

    def remove_label(self, number: int, label: str) -> None: ...

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None: ...

    # ---- recovery (appended): what the reconcile job reads to find PRs a lost delivery left unjudged
    def list_open_pull_activity(self, limit: int) -> list[PullActivity]:
        """The most recently updated open pull requests, at most `limit` (one page)."""
        ...

    def latest_status(self, sha: str, context: str) -> CommitStatus | None:
        """The newest status of `context` on the commit, None when there is none."""
        ...

    def rate_budget(self) -> tuple[int, int] | None:
        """(remaining, limit) of the platform's request budget as its last answer reported, if known:
        background work stops early rather than spend what evaluations need."""
        ...


class ForgeFactory(Protocol):
    """Opens a forge for one repository with the narrowest credential for `capabilities`."""

    def __call__(self, platform: str, installation: int | None, repo: str,
                 capabilities: frozenset[Capability]) -> Forge: ...


# ---- recovery: what the worker reads to find pull requests a lost delivery left unjudged


@dataclass(frozen=True)
class PullActivity:
    """An open pull request's head and when anything on it last changed (the platform's clock)."""

    number: int
    head_sha: str
    updated_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class CommitStatus:
    """The newest status of one context on a commit."""

    state: str
    description: str
    created_at: str  # ISO 8601, UTC, the platform's clock
    own: bool  # posted by agentgate itself (anyone else's counts as no verdict at all)


@dataclass(frozen=True)
class Delivery:
    """One attempt of the platform to deliver a webhook, as its delivery log reports it."""

    id: int  # this attempt
    guid: str  # the delivery (the same for every attempt of it)
    delivered_at: str
    ok: bool  # the receiver answered 2xx
    redelivery: bool
    event: str
    status: str = ""
    status_code: int = 0


class DeliveryLog(Protocol):
    """The platform's log of webhook deliveries to this App, and its redelivery button."""

    def recent(self, since: str, max_pages: int) -> list[Delivery]:
        """Attempts delivered at or after `since` (ISO 8601), newest first, reading at most `max_pages`."""
        ...

    def redeliver(self, attempt_id: int) -> None: ...


class DeliveryLogs(Protocol):
    """The delivery log of each platform the worker serves; None where the platform keeps none."""

    def __call__(self, platform: str) -> DeliveryLog | None: ...


# ---- just-in-time credentials for agents (gatekeeper/tokens/): each adapter provides a TokenIssuer


@dataclass(frozen=True)
class MintedToken:
    """A platform token minted for an agent. `token` is handed to the agent once and otherwise kept only
    encrypted (to revoke it); `handle` is what else the platform needs to revoke it (GitLab: the
    project access token's id; GitHub: nothing, the token itself revokes itself)."""

    token: str
    expires_at: float  # epoch seconds, the platform's own expiry (agentgate revokes sooner, at the ttl)
    permissions: dict[str, str]
    handle: str = ""


class TokenIssuer(Protocol):
    """Mints and revokes tokens restricted to one repository and a set of permissions."""

    platform: str

    def reader(self, repo: str) -> Forge:
        """A forge that reads this repository (its default branch's policy, the task) as agentgate, or
        ForgeError when agentgate is not installed there."""
        ...

    def mint(self, repo: str, permissions: dict[str, str], ttl: int, name: str) -> MintedToken:
        """A token for `repo` only, with exactly `permissions` (GitHub App permission names and levels),
        living at most `ttl` seconds where the platform can say so. `name` labels it where the platform
        shows tokens (GitLab)."""
        ...

    def revoke(self, repo: str, token: str, handle: str) -> None:
        """Revoke it now. A token the platform already considers dead counts as revoked; any other
        failure raises ForgeError (the caller retries)."""
        ...


class TokenIssuers(Protocol):
    """The issuer of each platform agentgate is configured for; None where it is not."""

    def __call__(self, platform: str) -> TokenIssuer | None: ...
