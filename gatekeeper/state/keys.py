"""Every key agentgate keeps in Redis, and how long each lives: one place to read what is stored.

Keys name the platform where two platforms could share a repository path (`acme/widgets` on GitHub
and on GitLab are different projects)."""

from __future__ import annotations

import hashlib

KEY_PREFIX = "agentgate:"

DAY = 24 * 3600

# How long each kind of value lives.
DELIVERY_TTL = 7 * DAY  # platforms let a delivery be redelivered for a few days
DECISION_TTL = 90 * DAY
FINDINGS_TTL = 90 * DAY
STATUS_TTL = 30 * DAY  # the last status posted per SHA, so an unchanged one is not posted again
VERDICTS_TTL = 90 * DAY  # each PR's verdict per head SHA: the status on a SHA is the worst of them
COMMENT_TTL = 180 * DAY
REQUESTERS_TTL = 180 * DAY
AGENT_REQUESTERS_TTL = 30 * DAY  # who set an agent on a task in a repository, by agent
TASK_PULLS_TTL = 180 * DAY
POLICY_TTL = DAY  # the policy text at one commit never changes; kept a day
ORG_POLICY_TTL = 300  # an organisation file is not pinned to a commit: re-read every few minutes
COMMIT_FACTS_TTL = DAY  # files and commits of a head SHA never change
# A branch's head, for reading the policy there: push deliveries keep it current, so a short life only
# bounds how stale it can be when a delivery is lost.
BRANCH_HEAD_TTL = 300
PERMISSION_TTL = 120  # short: a revoked write permission must stop counting soon
ISSUE_EVENTS_TTL = 600  # deliveries about assignments and task changes forget it at once
VIA_APP_TTL = 30 * DAY  # who opened a PR through which app is fixed at creation
APPROVED_HEAD_TTL = 90 * DAY
PREVIEW_TTL = 30 * DAY
PREVIEW_INTERVAL = 300
COALESCE_TTL = 600  # an evaluation waiting in the queue; bounded in case it is lost
# The settle window: a burst of deliveries about one pull request (a push brings `synchronize` and
# `check_suite`, bots label and comment) makes at most one evaluation per SETTLE_WINDOW. A delivery after
# SETTLE_QUIET without any about the PR is evaluated at once (an approving review flips the verdict in
# seconds); one that comes sooner, while none waits, is evaluated when the window since the last ends.
SETTLE_WINDOW = 2.0
SETTLE_QUIET = 0.5
LOCK_TTL = 150  # longer than a job may run, so a PR lock never lapses mid-job
APP_SLUG_TTL = DAY


def key(*parts: object) -> str:
    return KEY_PREFIX + ":".join(str(p) for p in parts)


# -- receiving
def delivery(platform: str, delivery_id: str) -> str:
    return key("delivery", platform, delivery_id)


def eval_waiting(platform: str, repo: str, number: int) -> str:
    """The evaluation of a PR that waits to start ("JOB_ID RUN_AT_MS"): deliveries meanwhile add none."""
    return key("eval-waiting", platform, repo, number)


def eval_settle(platform: str, repo: str, number: int) -> str:
    """A PR's settle window ("LAST_DELIVERY_MS NEXT_EVALUATION_MS"), kept while a burst lasts."""
    return key("eval-settle", platform, repo, number)


# -- decisions and what was posted
def decision(decision_id: str) -> str:
    return key("decision", decision_id)


RECENT_DECISIONS = key("decisions", "recent")


def decision_fingerprint(fingerprint: str) -> str:
    return key("decision-fp", fingerprint)


def status_posted(platform: str, repo: str, sha: str, context: str) -> str:
    return key("status", platform, repo, sha, context)


def verdicts(platform: str, repo: str, sha: str) -> str:
    """Hash: PR number -> JSON {outcome, description, target}, for every PR evaluated at this head."""
    return key("verdicts", platform, repo, sha)


def approved_head(platform: str, repo: str, number: int, sha: str) -> str:
    """Set when a PR's head had enough qualifying human approvals and passed: deployments and merges
    of that exact change rest on it."""
    return key("approved-head", platform, repo, number, sha)


def check_run(platform: str, repo: str, sha: str, name: str) -> str:
    return key("check-run", platform, repo, sha, name)


def check_run_shown(platform: str, repo: str, sha: str, name: str) -> str:
    return key("check-run-shown", platform, repo, sha, name)


def comment(platform: str, repo: str, number: int) -> str:
    return key("comment", platform, repo, number)


OWN_ACTION_TTL = 600  # how long an action agentgate is about to take is recognised as its own


def comment_posting(platform: str, repo: str, number: int) -> str:
    """The SHA-256 of the comment body agentgate is posting on a PR: its delivery is then known as ours.
    (Agent tokens on GitHub come from agentgate's own App, so the author's login alone proves nothing.)"""
    return key("comment-posting", platform, repo, number)


def label_removal(platform: str, repo: str, number: int, label: str) -> str:
    """Set just before agentgate removes a label: that `unlabeled` delivery is its own, and no other is."""
    return key("label-removal", platform, repo, number, hashlib.sha256(label.encode()).hexdigest()[:16])


def comment_sections(platform: str, repo: str, number: int) -> str:
    return key("comment-sections", platform, repo, number)


def preview_once(platform: str, repo: str, number: int, head: str, base: str) -> str:
    return key("preview", platform, repo, number, head, base)


def preview_recent(platform: str, repo: str, number: int) -> str:
    return key("preview-recent", platform, repo, number)


def pr_lock(platform: str, repo: str, number: int) -> str:
    return key("lock", "pr", platform, repo, number)


# -- chain findings
def findings(platform: str, repo: str, number: int) -> str:
    return key("findings", platform, repo, number)


def confirmations(platform: str, repo: str, number: int) -> str:
    """Humans' repeats of actions bots took (a command, a label), until an evaluation judges them."""
    return key("confirmations", platform, repo, number)


# -- caches of platform facts
def policy_text(platform: str, repo: str, sha: str) -> str:
    return key("policy", platform, repo, sha)


def org_policy_text(platform: str, full_name: str) -> str:
    return key("org-policy", platform, full_name)


def branch_head(platform: str, repo: str, branch: str) -> str:
    return key("branch-head", platform, repo, branch)


def commit_files(platform: str, repo: str, number: int, head: str) -> str:
    return key("files", platform, repo, number, head)


def commit_list(platform: str, repo: str, number: int, head: str) -> str:
    return key("commits", platform, repo, number, head)


def permission(platform: str, repo: str, login: str) -> str:
    return key("perm", platform, repo, login.lower())


def issue_events(platform: str, repo: str, number: int | str) -> str:
    return key("issue-events", platform, repo, number)


def via_app(platform: str, repo: str, number: int) -> str:
    return key("via-app", platform, repo, number)


# -- task context
def requesters(platform: str, repo: str, number: int) -> str:
    return key("requesters", platform, repo, number)


def agent_requesters(platform: str, repo: str, agent: str) -> str:
    """Humans who set this agent on a task in this repository (assigned or summoned it), recently."""
    return key("agent-requesters", platform, repo, agent.lower())


def pushers(platform: str, repo: str, number: int) -> str:
    """Hash: login -> the account (JSON) of everyone who pushed to a pull request's branch."""
    return key("pushers", platform, repo, number)


def task_pulls(platform: str, repo: str, task: int) -> str:
    return key("task-pulls", platform, repo, task)


# -- platform credentials (encrypted values only)
def installation_token(platform: str, installation_id: int, scope: str) -> str:
    return key("token", platform, installation_id, scope)


def app_slug(app_id: str) -> str:
    return key("app-slug", app_id)


# -- metrics, audit, dev mode
METRIC_COUNTERS = key("metrics", "counters")
AUDIT_STREAM = key("audit")
DEV_ACTIONS = key("dev", "actions")


def dev_sample(repo: str, number: int | str) -> str:
    return key("dev", "sample", repo, number)


def dev_counter(name: str) -> str:
    return key("dev", name)


# -- recovery (worker/recovery.py): nothing lost, nobody hammered
RATE_LIMIT_MAX_WAIT = DAY  # a reset further away than this is not believed
REDELIVERY_TTL = 4 * DAY  # GitHub redelivers deliveries of the past three days; asked once each
KNOWN_REPO_TTL = 30 * DAY  # a repository no delivery named for a month is no longer reconciled
RECONCILED_TTL = 7 * DAY


def rate_limited(platform: str, installation: int | None) -> str:
    """Set while the platform asked this installation to wait: no job asks it anything before then."""
    return key("rate-limited", platform, installation)


def known_repos(platform: str) -> str:
    """Sorted set: "installation repo" -> when a delivery last named it (what reconcile covers)."""
    return key("known-repos", platform)


def redelivery_asked(platform: str, guid: str) -> str:
    return key("redelivery-asked", platform, guid)


def deliveries_scanned(platform: str) -> str:
    """How far back the last scan of the platform's delivery log had to read (its newest entry)."""
    return key("deliveries-scanned", platform)


def reconciled(platform: str, repo: str, number: int) -> str:
    """What the last reconcile saw of a PR (its last change and status), so one change is re-judged once."""
    return key("reconciled", platform, repo, number)


WORKER_LEASED_TTL = 7 * DAY


def worker_alive(worker: str) -> str:
    """A worker process's lease, refreshed by a thread of it: gone a few seconds after the process."""
    return key("worker-alive", worker)


def worker_leased(worker: str) -> str:
    """Set when a worker starts holding leases: only such a worker's lapsed lease means it died (one
    that never held any, e.g. an older version during an upgrade, is left to RQ)."""
    return key("worker-leased", worker)


# -- GitLab's caches (its webhooks carry no bot flag; projects are addressed by id)
GITLAB_USER_BOT_TTL = 7 * DAY  # whether an account is a bot never changes for an account
GITLAB_PROJECT_TTL = 300  # a project's id and default branch
GITLAB_SELF_TTL = DAY  # the token's own username
GITLAB_STATUS_CHECKS_TTL = 300  # a project's external status checks
GITLAB_EMAIL_TTL = DAY  # the account a commit address belongs to


def gitlab_email(address: str) -> str:
    return key("gitlab", "email", hashlib.sha256(address.lower().encode()).hexdigest()[:24])


def gitlab_user_bot(user_id: int) -> str:
    return key("gitlab", "user-bot", user_id)


def gitlab_project(repo: str) -> str:
    return key("gitlab", "project", repo)


def gitlab_self(token: str) -> str:
    """Keyed by a digest of the token, never the token."""
    return key("gitlab", "self", hashlib.sha256(token.encode()).hexdigest()[:16])


def gitlab_status_checks(repo: str) -> str:
    return key("gitlab", "status-checks", repo)


# -- agent tokens: just-in-time credentials (gatekeeper/tokens/). Tokens are kept only encrypted (to
# revoke them) and as their SHA-256; an agent key only as its SHA-256.
AGENT_TOKEN_KEEP = 30 * DAY  # a token's record (never the token) after it expired or was revoked
OIDC_DISCOVERY_TTL = 3600  # an issuer's discovery document and key set
OIDC_REFETCH_FLOOR = 60  # at most one key-set fetch per issuer this often, however many unknown `kid`s
AGENT_TOKENS_ACTIVE = key("agent-tokens", "active")  # sorted set: token id -> when agentgate revokes it


def agent_token(token_id: str) -> str:
    """Hash: one issued token's record (agent, requester, repository, task, permissions, state, the token
    encrypted, its SHA-256)."""
    return key("agent-token", token_id)


def agent_tokens_of_task(platform: str, repo: str, task: int) -> str:
    # Repository names are case-insensitive on both platforms: an agent spelling one differently from the
    # webhooks must still find its tokens revoked when the task closes.
    return key("agent-tokens", "task", platform, repo.lower(), task)


def agent_tokens_of_repo(platform: str, repo: str) -> str:
    return key("agent-tokens", "repo", platform, repo.lower())


AGENT_TOKEN_LOCK_TTL = 60  # one token request per agent and repository at a time (the cap holds)


def agent_token_lock(platform: str, repo: str, agent: str) -> str:
    return key("agent-token-lock", platform, repo.lower(), hashlib.sha256(agent.encode()).hexdigest()[:24])


def comment_body(platform: str, repo: str, number: int) -> str:
    """The SHA-256 of the body agentgate last wrote in its comment: an edit by anyone else differs."""
    return key("comment-body", platform, repo, number)


AGENT_KEYS = key("agent-keys")  # hash: agent name -> JSON {sha256, created_at}


def agent_key(digest: str) -> str:
    """An agent key's SHA-256 -> the agent's name."""
    return key("agent-key", digest)


def oidc_keys(issuer: str) -> str:
    """An OIDC issuer's discovery document and JWKS (JSON), fetched through its discovery document."""
    return key("oidc", "keys", hashlib.sha256(issuer.encode()).hexdigest()[:24])


def oidc_refetch(issuer: str) -> str:
    """Set for OIDC_REFETCH_FLOOR seconds after a key-set fetch: an unknown `kid` waits for it to lapse."""
    return key("oidc", "refetch", hashlib.sha256(issuer.encode()).hexdigest()[:24])


def installation_tokens_of(platform: str, repo: str) -> str:
    """Set: the cache keys of agentgate's own tokens for a repository (dropped when uninstalled there)."""
    return key("tokens-of", platform, repo)


# -- agentgate's own GitLab token, rotated on a schedule (forges/gitlab/credentials.py)
GITLAB_OWN_TOKEN = key("gitlab", "own-token")  # hash: the current token (encrypted), its id, expiry, rotation time
GITLAB_ROTATION_LOCK = key("gitlab", "rotation-lock")  # one rotation at a time: a second would revoke the first
GITLAB_ROTATION_LOCK_TTL = 120

# -- operations (issue 11): histograms and gauges the dashboard and /metrics read
METRIC_HISTOGRAMS = key("metrics", "histograms")
METRIC_GAUGES = key("metrics", "gauges")


def decision_history(platform: str, repo: str, number: int) -> str:
    """List: a pull request's decision ids, newest first (the details page's verdict history)."""
    return key("decision-history", platform, repo, number)


DECISION_HISTORY_KEEP = 50
DASHBOARD_SESSION_TTL = 8 * 3600  # a browser signed in to the dashboard


def dashboard_session(digest: str) -> str:
    """A dashboard sign-in, by the SHA-256 of its cookie value."""
    return key("dashboard-session", digest)
