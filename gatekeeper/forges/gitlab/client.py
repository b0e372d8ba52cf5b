"""The GitLab adapter: the `Forge` port on python-gitlab, against `AGENTGATE_GITLAB_URL`'s REST API v4.

A GitLab "pull request" is a merge request, numbered by its `iid`; the repository is the target
project, addressed by its URL-encoded `path_with_namespace`. Where GitLab's answers lack what the
port asks for, this module says how it is made up:
- approvals name no commit: an approval counts for the head only when it was given after the MR's
  latest diff version was created (the latest push), and that version is the head;
- a commit names its author by name and address only (see `users.email_user`);
- the verdict is a commit status named like the context, in GitLab's states, on the MR head in the
  source project; `failure` and `error` are both `failed`, the reason in the description; GitLab
  refusing to move a status to the state it has is "no change";
- where the project has external status checks named like the context (Ultimate), they are
  answered `passed` or `failed` too: that is how GitLab blocks merges on them;
- GitLab has no check runs and no deployment protection callbacks: those port calls do nothing or
  fail."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import gitlab
import gitlab.exceptions
import redis
import requests

from gatekeeper.core.facts import ChangedFile, User
from gatekeeper.forges.gitlab.users import co_author_logins, email_user, gitlab_user
from gatekeeper.forges.gitlab.webhooks import utc
from gatekeeper.forges.port import (
    Commit,
    CommitStatus,
    Event,
    ForgeError,
    Issue,
    IssueEvent,
    PullActivity,
    PullRequest,
    RateLimited,
    Review,
    WorkflowRun,
)
from gatekeeper.state import keys, metrics

log = logging.getLogger(__name__)

STATUS_DESCRIPTION_LIMIT = 255  # GitLab keeps a commit status's description to 255 characters
HTTP_TIMEOUT = 15
PER_PAGE = 100
FILES_MAX_PAGES = 30  # 3,000 changed files, as GitHub's cap
COMMITS_MAX_PAGES = 10
NOTES_MAX_PAGES = 5
DEFAULT_CI_CONFIG = ".gitlab-ci.yml"

# The port's permission names for GitLab's access levels. Planner (15) and reporter (20) may read;
# guest (10) and minimal access (5) may not even read the code of a private project.
ACCESS_LEVELS: tuple[tuple[int, str], ...] = ((50, "admin"), (40, "maintain"), (30, "write"), (15, "read"),
                                              (0, "none"))
# The verdict's outcome as a GitLab commit status state.
GITLAB_STATES = {"success": "success", "pending": "pending", "failure": "failed", "error": "failed"}
# ...and back, for reading a status.
PORT_STATES = {"success": "success", "failed": "failure", "canceled": "error", "canceling": "error",
               "skipped": "error", "pending": "pending", "running": "pending", "created": "pending",
               "waiting_for_resource": "pending", "preparing": "pending", "scheduled": "pending", "manual": "pending"}

# Cache keys and their lifetimes live with every other key, in gatekeeper.state.keys.
USER_BOT_TTL, PROJECT_TTL, SELF_TTL = keys.GITLAB_USER_BOT_TTL, keys.GITLAB_PROJECT_TTL, keys.GITLAB_SELF_TTL
STATUS_CHECKS_TTL, EMAIL_TTL = keys.GITLAB_STATUS_CHECKS_TTL, keys.GITLAB_EMAIL_TTL
email_key, user_bot_key, project_key = keys.gitlab_email, keys.gitlab_user_bot, keys.gitlab_project
self_key, status_checks_key = keys.gitlab_self, keys.gitlab_status_checks


def permission_name(access_level: int) -> str:
    return next(name for floor, name in ACCESS_LEVELS if access_level >= floor)


def _when(value: Any) -> datetime | None:
    """A GitLab timestamp as an aware datetime, full precision (for deciding what came first)."""
    text = str(value or "").strip()
    if not text:
        return None
    if text.endswith(" UTC"):
        text = text[:-4].replace(" ", "T") + "+00:00"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class GitLabForge:
    platform = "gitlab"
    status_description_limit = STATUS_DESCRIPTION_LIMIT
    http_timeout: int = HTTP_TIMEOUT
    _limited_until: float = 0.0

    def __init__(self, repo: str, url: str, token: str, conn: redis.Redis | None = None, *,
                 timeout: int = HTTP_TIMEOUT, sibling: Callable[[str], GitLabForge] | None = None):
        self.repo = repo
        self.http_timeout = timeout
        self._token = token
        self._conn = conn
        self._sibling = sibling
        self._gl = gitlab.Gitlab(url.rstrip("/"), private_token=token, timeout=timeout, per_page=PER_PAGE,
                                 retry_transient_errors=False)
        self._gl.session.hooks["response"].append(self._saw)
        self._headers: dict[str, str] = {}
        self._path = f"/projects/{urllib.parse.quote(repo, safe='')}"
        # Merge requests read in this job, by iid, and by head: where a status goes and which
        # merge requests' status checks it answers.
        self._mrs: dict[int, dict[str, Any]] = {}
        self._project_info: dict[str, Any] | None = None
        self._own: str | None = None

    # ---- HTTP -------------------------------------------------------------------------------------

    def _saw(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._headers = {k.lower(): v for k, v in response.headers.items()}
        metrics.platform_call("gitlab", urllib.parse.urlsplit(response.url).path, self._headers)

    @contextmanager
    def _calls(self) -> Iterator[None]:
        wait = self._limited_until - time.monotonic()
        if wait > 0:
            raise RateLimited("GitLab rate limit: still waiting for the reset", wait)
        try:
            yield
        except gitlab.exceptions.GitlabError as exc:
            status = getattr(exc, "response_code", None)
            message = str(getattr(exc, "error_message", "") or "")
            retry_after = self._retry_after(status)
            if retry_after is not None:
                self._limited_until = time.monotonic() + retry_after
                raise RateLimited(f"GitLab rate limit: {message}", retry_after, status) from None
            raise ForgeError(f"GitLab answered {status}: {message}", status) from None
        except requests.Timeout:
            raise ForgeError(f"GitLab did not answer within {self.http_timeout:g} s") from None
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitLab: {type(exc).__name__}") from None

    def _retry_after(self, status: int | None) -> float | None:
        if status != 429:
            return None
        headers = self._headers
        for name in ("retry-after",):
            if name in headers:
                try:
                    return max(1.0, float(headers[name]))
                except ValueError:
                    return 60.0
        if "ratelimit-reset" in headers:
            try:
                return max(1.0, float(headers["ratelimit-reset"]) - time.time())
            except ValueError:
                return 60.0
        return 60.0

    def _request(self, verb: str, path: str, body: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, absent: tuple[int, ...] = ()) -> Any:
        """One REST call (`path` under /api/v4). Statuses in `absent` mean "not there" and give None."""
        try:
            with self._calls():
                response = self._gl.http_request(verb, path, query_data=params or {}, post_data=body,
                                                 obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        except ForgeError as exc:
            if exc.status in absent:
                return None
            raise
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ForgeError(f"GitLab answered {path} with something that is not JSON") from None

    def _list(self, path: str, params: dict[str, Any] | None = None, max_pages: int = 1,
              absent: tuple[int, ...] = ()) -> tuple[list[Any] | None, bool]:
        """Every item of a paginated list, up to `max_pages`, and whether that was all of them."""
        items: list[Any] = []
        page = 1
        while True:
            data = self._request("GET", path, params={**(params or {}), "per_page": PER_PAGE, "page": page},
                                 absent=absent)
            if data is None and page == 1:
                return None, True
            if not isinstance(data, list):
                raise ForgeError(f"GitLab answered {path} with something that is not a list")
            items += data
            following = (self._headers.get("x-next-page") or "").strip()
            if not following or not data:
                return items, True
            if page >= max_pages:
                return items, False
            page = int(following) if following.isdigit() else page + 1

    def _cached(self, name: str, ttl: int, read: Callable[[], Any]) -> Any:
        if self._conn is not None:
            found = self._conn.get(name)
            if found is not None:
                return json.loads(found)
        value = read()
        if self._conn is not None:
            self._conn.set(name, json.dumps(value), ex=ttl)
        return value

    # ---- who is who -------------------------------------------------------------------------------

    def _project(self) -> dict[str, Any]:
        if self._project_info is None:
            def read() -> dict[str, Any]:
                raw = self._request("GET", self._path)
                return {"id": raw.get("id"), "default_branch": raw.get("default_branch") or "main"}
            self._project_info = self._cached(project_key(self.repo), PROJECT_TTL, read)
        return self._project_info

    def user(self, raw: dict[str, Any] | None) -> User | None:
        """A user object as a `User`, asking the users API (cached) whether GitLab marks it a bot when
        its username does not already say so."""
        user = gitlab_user(raw)
        if user is None or raw is None or user.bot or user.agent or "bot" in raw or user.id is None:
            return user
        uid = user.id

        def read() -> bool:
            data = self._request("GET", f"/users/{uid}", absent=(403, 404))
            return bool((data or {}).get("bot"))

        return gitlab_user(raw, bot=True) if self._cached(user_bot_key(uid), USER_BOT_TTL, read) else user

    def resolve(self, user: User | None) -> User | None:
        """An event's user (from a webhook, which carries no bot flag) with the users API's verdict."""
        if user is None or user.bot or user.agent or user.id is None:
            return user
        return self.user({"id": user.id, "username": user.login})

    def resolve_event(self, event: Event) -> Event:
        """The event with its users as the users API knows them (a webhook never says who is a bot): for
        the worker to call on a GitLab event before its handler classifies anyone."""
        data = dict(event.data)
        for name in ("author", "assignee", "triggering_actor", "run_actor"):
            found = event.user(name)
            if found is not None:
                resolved = self.resolve(found)
                data[name] = resolved.to_dict() if resolved else None
        return replace(event, actor=self.resolve(event.actor), data=data)

    def own_username(self) -> str:
        if self._own is None:
            def read() -> str:
                return str((self._request("GET", "/user") or {}).get("username") or "")
            self._own = str(self._cached(self_key(self._token), SELF_TTL, read))
        return self._own

    def is_own(self, user: User) -> bool:
        own = self.own_username()
        return bool(own) and user.login.lower() == own.lower()

    # ---- merge requests ---------------------------------------------------------------------------

    def _remember(self, raw: dict[str, Any]) -> dict[str, Any]:
        if isinstance(raw.get("iid"), int):
            self._mrs[int(raw["iid"])] = raw
        return raw

    def _mr(self, number: int) -> dict[str, Any]:
        if number not in self._mrs:
            self._remember(self._request("GET", f"{self._path}/merge_requests/{int(number)}"))
        return self._mrs[number]

    def _pull(self, raw: dict[str, Any], *, resolve: bool = True) -> PullRequest:
        state = str(raw.get("state") or "")
        refs = raw.get("diff_refs") or {}
        head = str(raw.get("sha") or refs.get("head_sha") or "")
        source, target = raw.get("source_project_id"), raw.get("target_project_id")
        count = str(raw.get("changes_count") or "")
        labels = [label if isinstance(label, str) else label.get("name") or label.get("title")
                  for label in raw.get("labels") or []]
        author = (self.user(raw.get("author")) if resolve else gitlab_user(raw.get("author"))) \
            or User("ghost", bot=True)
        return PullRequest(
            number=int(raw["iid"]),
            state="open" if state in ("opened", "locked") else "closed",
            draft=bool(raw.get("draft") or raw.get("work_in_progress")),
            title=str(raw.get("title") or ""),
            body=str(raw.get("description") or ""),
            author=author,
            head_sha=head,
            head_ref=str(raw.get("source_branch") or ""),
            head_repo=self.repo if source is None or source == target else f"project-{source}",
            base_ref=str(raw.get("target_branch") or ""),
            base_sha=str(refs.get("base_sha") or ""),
            default_branch=str(self._project().get("default_branch") or "main") if resolve else "main",
            labels=tuple(str(label) for label in labels if label),
            merged=state == "merged",
            # "1000+" when GitLab stopped counting: more than any list it gives.
            changed_files=(int(count.rstrip("+")) + (1 if count.endswith("+") else 0)) if count.rstrip("+").isdigit()
            else None,
            merge_commit_sha=raw.get("merge_commit_sha") or raw.get("squash_commit_sha"),
        )

    def get_pull_request(self, number: int) -> PullRequest:
        self._mrs.pop(number, None)  # always fresh: the job reads the MR's state when it starts
        return self._pull(self._mr(number))

    def list_open_pulls(self, limit: int) -> list[PullRequest]:
        data = self._request("GET", f"{self._path}/merge_requests",
                             params={"state": "opened", "order_by": "updated_at", "sort": "desc",
                                     "per_page": max(1, min(limit, PER_PAGE))})
        return [self._pull(self._remember(raw), resolve=False) for raw in data or []][:limit]

    def pulls_for_commit(self, sha: str) -> list[PullRequest]:
        data = self._request("GET", f"{self._path}/repository/commits/{urllib.parse.quote(sha, safe='')}"
                                    "/merge_requests", absent=(404,))
        return [self._pull(raw, resolve=False) for raw in data or [] if isinstance(raw, dict)]

    def list_changed_files(self, number: int) -> tuple[list[ChangedFile], bool]:
        base = f"{self._path}/merge_requests/{int(number)}"
        diffs, complete = self._list(f"{base}/diffs", max_pages=FILES_MAX_PAGES, absent=(404,))
        if diffs is None:  # before GitLab 15.7: the one-page `changes`
            data = self._request("GET", f"{base}/changes") or {}
            diffs, complete = data.get("changes") or [], not data.get("overflow")
        return [_changed_file(d) for d in diffs if isinstance(d, dict)], complete

    def list_commits(self, number: int) -> tuple[list[Commit], bool]:
        data, complete = self._list(f"{self._path}/merge_requests/{int(number)}/commits",
                                    max_pages=COMMITS_MAX_PAGES)
        # GitLab lists a merge request's commits newest first; the port wants them oldest first.
        return [self._commit(raw) for raw in reversed(data or [])], complete

    def _commit(self, raw: dict[str, Any]) -> Commit:
        commit = _commit(raw)
        return Commit(commit.sha, commit.message, self._account(commit.author), self._account(commit.committer),
                      commit.co_authors)

    def _account(self, user: User | None) -> User | None:
        """A commit's author known only by address, as the account whose public email it is (the
        users API finds public emails; cached): so "who committed" compares with who approves."""
        if user is None or "@" not in user.login:
            return user
        address = user.login

        def read() -> dict[str, Any]:
            found = self._request("GET", "/users", params={"search": address, "per_page": 2}) or []
            one = found[0] if len(found) == 1 and isinstance(found[0], dict) else {}
            return {"username": one.get("username"), "id": one.get("id")} if one.get("username") else {}

        account = self._cached(email_key(address), EMAIL_TTL, read)
        return self.user(account) if account else user

    def list_reviews(self, number: int) -> list[Review]:
        """Approvals (and change requests) as reviews. GitLab's approvals name no commit: one counts for
        the head only when it was given after the latest push (the MR's newest diff version, which
        must be the head)."""
        head = str(self._mr(number).get("sha") or "")
        base = f"{self._path}/merge_requests/{int(number)}"
        approvals = self._request("GET", f"{base}/approvals") or {}
        versions = self._request("GET", f"{base}/versions", absent=(404,)) or []
        latest = versions[0] if versions and isinstance(versions[0], dict) else {}
        pushed_at = _when(latest.get("created_at")) if latest.get("head_commit_sha") == head else None
        entries = [e for e in approvals.get("approved_by") or [] if isinstance(e, dict) and e.get("user")]
        noted = self._approval_notes(base) if any(not e.get("approved_at") for e in entries) else {}
        reviews: list[Review] = []
        for entry in entries:
            user = self.user(entry["user"]) or User("ghost", bot=True)
            given = _when(entry.get("approved_at")) or noted.get(user.login.lower())
            current = pushed_at is not None and given is not None and given > pushed_at
            reviews.append(Review(id=int(user.id or 0), user=user, state="APPROVED",
                                  commit_sha=head if current else None,
                                  submitted_at=given.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if given
                                  else None))
        for entry in self._request("GET", f"{base}/reviewers", absent=(404,)) or []:
            if isinstance(entry, dict) and entry.get("state") == "requested_changes" and entry.get("user"):
                user = self.user(entry["user"]) or User("ghost", bot=True)
                reviews.insert(0, Review(id=int(user.id or 0), user=user, state="CHANGES_REQUESTED", commit_sha=None,
                                         submitted_at=utc(entry.get("created_at")) or None))
        return reviews

    def _approval_notes(self, base: str) -> dict[str, datetime]:
        """When each user last approved, from GitLab's system notes (for versions whose approvals API
        does not say)."""
        notes, _ = self._list(f"{base}/notes", params={"sort": "asc", "order_by": "created_at"},
                              max_pages=NOTES_MAX_PAGES)
        found: dict[str, datetime] = {}
        for note in notes or []:
            if not isinstance(note, dict) or not note.get("system"):
                continue
            body = str(note.get("body") or "").strip().lower()
            login = str((note.get("author") or {}).get("username") or "").lower()
            when = _when(note.get("created_at"))
            if body.startswith("approved this merge request") and when is not None:
                found[login] = when
            elif body.startswith("unapproved this merge request"):
                found.pop(login, None)
        return found

    def get_permission(self, login: str) -> str:
        members = self._request("GET", f"{self._path}/members/all", params={"query": login, "per_page": PER_PAGE})
        for member in members or []:
            if str(member.get("username") or "").lower() == login.lower():
                inactive = {member.get("state"), member.get("membership_state")} - {None, "active"}
                if inactive:
                    return "none"
                return permission_name(int(member.get("access_level") or 0))
        return "none"

    # ---- repository -------------------------------------------------------------------------------

    def branch_sha(self, branch: str) -> str | None:
        data = self._request("GET", f"{self._path}/repository/branches/{urllib.parse.quote(branch, safe='')}",
                             absent=(404,))
        return str(((data or {}).get("commit") or {}).get("id") or "") or None

    def default_branch(self) -> str:
        return str(self._project().get("default_branch") or "main")

    def get_file(self, path: str, ref: str | None) -> str | None:
        ref = ref or str(self._project().get("default_branch") or "main")
        try:
            data = self._request("GET", f"{self._path}/repository/files/{urllib.parse.quote(path, safe='')}",
                                 params={"ref": ref})
        except ForgeError as exc:
            # Only "no such file" is absence: a commit GitLab cannot find must not read as "no policy".
            if exc.status == 404 and "file not found" in str(exc).lower():
                return None
            raise
        if (data or {}).get("encoding") != "base64":
            raise ForgeError(f"{path} at {ref[:7]} came in an unexpected encoding")
        return base64.b64decode(data.get("content") or "").decode("utf-8", errors="replace")

    def get_repo_file(self, full_name: str, path: str) -> str | None:
        if self._sibling is None:
            raise ForgeError(f"cannot read {full_name}: no forge for other projects")
        return self._sibling(full_name).get_file(path, None)

    def get_commit(self, sha: str) -> Commit | None:
        raw = self._request("GET", f"{self._path}/repository/commits/{urllib.parse.quote(sha, safe='')}",
                            absent=(404,))
        return self._commit(raw) if raw else None

    def get_issue(self, number: int) -> Issue | None:
        raw = self._request("GET", f"{self._path}/issues/{int(number)}", absent=(404,))
        if not raw:
            return None
        labels = [label if isinstance(label, str) else label.get("name") for label in raw.get("labels") or []]
        return Issue(int(raw["iid"]), "open" if raw.get("state") == "opened" else "closed",
                     tuple(str(label) for label in labels if label),
                     tuple(str(a.get("username")) for a in raw.get("assignees") or [] if a.get("username")))

    def issue_events(self, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
        """A merge request's or an issue's history (GitLab numbers them apart): label events, assignments
        (from GitLab's system notes) and, for a merge request, the issues it closes."""
        noun = "merge_requests" if pull_request else "issues"
        base = f"{self._path}/{noun}/{int(number)}"
        labels, complete = self._list(f"{base}/resource_label_events", max_pages=NOTES_MAX_PAGES, absent=(404,))
        if labels is None:
            return []  # "Fixes #999" may name no issue at all
        if not complete:
            # GitLab lists them oldest first: the pages left unread hold the latest, and a stale "a
            # maintainer applied it" must never approve a task (fail closed).
            raise ForgeError(f"{noun.replace('_', ' ')[:-1]} {number} has more than {NOTES_MAX_PAGES * PER_PAGE} "
                             "label events: agentgate does not judge who applied a label from part of them")
        events: list[tuple[str, IssueEvent]] = []
        for raw in labels:
            name = (raw.get("label") or {}).get("name")
            kind = {"add": "labeled", "remove": "unlabeled"}.get(str(raw.get("action")))
            if kind and name:
                at = utc(raw.get("created_at"))
                # Who applied a label decides whether a task is approved: a service account named freely
                # is a bot only by the users API's word, so ask it (cached), as for any other actor.
                events.append((at, IssueEvent(kind, actor=self.user(raw.get("user")), label=str(name), at=at)))
        notes, _ = self._list(f"{base}/notes", params={"sort": "asc", "order_by": "created_at"},
                              max_pages=NOTES_MAX_PAGES, absent=(404,))
        for note in notes or []:
            if not isinstance(note, dict) or not note.get("system"):
                continue
            found = _ASSIGNED.match(str(note.get("body") or ""))
            if found:
                at = utc(note.get("created_at"))
                actor = gitlab_user(note.get("author"))
                for login in _MENTIONED.findall(found.group(1)):
                    events.append((at, IssueEvent("assigned", actor=actor, assignee=gitlab_user({"username": login}),
                                                  at=at)))
        if noun == "merge_requests":
            for issue in self._request("GET", f"{base}/closes_issues", absent=(404,)) or []:
                if isinstance(issue, dict) and isinstance(issue.get("iid"), int):
                    events.append(("", IssueEvent("connected", other=int(issue["iid"]))))
        return [event for _, event in sorted(events, key=lambda pair: pair[0])]

    def get_workflow_run(self, run_id: int) -> WorkflowRun | None:
        raw = self._request("GET", f"{self._path}/pipelines/{int(run_id)}", absent=(404,))
        if not raw:
            return None
        actor = self.user(raw.get("user"))
        return WorkflowRun(id=int(raw["id"]), name=str(raw.get("name") or ""), path=DEFAULT_CI_CONFIG,
                           event=str(raw.get("source") or ""), head_sha=raw.get("sha"), head_branch=raw.get("ref"),
                           actor=actor, triggering_actor=actor)

    # ---- acting -----------------------------------------------------------------------------------

    def _status_target(self, sha: str) -> tuple[str, str | None, list[int]]:
        """Where a status on `sha` goes (the source project of the merge requests at that head, read
        in this job), the ref, and those merge requests."""
        at_head = [raw for raw in self._mrs.values() if raw.get("sha") == sha]
        if not at_head:
            return self._path, None, []
        first = at_head[0]
        source = first.get("source_project_id")
        path = self._path if source in (None, first.get("target_project_id")) else f"/projects/{int(source)}"
        return path, first.get("source_branch"), [int(raw["iid"]) for raw in at_head]

    def set_status(self, sha: str, state: str, description: str, target_url: str, context: str) -> None:
        path, ref, numbers = self._status_target(sha)
        text = description if state != "error" else f"Error: {description}"
        body: dict[str, Any] = {"state": GITLAB_STATES.get(state, "failed"), "name": context,
                                "target_url": target_url, "description": text[:STATUS_DESCRIPTION_LIMIT]}
        if ref:
            body["ref"] = ref
        try:
            self._request("POST", f"{path}/statuses/{urllib.parse.quote(sha, safe='')}", body)
        except ForgeError as exc:
            # "Cannot transition status via :enqueue from :pending": the status already has this state.
            if exc.status != 400 or "cannot transition status" not in str(exc).lower():
                raise
        self._answer_status_checks(sha, numbers, state, context)

    def _answer_status_checks(self, sha: str, numbers: list[int], state: str, context: str) -> None:
        """Answer the project's external status checks named like the status (Ultimate), for the merge
        requests at this head: `passed` only for success."""
        if not numbers:
            return

        def read() -> list[dict[str, Any]]:
            data = self._request("GET", f"{self._path}/external_status_checks", absent=(403, 404))
            return [{"id": c.get("id"), "name": c.get("name")} for c in data or [] if isinstance(c, dict)]

        checks = [c for c in self._cached(status_checks_key(self.repo), STATUS_CHECKS_TTL, read)
                  if str(c.get("name") or "").lower() == context.lower() and isinstance(c.get("id"), int)]
        for number in numbers:
            for check in checks:
                self._request("POST", f"{self._path}/merge_requests/{number}/status_check_responses",
                              {"sha": sha, "external_status_check_id": check["id"],
                               "status": "passed" if state == "success" else "failed"})

    def upsert_check_run(self, sha: str, name: str, outcome: str, title: str, reasons_markdown: str,
                         details_url: str, check_run_id: int | None) -> int | None:
        return None  # GitLab has no check runs; the status and its details page say everything

    def upsert_comment(self, number: int, body: str, comment_id: int | None) -> int:
        base = f"{self._path}/merge_requests/{int(number)}/notes"
        # A note someone deleted (404) is posted anew.
        edited = self._request("PUT", f"{base}/{int(comment_id)}", {"body": body}, absent=(404,)) \
            if comment_id is not None else None
        return int((edited or self._request("POST", base, {"body": body}))["id"])

    def find_comment(self, number: int, marker: str) -> int | None:
        notes, _ = self._list(f"{self._path}/merge_requests/{int(number)}/notes",
                              params={"sort": "asc", "order_by": "created_at"}, max_pages=NOTES_MAX_PAGES)
        for note in notes or []:
            author = gitlab_user(note.get("author"))
            if not note.get("system") and marker in str(note.get("body") or "") and author and self.is_own(author):
                return int(note["id"])
        return None

    def remove_label(self, number: int, label: str) -> None:
        # A merge request that is gone has no label to remove.
        self._request("PUT", f"{self._path}/merge_requests/{int(number)}", {"remove_labels": label}, absent=(404,))

    def review_deployment(self, run_id: int, environment: str, state: str, comment: str) -> None:
        raise ForgeError("GitLab has no deployment protection callback to answer")

    # ---- recovery ---------------------------------------------------------------------------------

    def list_open_pull_activity(self, limit: int) -> list[PullActivity]:
        data = self._request("GET", f"{self._path}/merge_requests",
                             params={"state": "opened", "order_by": "updated_at", "sort": "desc",
                                     "per_page": max(1, min(limit, PER_PAGE))})
        return [PullActivity(int(raw["iid"]), str(raw.get("sha") or ""), utc(raw.get("updated_at")))
                for raw in data or []][:limit]

    def latest_status(self, sha: str, context: str) -> CommitStatus | None:
        path, _, _ = self._status_target(sha)
        data = self._request("GET", f"{path}/repository/commits/{urllib.parse.quote(sha, safe='')}/statuses",
                             params={"name": context, "per_page": PER_PAGE}, absent=(404,))
        mine = [raw for raw in data or [] if isinstance(raw, dict) and raw.get("name") == context]
        if not mine:
            return None
        raw = max(mine, key=lambda s: (_when(s.get("created_at")) or datetime.min.replace(tzinfo=UTC),
                                       int(s.get("id") or 0)))
        author = gitlab_user(raw.get("author"))
        return CommitStatus(PORT_STATES.get(str(raw.get("status") or ""), "error"), str(raw.get("description") or ""),
                            utc(raw.get("created_at")), author is not None and self.is_own(author))

    def rate_budget(self) -> tuple[int, int] | None:
        try:
            remaining, limit = int(self._headers["ratelimit-remaining"]), int(self._headers["ratelimit-limit"])
        except (KeyError, ValueError):
            return None
        return (remaining, limit) if limit > 0 else None


_ASSIGNED = re.compile(r"^(?:re)?assigned to (.+?)(?: and unassigned .*)?$", re.IGNORECASE)
_MENTIONED = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z0-9_])")


def _commit(raw: dict[str, Any]) -> Commit:
    message = str(raw.get("message") or raw.get("title") or "")
    return Commit(str(raw["id"]), message, email_user(raw.get("author_name"), raw.get("author_email")),
                  email_user(raw.get("committer_name"), raw.get("committer_email")), co_author_logins(message))


def _changed_file(raw: dict[str, Any]) -> ChangedFile:
    diff = str(raw.get("diff") or "")
    additions = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    deletions = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    if raw.get("new_file"):
        status = "added"
    elif raw.get("deleted_file"):
        status = "removed"
    elif raw.get("renamed_file"):
        status = "renamed"
    else:
        status = "modified"
    path = str(raw.get("old_path") if status == "removed" else raw.get("new_path") or raw.get("old_path") or "")
    return ChangedFile(path, status, additions, deletions,
                       str(raw.get("old_path")) if status == "renamed" and raw.get("old_path") else None)
