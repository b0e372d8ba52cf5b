"""The GitHub adapter, on PyGithub, talking to the REST API at the configured base URL only."""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from gatekeeper.core.facts import PERMISSIONS, ChangedFile, User
from gatekeeper.forges.github.users import app_name, co_author_logins, github_user
from gatekeeper.forges.port import (
    Commit,
    CommitStatus,
    Event,
    FileTooLarge,
    ForgeError,
    Issue,
    IssueEvent,
    PullActivity,
    PullRequest,
    RateLimited,
    Review,
    WorkflowRun,
)
from gatekeeper.state import metrics

# GitHub returns at most 3000 files and 250 commits for a pull request.
FILES_CAP = 3000
COMMITS_CAP = 250
STATUS_DESCRIPTION_LIMIT = 140
HTTP_TIMEOUT = 15  # seconds per request; a worker never waits longer on one answer
# Only a connection that could not be made is tried again at once (nothing was sent, so nothing can
# happen twice). Every other failure, rate limits included, goes back to the job: it retries with
# backoff, or is re-enqueued at the reset. A worker never sleeps on GitHub's behalf (PyGithub's
# GithubRetry would sleep through a Retry-After or a rate-limit reset, and retry 5xx at once).
_CONNECT_RETRY = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=3, backoff_factor=0,
                       respect_retry_after_header=False, raise_on_status=False)


def _metered(requester: Any) -> None:
    """Count each request of this client by endpoint class, and keep the rate limit GitHub reported in
    its answer. PyGithub has no response hook, but every REST call it makes for us (each page of a list
    too) goes through `Requester.requestJsonAndCheck`, which sets `rate_limiting` from the answer's
    X-RateLimit-Remaining; so that one method is wrapped, on this client only."""
    call = requester.requestJsonAndCheck

    def counted(verb: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(verb, url, *args, **kwargs)
        finally:
            remaining = requester.rate_limiting[0]
            metrics.platform_call("github", url, remaining=remaining if remaining >= 0 else None)

    setattr(requester, "requestJsonAndCheck", counted)  # noqa: B010 (mypy forbids assigning a method)


def _listed(obj: Any) -> dict[str, Any]:
    """The attributes a list response gave for an item. PyGithub's `raw_data` would fetch each commit
    or event again (one extra API call per item) because list items count as incomplete."""
    return dict(obj._rawData)


class GitHubForge:
    platform = "github"
    status_description_limit = STATUS_DESCRIPTION_LIMIT
    http_timeout: int = HTTP_TIMEOUT  # the composition root may shorten it (settings)
    # Once GitHub said "wait", this forge asks nothing more before then (a fail-closed status included:
    # it would only be refused, and spend the wait GitHub asked for).
    _limited_until: float = 0.0

    def __init__(self, repo: str, token: str | Callable[[], str], api_url: str,
                 sibling: Callable[[str], GitHubForge] | None = None, app_slug: Callable[[], str] | None = None):
        self.repo = repo
        self._app_slug = app_slug
        # Tokens are scoped to one repository; reading another (the org's .github) needs its own.
        self._sibling = sibling
        # The installation token is minted (or read from the shared cache) only when a call needs it, so
        # a job that ends early (our own status coming back) costs no token.
        self._token = token
        self._api_url = api_url
        self._client: Any = None

    @property
    def _repo(self) -> Any:
        if self._client is None:
            token = self._token() if callable(self._token) else self._token
            # lazy: objects are only fetched when read, so e.g. posting a status costs exactly one call.
            # No client-side throttling: one evaluation makes a handful of calls; a rate limit GitHub
            # reports becomes `RateLimited`, and the job is re-enqueued at the reset (see worker/jobs.py).
            gh = Github(base_url=self._api_url, auth=Auth.Token(token), lazy=True, per_page=100,
                        timeout=self.http_timeout, retry=_CONNECT_RETRY, seconds_between_requests=None,
                        seconds_between_writes=None)
            _metered(gh.requester)
            self._client = gh.get_repo(self.repo)
        return self._client

    @contextmanager
    def _calls(self) -> Iterator[None]:
        wait = self._limited_until - time.monotonic()
        if wait > 0:
            raise RateLimited("GitHub rate limit: still waiting for the reset", wait)
        try:
            yield
        except RateLimited as exc:  # minting the token was refused: the same wait applies to this forge
            self._limited_until = time.monotonic() + exc.retry_after
            raise
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else ""
            retry_after = _retry_after(exc)
            if retry_after is not None:
                self._limited_until = time.monotonic() + retry_after
                raise RateLimited(f"GitHub rate limit: {message}", retry_after, exc.status) from None
            raise ForgeError(f"GitHub answered {exc.status}: {message}", exc.status) from None
        except requests.Timeout:
            raise ForgeError(f"GitHub did not answer within {self.http_timeout:g} s") from None
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub: {type(exc).__name__}") from None

    def get_pull_request(self, number: int) -> PullRequest:
        with self._calls():
            raw = self._repo.get_pull(number).raw_data
        return _pull_info(raw)

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
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

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        with self._calls():
            files = [
                ChangedFile(f.filename, f.status, f.additions, f.deletions, f.raw_data.get("previous_filename"))
                for f in self._repo.get_pull(number).get_files()
            ]
        return files, len(files) < FILES_CAP

    def list_reviews(self, number: int) -> list[Review]:
        with self._calls():
            return [
                Review(r.id, github_user(r.raw_data.get("user")) or User("ghost", bot=True), r.state,
                       r.raw_data.get("commit_id") or "", r.raw_data.get("submitted_at"),
                       str(r.raw_data.get("body") or ""))
                for r in self._repo.get_pull(number).get_reviews()
            ]

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        with self._calls():
            commits = [_commit(raw) for raw in (_listed(c) for c in self._repo.get_pull(number).get_commits())]
        # GitHub lists at most 250: a longer history may hide anyone's commits.
        return commits, len(commits) < COMMITS_CAP

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

    def upsert_check_run(self, sha: str, name: str, outcome: str, title: str, reasons_markdown: str,
                         details_url: str, check_run_id: int | None) -> int | None:
        body = {"name": name, "head_sha": sha, "status": "completed", "conclusion": CHECK_CONCLUSIONS[outcome],
                "details_url": details_url,
                "output": {"title": title[:255], "summary": reasons_markdown[:65000]}}
        edited = (self._request("PATCH", f"/check-runs/{int(check_run_id)}", body, absent=(404,))
                  if check_run_id is not None else None)
        return int((edited or self._request("POST", "/check-runs", body))["id"])

    def find_comment(self, number: int, marker: str) -> int | None:
        with self._calls():
            for comment in self._repo.get_issue(number).get_comments():
                raw = _listed(comment)
                author = github_user(raw.get("user"))
                if marker in (raw.get("body") or "") and author is not None and self.is_own(author):
                    return int(raw["id"])
        return None

    def remove_label(self, number: int, label: str) -> None:
        # Already gone (404) is what we wanted.
        self._request("DELETE", f"/issues/{number}/labels/{urllib.parse.quote(label, safe='')}", absent=(404,))

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        self._request("POST", f"/actions/runs/{int(run_id)}/deployment_protection_rule",
                      {"environment_name": environment, "state": state, "comment": comment[:1000]})

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        data = self._request("GET", f"/commits/{urllib.parse.quote(sha)}/pulls", params={"per_page": 100},
                             absent=(404, 422))
        return [_pull_info(p) for p in data or []]

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        data = self._request("GET", f"/actions/runs/{int(run_id)}", absent=(404,))
        return workflow_run(data) if data is not None else None

    def get_commit(self, sha: str) -> Commit | None:
        # 422: "No commit found for SHA".
        raw = self._request("GET", f"/commits/{urllib.parse.quote(sha)}", absent=(404, 422))
        return _commit(raw) if raw is not None else None

    def branch_sha(self, branch: str) -> str | None:
        data = self._request("GET", f"/branches/{urllib.parse.quote(branch, safe='')}", absent=(404,))
        return str(((data or {}).get("commit") or {}).get("sha") or "") or None

    def default_branch(self) -> str:
        # Asked each time, never assumed: the agent-token policy is read from it, and a guess ("main")
        # could name a branch anyone may push to.
        data = self._request("GET", "")
        branch = str((data or {}).get("default_branch") or "")
        if not branch:
            raise ForgeError(f"GitHub names no default branch for {self.repo} (an empty repository?)")
        return branch

    def get_issue(self, number: int) -> Issue | None:
        data = self._request("GET", f"/issues/{int(number)}", absent=(404, 410))
        if data is None:
            return None
        return Issue(int(data["number"]), str(data.get("state") or "open"),
                     tuple(label["name"] for label in data.get("labels") or []),
                     tuple(a["login"] for a in data.get("assignees") or []), bool(data.get("pull_request")),
                     app_name(data.get("performed_via_github_app")))

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        """The issue's timeline: assignments, labels, and the links between issues and pull requests."""
        try:
            with self._calls():
                raw = [_listed(e) for e in self._repo.get_issue(number).get_timeline()]
        except ForgeError as exc:
            if exc.status in (404, 410):
                return []  # "Fixes #999" may name no issue at all
            raise
        return [event for event in map(_issue_event, raw) if event is not None]

    def resolve_event(self, event: Event) -> Event:
        return event  # GitHub's payloads say which accounts are bots and which app acted

    def is_own(self, user: User) -> bool:
        if not user.bot or not user.login.lower().endswith("[bot]"):
            return False  # only an App's bot can be ours: no need to ask who we are
        slug = self._app_slug() if self._app_slug is not None else "agentgate"
        return user.login.lower() == f"{slug}[bot]".lower()

    # ---- recovery (appended): the reconcile job's reads
    def list_open_pull_activity(self, limit: int) -> list[PullActivity]:
        data = self._request("GET", "/pulls", params={"state": "open", "sort": "updated", "direction": "desc",
                                                      "per_page": max(1, min(limit, 100))})
        return [PullActivity(int(raw["number"]), str(raw["head"]["sha"]), str(raw.get("updated_at") or ""))
                for raw in data or []][:limit]

    def latest_status(self, sha: str, context: str) -> CommitStatus | None:
        # Newest first; one page of 100 holds every context a commit usually carries.
        data = self._request("GET", f"/commits/{urllib.parse.quote(sha)}/statuses", params={"per_page": 100},
                             absent=(404, 422))
        for raw in data or []:
            if raw.get("context") == context:
                creator = github_user(raw.get("creator"))
                return CommitStatus(str(raw.get("state") or ""), str(raw.get("description") or ""),
                                    str(raw.get("created_at") or raw.get("updated_at") or ""),
                                    creator is not None and self.is_own(creator))
        return None

    def rate_budget(self) -> tuple[int, int] | None:
        if self._client is None:
            return None
        remaining, limit = self._client.requester.rate_limiting
        return (int(remaining), int(limit)) if limit > 0 else None


# A check run is completed with a conclusion; waiting for a human is "action required".
CHECK_CONCLUSIONS = {"success": "success", "pending": "action_required", "failure": "failure", "error": "failure"}


def _retry_after(exc: GithubException) -> float | None:
    """Seconds to wait when GitHub says it is rate limiting (429, or 403 with the limit spent, or a
    secondary limit's message), None for any other answer. The reset is an epoch on GitHub's clock, so
    it is measured against GitHub's `Date` header, not ours."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if exc.status not in (403, 429):
        return None
    if "retry-after" in headers:
        try:
            return max(1.0, float(headers["retry-after"]))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(1.0, float(headers["x-ratelimit-reset"]) - _server_now(headers))
        except ValueError:
            return 60.0
    message = str(exc.data.get("message") or "") if isinstance(exc.data, dict) else ""
    if exc.status == 429 or "rate limit" in message.lower():
        return 60.0  # GitHub: "wait at least one minute" when a secondary limit names no time
    return None


def _server_now(headers: dict[str, str]) -> float:
    """GitHub's clock, from the answer's `Date` header (ours if it has none)."""
    try:
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def _commit(raw: dict[str, Any]) -> Commit:
    message = (raw.get("commit") or {}).get("message") or ""
    return Commit(str(raw["sha"]), message, github_user(raw.get("author")), github_user(raw.get("committer")),
                  co_author_logins(message))


def _issue_event(raw: dict[str, Any]) -> IssueEvent | None:
    kind = str(raw.get("event") or "")
    if not kind:
        return None
    actor = github_user(raw.get("actor"), raw.get("performed_via_github_app"))
    other = None
    source = (raw.get("source") or {}).get("issue") or {}
    if kind in ("cross-referenced", "connected", "disconnected") and source.get("number") is not None:
        other = int(source["number"])
    assigner = raw.get("assigner")
    return IssueEvent(kind=kind, actor=github_user(assigner) if kind == "assigned" and assigner else actor,
                      assignee=github_user(raw.get("assignee")), label=(raw.get("label") or {}).get("name"),
                      at=str(raw.get("created_at") or ""), other=other)


def workflow_run(raw: dict[str, Any]) -> WorkflowRun:
    return WorkflowRun(id=int(raw["id"]), name=str(raw.get("name") or ""), path=str(raw.get("path") or ""),
                       event=str(raw.get("event") or ""), head_sha=raw.get("head_sha"),
                       head_branch=raw.get("head_branch"), actor=github_user(raw.get("actor")),
                       triggering_actor=github_user(raw.get("triggering_actor")),
                       pull_numbers=tuple(int(p["number"]) for p in raw.get("pull_requests") or [] if "number" in p))


def _pull_info(raw: dict[str, Any]) -> PullRequest:
    base, head = raw["base"], raw["head"]
    return PullRequest(
        number=int(raw["number"]),
        state=str(raw["state"]),
        draft=bool(raw.get("draft")),
        title=raw.get("title") or "",
        body=raw.get("body") or "",
        author=github_user(raw.get("user")) or User("ghost", bot=True),
        head_sha=head["sha"],
        head_ref=head["ref"],
        head_repo=(head.get("repo") or {}).get("full_name"),
        base_ref=base["ref"],
        base_sha=base["sha"],
        default_branch=(base.get("repo") or {}).get("default_branch") or "main",
        labels=tuple(label["name"] for label in raw.get("labels") or []),
        merged=bool(raw.get("merged") or raw.get("merged_at")),
        changed_files=raw.get("changed_files"),
        merge_commit_sha=raw.get("merge_commit_sha"),
    )
