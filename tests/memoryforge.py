"""An in-memory forge: the port's contract as plain data, so the pipeline and handlers are tested
without HTTP (the end-to-end tests use the fake GitHub server instead)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gatekeeper.core.facts import ChangedFile, User
from gatekeeper.forges.port import (
    Commit,
    CommitStatus,
    Event,
    Issue,
    IssueEvent,
    PullActivity,
    PullRequest,
    Review,
    WorkflowRun,
)


@dataclass
class MemoryForge:
    repo: str = "acme/widgets"
    platform: str = "memory"
    status_description_limit: int = 140
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    files: dict[tuple[int, str], list[ChangedFile]] = field(default_factory=dict)  # by (PR, head)
    reviews: dict[int, list[Review]] = field(default_factory=dict)
    commits: dict[tuple[int, str], list[Commit]] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    statuses: list[tuple[str, str, str]] = field(default_factory=list)  # (sha, state, description)
    comments: dict[int, str] = field(default_factory=dict)
    removed_labels: list[tuple[int, str]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    updated: dict[int, str] = field(default_factory=dict)  # PR number -> when it last changed
    status_times: dict[str, str] = field(default_factory=dict)  # head -> when its newest status was posted
    default_ref: str = "main"  # what default_branch() answers

    def add_pull(self, number: int, author: User, head: str, files: list[str], base_ref: str = "main") -> PullRequest:
        pr = PullRequest(number, "open", False, "Change", "", author, head, f"agent/{number}", self.repo, base_ref,
                         "b" * 40, "main")
        self.pulls[number] = pr
        self.files[(number, head)] = [ChangedFile(f) for f in files]
        self.commits[(number, head)] = [Commit(head, "change", author, author)]
        return pr

    def push(self, number: int, head: str, files: list[str]) -> None:
        """A new head with its own files and commits."""
        pr = self.pulls[number]
        self.pulls[number] = replace(pr, head_sha=head)
        self.files[(number, head)] = [ChangedFile(f) for f in files]
        self.commits[(number, head)] = [*self.commits.get((number, pr.head_sha), []), Commit(head, "more", pr.author,
                                                                                          pr.author)]

    # ---- reading
    def get_pull_request(self, number: int) -> PullRequest:
        self.reads.append(f"pull {number}")
        return self.pulls[number]

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
        return [p for p in self.pulls.values() if p.state == "open"][:limit]

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        return [p for p in self.pulls.values() if p.head_sha == sha]

    def get_file(self, path: str, ref: str | None) -> str | None:
        return None

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        return None

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        head = self.pulls[number].head_sha
        self.reads.append(f"files {number}@{head[:7]}")
        return list(self.files[(number, head)]), True

    def list_reviews(self, number: int) -> list[Review]:
        return list(self.reviews.get(number, []))

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        return list(self.commits[(number, self.pulls[number].head_sha)]), True

    def get_permission(self, login: str) -> str:
        return self.permissions.get(login, "none")

    def branch_sha(self, branch: str) -> str | None:
        return self.branches.get(branch)

    def default_branch(self) -> str:
        return self.default_ref

    def get_commit(self, sha: str) -> Commit | None:
        return None

    def get_issue(self, number: int) -> Issue | None:
        return None

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        return []

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        return None

    def resolve_event(self, event: Event) -> Event:
        return event

    def is_own(self, user: User) -> bool:
        return user.login == "agentgate[bot]"

    # ---- acting
    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None:
        self.statuses.append((sha, state, description))

    def upsert_check_run(self, sha: str, name: str, outcome: str, title: str, reasons_markdown: str,
                         details_url: str, check_run_id: int | None) -> int | None:
        return None

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        self.comments[number] = body
        return number

    def find_comment(self, number: int, marker: str) -> int | None:
        return None

    def remove_label(self, number: int, label: str) -> None:
        self.removed_labels.append((number, label))

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        pass

    # ---- recovery: a PR changed at `updated[number]`; statuses are the newest posted per head
    def list_open_pull_activity(self, limit: int) -> list[PullActivity]:
        return [PullActivity(p.number, p.head_sha, self.updated.get(p.number, "")) for p in self.list_open_pulls(limit)]

    def latest_status(self, sha: str, context: str) -> CommitStatus | None:
        posted = [s for s in self.statuses if s[0] == sha]
        return CommitStatus(posted[-1][1], posted[-1][2], self.status_times.get(sha, ""), own=True) if posted else None

    def rate_budget(self) -> tuple[int, int] | None:
        return None
