"""`agentgate doctor` on GitLab: what GitLab is asked, and how each answer maps onto the same check ids
(docs/doctor.md has the table).

- `permissions`: token-wide (`repo: null`), the token is active, not expiring within a week, with the `api` scope
  (`GET /personal_access_tokens/self`); per project, the token's role is Developer or more, and agentgate's
  webhook (the project's, else its group's) has every trigger agentgate handles.
- `required-check`: the default branch is protected, and merges wait for agentgate: "Pipelines must succeed"
  (`only_allow_merge_if_pipeline_succeeds`) or an external status check named like the status (Ultimate).
- `check-bound-to-app`: only an external status check is bound to agentgate; a commit status can be posted by
  anyone with the Developer role.
- `no-bypass`: nobody pushes to the default branch directly or force-pushes, and skipped pipelines do not count
  as successful (`allow_merge_on_skipped_pipeline`).
- `deployment-protection`: each environment the policy protects is a protected environment with required
  approvals.
- `deliveries`: per project, GitLab has not disabled agentgate's webhook for failing (`alert_status`).
- `policy-valid`: the default branch's `.agentgate.yml`.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from gatekeeper.doctor import (
    CHECK_BOUND_TO_APP,
    DELIVERIES,
    DEPLOYMENT_PROTECTION,
    NO_BYPASS,
    PERMISSIONS,
    REQUIRED_CHECK,
    Check,
    DoctorError,
    PolicyFile,
    Report,
    failed,
    is_protected_environment,
    join,
    passed,
    policy_check,
)
from gatekeeper.policy.load import POLICY_PATH
from gatekeeper.policy.model import Policy
from gatekeeper.settings import Settings

log = logging.getLogger(__name__)

MAX_PROJECTS = 100
DEVELOPER, MAINTAINER = 30, 40
EXPIRY_WARNING = timedelta(days=7)
# The webhook triggers agentgate handles (README: push, tag push, comments, issues, merge requests, pipelines).
HOOK_EVENTS = {"push_events": "Push events", "tag_push_events": "Tag push events", "note_events": "Comments",
               "issues_events": "Issues events", "merge_requests_events": "Merge request events",
               "pipeline_events": "Pipeline events"}
HOOK_PATH = "/webhooks/gitlab"


@dataclass(frozen=True)
class Answer:
    status: int  # 0: GitLab could not be reached
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def why(self) -> str:
        if self.status == 403:
            return "GitLab refused (403)"
        return f"GitLab answered {self.status}" if self.status else "GitLab could not be reached"


def _own_token(settings: Settings) -> str:
    """The token agentgate acts with: once rotated, the one in Redis (doctor otherwise needs no Redis)."""
    if settings.gitlab_rotate_days > 0 and settings.redis_url:
        import redis

        from gatekeeper.forges.gitlab.credentials import current_token
        from gatekeeper.forges.port import ForgeError
        from gatekeeper.state import store

        try:
            return current_token(store.connect(settings.redis_url), settings)
        except (redis.RedisError, ForgeError):
            pass
    return str(settings.gitlab_token)


class GitLabApi:
    def __init__(self, settings: Settings, session: requests.Session | None = None):
        if not settings.gitlab_url or not settings.gitlab_token:
            raise DoctorError("no GitLab credentials: set AGENTGATE_GITLAB_URL and AGENTGATE_GITLAB_TOKEN")
        self.api = f"{settings.gitlab_url.rstrip('/')}/api/v4"
        self.token = _own_token(settings)
        self.timeout = settings.github_timeout
        self.session = session or requests.Session()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Answer:
        try:
            resp = self.session.get(f"{self.api}{path}", params=params, timeout=self.timeout,
                                    headers={"PRIVATE-TOKEN": self.token, "Accept": "application/json"})
        except requests.RequestException as exc:
            log.warning("GitLab unreachable for %s: %s", path, type(exc).__name__)
            return Answer(0)
        try:
            return Answer(resp.status_code, resp.json() if resp.status_code == 200 else None)
        except ValueError:
            return Answer(resp.status_code)


def _pid(path: str) -> str:
    return quote(path, safe="")


def run(settings: Settings, only_repo: str | None = None, session: requests.Session | None = None,
        today: date | None = None) -> Report:
    api = GitLabApi(settings, session)
    me = api.get("/user")
    if not me.ok:
        raise DoctorError(f"GitLab did not accept the token at {api.api}: {me.why()}")
    checks = [judge_token(api.get("/personal_access_tokens/self"), today or datetime.now(UTC).date())]
    notes: list[str] = []
    if only_repo:
        paths = [only_repo]
    else:
        listed = api.get("/projects", {"membership": "true", "per_page": MAX_PROJECTS, "order_by": "id"})
        if not listed.ok:
            raise DoctorError(f"could not list the token's projects: {listed.why()}")
        paths = [str(p["path_with_namespace"]) for p in listed.data]
        if len(paths) >= MAX_PROJECTS:
            notes.append(f"checked the first {MAX_PROJECTS} projects (use --repo for the others)")
    for path in paths:
        checks += check_project(api, settings, path)
    return Report(tuple(checks), tuple(notes))


def judge_token(answer: Answer, today: date) -> Check:
    fix_new = ("Create a project or group access token with the `api` scope and the Developer role (Maintainer "
               "where it must remove labels) — Settings → Access tokens — and set AGENTGATE_GITLAB_TOKEN to it")
    if not answer.ok:
        return failed(PERMISSIONS, None, f"cannot read the token's scopes (GET /personal_access_tokens/self): "
                                         f"{answer.why()}", "Use GitLab 15.5 or later, or a token this endpoint "
                                                            "answers for; " + fix_new)
    data = answer.data
    scopes = list(data.get("scopes") or [])
    problems = []
    if data.get("revoked") or data.get("active") is False:
        problems.append("the token is revoked or inactive")
    if "api" not in scopes:
        problems.append(f"the token's scopes ({', '.join(scopes) or 'none'}) lack `api`, which posting statuses "
                        "and notes needs")
    expires = data.get("expires_at")
    if expires:
        try:
            left = date.fromisoformat(str(expires)[:10]) - today
        except ValueError:
            left = timedelta(0)
        if left < EXPIRY_WARNING:
            problems.append(f"the token expires on {expires}: the gate stops then")
    if problems:
        return failed(PERMISSIONS, None, join(problems), fix_new)
    return passed(PERMISSIONS, None, f"the token is active with scopes {', '.join(scopes)}"
                                     + (f", until {expires}" if expires else ""))


def _find_hook(api: GitLabApi, project: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    """agentgate's webhook (its URL ends in /webhooks/gitlab): the project's, else its group's; and what was
    not readable, for the message."""
    unread = []
    hooks = api.get(f"/projects/{_pid(path)}/hooks", {"per_page": 100})
    if hooks.ok:
        found = next((h for h in hooks.data if str(h.get("url", "")).rstrip("/").endswith(HOOK_PATH)), None)
        if found is not None:
            return found, ""
    else:
        unread.append(f"project hooks: {hooks.why()} (needs the Maintainer role)")
    group = str((project.get("namespace") or {}).get("full_path") or path.rsplit("/", 1)[0])
    ghooks = api.get(f"/groups/{_pid(group)}/hooks", {"per_page": 100})
    if ghooks.ok:
        found = next((h for h in ghooks.data if str(h.get("url", "")).rstrip("/").endswith(HOOK_PATH)), None)
        if found is not None:
            return found, ""
    elif ghooks.status != 404:
        unread.append(f"group {group}'s hooks: {ghooks.why()} (needs the Owner role)")
    return None, "; ".join(unread)


def check_project(api: GitLabApi, settings: Settings, path: str) -> list[Check]:
    pid = _pid(path)
    project = api.get(f"/projects/{pid}")
    if not project.ok:
        why = f"cannot read project {path}: {project.why()}"
        fix = f"Add the token's user to {path} with the Developer role (Project → Manage → Members)"
        return [failed(PERMISSIONS, path, why, fix)]
    p = project.data
    default = str(p.get("default_branch") or "main")
    hook, unread = _find_hook(api, p, path)
    checks = [judge_access(p, hook, unread, path), judge_hook_health(hook, unread, path)]
    branches = api.get(f"/projects/{pid}/protected_branches", {"per_page": 100})
    status_checks = api.get(f"/projects/{pid}/external_status_checks", {"per_page": 100})
    named = [c for c in (status_checks.data or []) if c.get("name") == settings.status_context] \
        if status_checks.ok else []
    checks += judge_merge_gate(p, branches, named, default, path, settings.status_context)
    policy_file = _policy_file(api, pid, default)
    policy_result, policy = policy_check(path, default, policy_file)
    checks.append(judge_environments(api, pid, path, policy))
    checks.append(policy_result)
    return checks


def judge_access(project: dict[str, Any], hook: dict[str, Any] | None, unread: str, path: str) -> Check:
    perms = project.get("permissions") or {}
    level = max(int((perms.get(k) or {}).get("access_level") or 0) for k in ("project_access", "group_access"))
    problems, fixes = [], []
    if level < DEVELOPER:
        problems.append(f"the token's role on {path} is below Developer ({level})")
        fixes.append(f"{path} → Manage → Members: give the token's user the Developer role (Maintainer to remove "
                     "labels on protected work)")
    if hook is None:
        problems.append("no webhook to https://…/webhooks/gitlab on the project or its group"
                        + (f" (could not read {unread})" if unread else ""))
        fixes.append(f"{path} → Settings → Webhooks → Add new webhook: URL https://YOUR-HOST{HOOK_PATH}, the secret "
                     f"token, triggers: {', '.join(HOOK_EVENTS.values())}")
    else:
        missing = [label for key, label in HOOK_EVENTS.items() if not hook.get(key)]
        if missing:
            problems.append(f"agentgate's webhook lacks the triggers {', '.join(missing)}")
            fixes.append(f"Settings → Webhooks → {hook.get('url')} → Edit: tick {', '.join(missing)}")
    if problems:
        return failed(PERMISSIONS, path, join(problems), join(fixes, " "))
    role = "Maintainer" if level >= MAINTAINER else "Developer"
    return passed(PERMISSIONS, path, f"the token is a {role}; agentgate's webhook has every trigger it needs")


def judge_hook_health(hook: dict[str, Any] | None, unread: str, path: str) -> Check:
    if hook is None:
        return failed(DELIVERIES, path, "no agentgate webhook found, so nothing is delivered"
                      + (f" (could not read {unread})" if unread else ""),
                      f"{path} → Settings → Webhooks → Add new webhook with URL https://YOUR-HOST{HOOK_PATH}")
    status = str(hook.get("alert_status") or "executable")
    if status != "executable":
        until = hook.get("disabled_until")
        return failed(DELIVERIES, path, f"GitLab has {status.replace('_', ' ')} agentgate's webhook after failed "
                                        "deliveries" + (f" until {until}" if until else ""),
                      f"Make https://YOUR-HOST{HOOK_PATH} reachable, then Settings → Webhooks → {hook.get('url')} → "
                      "Edit → Enable (or Test → Merge request events)")
    return passed(DELIVERIES, path, "agentgate's webhook is enabled (GitLab has not disabled it for failures)")


def judge_merge_gate(project: dict[str, Any], branches: Answer, named_checks: list[dict[str, Any]], default: str,
                     path: str, context: str) -> list[Check]:
    pipelines = bool(project.get("only_allow_merge_if_pipeline_succeeds"))
    skipped_ok = bool(project.get("allow_merge_on_skipped_pipeline"))
    protected = {str(b.get("name")): b for b in branches.data} if branches.ok else {}
    default_rule = protected.get(default)
    out = []
    # required-check
    missing = []
    fixes = []
    if not branches.ok:
        missing.append(f"cannot read protected branches: {branches.why()}")
        fixes.append("Give the token's user the Maintainer role so doctor can read protected branches")
    elif default_rule is None:
        missing.append(f"{default} is not a protected branch")
        fixes.append(f"Settings → Repository → Protected branches → protect {default}")
    if not pipelines and not named_checks:
        missing.append(f"merges do not wait for `{context}`: \"Pipelines must succeed\" is off and there is no "
                       f"external status check named `{context}`")
        fixes.append("Settings → Merge requests → Merge checks → tick \"Pipelines must succeed\"")
    gate = join(["\"Pipelines must succeed\"" if pipelines else "",
                 f"external status check `{context}`" if named_checks else ""], " and ")
    out.append(failed(REQUIRED_CHECK, path, join(missing), join(fixes, " ")) if missing else
               passed(REQUIRED_CHECK, path, f"{default} is protected and merges wait for {gate}"))
    # check-bound-to-app
    if named_checks:
        out.append(passed(CHECK_BOUND_TO_APP, path, f"external status check `{context}` is answered by agentgate "
                                                    "only"))
    else:
        out.append(failed(CHECK_BOUND_TO_APP, path,
                          f"a commit status named `{context}` counts from anyone with the Developer role; only an "
                          "external status check is bound to agentgate",
                          f"Settings → Merge requests → Status checks → Add status check named `{context}` with the "
                          f"URL https://YOUR-HOST{HOOK_PATH} (GitLab Ultimate)"))
    # no-bypass
    bypass, bfixes = [], []
    if default_rule is None:
        bypass.append(f"{default} is not protected" if branches.ok else
                      f"cannot read protected branches: {branches.why()}")
        bfixes.append(fixes[0])
    else:
        pushers = [a.get("access_level_description") or str(a.get("access_level"))
                   for a in default_rule.get("push_access_levels") or [] if a.get("access_level") != 0
                   or a.get("user_id") or a.get("group_id") or a.get("deploy_key_id")]
        if pushers:
            bypass.append(f"{', '.join(map(str, pushers))} may push to {default} without a merge request")
        if default_rule.get("allow_force_push"):
            bypass.append(f"force pushes to {default} are allowed")
        if pushers or default_rule.get("allow_force_push"):
            bfixes.append(f"Settings → Repository → Protected branches → {default}: Allowed to push and merge: "
                          "No one; Allowed to force push: off")
    if pipelines and not named_checks and skipped_ok:
        bypass.append("skipped pipelines count as successful (a `[ci skip]` commit merges without a verdict)")
        bfixes.append("Settings → Merge requests → Merge checks → untick \"Skipped pipelines are considered "
                      "successful\"")
    out.append(failed(NO_BYPASS, path, join(bypass), join(bfixes, " ")) if bypass else
               passed(NO_BYPASS, path, f"nobody pushes to {default} directly or force-pushes"))
    return out


def _policy_file(api: GitLabApi, pid: str, branch: str) -> PolicyFile:
    got = api.get(f"/projects/{pid}/repository/files/{_pid(POLICY_PATH)}", {"ref": branch})
    if got.status == 404:
        return PolicyFile(None)
    if not got.ok:
        return PolicyFile(None, got.why(), "Give the token's user at least the Developer role (it reads files)")
    if got.data.get("encoding") != "base64":
        return PolicyFile(None, "the file is not readable through the files API", "Keep .agentgate.yml small")
    return PolicyFile(base64.b64decode(got.data.get("content") or "").decode("utf-8", errors="replace"))


def judge_environments(api: GitLabApi, pid: str, path: str, policy: Policy) -> Check:
    envs = api.get(f"/projects/{pid}/environments", {"per_page": 100})
    if not envs.ok:
        return failed(DEPLOYMENT_PROTECTION, path, f"cannot list environments: {envs.why()}",
                      "Give the token's user at least the Developer role")
    wanted = [str(e["name"]) for e in envs.data if is_protected_environment(policy, str(e.get("name") or ""))]
    if not wanted:
        return passed(DEPLOYMENT_PROTECTION, path, "no environment matches the policy's protected environments")
    prot = api.get(f"/projects/{pid}/protected_environments", {"per_page": 100})
    if not prot.ok:
        return failed(DEPLOYMENT_PROTECTION, path, f"cannot read protected environments: {prot.why()}",
                      "Give the token's user the Maintainer role so doctor can read protected environments")
    by_name = {str(p.get("name")): p for p in prot.data}
    bad = []
    for name in wanted:
        rule = by_name.get(name)
        approvals = 0 if rule is None else max(
            [int(rule.get("required_approval_count") or 0)]
            + [int(r.get("required_approvals") or 0) for r in rule.get("approval_rules") or []])
        if approvals < 1:
            bad.append(name)
    if bad:
        return failed(DEPLOYMENT_PROTECTION, path,
                      f"{', '.join(bad)} deploy without a human's approval (on GitLab a pipeline a bot started is "
                      "only flagged after the fact)",
                      f"Settings → CI/CD → Protected environments → protect {', '.join(bad)} with at least one "
                      "required approval")
    return passed(DEPLOYMENT_PROTECTION, path, f"deploying to {', '.join(wanted)} needs a human's approval")
