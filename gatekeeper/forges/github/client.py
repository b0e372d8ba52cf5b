"""The GitHub adapter, on PyGithub, talking to the REST API at the configured base URL only."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from github import Auth, Github, GithubException
from github.GithubRetry import GithubRetry

from gatekeeper.core.facts import PERMISSIONS
from gatekeeper.forges.port import FileTooLarge, ForgeError, PullRequestInfo, RawCommit, RawFile, RawReview

# GitHub returns at most 3000 files for a pull request.
FILES_CAP = 3000


def _user(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    raw = getattr(obj, "raw_data", None) or {}
    return {"login": raw.get("login"), "type": raw.get("type"), "id": raw.get("id")}


def _listed(obj: Any) -> dict[str, Any]:
    """The attributes a list response gave for an item. PyGithub's `raw_data` would fetch each commit
    or event again (one extra API call per item) because list items count as incomplete."""
    return dict(obj._rawData)


class GitHubForge:
    def __init__(self, repo: str, token: str, api_url: str,
                 sibling: Callable[[str], GitHubForge] | None = None):
        self.repo = repo
        # Tokens are scoped to one repository; reading another (the org's .github) needs its own.
        self._sibling = sibling
        self._files: dict[int, tuple[list[RawFile], bool]] = {}  # a forge lives for one job
        # lazy: objects are only fetched when read, so e.g. posting a status costs exactly one call.
        # No client-side throttling: one evaluation makes a handful of calls, and GithubRetry honours
        # GitHub's Retry-After on secondary rate limits, which is what the throttle would guard against.
        self.gh = Github(base_url=api_url, auth=Auth.Token(token), lazy=True, per_page=100, timeout=15,
                         retry=GithubRetry(total=3), seconds_between_requests=None, seconds_between_writes=None)
        self._repo = self.gh.get_repo(repo)

    @contextmanager
    def _calls(self) -> Iterator[None]:
        try:
            yield
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else ""
            raise ForgeError(f"GitHub answered {exc.status}: {message}", exc.status) from None
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub: {type(exc).__name__}") from None

    def get_pull_request(self, number: int) -> PullRequestInfo:
        with self._calls():
            raw = self._repo.get_pull(number).raw_data
        return _pull_info(raw)

    def list_open_pulls(self, limit: int) -> list[PullRequestInfo]:
        data = self._request("GET", "/pulls", params={"state": "open", "sort": "updated", "direction": "desc",
                                                      "per_page": max(1, min(limit, 100))})
        return [_pull_info(raw) for raw in data or []][:limit]

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        if self._sibling is None:
            raise ForgeError(f"cannot read {full_name}: no token for other repositories")
        return self._sibling(full_name).get_file(path, None)

    def get_file(self, path: str, ref: str | None) -> str | None:
        try:
            with self._calls():
                content = self._repo.get_contents(path, ref=ref) if ref else self._repo.get_contents(path)
        except ForgeError as exc:
            # "No commit found for the ref" is not "no such file": a missing policy must mean a missing
            # file, never a commit we could not see (that would fall back to the weaker default).
            if exc.status == 404 and "no commit found" not in str(exc).lower():
                return None
            raise
        if isinstance(content, list):
            raise ForgeError(f"{path} is a directory at {(ref or 'the default branch')[:7]}")
        raw = content.raw_data
        if raw.get("encoding") != "base64":
            raise FileTooLarge(f"{path} is too large to read through the contents API")
        return base64.b64decode(raw.get("content") or "").decode("utf-8", errors="replace")

    def list_changed_files(self, number: int) -> tuple[list[RawFile], bool]:
        # A chain job judges the files, then evaluates the PR: one listing serves both.
        if number in self._files:
            return self._files[number]
        self._files[number] = self._list_changed_files(number)
        return self._files[number]

    def _list_changed_files(self, number: int) -> tuple[list[RawFile], bool]:
        with self._calls():
            files = [
                RawFile(f.filename, f.status, f.additions, f.deletions, f.raw_data.get("previous_filename"))
                for f in self._repo.get_pull(number).get_files()
            ]
        return files, len(files) < FILES_CAP

    def list_reviews(self, number: int) -> list[RawReview]:
        with self._calls():
            return [
                RawReview(r.id, r.raw_data.get("user") or {}, r.state, r.raw_data.get("commit_id") or "",
                          r.raw_data.get("submitted_at"))
                for r in self._repo.get_pull(number).get_reviews()
            ]

    def list_commits(self, number: int) -> list[RawCommit]:
        with self._calls():
            return [
                RawCommit(raw["sha"], (raw.get("commit") or {}).get("message") or "", raw.get("author"),
                          raw.get("committer"))
                for raw in (_listed(c) for c in self._repo.get_pull(number).get_commits())
            ]

    def get_permission(self, login: str) -> str:
        data = self._request("GET", f"/collaborators/{urllib.parse.quote(login)}/permission", absent=(404,))
        if data is None:
            return "none"  # not a collaborator, or no such user
        # role_name tells maintain from write and triage from read; custom roles fall back to the base.
        role = str(data.get("role_name") or "")
        return role if role in PERMISSIONS else str(data.get("permission") or "none")

    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None:
        with self._calls():
            self._repo.get_commit(sha).create_status(state, target_url=target_url,
                                                      description=description, context=context)

    def _request(self, verb: str, path: str, body: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, absent: tuple[int, ...] = ()) -> Any:
        """One REST call under the repository. Statuses in `absent` mean "not there" and give None."""
        try:
            with self._calls():
                _, data = self._repo.requester.requestJsonAndCheck(verb, f"{self._repo.url}{path}", input=body,
                                                                   parameters=params)
        except ForgeError as exc:
            if exc.status in absent:
                return None
            raise
        return data

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        # A comment someone deleted (404) is posted anew.
        edited = (self._request("PATCH", f"/issues/comments/{comment_id}", {"body": body}, absent=(404,))
                  if comment_id is not None else None)
        return int((edited or self._request("POST", f"/issues/{number}/comments", {"body": body}))["id"])

    def upsert_check_run(self, sha: str, name: str, conclusion: str, title: str, summary: str, details_url: str,
                         check_run_id: int | None) -> int:
        body = {"name": name, "head_sha": sha, "status": "completed", "conclusion": conclusion,
                "details_url": details_url, "output": {"title": title[:255], "summary": summary[:65000]}}
        edited = (self._request("PATCH", f"/check-runs/{int(check_run_id)}", body, absent=(404,))
                  if check_run_id is not None else None)
        return int((edited or self._request("POST", "/check-runs", body))["id"])

    def find_comment(self, number: int, marker: str) -> int | None:
        with self._calls():
            for comment in self._repo.get_issue(number).get_comments():
                raw = _listed(comment)
                if marker in (raw.get("body") or "") and (raw.get("user") or {}).get("type") == "Bot":
                    return int(raw["id"])
        return None

    def remove_label(self, number: int, label: str) -> None:
        # Already gone (404) is what we wanted.
        self._request("DELETE", f"/issues/{number}/labels/{urllib.parse.quote(label, safe='')}", absent=(404,))

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        self._request("POST", f"/actions/runs/{int(run_id)}/deployment_protection_rule",
                      {"environment_name": environment, "state": state, "comment": comment[:1000]})

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        data = self._request("GET", f"/commits/{urllib.parse.quote(sha)}/pulls")
        return [{"number": int(p["number"]), "state": p.get("state"), "merged_at": p.get("merged_at"),
                 "head_sha": (p.get("head") or {}).get("sha"), "base_ref": (p.get("base") or {}).get("ref"),
                 "merge_commit_sha": p.get("merge_commit_sha")} for p in data or []]

    def get_workflow_run(self, run_id: int) -> dict[str, Any] | None:
        data = self._request("GET", f"/actions/runs/{int(run_id)}", absent=(404,))
        return dict(data) if data is not None else None

    def get_commit(self, sha: str) -> RawCommit | None:
        # 422: "No commit found for SHA".
        raw = self._request("GET", f"/commits/{urllib.parse.quote(sha)}", absent=(404, 422))
        if raw is None:
            return None
        return RawCommit(raw["sha"], (raw.get("commit") or {}).get("message") or "", raw.get("author"),
                         raw.get("committer"))

    def branch_sha(self, branch: str) -> str | None:
        data = self._request("GET", f"/branches/{urllib.parse.quote(branch, safe='')}", absent=(404,))
        return str(((data or {}).get("commit") or {}).get("sha") or "") or None

    def get_issue(self, number: int) -> dict[str, Any] | None:
        data = self._request("GET", f"/issues/{int(number)}", absent=(404,))
        return dict(data) if data is not None else None

    def issue_events(self, number: int) -> list[dict[str, Any]]:
        try:
            with self._calls():
                return [_listed(e) for e in self._repo.get_issue(number).get_events()]
        except ForgeError as exc:
            if exc.status == 404:
                return []  # "Fixes #999" may name no issue at all
            raise


def _pull_info(raw: dict[str, Any]) -> PullRequestInfo:
    base, head = raw["base"], raw["head"]
    return PullRequestInfo(
        number=raw["number"],
        state=raw["state"],
        draft=bool(raw.get("draft")),
        title=raw.get("title") or "",
        body=raw.get("body") or "",
        author=raw.get("user") or {},
        head_sha=head["sha"],
        head_ref=head["ref"],
        head_repo=(head.get("repo") or {}).get("full_name"),
        base_ref=base["ref"],
        base_sha=base["sha"],
        default_branch=(base.get("repo") or {}).get("default_branch") or "main",
        labels=tuple(label["name"] for label in raw.get("labels") or []),
        merged=bool(raw.get("merged")),
        changed_files=raw.get("changed_files"),
    )
