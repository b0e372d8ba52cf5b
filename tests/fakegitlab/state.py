"""In-memory state of the fake GitLab, plus the seeding helpers tests use.

Objects are kept in the shape GitLab's REST API v4 documents for them (merge requests, commits, notes,
approvals, diff versions, commit statuses, members); `app.py` renders them. Timestamps are GitLab's:
ISO 8601 in UTC with milliseconds and a `Z`, on the fake's own clock (`now()`, which tests may move)."""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

# GitLab's access levels (members API).
GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
FAKE_TOKEN = "glpat-fake-token"  # noqa: S105 - the fake's own test token
FAKE_TOKEN_USER = "project_1_bot_5e7c9a"  # the access-token bot the token belongs to
# The scopes a project access token may carry (GitLab's `resource_bot_scopes`).
RESOURCE_BOT_SCOPES = ("api", "read_api", "read_repository", "write_repository", "read_registry",
                       "write_registry", "create_runner", "manage_runner", "ai_features", "k8s_proxy",
                       "self_rotate", "read_observability", "write_observability")
ACCESS_LEVELS = (10, 15, 20, 30, 40, 50)  # what `access_level` may be when creating a token
MAX_TOKEN_LIFETIME_DAYS = 365
ROTATED_TOKEN_DAYS = 7  # a rotated token's expiry when the request names none
ROLES = {"guest": GUEST, "planner": 15, "reporter": REPORTER, "developer": DEVELOPER, "maintainer": MAINTAINER,
         "owner": OWNER}


def iso(ts: float) -> str:
    """GitLab API timestamps: `2016-06-08T21:20:42.470Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def fake_sha(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


@dataclass
class Call:
    """One API request the fake received."""

    method: str
    path: str  # as sent, percent-encoding kept (`/api/v4/projects/acme%2Fwidgets/...`)
    query: dict[str, str]
    body: Any
    user: str | None  # the token's user
    status: int | None = None


@dataclass
class Fault:
    """The next `times` requests matching `method` and the `path` regex get this answer instead."""

    method: str
    path: str
    status: int
    body: dict[str, Any] = field(default_factory=lambda: {"message": "500 Internal Server Error"})
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


@dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    default_branch: str = "main"
    ci_config_path: str | None = None
    members: dict[str, int] = field(default_factory=dict)  # username -> access level
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # ref (branch or sha) -> path -> text
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha -> commit
    mrs: dict[int, dict[str, Any]] = field(default_factory=dict)  # iid -> merge request
    diffs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # iid -> diff entries
    mr_commits: dict[int, list[str]] = field(default_factory=dict)  # iid -> shas, oldest first
    versions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # iid -> versions, oldest first
    approvals: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # iid -> {user, approved_at}
    reviewers: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # iid -> {user, state, created_at}
    notes: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)  # (noun, iid) -> notes
    label_events: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    closes: dict[int, list[int]] = field(default_factory=dict)  # MR iid -> issue iids it closes
    statuses: list[dict[str, Any]] = field(default_factory=list)  # every commit status, oldest first
    status_checks: list[dict[str, Any]] = field(default_factory=list)  # external status checks
    status_check_responses: list[dict[str, Any]] = field(default_factory=list)
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)


class FakeGitLabState:
    """Everything the fake knows; every method is safe to call from the test while the server runs."""

    def __init__(self, token: str = FAKE_TOKEN, token_user: str = FAKE_TOKEN_USER,
                 approvals_with_time: bool = True):
        self.lock = threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}  # username -> user (with `bot`)
        self.tokens: dict[str, str] = {}  # token -> username
        self.projects: dict[str, Project] = {}  # path -> project
        self.calls: list[Call] = []
        self.clock_offset = 0.0
        # GitLab versions whose approvals API gives `approved_at`; older ones only say who approved
        # (then the time is in the system note "approved this merge request").
        self.approvals_with_time = approvals_with_time
        self.rate_limit = 2000
        self.faults: list[Fault] = []
        self._ids = itertools.count(1000)
        self.add_user(token_user, bot=True)
        self.tokens[token] = token_user
        self.token = token
        self.token_user = token_user
        # Tokens with scopes (project access tokens minted through the API, and tokens a test adds with
        # `add_token`): token -> scopes. A token not here (the seeded one) acts with every scope.
        self.token_scopes: dict[str, list[str]] = {}
        # Project access tokens by id (GitLab's entity fields, plus `_token`, `_project`, `_user` and
        # `_family`: the id of the token it was rotated from, first of the line).
        self.access_tokens: dict[int, dict[str, Any]] = {}

    # ---- clock and ids
    def now(self) -> float:
        return time.time() + self.clock_offset

    def tick(self, seconds: float = 1.0) -> None:
        """Move the fake's clock on (an approval "after" a push is later on GitLab's clock)."""
        with self.lock:
            self.clock_offset += seconds

    def next_id(self) -> int:
        return next(self._ids)

    # ---- calls
    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def calls_matching(self, method: str, pattern: str) -> list[Call]:
        import re

        with self.lock:
            return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    def fail(self, method: str, path: str, status: int, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(method, path, status, body or {"message": f"{status} Error"}, headers or {},
                                     times))

    def take_fault(self, method: str, path: str) -> Fault | None:
        import re

        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.times > 0 and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def reset_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    # ---- seeding
    def add_user(self, username: str, *, bot: bool = False, name: str | None = None) -> dict[str, Any]:
        with self.lock:
            if username not in self.users:
                self.users[username] = {"id": self.next_id(), "username": username, "name": name or username,
                                        "state": "active", "locked": False, "bot": bot,
                                        "avatar_url": None, "web_url": f"http://gitlab.example/{username}"}
            return self.users[username]

    def commit_email(self, username: str) -> str:
        """The address GitLab commits as: `<username>@noreply.<host>` for bots, a public address otherwise
        (which the users API's `search` finds)."""
        user = self.add_user(username)
        if user["bot"] or re.match(r"^(project|group)_\d+_bot|^service_account", username):
            return f"{username}@noreply.gitlab.example"
        user.setdefault("public_email", f"{username}@example.com")
        return str(user["public_email"])

    def user_ref(self, username: str) -> dict[str, Any]:
        """A user as GitLab embeds one in other objects (no `bot` field there)."""
        user = self.add_user(username)
        return {k: user[k] for k in ("id", "username", "name", "state", "locked", "avatar_url", "web_url")}

    def add_project(self, path: str, default_branch: str = "main") -> Project:
        with self.lock:
            if path not in self.projects:
                project = Project(self.next_id(), path, default_branch)
                project.branches[default_branch] = fake_sha(path, default_branch)
                self.projects[path] = project
                self.set_member(path, self.token_user, MAINTAINER)
            return self.projects[path]

    def project_by_id(self, ident: str) -> Project | None:
        with self.lock:
            if ident.isdigit():
                return next((p for p in self.projects.values() if p.id == int(ident)), None)
            return self.projects.get(ident)

    def set_member(self, path: str, username: str, access: int | str) -> None:
        level = ROLES[access] if isinstance(access, str) else access
        with self.lock:
            self.add_user(username)
            self.projects[path].members[username] = level

    def set_branch(self, path: str, branch: str, sha: str) -> None:
        with self.lock:
            self.projects[path].branches[branch] = sha

    def add_file(self, path: str, ref: str, file_path: str, text: str) -> None:
        """A file at a branch (or commit sha)."""
        with self.lock:
            self.projects[path].files.setdefault(ref, {})[file_path] = text

    def add_commit(self, path: str, sha: str, message: str = "change", author: str = "Someone",
                   email: str = "someone@example.com") -> dict[str, Any]:
        with self.lock:
            at = iso(self.now())
            commit = {"id": sha, "short_id": sha[:8], "title": message.splitlines()[0] if message else "",
                      "message": message, "author_name": author, "author_email": email, "authored_date": at,
                      "committer_name": author, "committer_email": email, "committed_date": at, "created_at": at,
                      "parent_ids": [], "web_url": f"http://gitlab.example/{path}/-/commit/{sha}"}
            self.projects[path].commits[sha] = commit
            return commit

    def add_mr(self, path: str, iid: int, *, author: str, head_sha: str, source_branch: str,
               target_branch: str = "main", title: str = "Change", description: str = "",
               files: list[str] | None = None, labels: list[str] | None = None,
               commit_email: str | None = None) -> dict[str, Any]:
        """An open merge request whose one commit (by `author`) changes `files`; its first diff version
        is created now."""
        with self.lock:
            project = self.projects[path]
            self.add_user(author)
            base_sha = project.branches.get(target_branch) or fake_sha(path, target_branch)
            at = iso(self.now())
            mr = {"id": self.next_id(), "iid": iid, "project_id": project.id, "title": title,
                  "description": description, "state": "opened", "created_at": at, "updated_at": at,
                  "merged_by": None, "merge_user": None, "merged_at": None, "closed_by": None, "closed_at": None,
                  "target_branch": target_branch, "source_branch": source_branch, "user_notes_count": 0,
                  "upvotes": 0, "downvotes": 0, "author": self.user_ref(author), "assignees": [], "assignee": None,
                  "reviewers": [], "source_project_id": project.id, "target_project_id": project.id,
                  "labels": list(labels or []), "draft": False, "work_in_progress": False, "milestone": None,
                  "merge_when_pipeline_succeeds": False, "merge_status": "can_be_merged",
                  "detailed_merge_status": "mergeable", "sha": head_sha, "merge_commit_sha": None,
                  "squash_commit_sha": None, "discussion_locked": None, "should_remove_source_branch": None,
                  "force_remove_source_branch": False, "reference": f"!{iid}",
                  "references": {"short": f"!{iid}", "relative": f"!{iid}", "full": f"{path}!{iid}"},
                  "web_url": f"http://gitlab.example/{path}/-/merge_requests/{iid}",
                  "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": None,
                                 "human_total_time_spent": None},
                  "squash": False, "task_completion_status": {"count": 0, "completed_count": 0},
                  "has_conflicts": False, "blocking_discussions_resolved": True, "changes_count": "0",
                  "diff_refs": {"base_sha": base_sha, "head_sha": head_sha, "start_sha": base_sha}}
            project.mrs[iid] = mr
            project.mr_commits[iid] = []
            project.diffs[iid] = []
            project.versions[iid] = []
            self.push(path, iid, head_sha, files or [], author=author, email=commit_email)
            return mr

    def push(self, path: str, iid: int, head_sha: str, files: list[str], *, author: str | None = None,
             email: str | None = None, message: str = "change") -> None:
        """New commits on the MR's source branch: a new head, its files, and a new diff version."""
        with self.lock:
            project = self.projects[path]
            mr = project.mrs[iid]
            who = author or mr["author"]["username"]
            self.add_commit(path, head_sha, message, who, email or self.commit_email(who))
            project.mr_commits[iid].append(head_sha)
            for name in files:
                if not any(d["new_path"] == name for d in project.diffs[iid]):
                    project.diffs[iid].append({"old_path": name, "new_path": name, "a_mode": "100644",
                                               "b_mode": "100644", "new_file": False, "renamed_file": False,
                                               "deleted_file": False, "generated_file": False,
                                               "diff": f"@@ -1 +1 @@\n-old\n+new {name}\n"})
            mr["sha"] = head_sha
            mr["diff_refs"]["head_sha"] = head_sha
            mr["changes_count"] = str(len(project.diffs[iid]))
            at = iso(self.now())
            mr["updated_at"] = at
            project.branches[mr["source_branch"]] = head_sha
            project.versions[iid].append({"id": self.next_id(), "head_commit_sha": head_sha,
                                          "base_commit_sha": mr["diff_refs"]["base_sha"],
                                          "start_commit_sha": mr["diff_refs"]["start_sha"], "created_at": at,
                                          "merge_request_id": mr["id"], "state": "collected",
                                          "real_size": mr["changes_count"], "patch_id_sha": fake_sha(head_sha)})

    def approve(self, path: str, iid: int, username: str) -> None:
        """`username` approves the MR now (GitLab: POST .../approve), with its system note."""
        with self.lock:
            project = self.projects[path]
            at = iso(self.now())
            entries = [e for e in project.approvals.setdefault(iid, []) if e["user"]["username"] != username]
            entries.append({"user": self.user_ref(username), "approved_at": at})
            project.approvals[iid] = entries
            self._note(project, "merge_requests", iid, username, "approved this merge request", system=True)

    def request_changes(self, path: str, iid: int, username: str) -> None:
        with self.lock:
            self.projects[path].reviewers.setdefault(iid, []).append(
                {"user": self.user_ref(username), "state": "requested_changes", "created_at": iso(self.now())})

    def add_note(self, path: str, iid: int, username: str, body: str, noun: str = "merge_requests") -> dict[str, Any]:
        with self.lock:
            return self._note(self.projects[path], noun, iid, username, body)

    def _note(self, project: Project, noun: str, iid: int, username: str, body: str,
              system: bool = False) -> dict[str, Any]:
        at = iso(self.now())
        note = {"id": self.next_id(), "type": None, "body": body, "attachment": None,
                "author": self.user_ref(username), "created_at": at, "updated_at": at, "system": system,
                "noteable_id": iid, "noteable_type": "MergeRequest" if noun == "merge_requests" else "Issue",
                "project_id": project.id, "resolvable": False, "confidential": False, "internal": False,
                "noteable_iid": iid}
        project.notes.setdefault((noun, iid), []).append(note)
        return note

    def add_label(self, path: str, iid: int, label: str, username: str) -> None:
        """`username` adds a label to the MR (and GitLab records a resource label event)."""
        with self.lock:
            project = self.projects[path]
            mr = project.mrs[iid]
            if label not in mr["labels"]:
                mr["labels"].append(label)
            self._label_event(project, "merge_requests", iid, label, "add", username)

    def _label_event(self, project: Project, noun: str, iid: int, label: str, action: str,
                     username: str) -> None:
        project.label_events.setdefault((noun, iid), []).append(
            {"id": self.next_id(), "user": self.user_ref(username), "created_at": iso(self.now()),
             "resource_type": "MergeRequest" if noun == "merge_requests" else "Issue", "resource_id": iid,
             "label": {"id": abs(hash(label)) % 10000, "name": label, "color": "#428BCA", "description": None},
             "action": action})

    def add_issue(self, path: str, iid: int, *, author: str, title: str = "Task", state: str = "opened",
                  description: str = "") -> dict[str, Any]:
        """An issue in GitLab's shape (`state`: `opened` or `closed`), with no labels yet: add them with
        `label_issue`, which records who applied each (GitLab's resource label events)."""
        with self.lock:
            project = self.projects[path]
            at = iso(self.now())
            issue = {"id": self.next_id(), "iid": iid, "project_id": project.id, "title": title,
                     "description": description, "state": state, "created_at": at, "updated_at": at,
                     "closed_at": at if state == "closed" else None, "closed_by": None, "labels": [],
                     "milestone": None, "assignees": [], "assignee": None, "author": self.user_ref(author),
                     "type": "ISSUE", "issue_type": "issue", "confidential": False, "discussion_locked": None,
                     "user_notes_count": 0, "merge_requests_count": 0, "upvotes": 0, "downvotes": 0,
                     "due_date": None, "references": {"short": f"#{iid}", "relative": f"#{iid}",
                                                      "full": f"{path}#{iid}"},
                     "web_url": f"http://gitlab.example/{path}/-/issues/{iid}"}
            project.issues[iid] = issue
            return issue

    def label_issue(self, path: str, iid: int, label: str, username: str, *, remove: bool = False) -> None:
        """`username` adds (or removes) a label on an issue, and GitLab records a resource label event."""
        with self.lock:
            project = self.projects[path]
            labels = project.issues[iid]["labels"]
            if remove and label in labels:
                labels.remove(label)
            elif not remove and label not in labels:
                labels.append(label)
            project.issues[iid]["updated_at"] = iso(self.now())
            self._label_event(project, "issues", iid, label, "remove" if remove else "add", username)

    def close_issue(self, path: str, iid: int, username: str) -> None:
        with self.lock:
            issue = self.projects[path].issues[iid]
            at = iso(self.now())
            issue.update(state="closed", closed_at=at, updated_at=at, closed_by=self.user_ref(username))

    def add_status_check(self, path: str, name: str) -> dict[str, Any]:
        with self.lock:
            check = {"id": self.next_id(), "name": name, "project_id": self.projects[path].id,
                     "external_url": "https://checks.example/hook", "hmac": False, "protected_branches": []}
            self.projects[path].status_checks.append(check)
            return check

    def add_token(self, username: str, token: str | None = None, scopes: list[str] | None = None, *,
                  bot: bool = False) -> str:
        """A personal (or service account) access token for `username`; `scopes` None: every scope."""
        with self.lock:
            self.add_user(username, bot=bot)
            token = token or "glpat-" + secrets.token_urlsafe(15)[:20]
            self.tokens[token] = username
            if scopes is not None:
                self.token_scopes[token] = list(scopes)
            return token

    # ---- project access tokens
    def today(self) -> date:
        return datetime.fromtimestamp(self.now(), UTC).date()

    def token_record(self, token: str) -> dict[str, Any] | None:
        with self.lock:
            return next((t for t in self.access_tokens.values() if t["_token"] == token), None)

    def token_alive(self, token: str) -> bool:
        """Known, not revoked, and before 00:00 UTC of its expiry date (GitLab's clock)."""
        with self.lock:
            if token not in self.tokens:
                return False
            record = self.token_record(token)
            if record is None:
                return True
            return not record["revoked"] and (record["expires_at"] is None
                                              or date.fromisoformat(record["expires_at"]) > self.today())

    def mint_access_token(self, project: Project, name: str, scopes: list[str], access_level: int,
                          expires_at: str | None, *, bot_user: str | None = None,
                          family: int | None = None) -> dict[str, Any]:
        """A project access token: a new bot user, member of the project only (or `bot_user`, rotated)."""
        with self.lock:
            if bot_user is None:
                bot_user = f"project_{project.id}_bot_{secrets.token_hex(16)}"
                self.add_user(bot_user, bot=True, name=name)
                project.members[bot_user] = access_level
            token = "glpat-" + secrets.token_urlsafe(15)[:20]
            ident = self.next_id()
            record = {"id": ident, "name": name, "revoked": False, "created_at": iso(self.now()),
                      "description": None, "scopes": list(scopes), "user_id": self.users[bot_user]["id"],
                      "last_used_at": None, "active": True, "expires_at": expires_at,
                      "access_level": access_level, "_token": token, "_project": project.path,
                      "_user": bot_user, "_family": family if family is not None else ident}
            self.access_tokens[ident] = record
            self.tokens[token] = bot_user
            self.token_scopes[token] = list(scopes)
            return record

    def revoke_access_token(self, record: dict[str, Any], *, remove_bot: bool = True) -> None:
        """Revoked: the token stops working; revoking (not rotating) also removes the bot from the project."""
        with self.lock:
            record["revoked"], record["active"] = True, False
            self.tokens.pop(record["_token"], None)
            if remove_bot:
                project = self.projects.get(record["_project"])
                if project is not None:
                    project.members.pop(record["_user"], None)

    def public_token(self, record: dict[str, Any], *, with_token: bool = False) -> dict[str, Any]:
        """GitLab's `ResourceAccessToken` entity (`...WithToken`: plus `token`, only when created or rotated)."""
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        if with_token:
            out["token"] = record["_token"]
        return out

    # ---- what tests read
    def statuses(self, path: str, sha: str, name: str | None = None) -> list[dict[str, Any]]:
        """Commit statuses on `sha`, oldest first (every one GitLab kept, not every request)."""
        with self.lock:
            return [dict(s) for s in self.projects[path].statuses
                    if s["sha"] == sha and (name is None or s["name"] == name)]

    def labels(self, path: str, iid: int) -> list[str]:
        with self.lock:
            return list(self.projects[path].mrs[iid]["labels"])
