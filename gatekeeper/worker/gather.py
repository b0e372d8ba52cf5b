"""Gather the facts a pull request's verdict depends on, through a forge. All I/O for a decision is here."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import redis

from gatekeeper.core.facts import ChangedFile, Commit, LabelApplied, PullRequestFacts, Review, TaskRef
from gatekeeper.core.identity import classify_github_user
from gatekeeper.forges.port import FileTooLarge, Forge, ForgeError, PullRequestInfo
from gatekeeper.policy import POLICY_PATH, InvalidPolicy, Policy, load_policy
from gatekeeper.policy.load import org_refs
from gatekeeper.policy.model import ConfigError
from gatekeeper.state.store import key
from gatekeeper.state.store import text as store_text

POLICY_CACHE_SECONDS = 24 * 3600
PERMISSION_CACHE_SECONDS = 120  # short: a revoked write permission must stop counting soon
_ABSENT = "\x00absent"


# Organisation files live in a repository of the same owner; a name is a plain repository name, so a
# policy (perhaps a proposed one, in a preview) cannot steer agentgate to read anything else.
_ORG_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
ORG_POLICY_CACHE_SECONDS = 300  # an org file is not pinned to a commit: re-read it every few minutes


def _cached_file(conn: redis.Redis, cache: str, ttl: int, read: Callable[[], str | None]) -> str | None:
    """A file's text (None when absent) through the shared cache; absence is cached too."""
    cached = conn.get(cache)
    if cached is not None:
        value = store_text(cached)
    else:
        found = read()
        value = _ABSENT if found is None else found
        conn.set(cache, value, ex=ttl)
    return None if value == _ABSENT else value


def policy_at(conn: redis.Redis, forge: Forge, sha: str) -> Policy | InvalidPolicy:
    """The policy file at a base-branch commit; a commit never changes, so its text is cached."""
    try:
        text = _cached_file(conn, key("policy", forge.repo, sha), POLICY_CACHE_SECONDS,
                            lambda: forge.get_file(POLICY_PATH, sha))
    except FileTooLarge:
        return InvalidPolicy((ConfigError(POLICY_PATH, 1, 1, "file is too large"),))
    return policy_from_text(conn, forge, text, POLICY_PATH)


def policy_for_pull(conn: redis.Redis, forge: Forge, pr: PullRequestInfo) -> Policy | InvalidPolicy:
    """The policy at the base branch's current head: a policy tightened on main applies to open PRs at
    once (the PR's own `base.sha` only moves when the PR is updated)."""
    return policy_at(conn, forge, forge.branch_sha(pr.base_ref) or pr.base_sha)


def policy_from_text(conn: redis.Redis, forge: Forge, text: str | None, source: str) -> Policy | InvalidPolicy:
    """Load a policy, fetching the organisation files it extends (`extends: org:.github`)."""
    owner = forge.repo.split("/", 1)[0]
    fetched: dict[str, str | None] = {}
    for ref in org_refs(text):
        name = ref.removeprefix("org:")
        if not _ORG_REPO.fullmatch(name):
            continue  # not fetched: loading reports it, and no token is minted for an odd name
        full_name = f"{owner}/{name}"
        try:
            fetched[ref] = _cached_file(conn, key("org-policy", full_name), ORG_POLICY_CACHE_SECONDS,
                                        partial(forge.get_repo_file, full_name, POLICY_PATH))
        except FileTooLarge:
            fetched[ref] = None  # loading reports the org file as missing: the policy is invalid
    return load_policy(text, source=source, extends=fetched)


def permission(conn: redis.Redis, forge: Forge, login: str) -> str:
    cache = key("perm", forge.repo, login.lower())
    cached = conn.get(cache)
    if cached is not None:
        return store_text(cached)
    level = forge.get_permission(login)
    conn.set(cache, level, ex=PERMISSION_CACHE_SECONDS)
    return level


_CLOSING_REF = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d{1,9})\b", re.IGNORECASE)
_COAUTHOR = re.compile(r"^co-authored-by:.*<(?:\d+\+)?([A-Za-z0-9-]+)@users\.noreply\.github\.com>",
                       re.IGNORECASE | re.MULTILINE)


def task_numbers(body: str) -> list[int]:
    """Issues a PR says it resolves ("Fixes #12"), in order, without repeats."""
    return list(dict.fromkeys(int(n) for n in _CLOSING_REF.findall(body or "")))[:10]


def requester_key(repo: str, number: int) -> str:
    return key("requesters", repo, number)


def remember_requester(conn: redis.Redis, repo: str, number: int, login: str) -> None:
    """Record the human who set an agent on an issue or PR (assigned it, mentioned it)."""
    conn.sadd(requester_key(repo, number), login)
    conn.expire(requester_key(repo, number), 180 * 24 * 3600)


def remember_task_pull(conn: redis.Redis, repo: str, task: int, pull: int) -> None:
    """Index PRs by the issues they resolve, so a change to the task re-evaluates them."""
    conn.sadd(key("task-pulls", repo, task), pull)
    conn.expire(key("task-pulls", repo, task), 180 * 24 * 3600)


def task_pulls(conn: redis.Redis, repo: str, task: int) -> list[int]:
    return sorted(int(store_text(n)) for n in conn.smembers(key("task-pulls", repo, task)))


ISSUE_EVENTS_CACHE_SECONDS = 60


def issue_events(conn: redis.Redis, forge: Forge, number: int) -> list[dict[str, Any]]:
    """An issue's events, shared briefly by the evaluations of the PRs that resolve it."""
    text = _cached_file(conn, key("issue-events", forge.repo, number), ISSUE_EVENTS_CACHE_SECONDS,
                        lambda: json.dumps(forge.issue_events(number)))
    return list(json.loads(text or "[]"))


def forget_issue_events(conn: redis.Redis, repo: str, number: int) -> None:
    """A delivery said the issue changed: its cached history is stale."""
    conn.delete(key("issue-events", repo, number))


def requesters(conn: redis.Redis, forge: Forge, number: int, tasks: list[int], commits: list[Commit],
               agents: tuple[str, ...]) -> tuple[str, ...]:
    """Who set the agent on this work: recorded from deliveries (assignments, @-mentions), read again
    from the resolved issues' assignment history (so a lost delivery does not lose them), and the
    humans credited as co-authors of an agent's commits."""
    found: set[str] = set()
    for n in [number, *tasks]:
        found |= {store_text(m) for m in conn.smembers(requester_key(forge.repo, n))}
    for n in tasks[:3]:
        for event in issue_events(conn, forge, n):
            assignee, assigner = event.get("assignee") or {}, event.get("assigner") or event.get("actor") or {}
            if event.get("event") == "assigned" and assigner.get("login") and \
                    classify_github_user(assignee, agents=agents).kind.is_automated and \
                    not classify_github_user(assigner, agents=agents).kind.is_automated:
                found.add(str(assigner["login"]))
    for commit in commits:
        # A human credited as co-author of an agent's commit steered that commit.
        if commit.author and commit.author.kind.is_automated:
            found |= set(_COAUTHOR.findall(commit.message))
    return tuple(sorted(found))


def tasks_for(conn: redis.Redis, forge: Forge, numbers: list[int], agents: tuple[str, ...],
              bots: tuple[str, ...]) -> tuple[TaskRef, ...]:
    refs = []
    for n in numbers:
        issue = forge.get_issue(n)
        if issue is None or issue.get("pull_request"):
            continue  # only issues are tasks
        labels = tuple(label["name"] for label in issue.get("labels") or [])
        applied = []
        latest: dict[str, dict[str, Any]] = {}
        for event in issue_events(conn, forge, n):
            if event.get("event") == "labeled":
                latest[(event.get("label") or {}).get("name", "")] = event.get("actor") or {}
        for label in labels:
            applier = latest.get(label)
            if applier:
                who = classify_github_user(applier, agents=agents, bots=bots)
                level = permission(conn, forge, who.login) if not who.kind.is_automated else "none"
                applied.append(LabelApplied(label, who, level))
        refs.append(TaskRef(n, issue.get("state", "open"), labels, tuple(applied),
                            tuple(a["login"] for a in issue.get("assignees") or [])))
    return tuple(refs)


COMMITS_CAP = 250  # GitHub lists at most 250 commits of a pull request


class HeadMoved(ForgeError):
    """The pull request got new commits while its facts were read; a newer evaluation will follow."""


def via_app(conn: redis.Redis, forge: Forge, number: int) -> str | None:
    """The app a pull request was opened through on a user's behalf (fixed at creation, so cached)."""
    def read() -> str | None:
        issue = forge.get_issue(number) or {}
        app = issue.get("performed_via_github_app") or {}
        return str(app.get("slug") or app.get("name") or "")

    return _cached_file(conn, key("via-app", forge.repo, number), 30 * 24 * 3600, read) or None


def _app(slug: str | None) -> dict[str, str] | None:
    return {"slug": slug} if slug else None


def pull_request_facts(
    conn: redis.Redis, forge: Forge, pr: PullRequestInfo, policy: Policy | InvalidPolicy
) -> PullRequestFacts:
    agents = policy.agents if isinstance(policy, Policy) else ()
    bots = policy.bots if isinstance(policy, Policy) else ()

    def who(user: dict | None):  # type: ignore[no-untyped-def,type-arg]
        return classify_github_user(user, agents=agents, bots=bots) if user else None

    files, complete = forge.list_changed_files(pr.number)
    if pr.changed_files is not None and len(files) < pr.changed_files:
        complete = False
    raw_reviews = forge.list_reviews(pr.number)
    commits = forge.list_commits(pr.number)
    if commits and commits[-1].sha != pr.head_sha:
        raise HeadMoved(f"head moved from {pr.head_sha[:7]} to {commits[-1].sha[:7]} while reading facts")
    reviews = []
    for raw in raw_reviews:
        reviewer = classify_github_user(raw.user, agents=agents, bots=bots)
        # Only reviews that could count need the reviewer's permission: skip bots and plain comments.
        needs_level = raw.state in ("APPROVED", "CHANGES_REQUESTED") and not reviewer.kind.is_automated
        level = permission(conn, forge, reviewer.login) if needs_level else "none"
        reviews.append(Review(reviewer, raw.state, raw.commit_id, level, raw.submitted_at, raw.id))
    commit_facts = [Commit(c.sha, c.message, who(c.author), who(c.committer)) for c in commits]
    numbers = task_numbers(pr.body)
    want_tasks = isinstance(policy, Policy) and policy.task.required
    return PullRequestFacts(
        repo=forge.repo,
        number=pr.number,
        author=classify_github_user(pr.author, agents=agents, bots=bots,
                                    via_app=_app(via_app(conn, forge, pr.number))),
        head_sha=pr.head_sha,
        head_ref=pr.head_ref,
        base_ref=pr.base_ref,
        base_sha=pr.base_sha,
        default_branch=pr.default_branch,
        head_repo=pr.head_repo,
        state=pr.state,
        draft=pr.draft,
        title=pr.title,
        body=pr.body,
        labels=pr.labels,
        changed_files=tuple(ChangedFile(f.filename, f.status, f.additions, f.deletions, f.previous_filename)
                            for f in files),
        changed_files_complete=complete,
        reviews=tuple(reviews),
        commits=tuple(commit_facts),
        commits_complete=len(commits) < COMMITS_CAP,
        requesters=requesters(conn, forge, pr.number, numbers if isinstance(policy, Policy) and
                              policy.exclude_requesters else [], commit_facts, agents),
        tasks=tasks_for(conn, forge, numbers, agents, bots) if want_tasks else (),
        tasks_checked=want_tasks,
    )


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
