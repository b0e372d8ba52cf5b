"""Every read a decision needs, through the port, with the shared caches: the governing policy (chosen
here and nowhere else), and the facts about a pull request.

Facts about a commit never change, so files and commits are cached by the head SHA they belong to: a
job judging a comment and the evaluation after it read the same head's files, and a push in between
is a new head with facts of its own."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial

import redis

from gatekeeper.core.facts import (
    Actor,
    ActorKind,
    ChangedFile,
    LabelApplied,
    PullRequestFacts,
    Review,
    TaskRef,
    User,
)
from gatekeeper.core.facts import Commit as CommitFact
from gatekeeper.core.identity import bare, classify
from gatekeeper.forges.port import Commit, FileTooLarge, Forge, ForgeError, IssueEvent, PullRequest
from gatekeeper.policy import DEFAULT_POLICY, POLICY_PATH, InvalidPolicy, Policy, load_policy
from gatekeeper.policy.load import org_refs
from gatekeeper.policy.model import ConfigError
from gatekeeper.state import keys
from gatekeeper.state.store import text as store_text

_ABSENT = "\x00absent"
# Organisation files live in a repository of the same owner; a name is a plain repository name, so a
# policy (perhaps a proposed one, in a preview) cannot steer agentgate to read anything else.
_ORG_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_CLOSING_REF = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d{1,9})\b", re.IGNORECASE)
MAX_TASKS = 10
MAX_LINKED_HISTORIES = 5  # linked issues whose history is read for who set the agent on them


class HeadMoved(ForgeError):
    """The pull request got new commits while its facts were read; a newer evaluation will follow."""


def cached(conn: redis.Redis, name: str, ttl: int, read: Callable[[], str | None]) -> str | None:
    """A value (None when absent) through the shared cache; absence is cached too."""
    found = conn.get(name)
    if found is not None:
        value = store_text(found)
    else:
        fresh = read()
        value = _ABSENT if fresh is None else fresh
        conn.set(name, value, ex=ttl)
    return None if value == _ABSENT else value


# ---- the governing policy ----------------------------------------------------------------------------

def policy_at(conn: redis.Redis, forge: Forge, sha: str) -> Policy | InvalidPolicy:
    """The policy file at a commit; a commit never changes, so its text is cached."""
    try:
        text = cached(conn, keys.policy_text(forge.platform, forge.repo, sha), keys.POLICY_TTL,
                      lambda: forge.get_file(POLICY_PATH, sha))
    except FileTooLarge:
        return InvalidPolicy((ConfigError(POLICY_PATH, 1, 1, "file is too large"),))
    return policy_from_text(conn, forge, text, POLICY_PATH)


def policy_from_text(conn: redis.Redis, forge: Forge, text: str | None, source: str) -> Policy | InvalidPolicy:
    """Load a policy, fetching the organisation files it extends (`extends: org:.github`)."""
    owner = forge.repo.split("/", 1)[0]
    fetched: dict[str, str | None] = {}
    for ref in org_refs(text):
        name = ref.removeprefix("org:")
        if not _ORG_REPO.fullmatch(name):
            continue  # not fetched: loading reports it, and no credential is minted for an odd name
        full_name = f"{owner}/{name}"
        try:
            fetched[ref] = cached(conn, keys.org_policy_text(forge.platform, full_name), keys.ORG_POLICY_TTL,
                                  partial(forge.get_repo_file, full_name, POLICY_PATH))
        except FileTooLarge:
            fetched[ref] = None  # loading reports the org file as missing: the policy is invalid
    return load_policy(text, source=source, extends=fetched)


def branch_head(conn: redis.Redis, forge: Forge, branch: str) -> str | None:
    """A branch's current head, shared briefly between jobs and kept current by push deliveries."""
    return cached(conn, keys.branch_head(forge.platform, forge.repo, branch), keys.BRANCH_HEAD_TTL,
                  lambda: forge.branch_sha(branch))


def remember_branch_head(conn: redis.Redis, platform: str, repo: str, branch: str, sha: str) -> None:
    """A push delivery says where the branch is now."""
    conn.set(keys.branch_head(platform, repo, branch), sha, ex=keys.BRANCH_HEAD_TTL)


def governing_policy(conn: redis.Redis, forge: Forge, pr: PullRequest) -> Policy | InvalidPolicy:
    """The policy that judges a pull request and everything done on it: the file on its base branch at
    that branch's current head, never the pull request's own copy (an agent never rewrites the policy
    that judges it), and a policy tightened on the base applies to open pull requests at once."""
    return policy_at(conn, forge, branch_head(conn, forge, pr.base_ref) or pr.base_sha)


def default_branch_policy(conn: redis.Redis, forge: Forge, default_branch: str | None) -> Policy | InvalidPolicy:
    """For actions outside a pull request (runs, deployments, pushes): the default branch's policy."""
    sha = branch_head(conn, forge, default_branch or "main")
    return policy_at(conn, forge, sha) if sha else DEFAULT_POLICY


def usable(policy: Policy | InvalidPolicy) -> Policy:
    """Chains are judged even under an invalid policy, with the secure default: failing open here would
    let a broken policy file switch the chain rules off. The PR itself shows `error` meanwhile."""
    return policy if isinstance(policy, Policy) else DEFAULT_POLICY


def identities(policy: Policy | InvalidPolicy, forge: Forge | None = None) -> Callable[[User | None], Actor]:
    """Classify accounts under the policy's own `identities` (its agents and bots). With the forge, an
    account that is agentgate's own App counts as an agent: agentgate never pushes, opens, reviews or runs
    anything itself (its comments and label removals are recognised before this), so whatever is done in
    its name is an agent holding one of the tokens it mints."""
    base = partial(classify, agents=policy.agents, bots=policy.bots) if isinstance(policy, Policy) else classify
    if forge is None:
        return base

    def who(user: User | None) -> Actor:
        actor = base(user)
        if actor.kind is ActorKind.BOT and user is not None and user.bot and forge.is_own(user):
            return replace(actor, kind=ActorKind.AGENT, why="agentgate's own App, which agents' tokens carry")
        return actor

    return who


# ---- facts about one head ----------------------------------------------------------------------------

def changed_files(conn: redis.Redis, forge: Forge, pr: PullRequest) -> tuple[tuple[ChangedFile, ...], bool]:
    """The head's changed files and whether the list is complete, cached by head SHA."""
    def read() -> str:
        files, complete = forge.list_changed_files(pr.number)
        if pr.changed_files is not None and len(files) < pr.changed_files:
            complete = False
        return json.dumps({"files": [asdict(f) for f in files], "complete": complete})

    raw = json.loads(cached(conn, keys.commit_files(forge.platform, forge.repo, pr.number, pr.head_sha),
                            keys.COMMIT_FACTS_TTL, read) or "{}")
    return tuple(ChangedFile(**f) for f in raw.get("files") or []), bool(raw.get("complete"))


def changed_paths(conn: redis.Redis, forge: Forge, pr: PullRequest) -> tuple[list[str], bool]:
    files, complete = changed_files(conn, forge, pr)
    return [p for f in files for p in f.paths], complete


def commits(conn: redis.Redis, forge: Forge, pr: PullRequest) -> tuple[list[Commit], bool]:
    """The head's commits and whether the list is complete, cached by head SHA. A complete list must
    end at the head: otherwise the PR was pushed to while we read, and a newer evaluation follows."""
    name = keys.commit_list(forge.platform, forge.repo, pr.number, pr.head_sha)
    raw = conn.get(name)
    if raw is not None:
        data = json.loads(raw)
        return [_commit(c) for c in data["commits"]], bool(data["complete"])
    found, complete = forge.list_commits(pr.number)
    if complete and found and found[-1].sha != pr.head_sha:
        raise HeadMoved(f"head moved from {pr.head_sha[:7]} to {found[-1].sha[:7]} while reading facts")
    conn.set(name, json.dumps({"commits": [asdict(c) for c in found], "complete": complete}),
             ex=keys.COMMIT_FACTS_TTL)
    return found, complete


def _commit(raw: dict) -> Commit:  # type: ignore[type-arg]
    return Commit(raw["sha"], raw["message"], User.from_dict(raw.get("author")), User.from_dict(raw.get("committer")),
                  tuple(raw.get("co_authors") or ()))


def permission(conn: redis.Redis, forge: Forge, login: str) -> str:
    name = keys.permission(forge.platform, forge.repo, login)
    found = conn.get(name)
    if found is not None:
        return store_text(found)
    level = forge.get_permission(login)
    conn.set(name, level, ex=keys.PERMISSION_TTL)
    return level


def via_app(conn: redis.Redis, forge: Forge, pr: PullRequest) -> str | None:
    """The app a pull request was opened through on a user's behalf (fixed at creation, so cached)."""
    if pr.via_app or pr.author.bot:
        return pr.via_app

    def read() -> str:
        issue = forge.get_issue(pr.number)
        return (issue.via_app if issue else None) or ""

    return cached(conn, keys.via_app(forge.platform, forge.repo, pr.number), keys.VIA_APP_TTL, read) or None


def issue_events(conn: redis.Redis, forge: Forge, number: int, *, pull_request: bool = False) -> list[IssueEvent]:
    """An issue's or PR's history, shared briefly by the evaluations that read it. Some platforms number
    issues and pull requests apart, so the two are asked and cached apart."""
    def read() -> str:
        return json.dumps([asdict(e) for e in forge.issue_events(number, pull_request=pull_request)])

    name = keys.issue_events(forge.platform, forge.repo, f"pr{number}" if pull_request else number)
    raw = json.loads(cached(conn, name, keys.ISSUE_EVENTS_TTL, read) or "[]")
    return [IssueEvent(e["kind"], User.from_dict(e.get("actor")), User.from_dict(e.get("assignee")), e.get("label"),
                       e.get("at") or "", e.get("other")) for e in raw]


def forget_issue_events(conn: redis.Redis, platform: str, repo: str, number: int) -> None:
    """A delivery said the issue changed: its cached history is stale."""
    conn.delete(keys.issue_events(platform, repo, number), keys.issue_events(platform, repo, f"pr{number}"))


# ---- task context: who set the agent on this work ----------------------------------------------------

def task_numbers(body: str) -> list[int]:
    """Issues a PR says it resolves ("Fixes #12"), in order, without repeats."""
    return list(dict.fromkeys(int(n) for n in _CLOSING_REF.findall(body or "")))[:MAX_TASKS]


def _add(conn: redis.Redis, name: str, member: str | int, ttl: int) -> None:
    """Add to a set that lives `ttl` seconds after its last addition."""
    pipe = conn.pipeline()
    pipe.sadd(name, member)
    pipe.expire(name, ttl)
    pipe.execute()


def remember_requester(conn: redis.Redis, platform: str, repo: str, number: int, login: str) -> None:
    """Record the human who set an agent on an issue or PR (assigned it, mentioned it)."""
    _add(conn, keys.requesters(platform, repo, number), login, keys.REQUESTERS_TTL)


def remember_agent_requester(conn: redis.Redis, platform: str, repo: str, agent: str, task: int, login: str) -> None:
    """Record that a human set this agent on a task in this repository. An agent's pull request that
    names no task (it dropped "Fixes #N") still cannot be approved by the people who set it to work."""
    name = keys.agent_requesters(platform, repo, agent)
    pipe = conn.pipeline()
    pipe.hset(name, f"{task}:{login}", "1")
    pipe.expire(name, keys.AGENT_REQUESTERS_TTL)
    pipe.execute()


def forget_task_requesters(conn: redis.Redis, platform: str, repo: str, task: int, agents: list[str]) -> None:
    """A closed task no longer ties its requester to the agent's other work."""
    for agent in agents:
        name = keys.agent_requesters(platform, repo, agent)
        fields = [f for f in (store_text(x) for x in conn.hkeys(name)) if f.startswith(f"{task}:")]
        if fields:
            conn.hdel(name, *fields)


def agents_with_requesters(conn: redis.Redis, platform: str, repo: str) -> list[str]:
    prefix = keys.agent_requesters(platform, repo, "")
    return [store_text(k)[len(prefix):] for k in conn.scan_iter(prefix + "*", count=100)]


def remember_task_pull(conn: redis.Redis, platform: str, repo: str, task: int, pull: int) -> None:
    """Index PRs by the issues they resolve, so a change to the task re-evaluates them."""
    _add(conn, keys.task_pulls(platform, repo, task), pull, keys.TASK_PULLS_TTL)


def remember_pusher(conn: redis.Redis, platform: str, repo: str, number: int, pusher: User) -> None:
    name = keys.pushers(platform, repo, number)
    pipe = conn.pipeline()
    pipe.hset(name, pusher.login.lower(), json.dumps(pusher.to_dict()))
    pipe.expire(name, keys.REQUESTERS_TTL)
    pipe.execute()


def pushers(conn: redis.Redis, platform: str, repo: str, number: int) -> list[User]:
    found = (User.from_dict(json.loads(v)) for v in conn.hvals(keys.pushers(platform, repo, number)))
    return [u for u in found if u is not None]


def task_pulls(conn: redis.Redis, platform: str, repo: str, task: int) -> list[int]:
    return sorted(int(store_text(n)) for n in conn.smembers(keys.task_pulls(platform, repo, task)))


def requesters(conn: redis.Redis, forge: Forge, pr: PullRequest, who: Callable[[User | None], Actor],
               tasks: list[int], commit_list: list[Commit], agents: list[str]) -> tuple[str, ...]:
    """Who set the agent on this work, from every link the platform and our deliveries keep:
    - recorded from deliveries: assignments and @-mentions on this PR and on the tasks it resolves;
    - recorded per agent: humans who assigned this agent a task in the repository that is still open
      (so dropping "Fixes #N" from the description changes nothing);
    - read again from history (a lost delivery loses nothing): the PR's own timeline, the issues it is
      linked to or resolves, and their assignments to an agent;
    - humans credited as co-authors of an agent's commits."""
    platform, repo = forge.platform, forge.repo
    found: set[str] = set()
    for n in [pr.number, *tasks]:
        found |= {store_text(m) for m in conn.smembers(keys.requesters(platform, repo, n))}
    for agent in agents:
        found |= {store_text(f).split(":", 1)[1] for f in conn.hkeys(keys.agent_requesters(platform, repo, agent))}
    own = issue_events(conn, forge, pr.number, pull_request=True)
    linked = list(dict.fromkeys([*tasks, *(e.other for e in own if e.kind in ("connected", "cross-referenced")
                                           and e.other and e.other != pr.number)]))
    histories = [own] + [issue_events(conn, forge, n) for n in linked[:MAX_LINKED_HISTORIES]]
    for history in histories:
        for event in history:
            if event.kind == "assigned" and event.actor is not None and who(event.assignee).kind.is_automated \
                    and not who(event.actor).kind.is_automated:
                found.add(event.actor.login)
    for commit in commit_list:
        # A human credited as co-author of an agent's commit steered that commit.
        if who(commit.author).kind.is_automated:
            found |= set(commit.co_authors)
    return tuple(sorted(found))


def tasks_for(conn: redis.Redis, forge: Forge, numbers: list[int], who: Callable[[User | None], Actor]
              ) -> tuple[TaskRef, ...]:
    refs = []
    for n in numbers:
        ref = task_ref(conn, forge, n, who, issues_only=True)
        if ref is not None:
            refs.append(ref)
    return tuple(refs)


def task_ref(conn: redis.Redis, forge: Forge, number: int, who: Callable[[User | None], Actor], *,
             issues_only: bool) -> TaskRef | None:
    """An issue (or, unless `issues_only`, a pull request) as a task: its state, its labels and who applied
    each of them with what permission. None when there is no such issue."""
    issue = forge.get_issue(number)
    if issue is None or (issues_only and issue.is_pull_request):
        return None
    latest: dict[str, User | None] = {}
    reopened_by: User | None = None
    for event in issue_events(conn, forge, number, pull_request=issue.is_pull_request):
        if event.kind == "labeled" and event.label:
            latest[event.label] = event.actor
        elif event.kind == "unlabeled" and event.label:
            latest.pop(event.label, None)
        elif event.kind == "reopened":
            reopened_by = event.actor
        elif event.kind == "closed":
            reopened_by = None
    state = issue.state
    if state == "open" and reopened_by is not None and who(reopened_by).kind.is_automated:
        # A task a human closed stays closed for agents, whoever reopens it without a human.
        state = "closed"
    applied = []
    for label in issue.labels:
        if label in latest:
            actor = who(latest[label])
            level = permission(conn, forge, actor.login) if not actor.kind.is_automated else "none"
            applied.append(LabelApplied(label, actor, level))
    return TaskRef(number, state, issue.labels, tuple(applied), issue.assignees, issue.is_pull_request)


def pull_request_facts(conn: redis.Redis, forge: Forge, pr: PullRequest, policy: Policy | InvalidPolicy, *,
                       with_requesters: bool | None = None) -> PullRequestFacts:
    """Every fact the verdict reads. Requesters are read when an approval or a confirmation could be
    excluded by them (`with_requesters=None`: whenever a human approved)."""
    who = identities(policy, forge)
    files, files_complete = changed_files(conn, forge, pr)
    raw_reviews = forge.list_reviews(pr.number)
    commit_list, commits_complete = commits(conn, forge, pr)
    reviews = []
    for raw in raw_reviews:
        reviewer = who(raw.user)
        # Only reviews that could count need the reviewer's permission: skip bots and plain comments.
        needs_level = raw.state in ("APPROVED", "CHANGES_REQUESTED") and not reviewer.kind.is_automated
        level = permission(conn, forge, reviewer.login) if needs_level else "none"
        reviews.append(Review(reviewer, raw.state, raw.commit_sha, level, raw.submitted_at, raw.id))
    commit_facts = tuple(CommitFact(c.sha, c.message, who(c.author) if c.author else None,
                                    who(c.committer) if c.committer else None) for c in commit_list)
    author = who(User(pr.author.login, pr.author.id, pr.author.bot, via_app(conn, forge, pr), pr.author.agent))
    numbers = task_numbers(pr.body)
    want_tasks = isinstance(policy, Policy) and policy.task.required
    if with_requesters is None:
        with_requesters = any(r.state == "APPROVED" and not r.reviewer.kind.is_automated for r in reviews)
    agents = sorted({bare(a.login) for a in (author, *(x for c in commit_facts for x in (c.author, c.committer) if x))
                     if a.kind.is_automated})
    found_requesters = requesters(conn, forge, pr, who, numbers, commit_list, agents) \
        if with_requesters and isinstance(policy, Policy) and policy.exclude_requesters else ()
    return PullRequestFacts(
        repo=forge.repo, number=pr.number, author=author, head_sha=pr.head_sha, head_ref=pr.head_ref,
        base_ref=pr.base_ref, base_sha=pr.base_sha, default_branch=pr.default_branch, head_repo=pr.head_repo,
        state=pr.state, draft=pr.draft, title=pr.title, body=pr.body, labels=pr.labels,
        changed_files=files, changed_files_complete=files_complete, reviews=tuple(reviews), commits=commit_facts,
        commits_complete=commits_complete, requesters=found_requesters,
        pushers=tuple(who(u) for u in pushers(conn, forge.platform, forge.repo, pr.number)),
        tasks=tasks_for(conn, forge, numbers, who) if want_tasks else (), tasks_checked=want_tasks,
    )


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
