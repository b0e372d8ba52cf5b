"""A forge that records what it would do: `agentgate dev` without credentials, and demos.

Reads come from sample data stored in the shared store by `agentgate replay`, so a newcomer sees a
real verdict without any platform."""

from __future__ import annotations

import json
from typing import Any

import redis

from gatekeeper.forges.port import Action, PullRequestInfo, RawCommit, RawFile, RawReview
from gatekeeper.state.store import key

ACTIONS_KEY = key("dev", "actions")
MAX_ACTIONS = 200


def sample_key(repo: str, number: int | str) -> str:
    return key("dev", "sample", repo, number)


def store_sample(conn: redis.Redis, repo: str, number: int, sample: dict[str, Any]) -> None:
    """Sample state for one pull request: {pull_request, files, reviews, commits, permissions, files_at}."""
    conn.set(sample_key(repo, number), json.dumps(sample))


def recorded_actions(conn: redis.Redis, limit: int = 50) -> list[Action]:
    return [Action(**json.loads(raw)) for raw in conn.lrange(ACTIONS_KEY, 0, limit - 1)]


class RecordingForge:
    def __init__(self, conn: redis.Redis, repo: str):
        self.conn = conn
        self.repo = repo

    def _sample(self, number: int) -> dict[str, Any]:
        raw = self.conn.get(sample_key(self.repo, number))
        return json.loads(raw) if raw else {}

    def _record(self, kind: str, **details: Any) -> None:
        entry = json.dumps({"kind": kind, "repo": self.repo, "details": details})
        pipe = self.conn.pipeline()
        pipe.lpush(ACTIONS_KEY, entry)
        pipe.ltrim(ACTIONS_KEY, 0, MAX_ACTIONS - 1)
        pipe.execute()

    def get_pull_request(self, number: int) -> PullRequestInfo:
        pr = self._sample(number).get("pull_request") or {}
        base, head = pr.get("base") or {}, pr.get("head") or {}
        return PullRequestInfo(
            number=number, state=pr.get("state", "open"), draft=bool(pr.get("draft")),
            title=pr.get("title") or "", body=pr.get("body") or "", author=pr.get("user") or {},
            head_sha=head.get("sha", ""), head_ref=head.get("ref", ""),
            head_repo=(head.get("repo") or {}).get("full_name"), base_ref=base.get("ref", "main"),
            base_sha=base.get("sha", ""), default_branch=(base.get("repo") or {}).get("default_branch", "main"),
            labels=tuple(label["name"] for label in pr.get("labels") or []),
        )

    def get_file(self, path: str, ref: str) -> str | None:
        for sample_raw in self.conn.scan_iter(sample_key(self.repo, "*")):
            files = json.loads(self.conn.get(sample_raw) or "{}").get("files_at") or {}
            if f"{ref}:{path}" in files:
                return str(files[f"{ref}:{path}"])
        return None

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        return RecordingForge(self.conn, full_name).get_file(path, "HEAD")

    def list_changed_files(self, number: int) -> tuple[list[RawFile], bool]:
        return [RawFile(**f) for f in self._sample(number).get("files") or []], True

    def list_reviews(self, number: int) -> list[RawReview]:
        return [RawReview(**r) for r in self._sample(number).get("reviews") or []]

    def list_commits(self, number: int) -> list[RawCommit]:
        return [RawCommit(**c) for c in self._sample(number).get("commits") or []]

    def get_permission(self, login: str) -> str:
        for raw in self.conn.scan_iter(sample_key(self.repo, "*")):
            perms = json.loads(self.conn.get(raw) or "{}").get("permissions") or {}
            if login in perms:
                return str(perms[login])
        return "none"

    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None:
        self._record("status", sha=sha, state=state, description=description, target_url=target_url,
                     context=context)

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        new_id = comment_id or int(self.conn.incr(key("dev", "comment-ids")))
        self._record("comment", number=number, comment_id=new_id, edited=comment_id is not None, body=body)
        return new_id

    def upsert_check_run(self, sha: str, name: str, conclusion: str, title: str, summary: str, details_url: str,
                         check_run_id: int | None) -> int:
        new_id = check_run_id or int(self.conn.incr(key("dev", "check-run-ids")))
        self._record("check_run", sha=sha, name=name, conclusion=conclusion, title=title, check_run_id=new_id)
        return new_id

    def find_comment(self, number: int, marker: str) -> int | None:
        return None

    def remove_label(self, number: int, label: str) -> None:
        self._record("remove_label", number=number, label=label)

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        self._record("deployment_review", run_id=run_id, environment=environment, state=state, comment=comment)

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        found = []
        for raw in self.conn.scan_iter(sample_key(self.repo, "*")):
            pr = json.loads(self.conn.get(raw) or "{}").get("pull_request") or {}
            if (pr.get("head") or {}).get("sha") == sha:
                found.append({"number": int(pr["number"]), "state": pr.get("state", "open"),
                              "merged_at": pr.get("merged_at"), "head_sha": sha})
        return found

    def branch_sha(self, branch: str) -> str | None:
        return None  # samples carry no branches: the default policy applies

    def get_issue(self, number: int) -> dict[str, Any] | None:
        return self._sample(number).get("issue")

    def issue_events(self, number: int) -> list[dict[str, Any]]:
        return list(self._sample(number).get("issue_events") or [])

    def list_open_pulls(self, limit: int) -> list[PullRequestInfo]:
        numbers = []
        for raw in self.conn.scan_iter(sample_key(self.repo, "*")):
            pr = json.loads(self.conn.get(raw) or "{}").get("pull_request") or {}
            if pr.get("number") and pr.get("state", "open") == "open":
                numbers.append(int(pr["number"]))
        return [self.get_pull_request(n) for n in sorted(numbers, reverse=True)[:limit]]

    def get_workflow_run(self, run_id: int) -> dict[str, Any] | None:
        return None

    def get_commit(self, sha: str) -> RawCommit | None:
        return None
