"""In-memory state of the fake GitHub, plus the seeding helpers tests use.

Objects are stored in (a subset of) GitHub's own JSON shape, minus anything that depends on the
host the fake is reached at (``url``, ``*_url``, ``_links``): those are filled in by ``render`` at
response time, so a client that follows URLs from responses (PyGithub does) stays on the fake.
Anything a seed leaves out is defaulted by ``render`` too, so a partial dict posted to
``/_fake/state`` still yields a complete GitHub-shaped response.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

AuthKind = Literal["jwt", "installation", "none"]

#: What an installation is granted when a test does not say: enough for everything the fake serves.
DEFAULT_INSTALLATION_PERMISSIONS: dict[str, str] = {
    "metadata": "read",
    "contents": "read",
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
    "checks": "write",
    "actions": "read",
    "deployments": "write",
}
ACCESS_LEVELS = {"read": 1, "write": 2, "admin": 3}
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")
FILE_STATUSES = ("added", "removed", "modified", "renamed", "copied", "changed", "unchanged")
_ALNUM = string.ascii_letters + string.digits
TOKEN_LIFETIME = 3600  # GitHub: installation tokens expire one hour after creation
LONG_TOKEN_LENGTH = 520  # the longest GitHub says its new installation tokens get

# Repo fields keyed by issue/PR number (or check-run / workflow-run id). JSON object keys are
# strings, so /_fake/state merges convert them back to int.
_INT_KEYED = {"pulls", "files", "reviews", "commits", "issues", "comments", "labels", "events",
              "timeline", "check_runs", "workflow_runs"}


def iso(ts: float) -> str:
    """GitHub timestamps: ISO 8601, UTC, second precision, ``Z`` suffix."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_sha(*parts: object) -> str:
    """A deterministic 40-hex 'commit sha' for seeds that do not care about the value."""
    return hashlib.sha1("/".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def stable_id(text: str) -> int:
    """Deterministic numeric id (for users etc.) so repeated runs produce the same payloads."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 90_000_000 + 1_000_000


def who(user: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise a user given as a login or a partial dict; ``x[bot]`` logins are Bots like on GitHub."""
    if user is None:
        return None
    if isinstance(user, str):
        user = {"login": user}
    out = dict(user)
    out.setdefault("type", "Bot" if out["login"].endswith("[bot]") else "User")
    out.setdefault("id", stable_id(out["login"]))
    return out


@dataclass
class Call:
    """One API request the fake received (control routes under /_fake/ are not recorded)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: AuthKind
    status: int | None = None  # filled in once the response is known
    at: float = 0.0  # when it arrived, by the fake's clock


@dataclass
class Fault:
    """A failure injected into matching API calls (method, and a path regex that must match fully).

    ``status``: answer that error instead (GitHub-shaped, with ``headers``); ``delay``: wait that long
    first (longer than the client's timeout is a timeout); ``hold``: apply the call, then keep the answer
    until the event is set (a client killed meanwhile never learns the outcome). ``times``: how many
    matching calls it hits (None: all)."""

    method: str
    path: str
    status: int | None = None
    message: str = "Server Error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: threading.Event | None = None
    times: int | None = None
    hits: int = 0
    held: threading.Event = field(default_factory=threading.Event)  # set once a call is being held

    def matches(self, method: str, path: str) -> bool:
        return ((self.times is None or self.hits < self.times) and method == self.method.upper()
                and re.fullmatch(self.path, path) is not None)


@dataclass
class Token:
    token: str
    installation_id: int
    repositories: list[str]  # full names
    permissions: dict[str, str]
    expires_at: float
    revoked: bool = False


@dataclass
class Repo:
    full_name: str
    id: int
    default_branch: str = "main"
    private: bool = True
    owner_type: str = "Organization"
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    files: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    commits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    contents: dict[str, dict[str, str]] = field(default_factory=dict)  # ref -> path -> text
    permissions: dict[str, str] = field(default_factory=dict)  # login -> role (see ROLES)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # plain issues; PRs live in pulls
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # issue number -> comments
    labels: dict[int, list[str]] = field(default_factory=dict)  # issue/PR number -> label names
    events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    timeline: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> oldest first
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    workflow_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Bodies POSTed to .../actions/runs/{run_id}/deployment_protection_rule (plus run_id).
    protection_rule_callbacks: list[dict[str, Any]] = field(default_factory=list)
    extra_shas: set[str] = field(default_factory=set)  # commits that exist outside any PR
    branches: dict[str, str] = field(default_factory=dict)  # branch -> head sha, beyond PR heads/bases
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> the commit it points at

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def has_issue(self, number: int) -> bool:
        return number in self.pulls or number in self.issues

    def next_number(self) -> int:
        return max([0, *self.pulls, *self.issues]) + 1

    def known_shas(self) -> set[str]:
        """Commits GitHub would know about: PR heads/bases, PR commits, runs, content refs."""
        shas = set(self.extra_shas) | set(self.branches.values()) | set(self.tags.values())
        for pr in self.pulls.values():
            shas.update(pr.get(side, {}).get("sha", "") for side in ("head", "base"))
            shas.add(pr.get("merge_commit_sha") or "")  # a merged PR's merge commit exists too
        shas.update(c["sha"] for cs in self.commits.values() for c in cs)
        shas.update(r.get("head_sha", "") for r in self.workflow_runs.values())
        shas.update(ref for ref in self.contents if re.fullmatch(r"[0-9a-f]{40}", ref))
        shas.discard("")
        return shas

    def resolve_ref(self, ref: str) -> str | None:
        """Branch name or sha -> sha, using PR heads/bases as the branch table."""
        if ref in self.known_shas():
            return ref
        if ref in self.branches:
            return self.branches[ref]
        for pr in sorted(self.pulls.values(), key=lambda p: -p["number"]):
            for side in ("head", "base"):
                if pr.get(side, {}).get("ref") == ref:
                    return pr[side]["sha"]
        return None

    def find_comment(self, comment_id: int) -> tuple[int, dict[str, Any]] | None:
        for number, comments in self.comments.items():
            for c in comments:
                if c["id"] == comment_id:
                    return number, c
        return None


@dataclass
class FakeState:
    """Everything the fake knows. All access from request handlers happens under ``lock``."""

    app_id: int = 1
    public_key_pem: str | None = None
    app_slug: str = "agentgate"
    # Other Apps GitHub knows (e.g. the App agentgate mints agent tokens from): id -> (public key, slug).
    other_apps: dict[int, tuple[str, str]] = field(default_factory=dict)
    installations: dict[int, dict[str, Any]] = field(default_factory=dict)
    repos: dict[str, Repo] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    clock_offset: float = 0.0  # seconds added to wall time: lets tests expire tokens without sleeping
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000), repr=False)
    # -- faults (see Fault) and rate limits: every API call before `rate_limited_until` is refused
    faults: list[Fault] = field(default_factory=list)
    rate_limited_until: float = 0.0
    rate_limit_status: int = 403  # 403: primary limit spent (X-RateLimit-Reset); 429: Retry-After
    # -- the App's webhook: the fake sends deliveries to `hook_url` signed with `hook_secret` and keeps
    # GitHub's delivery log (`GET /app/hook/deliveries`, served when `hook_log` is on).
    hook_log: bool = False
    hook_url: str | None = None
    hook_secret: str = ""
    hook_deliveries: list[dict[str, Any]] = field(default_factory=list)
    # GitHub's installation tokens are growing (`ghs_...`, up to about 520 characters): with this on the
    # fake mints them that long, so clients are shown to treat tokens as opaque strings.
    long_tokens: bool = False

    def __post_init__(self) -> None:
        # Notified on every call and delivery, so tests wait for what they expect instead of sleeping.
        self.changed = threading.Condition(self.lock)

    # -- basics ------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    def next_id(self) -> int:
        return next(self._ids)

    @property
    def bot(self) -> dict[str, Any]:
        """The App's bot user: author of everything written with an installation token."""
        return who({"login": f"{self.app_slug}[bot]", "type": "Bot"}) or {}

    def repo(self, full_name: str) -> Repo:
        found = self.find_repo(full_name)
        if found is None:
            raise KeyError(full_name)
        return found

    def find_repo(self, full_name: str) -> Repo | None:
        # Owner and repo names are case-insensitive on GitHub.
        wanted = full_name.casefold()
        return next((r for name, r in self.repos.items() if name.casefold() == wanted), None)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds (checked after every call and delivery), at most `timeout` s."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def rate_limit(self, seconds: float, status: int = 403) -> float:
        """Refuse every API call for `seconds` (by the fake's clock) as GitHub's rate limit does; returns
        when it resets."""
        with self.lock:
            self.rate_limited_until = self.now() + seconds
            self.rate_limit_status = status
            return self.rate_limited_until

    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
            return fault

    def fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
            return fault

    # -- the App's webhook, sent the way GitHub sends it
    def send_webhook(self, event: str, payload: dict[str, Any], *, guid: str | None = None,
                     redelivery: bool = False) -> dict[str, Any]:
        """POST one delivery to `hook_url` and log the attempt like GitHub's delivery log does."""
        import requests  # only the webhook sender needs a client

        guid = guid or str(uuid.uuid4())
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.hook_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "X-Hub-Signature-256": signature,
                   "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/fake",
                   "X-GitHub-Hook-ID": "1", "X-GitHub-Hook-Installation-Target-Type": "integration",
                   "X-GitHub-Hook-Installation-Target-ID": str(self.app_id)}
        started = time.monotonic()
        try:
            if not self.hook_url:
                raise requests.ConnectionError("no webhook URL")
            resp = requests.post(self.hook_url, data=body, headers=headers, timeout=10)
            code = resp.status_code
            status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
        except requests.Timeout:
            code, status = 0, "timed out"
        except requests.RequestException:
            code, status = 0, "failed to connect"
        with self.lock:
            record = {"id": self.next_id(), "guid": guid, "delivered_at": iso(self.now()), "redelivery": redelivery,
                      "duration": round(time.monotonic() - started, 3), "status": status, "status_code": code,
                      "event": event, "action": payload.get("action"),
                      "installation_id": (payload.get("installation") or {}).get("id"),
                      "repository_id": (payload.get("repository") or {}).get("id"), "throttled_at": None,
                      "url": self.hook_url or "", "_payload": payload}
            self.hook_deliveries.append(record)
            self.changed.notify_all()
        return record

    def redeliver(self, delivery_id: int) -> bool:
        """Send a logged delivery again (as GitHub does after `POST .../attempts`), in the background."""
        with self.lock:
            found = next((d for d in self.hook_deliveries if d["id"] == delivery_id), None)
        if found is None:
            return False
        threading.Thread(target=self.send_webhook, args=(found["event"], found["_payload"]),
                         kwargs={"guid": found["guid"], "redelivery": True}, daemon=True).start()
        return True

    def calls_matching(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method whose path fully matches ``path_regex``."""
        with self.lock:
            return [c for c in self.calls
                    if c.method == method.upper() and re.fullmatch(path_regex, c.path)]

    # -- seeding helpers ---------------------------------------------------------------------
    def add_installation(self, installation_id: int, account: str, repositories: Iterable[str],
                         permissions: dict[str, str] | None = None,
                         repository_selection: str = "selected", app_id: int | None = None) -> dict[str, Any]:
        with self.lock:
            repos = list(repositories)
            for full_name in repos:
                self.add_repo(full_name)
            inst = {"account": account, "repositories": repos,
                    # GitHub grants every installation metadata:read, whatever else it chose.
                    "permissions": {"metadata": "read",
                                    **(permissions or DEFAULT_INSTALLATION_PERMISSIONS)},
                    "repository_selection": repository_selection, "app_id": int(app_id or self.app_id)}
            self.installations[int(installation_id)] = inst
            return inst

    def add_repo(self, full_name: str, *, id: int | None = None, default_branch: str = "main",
                 private: bool = True, owner_type: str = "Organization") -> Repo:
        """Create a repo (or return the existing one unchanged)."""
        with self.lock:
            existing = self.find_repo(full_name)
            if existing is not None:
                return existing
            repo = Repo(full_name=full_name, id=id or self.next_id(), default_branch=default_branch,
                        private=private, owner_type=owner_type)
            self.repos[full_name] = repo
            return repo

    def add_pull(self, repo: str, number: int | None = None, *, title: str = "Change",
                 body: str | None = "", user: str | dict[str, Any] = "octocat", state: str = "open",
                 draft: bool = False, head_ref: str = "feature", head_sha: str | None = None,
                 base_ref: str | None = None, base_sha: str | None = None,
                 head_repo: str | None = None, labels: Iterable[str] = (), merged: bool = False,
                 **extra: Any) -> dict[str, Any]:
        """Add a pull request. ``head_repo`` names a fork; ``extra`` keys override rendered fields."""
        with self.lock:
            r = self.add_repo(repo)
            number = number or r.next_number()
            now = iso(self.now())
            pr: dict[str, Any] = {
                "number": number, "id": self.next_id(), "state": state, "draft": draft,
                "title": title, "body": body, "user": who(user),
                "head": {"ref": head_ref, "sha": head_sha or fake_sha(repo, number, "head"),
                         "repo": {"full_name": head_repo or r.full_name}},
                "base": {"ref": base_ref or r.default_branch,
                         "sha": base_sha or fake_sha(repo, number, "base"),
                         "repo": {"full_name": r.full_name}},
                "merged": merged, "created_at": now, "updated_at": now,
                "closed_at": now if state == "closed" else None,
                "merged_at": now if merged else None, **extra,
            }
            r.pulls[number] = pr
            r.labels[number] = list(labels)
            return pr

    def add_issue(self, repo: str, number: int | None = None, *, title: str = "Issue",
                  body: str | None = "", user: str | dict[str, Any] = "octocat", state: str = "open",
                  labels: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
        with self.lock:
            r = self.add_repo(repo)
            number = number or r.next_number()
            now = iso(self.now())
            issue = {"number": number, "id": self.next_id(), "title": title, "body": body,
                     "user": who(user), "state": state, "created_at": now, "updated_at": now,
                     "closed_at": now if state == "closed" else None, **extra}
            r.issues[number] = issue
            r.labels[number] = list(labels)
            return issue

    def add_file(self, repo: str, number: int, filename: str, *, status: str = "modified",
                 additions: int = 1, deletions: int = 0, previous_filename: str | None = None,
                 patch: str | None = None, **extra: Any) -> dict[str, Any]:
        if status not in FILE_STATUSES:
            raise ValueError(f"file status must be one of {FILE_STATUSES}")
        with self.lock:
            f: dict[str, Any] = {"filename": filename, "status": status, "additions": additions,
                                 "deletions": deletions, "changes": additions + deletions, **extra}
            if previous_filename is not None:  # GitHub only sends the key for renames
                f["previous_filename"] = previous_filename
            if patch is not None:
                f["patch"] = patch
            self.repo(repo).files.setdefault(number, []).append(f)
            return f

    def add_review(self, repo: str, number: int, user: str | dict[str, Any], state: str, *,
                   commit_id: str | None = None, body: str = "", submitted_at: str | None = None,
                   id: int | None = None, **extra: Any) -> dict[str, Any]:
        if state not in REVIEW_STATES:
            raise ValueError(f"review state must be one of {REVIEW_STATES}")
        with self.lock:
            r = self.repo(repo)
            review = {"id": id or self.next_id(), "user": who(user), "body": body, "state": state,
                      "commit_id": commit_id or r.pulls[number]["head"]["sha"],
                      "submitted_at": None if state == "PENDING" else submitted_at or iso(self.now()),
                      **extra}
            r.reviews.setdefault(number, []).append(review)
            return review

    def add_commit(self, repo: str, number: int, sha: str | None = None, *, message: str = "Change",
                   author: str | dict[str, Any] | None = "octocat",
                   committer: str | dict[str, Any] | None = None,
                   author_name: str | None = None, author_email: str | None = None,
                   committer_name: str | None = None, committer_email: str | None = None,
                   parents: Iterable[str] | None = None, **extra: Any) -> dict[str, Any]:
        """Append a commit to a PR. ``author``/``committer`` are GitHub accounts (None = the email
        is not linked to any account, which GitHub reports as ``null``); the ``*_name``/``*_email``
        are the git identity."""
        with self.lock:
            r = self.repo(repo)
            existing = r.commits.setdefault(number, [])
            sha = sha or fake_sha(repo, number, "commit", len(existing))
            a, c = who(author), who(committer if committer is not None else author)
            date = iso(self.now())
            git_author = {"name": author_name or (a or {}).get("login", "someone"),
                          "email": author_email or f"{(a or {}).get('login', 'someone')}@example.com",
                          "date": date}
            git_committer = {"name": committer_name or git_author["name"],
                             "email": committer_email or git_author["email"], "date": date}
            parent_shas = list(parents) if parents is not None else (
                [existing[-1]["sha"]] if existing else [r.pulls[number]["base"]["sha"]])
            commit = {"sha": sha, "commit": {"message": message, "author": git_author,
                                             "committer": git_committer},
                      "author": a, "committer": c, "parents": [{"sha": p} for p in parent_shas], **extra}
            existing.append(commit)
            return commit

    def set_content(self, repo: str, path: str, text: str, ref: str | None = None) -> None:
        """File contents at ``ref`` (default: the repo's default branch)."""
        with self.lock:
            r = self.repo(repo)
            r.contents.setdefault(ref or r.default_branch, {})[path.strip("/")] = text

    def set_permission(self, repo: str, login: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.lock:
            self.repo(repo).permissions[login] = role

    def set_labels(self, repo: str, number: int, names: Iterable[str]) -> None:
        with self.lock:
            self.repo(repo).labels[number] = list(names)

    def add_comment(self, repo: str, number: int, body: str,
                    user: str | dict[str, Any] = "octocat", **extra: Any) -> dict[str, Any]:
        with self.lock:
            now = iso(self.now())
            comment = {"id": self.next_id(), "body": body, "user": who(user), "created_at": now,
                       "updated_at": now, **extra}
            self.repo(repo).comments.setdefault(number, []).append(comment)
            return comment

    def add_status(self, repo: str, sha: str, state: str, context: str = "default",
                   description: str | None = None, target_url: str | None = None,
                   creator: str | dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            now = iso(self.now())
            status = {"id": self.next_id(), "state": state, "description": description,
                      "target_url": target_url, "context": context, "created_at": now,
                      "updated_at": now, "creator": who(creator) if creator else self.bot}
            self.repo(repo).statuses.setdefault(sha, []).append(status)
            return status

    def add_event(self, repo: str, number: int, event: dict[str, Any], *, timeline: bool = True) -> None:
        """Seed an issue event (also shown in the timeline unless ``timeline=False``)."""
        with self.lock:
            r = self.repo(repo)
            event = {"id": self.next_id(), "created_at": iso(self.now()), **event}
            r.events.setdefault(number, []).append(event)
            if timeline:
                r.timeline.setdefault(number, []).append(event)

    def add_workflow_run(self, repo: str, run_id: int | None = None, *, head_sha: str | None = None,
                         head_branch: str = "main", event: str = "push", status: str = "waiting",
                         conclusion: str | None = None, name: str = "deploy",
                         actor: str | dict[str, Any] = "octocat", pull_requests: Iterable[int] = (),
                         **extra: Any) -> dict[str, Any]:
        with self.lock:
            r = self.repo(repo)
            run_id = run_id or self.next_id()
            now = iso(self.now())
            run = {"id": run_id, "name": name, "head_branch": head_branch,
                   "head_sha": head_sha or fake_sha(repo, "run", run_id), "event": event,
                   "status": status, "conclusion": conclusion, "actor": who(actor),
                   "pull_requests": list(pull_requests), "created_at": now, "updated_at": now, **extra}
            r.workflow_runs[run_id] = run
            return run

    def add_check_run(self, repo: str, name: str, head_sha: str, *, status: str = "queued",
                      conclusion: str | None = None, **extra: Any) -> dict[str, Any]:
        with self.lock:
            run = {"id": self.next_id(), "name": name, "head_sha": head_sha, "status": status,
                   "conclusion": conclusion, "started_at": iso(self.now()), **extra}
            self.repo(repo).check_runs[run["id"]] = run
            return run

    def issue_token(self, installation_id: int, repositories: Iterable[str] | None = None,
                    permissions: dict[str, str] | None = None) -> Token:
        """Mint an installation token directly (what the access_tokens route does after checks)."""
        with self.lock:
            inst = self.installations[int(installation_id)]
            # Same length as classic installation tokens (40 chars) unless `long_tokens` says otherwise.
            length = LONG_TOKEN_LENGTH if self.long_tokens else 40
            tok = Token(token="ghs_" + "".join(secrets.choice(_ALNUM) for _ in range(length - 4)),
                        installation_id=int(installation_id),
                        repositories=list(repositories if repositories is not None else inst["repositories"]),
                        permissions=dict(permissions or inst["permissions"]),
                        expires_at=self.now() + TOKEN_LIFETIME)
            self.tokens[tok.token] = tok
            return tok

    # -- control API ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything except the App's identity (id, key, slug)."""
        with self.lock:
            self.installations.clear()
            self.repos.clear()
            self.tokens.clear()
            self.calls.clear()
            self.clock_offset = 0.0
            self.faults.clear()
            self.rate_limited_until = 0.0
            self.hook_deliveries.clear()

    #: Seeding helpers callable through ``{"ops": [{"op": name, "args": {...}}]}``.
    SEED_OPS = ("add_installation", "add_repo", "add_pull", "add_issue", "add_file", "add_review",
                "add_commit", "set_content", "set_permission", "set_labels", "add_comment",
                "add_status", "add_event", "add_workflow_run", "add_check_run")

    def merge(self, data: dict[str, Any]) -> None:
        """Merge JSON into the state (the body of ``POST /_fake/state``).

        Top level: ``app_id``, ``app_slug``, ``public_key_pem``, ``clock_offset``, ``long_tokens``,
        ``installations`` {id: {...}}, ``repos`` {full_name: {field: value}} and ``ops`` (a list of
        seeding-helper calls, run last). Dicts merge recursively; lists and scalars replace.
        """
        with self.lock:
            for key in ("app_id", "app_slug", "public_key_pem", "clock_offset", "long_tokens"):
                if key in data:
                    setattr(self, key, data[key])
            for inst_id, inst in data.get("installations", {}).items():
                self.add_installation(int(inst_id), inst["account"], inst.get("repositories", []),
                                      inst.get("permissions"), inst.get("repository_selection", "selected"))
            for full_name, patch in data.get("repos", {}).items():
                repo = self.add_repo(full_name, id=patch.get("id"))
                for f in fields(Repo):
                    if f.name not in patch or f.name == "full_name":
                        continue
                    value = patch[f.name]
                    if f.name in _INT_KEYED:
                        value = {int(k): v for k, v in value.items()}
                    if f.name == "extra_shas":
                        value = set(value)
                    current = getattr(repo, f.name)
                    setattr(repo, f.name, _deep_merge(current, value) if isinstance(current, dict)
                            else value)
                for number, pr in repo.pulls.items():  # labels have one home: repo.labels
                    if "labels" in pr:
                        repo.labels[number] = [lb if isinstance(lb, str) else lb["name"]
                                               for lb in pr.pop("labels")]
            for op in data.get("ops", []):
                if op["op"] not in self.SEED_OPS:
                    raise ValueError(f"unknown op {op['op']!r}")
                getattr(self, op["op"])(**op.get("args", {}))

    def snapshot(self) -> dict[str, Any]:
        """JSON-able dump of the state (``GET /_fake/state``)."""
        with self.lock:
            repos = {}
            for name, r in self.repos.items():
                d = {f.name: getattr(r, f.name) for f in fields(Repo)}
                d["extra_shas"] = sorted(r.extra_shas)
                repos[name] = d
            return {"app_id": self.app_id, "app_slug": self.app_slug, "clock_offset": self.clock_offset,
                    "installations": self.installations, "repos": repos,
                    "tokens": {t.token: {f.name: getattr(t, f.name) for f in fields(Token)}
                               for t in self.tokens.values()}}


def _deep_merge(base: dict[Any, Any], patch: dict[Any, Any]) -> dict[Any, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
