"""A forge that records what it would do: `agentgate dev` without credentials, and demos.

Reads come from GitHub-shaped sample data stored in the shared store by `agentgate replay`, so a
newcomer sees a real verdict without any platform."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from gatekeeper.core.facts import ChangedFile, User
from gatekeeper.forges.github.client import _commit, _pull_info
from gatekeeper.forges.github.users import github_user
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
from gatekeeper.state import keys

MAX_ACTIONS = 200


@dataclass
class Action:
    """An action that would have been taken on the platform."""

    kind: str
    repo: str
    details: dict[str, Any] = field(default_factory=dict)


def store_sample(conn: redis.Redis, repo: str, number: int, sample: dict[str, Any]) -> None:
    """Sample state for one pull request: {pull_request, files, reviews, commits, permissions, files_at}."""
    conn.set(keys.dev_sample(repo, number), json.dumps(sample))


def recorded_actions(conn: redis.Redis, limit: int = 50) -> list[Action]:
    return [Action(**json.loads(raw)) for raw in conn.lrange(keys.DEV_ACTIONS, 0, limit - 1)]


class RecordingForge:
    platform = "github"
    status_description_limit = 140

    def __init__(self, conn: redis.Redis, repo: str):
        self.conn = conn
        self.repo = repo

    def _sample(self, number: int) -> dict[str, Any]:
        raw = self.conn.get(keys.dev_sample(self.repo, number))
        return json.loads(raw) if raw else {}

    def _samples(self) -> list[dict[str, Any]]:
        return [json.loads(self.conn.get(k) or "{}") for k in self.conn.scan_iter(keys.dev_sample(self.repo, "*"))]

    def _record(self, kind: str, **details: Any) -> None:
        entry = json.dumps({"kind": kind, "repo": self.repo, "details": details})
        pipe = self.conn.pipeline()
        pipe.lpush(keys.DEV_ACTIONS, entry)
        pipe.ltrim(keys.DEV_ACTIONS, 0, MAX_ACTIONS - 1)
        pipe.execute()

    def get_pull_request(self, number: int) -> PullRequest:
        pr = dict(self._sample(number).get("pull_request") or {})
        pr.setdefault("number", number)
        pr.setdefault("state", "open")
        pr.setdefault("head", {"sha": "", "ref": ""})
        pr.setdefault("base", {"sha": "", "ref": "main"})
        return _pull_info(pr)

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
        numbers = [int(s["pull_request"]["number"]) for s in self._samples()
                   if (s.get("pull_request") or {}).get("number") and s["pull_request"].get("state", "open") == "open"]
        return [self.get_pull_request(n) for n in sorted(numbers, reverse=True)[:limit]]

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        return [_pull_info(s["pull_request"]) for s in self._samples()
                if ((s.get("pull_request") or {}).get("head") or {}).get("sha") == sha]

    def get_file(self, path: str, ref: str | None) -> str | None:
        for sample in self._samples():
            files = sample.get("files_at") or {}
            if f"{ref}:{path}" in files:
                return str(files[f"{ref}:{path}"])
        return None

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        return RecordingForge(self.conn, full_name).get_file(path, "HEAD")

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        return [ChangedFile(f["filename"], f.get("status", "modified"), f.get("additions", 0), f.get("deletions", 0),
                            f.get("previous_filename")) for f in self._sample(number).get("files") or []], True

    def list_reviews(self, number: int) -> list[Review]:
        return [Review(int(r["id"]), github_user(r.get("user")) or User("ghost", bot=True), str(r["state"]),
                       r.get("commit_id"), r.get("submitted_at"), str(r.get("body") or ""))
                for r in self._sample(number).get("reviews") or []]

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        return [_commit({"sha": c["sha"], "commit": {"message": c.get("message", "")}, "author": c.get("author"),
                         "committer": c.get("committer")}) for c in self._sample(number).get("commits") or []], True

    def get_permission(self, login: str) -> str:
        for sample in self._samples():
            perms = sample.get("permissions") or {}
            if login in perms:
                return str(perms[login])
        return "none"

    def branch_sha(self, branch: str) -> str | None:
        return None  # samples carry no branches: the default policy applies

    def default_branch(self) -> str:
        # The samples' pull requests say which branch their base repository defaults to.
        for sample in self._samples():
            base_repo = (((sample.get("pull_request") or {}).get("base") or {}).get("repo") or {})
            if base_repo.get("default_branch"):
                return str(base_repo["default_branch"])
        return "main"

    def get_commit(self, sha: str) -> Commit | None:
        return None

    def get_issue(self, number: int) -> Issue | None:
        issue = self._sample(number).get("issue")
        if not issue:
            return None
        return Issue(number, issue.get("state", "open"), tuple(x["name"] for x in issue.get("labels") or []),
                     tuple(a["login"] for a in issue.get("assignees") or []), bool(issue.get("pull_request")))

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        return []

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        return None

    def resolve_event(self, event: Event) -> Event:
        return event

    def is_own(self, user: User) -> bool:
        return user.bot and user.login.lower() == "agentgate[bot]"

    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None:
        self._record("status", sha=sha, state=state, description=description, target_url=target_url,
                     context=context)

    def upsert_check_run(self, sha: str, name: str, outcome: str, title: str, reasons_markdown: str,
                         details_url: str, check_run_id: int | None) -> int | None:
        new_id = check_run_id or int(self.conn.incr(keys.dev_counter("check-run-ids")))
        self._record("check_run", sha=sha, name=name, outcome=outcome, title=title, check_run_id=new_id)
        return new_id

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        new_id = comment_id or int(self.conn.incr(keys.dev_counter("comment-ids")))
        self._record("comment", number=number, comment_id=new_id, edited=comment_id is not None, body=body)
        return new_id

    def find_comment(self, number: int, marker: str) -> int | None:
        return None

    def remove_label(self, number: int, label: str) -> None:
        self._record("remove_label", number=number, label=label)

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        self._record("deployment_review", run_id=run_id, environment=environment, state=state, comment=comment)

    # ---- recovery (appended): samples have no history, so every open sample counts as just changed
    def list_open_pull_activity(self, limit: int) -> list[PullActivity]:
        return [PullActivity(p.number, p.head_sha, "") for p in self.list_open_pulls(limit)]

    def latest_status(self, sha: str, context: str) -> CommitStatus | None:
        for action in recorded_actions(self.conn, MAX_ACTIONS):  # newest first
            details = action.details
            if action.kind == "status" and details.get("sha") == sha and details.get("context") == context:
                return CommitStatus(str(action.details["state"]), str(action.details.get("description") or ""), "",
                                    own=True)
        return None

    def rate_budget(self) -> tuple[int, int] | None:
        return None  # nothing is spent: no platform is called
