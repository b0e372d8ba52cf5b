"""`agentgate doctor` on GitHub: what GitHub is asked, and how each answer becomes a check.

Asked as the App (its JWT): `GET /app` (the registration's permissions and events), `GET /app/installations`
(what each installation accepted), `GET /app/hook/deliveries` (the webhook's delivery log). Asked with one
read-only installation token per installation (revoked at the end): `GET /installation/repositories`, and per
repository its default branch, its `.agentgate.yml`, its protected branches, each branch's classic protection
(`required_status_checks.checks[].app_id`, `enforce_admins`) and active ruleset rules
(`required_status_checks[].integration_id`, the ruleset's `bypass_actors`, merge queues), its environments and
their custom deployment protection rules. Every list is one page (100 items); repositories and branches are
capped and the cap is said.

Facts are gathered first; each check is then a plain function of them (`branch_requirements`, `judge_*`)."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from gatekeeper.forges.github.auth import app_request
from gatekeeper.forges.github.deliveries import delivery
from gatekeeper.forges.github.forge import PERMISSIONS as CAPABILITY_PERMISSIONS
from gatekeeper.forges.github.webhooks import SUBSCRIBED
from gatekeeper.forges.port import Capability
from gatekeeper.policy.load import POLICY_PATH, org_refs
from gatekeeper.policy.model import Policy
from gatekeeper.settings import Settings

log = logging.getLogger(__name__)

MAX_REPOSITORIES = 100
MAX_BRANCHES = 20  # protected branches checked per repository (each costs two or three calls)
MAX_DELIVERY_PAGES = 3
DELIVERY_WINDOW = timedelta(hours=24)
_LEVEL = {"read": 1, "write": 2, "admin": 3}

# Events agentgate handles need these permissions to be delivered at all (GitHub ties each event to one).
EVENT_PERMISSIONS = {"checks": "read",  # check_run, check_suite
                     "merge_queues": "read"}  # merge_group
# What doctor's own token reads: nothing it writes. Administration is asked at the installation's level:
# GitHub shows a ruleset's bypass list only to those who may edit it.
DOCTOR_READS = ("metadata", "contents", "administration", "actions")

# Where each refused read is granted.
NEEDS_ADMINISTRATION = "Administration: Read-only"
NEEDS_ACTIONS = "Actions: Read-only"
NEEDS_CONTENTS = "Contents: Read-only"


def required_permissions(settings: Settings) -> dict[str, str]:
    """What agentgate needs of the App: every job's capability, and what its subscribed events need."""
    capabilities = {Capability.READ, Capability.STATUSES, Capability.COMMENT, Capability.LABELS,
                    Capability.DEPLOYMENTS} | ({Capability.CHECKS} if settings.check_runs else set())
    needed: dict[str, str] = dict(EVENT_PERMISSIONS)
    for capability in capabilities:
        for name, level in CAPABILITY_PERMISSIONS.get(capability, {}).items():
            if _LEVEL[level] > _LEVEL.get(needed.get(name, ""), 0):
                needed[name] = level
    return dict(sorted(needed.items()))


def required_events() -> tuple[str, ...]:
    return tuple(sorted(SUBSCRIBED))


# ---- facts -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refused:
    """A read GitHub answered with something other than the data: why, and what would let doctor read it."""

    status: int
    message: str
    grant: str | None = None  # the App permission that would allow it, when it was a 403

    def why(self) -> str:
        if self.status == 403 and self.grant:
            return f"GitHub refused ({self.status}): the App lacks {self.grant}"
        if self.status == 200:  # answered, but without what doctor needs
            return self.message
        return f"GitHub answered {self.status or 'nothing'}" + (f": {self.message}" if self.message else "")

    def fix(self, slug: str) -> str:
        if self.status in (200, 403) and self.grant:
            return grant_fix(slug, self.grant)
        return "Run `agentgate doctor` again; if it persists, check that GitHub is reachable from here"


def grant_fix(slug: str, grant: str) -> str:
    return (f"Give the App {grant}: GitHub → Settings → Developer settings → GitHub Apps → {slug} → "
            f"Permissions & events, then accept the new permission in each installation (Settings → GitHub Apps "
            f"→ {slug} → Configure → Review request)")


@dataclass(frozen=True)
class Requirement:
    """One active requirement of the `agentgate` status on a branch."""

    source: str  # "branch protection" | "ruleset 'NAME'"
    app_id: int | None  # the App it must come from; None: any source
    bypass: tuple[str, ...] | None  # who may bypass it; None: cannot be seen
    bypass_fix: str  # how to remove the bypass
    bind_fix: str  # how to pin the source to agentgate
    unseen: Refused | None = None  # why `bypass` is None


@dataclass(frozen=True)
class BranchFacts:
    name: str
    protection: dict[str, Any] | None | Refused  # None: not protected
    rules: list[dict[str, Any]] | Refused
    rulesets: dict[int, dict[str, Any] | Refused]


@dataclass
class RepoFacts:
    full_name: str
    default_branch: str
    branches: list[BranchFacts] = field(default_factory=list)
    branches_capped: int = 0
    branch_list: Refused | None = None
    environments: list[str] | Refused = field(default_factory=list)
    protection_rules: dict[str, list[dict[str, Any]] | Refused] = field(default_factory=dict)


# ---- GitHub ------------------------------------------------------------------------------------------------------

class GitHubApi:
    """Just enough REST for doctor: GETs as the App or with a token, a read-only token, its revocation."""

    def __init__(self, settings: Settings, session: requests.Session | None = None):
        if not settings.has_github_credentials:
            raise DoctorError("no GitHub App credentials: set AGENTGATE_GITHUB_APP_ID and "
                              "AGENTGATE_GITHUB_PRIVATE_KEY_PATH (or AGENTGATE_GITHUB_PRIVATE_KEY)")
        self.api = settings.github_api_url.rstrip("/")
        self.app_id = str(settings.github_app_id)
        self.private_key = str(settings.github_private_key)
        self.timeout = settings.github_timeout
        self.session = session or requests.Session()

    def as_app(self, path: str, params: dict[str, Any] | None = None) -> requests.Response | None:
        try:
            return app_request(self.session, "GET", f"{self.api}{path}", api_url=self.api, app_id=self.app_id,
                               private_key=self.private_key, params=params)
        except requests.RequestException as exc:
            log.warning("GitHub unreachable for %s: %s", path, type(exc).__name__)
            return None

    def get(self, token: str, path: str, params: dict[str, Any] | None = None) -> requests.Response | None:
        try:
            return self.session.get(f"{self.api}{path}", params=params, timeout=self.timeout, headers={
                "Authorization": f"token {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"})
        except requests.RequestException as exc:
            log.warning("GitHub unreachable for %s: %s", path, type(exc).__name__)
            return None

    def mint(self, installation_id: int, permissions: dict[str, str]) -> str | None:
        try:
            url = f"{self.api}/app/installations/{int(installation_id)}/access_tokens"
            resp = app_request(self.session, "POST", url, api_url=self.api, app_id=self.app_id,
                               private_key=self.private_key, json_body={"permissions": permissions})
        except requests.RequestException:
            return None
        return str(resp.json()["token"]) if resp.status_code == 201 else None

    def revoke(self, token: str) -> None:
        try:
            self.session.delete(f"{self.api}/installation/token", timeout=self.timeout, headers={
                "Authorization": f"token {token}", "Accept": "application/vnd.github+json"})
        except requests.RequestException:
            pass  # it expires within the hour anyway


def _read(resp: requests.Response | None, grant: str | None = None, missing_ok: bool = False) -> Any:
    """The JSON of a 200, None for a 404 when `missing_ok`, else a `Refused`."""
    if resp is None:
        return Refused(0, "GitHub could not be reached")
    if resp.status_code == 200:
        return resp.json()
    if resp.status_code == 404 and missing_ok:
        return None
    try:
        message = str(resp.json().get("message", ""))[:200]
    except ValueError:
        message = ""
    return Refused(resp.status_code, message, grant)


# ---- the run -----------------------------------------------------------------------------------------------------

def run(settings: Settings, only_repo: str | None = None, session: requests.Session | None = None,
        now: datetime | None = None) -> Report:
    api = GitHubApi(settings, session)
    app = _read(api.as_app("/app"))
    if isinstance(app, Refused):
        raise DoctorError(f"GitHub did not accept the App's credentials at {api.api}: {app.why()}")
    app_id, slug = int(app["id"]), str(app.get("slug") or "agentgate")
    installations = _read(api.as_app("/app/installations", {"per_page": 100}))
    if isinstance(installations, Refused):
        raise DoctorError(f"could not list the App's installations: {installations.why()}")
    checks: list[Check] = [judge_permissions(settings, app, installations)]
    checks.append(judge_deliveries(_recent_deliveries(api, now or datetime.now(UTC)), slug))
    notes: list[str] = []
    wanted = only_repo.casefold() if only_repo else None
    found_wanted = False
    budget = MAX_REPOSITORIES
    for inst in installations:
        if inst.get("suspended_at"):
            continue  # reported by `permissions`; a suspended installation cannot mint tokens
        if wanted and str((inst.get("account") or {}).get("login", "")).casefold() != wanted.split("/")[0]:
            continue
        token = api.mint(int(inst["id"]), _doctor_permissions(inst.get("permissions") or {}))
        if token is None:
            notes.append(f"could not mint a read-only token for installation {inst['id']}")
            continue
        try:
            listed = _read(api.get(token, "/installation/repositories", {"per_page": 100}))
            if isinstance(listed, Refused):
                notes.append(f"could not list installation {inst['id']}'s repositories: {listed.why()}")
                continue
            names = [str(r["full_name"]) for r in listed.get("repositories", [])]
            if int(listed.get("total_count") or 0) > len(names):
                notes.append(f"installation {inst['id']}: checked the first {len(names)} of "
                             f"{listed['total_count']} repositories (use --repo for the others)")
            for name in names:
                if wanted and name.casefold() != wanted:
                    continue
                if budget <= 0:
                    notes.append(f"stopped after {MAX_REPOSITORIES} repositories (use --repo for the others)")
                    break
                budget -= 1
                found_wanted = True
                checks += check_repository(api, token, name, settings, app_id, slug,
                                           set(inst.get("events") or []))
        finally:
            api.revoke(token)
    if wanted and not found_wanted:
        checks.append(failed(PERMISSIONS, only_repo, f"the {slug} App is not installed on {only_repo} (or cannot "
                                                     "reach it)",
                             f"Install the App on it: GitHub → {wanted.split('/')[0]} Settings → GitHub Apps → "
                             f"{slug} → Configure → Repository access → add {only_repo}"))
    return Report(tuple(checks), tuple(notes))


def _doctor_permissions(granted: dict[str, str]) -> dict[str, str]:
    """Reads only, and only what the installation has (GitHub refuses a token asking for more)."""
    out = {}
    for name in DOCTOR_READS:
        level = granted.get(name)
        if level:
            out[name] = level if name == "administration" else "read"
    return out


def check_repository(api: GitHubApi, token: str, full_name: str, settings: Settings, app_id: int, slug: str,
                     events: set[str]) -> list[Check]:
    path = f"/repos/{full_name}"
    repo = _read(api.get(token, path))
    if isinstance(repo, Refused):
        why = f"could not read {full_name}: {repo.why()}"
        return [failed(cid, full_name, why, repo.fix(slug))
                for cid in (REQUIRED_CHECK, CHECK_BOUND_TO_APP, NO_BYPASS, DEPLOYMENT_PROTECTION)]
    default = str(repo.get("default_branch") or "main")
    policy_file, org_files = _policy_file(api, token, full_name, default)
    policy_result, policy = policy_check(full_name, default, policy_file, org_files)
    facts = gather(api, token, full_name, default, policy)
    checks = judge_branches(facts, app_id, slug, settings.status_context,
                            merge_group_delivered="merge_group" in events)
    checks.append(judge_environments(facts, policy, app_id, slug))
    checks.append(policy_result)
    return checks


def _policy_file(api: GitHubApi, token: str, full_name: str, branch: str) -> tuple[PolicyFile, dict[str, str | None]]:
    def fetch(repo: str) -> str | None | Refused:
        got = _read(api.get(token, f"/repos/{repo}/contents/{POLICY_PATH}", {"ref": branch if repo == full_name
                                                                                else None}),
                    NEEDS_CONTENTS, missing_ok=True)
        if got is None or isinstance(got, Refused):
            return got
        if not isinstance(got, dict) or got.get("encoding") != "base64":
            return Refused(200, f"{POLICY_PATH} is a directory or too large to read")
        return base64.b64decode(got.get("content") or "").decode("utf-8", errors="replace")

    text = fetch(full_name)
    if isinstance(text, Refused):
        return PolicyFile(None, text.why(), text.fix("agentgate")), {}
    org_files: dict[str, str | None] = {}
    owner = full_name.split("/", 1)[0]
    for ref in org_refs(text):
        # The worker reads `org:NAME` from the same owner with the same installation; unreadable = missing.
        got = fetch(f"{owner}/{ref.removeprefix('org:')}")
        org_files[ref] = got if isinstance(got, str) else None
    return PolicyFile(text), org_files


def gather(api: GitHubApi, token: str, full_name: str, default: str, policy: Policy) -> RepoFacts:
    facts = RepoFacts(full_name, default)
    path = f"/repos/{full_name}"
    listed = _read(api.get(token, f"{path}/branches", {"protected": "true", "per_page": 100}))
    names = [default]
    if isinstance(listed, Refused):
        facts.branch_list = listed
    else:
        names += [str(b["name"]) for b in listed if b.get("name") != default]
    facts.branches_capped = max(0, len(names) - MAX_BRANCHES)
    rulesets: dict[int, dict[str, Any] | Refused] = {}
    for name in names[:MAX_BRANCHES]:
        branch = quote(name, safe="")
        protection = _read(api.get(token, f"{path}/branches/{branch}/protection"), NEEDS_ADMINISTRATION,
                           missing_ok=True)
        rules = _read(api.get(token, f"{path}/rules/branches/{branch}", {"per_page": 100}))
        if not isinstance(rules, Refused):
            for rule in rules:
                rid = rule.get("ruleset_id")
                if rule.get("type") == "required_status_checks" and isinstance(rid, int) and rid not in rulesets:
                    rulesets[rid] = _read(api.get(token, f"{path}/rulesets/{rid}"), NEEDS_ADMINISTRATION)
        facts.branches.append(BranchFacts(name, protection, rules, rulesets))
    envs = _read(api.get(token, f"{path}/environments", {"per_page": 100}), NEEDS_ACTIONS)
    if isinstance(envs, Refused):
        facts.environments = envs
    else:
        facts.environments = [str(e["name"]) for e in envs.get("environments", [])]
        for env in facts.environments:
            if is_protected_environment(policy, env):
                got = _read(api.get(token, f"{path}/environments/{quote(env, safe='')}/deployment_protection_rules"),
                            NEEDS_ACTIONS)
                facts.protection_rules[env] = got if isinstance(got, Refused) else list(
                    got.get("custom_deployment_protection_rules") or [])
    return facts


def _recent_deliveries(api: GitHubApi, now: datetime) -> list[dict[str, Any]] | Refused:
    """The App's delivery log back to 24 hours ago (newest first, following GitHub's cursor)."""
    floor = now - DELIVERY_WINDOW
    out: list[dict[str, Any]] = []
    url: str | None = f"{api.api}/app/hook/deliveries?per_page=100"
    for _ in range(MAX_DELIVERY_PAGES):
        if url is None:
            break
        resp = api.as_app(url[len(api.api):])
        page = _read(resp)
        if isinstance(page, Refused):
            return page
        recent = [d for d in page if _when(str(d.get("delivered_at") or "")) >= floor]
        out += recent
        if len(recent) < len(page) or not page:
            break
        url = resp.links.get("next", {}).get("url") if resp is not None else None
        if url is not None and not url.startswith(f"{api.api}/"):
            break  # the JWT goes only to the API it came from
    return out


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---- judging: each a function of the facts ---------------------------------------------------------------------

def _missing(have: dict[str, str], need: dict[str, str]) -> list[str]:
    return [f"{name}: {level}" for name, level in need.items() if _LEVEL.get(have.get(name, ""), 0) < _LEVEL[level]]


def judge_permissions(settings: Settings, app: dict[str, Any], installations: list[dict[str, Any]]) -> Check:
    slug = str(app.get("slug") or "agentgate")
    need, events = required_permissions(settings), required_events()
    problems: list[str] = []
    fixes: list[str] = []
    lacking = _missing(app.get("permissions") or {}, need)
    unsubscribed = [e for e in events if e not in set(app.get("events") or [])]
    if lacking or unsubscribed:
        problems.append("the App's registration lacks " + join(
            [f"permissions {', '.join(lacking)}" if lacking else "",
             f"events {', '.join(unsubscribed)}" if unsubscribed else ""], " and "))
        fixes.append(f"GitHub → Settings → Developer settings → GitHub Apps → {slug} → Permissions & events: grant "
                     + join([", ".join(lacking), ("subscribe to " + ", ".join(unsubscribed)) if unsubscribed else ""],
                            "; "))
    for inst in installations:
        account = str((inst.get("account") or {}).get("login", "?"))
        where = f"installation {inst.get('id')} ({account})"
        if inst.get("suspended_at"):
            problems.append(f"{where} is suspended: no deliveries, no statuses")
            fixes.append(f"{account} → Settings → GitHub Apps → {slug} → Configure → Unsuspend")
            continue
        inst_lacking = _missing(inst.get("permissions") or {}, need)
        inst_events = [e for e in events if e not in set(inst.get("events") or [])]
        if inst_lacking or inst_events:
            problems.append(f"{where} has not accepted " + join(
                [f"permissions {', '.join(inst_lacking)}" if inst_lacking else "",
                 f"events {', '.join(inst_events)}" if inst_events else ""], " and "))
            fixes.append(f"{account} → Settings → GitHub Apps → {slug} → Configure → Review request, and accept "
                         "the new permissions")
    if not installations:
        problems.append("the App is installed nowhere")
        fixes.append(f"Install it: https://github.com/apps/{slug}/installations/new")
    if problems:
        return failed(PERMISSIONS, None, join(problems), join(fixes))
    return passed(PERMISSIONS, None, f"the App and its {len(installations)} installation(s) have every permission "
                                     f"({', '.join(f'{k}: {v}' for k, v in need.items())}) and event agentgate needs")


def judge_deliveries(recent: list[dict[str, Any]] | Refused, slug: str) -> Check:
    if isinstance(recent, Refused):
        if recent.status == 404:
            return failed(DELIVERIES, None, "the App has no webhook (GitHub has no delivery log for it)",
                          f"GitHub → Settings → Developer settings → GitHub Apps → {slug} → General → Webhook: "
                          "tick Active and set the URL to https://YOUR-HOST/webhooks/github and the secret")
        return failed(DELIVERIES, None, f"could not read the App's delivery log: {recent.why()}", recent.fix(slug))
    parsed = [delivery(d) for d in recent]
    bad = [d for d in parsed if not d.ok]
    if not bad:
        return passed(DELIVERIES, None, f"webhook deliveries in the last 24 hours: {len(parsed)}, none failed")
    recovered = {d.guid for d in parsed if d.ok}
    later_ok = sum(1 for d in bad if d.guid in recovered)
    codes = join([f"{d.status_code or d.status}" for d in bad], ", ")
    return failed(DELIVERIES, None,
                  f"{len(bad)} of {len(parsed)} webhook deliveries failed in the last 24 hours (answers: {codes}); "
                  f"{later_ok} of them were redelivered since",
                  f"GitHub → Settings → Developer settings → GitHub Apps → {slug} → Advanced → Recent Deliveries shows "
                  "each failure: make https://YOUR-HOST/webhooks/github reachable with the App's webhook secret and "
                  "keep `agentgate worker` running (it redelivers failed deliveries)")


def branch_requirements(branch: BranchFacts, context: str) -> list[Requirement]:
    """Every active requirement of `context` on one branch, from classic protection and rulesets."""
    found: list[Requirement] = []
    prot = branch.protection
    settings_path = f"Settings → Branches → edit the rule for {branch.name}"
    if isinstance(prot, dict):
        rsc = prot.get("required_status_checks") or {}
        checks = [c for c in rsc.get("checks") or [] if c.get("context") == context]
        legacy = context in (rsc.get("contexts") or [])
        if checks or legacy:
            bound = next((c.get("app_id") for c in checks if c.get("app_id") is not None), None)
            admins = bool((prot.get("enforce_admins") or {}).get("enabled"))
            found.append(Requirement(
                "branch protection", int(bound) if bound is not None else None,
                () if admins else ("repository admins",),
                f"{settings_path} → tick \"Do not allow bypassing the above settings\"",
                f"{settings_path} → Require status checks → `{context}` → set its source to the agentgate App "
                "(not \"any source\")"))
    if isinstance(branch.rules, list):
        for rule in branch.rules:
            if rule.get("type") != "required_status_checks":
                continue
            params = rule.get("parameters") or {}
            hits = [c for c in params.get("required_status_checks") or [] if c.get("context") == context]
            if not hits:
                continue
            rid = rule.get("ruleset_id")
            ruleset = branch.rulesets.get(rid) if isinstance(rid, int) else None
            name = ruleset.get("name") if isinstance(ruleset, dict) else None
            label = f"ruleset '{name or rid}'"
            path = f"Settings → Rules → Rulesets → {name or rid}"
            bound = next((c.get("integration_id") for c in hits if c.get("integration_id") is not None), None)
            bypass: tuple[str, ...] | None
            unseen: Refused | None = None
            if isinstance(ruleset, dict) and ruleset.get("enforcement", "active") != "active":
                continue
            if isinstance(ruleset, dict) and "bypass_actors" in ruleset:
                bypass = tuple(_actor(a) for a in ruleset.get("bypass_actors") or [])
            else:
                bypass = None
                unseen = ruleset if isinstance(ruleset, Refused) else Refused(
                    200, "GitHub shows a ruleset's bypass list only to those who may edit it",
                    "Administration: Read and write")
            found.append(Requirement(label, int(bound) if bound is not None else None, bypass,
                                     f"{path} → Bypass list → remove every entry",
                                     f"{path} → Require status checks to pass → `{context}` → choose the agentgate "
                                     "App as its source", unseen))
    return found


def _actor(actor: dict[str, Any]) -> str:
    kind, ident = actor.get("actor_type"), actor.get("actor_id")
    mode = actor.get("bypass_mode") or "always"
    what = {"Integration": f"the App with id {ident}", "OrganizationAdmin": "organisation admins",
            "RepositoryRole": {5: "repository admins", 2: "maintainers", 4: "writers"}.get(ident or 0,
                                                                                         f"repository role {ident}"),
            "Team": f"team {ident}", "DeployKey": "deploy keys", "User": f"user {ident}"}.get(str(kind), str(kind))
    return what if mode == "always" else f"{what} ({mode.replace('_', ' ')})"


def _branch_verdicts(branch: BranchFacts, app_id: int, slug: str, context: str) -> dict[str, tuple[bool, str, str]]:
    """(ok, message, fix) for required-check, check-bound-to-app and no-bypass on one branch."""
    reqs = branch_requirements(branch, context)
    refused = next((r for r in (branch.protection, branch.rules) if isinstance(r, Refused)), None)
    b = branch.name
    add_fix = (f"Settings → Rules → Rulesets → New branch ruleset targeting {b} → Require status checks to pass → "
               f"add `{context}` with the agentgate App as its source (or Settings → Branches → a rule for {b} → "
               f"Require status checks to pass before merging → `{context}`)")
    out: dict[str, tuple[bool, str, str]] = {}
    if reqs:
        out[REQUIRED_CHECK] = (True, f"{b}: required by {join([r.source for r in reqs], ' and ')}", "")
    elif refused is not None:
        out[REQUIRED_CHECK] = (False, f"{b}: cannot tell whether `{context}` is required: {refused.why()}",
                               refused.fix(slug))
    else:
        out[REQUIRED_CHECK] = (False, f"{b}: no branch protection or active ruleset requires `{context}`, so a "
                                      "pull request merges whatever agentgate says", add_fix)
    bound = [r for r in reqs if r.app_id == app_id]
    if bound:
        by = join([r.source for r in bound], " and ")
        out[CHECK_BOUND_TO_APP] = (True, f"{b}: bound to the agentgate App by {by}", "")
    elif refused is not None:
        out[CHECK_BOUND_TO_APP] = (False, f"{b}: cannot tell which source is expected: {refused.why()}",
                                   refused.fix(slug))
    elif not reqs:
        out[CHECK_BOUND_TO_APP] = (False, f"{b}: nothing requires `{context}`, so nothing binds it",
                                   out[REQUIRED_CHECK][2])
    else:
        srcs = join([f"{r.source} (" + ("any source" if r.app_id is None else f"the App with id {r.app_id}") + ")"
                     for r in reqs], ", ")
        out[CHECK_BOUND_TO_APP] = (False, f"{b}: `{context}` is required from {srcs}, so anyone who can post a "
                                          f"status named `{context}` satisfies it", join([r.bind_fix for r in reqs]))
    judged = bound or reqs
    tight = [r for r in judged if r.bypass == ()]
    if tight:
        out[NO_BYPASS] = (True, f"{b}: nobody may bypass {join([r.source for r in tight], ' or ')}", "")
    elif not judged and refused is not None:
        out[NO_BYPASS] = (False, f"{b}: cannot tell who may bypass it: {refused.why()}", refused.fix(slug))
    elif not judged:
        out[NO_BYPASS] = (False, f"{b}: there is no requirement of `{context}` to bypass", out[REQUIRED_CHECK][2])
    else:
        open_ = [r for r in judged if r.bypass]
        unseen = [r for r in judged if r.bypass is None]
        parts = [f"{r.source} may be bypassed by {', '.join(r.bypass or ())}" for r in open_]
        parts += [f"cannot see who may bypass {r.source}: {r.unseen.why() if r.unseen else ''}" for r in unseen]
        if refused is not None:
            parts.append(f"cannot read branch protection: {refused.why()}")
        fixes = [r.bypass_fix for r in open_]
        fixes += [(r.unseen.fix(slug) if r.unseen else grant_fix(slug, "Administration: Read and write"))
                  + f", or check {r.source}'s Bypass list by hand and empty it" for r in unseen]
        out[NO_BYPASS] = (False, f"{b}: " + "; ".join(parts), join(fixes))
    return out


def judge_branches(facts: RepoFacts, app_id: int, slug: str, context: str,
                   merge_group_delivered: bool = True) -> list[Check]:
    """One `required-check`, `check-bound-to-app` and `no-bypass` per repository, over its default branch and
    every protected branch."""
    per_branch = {b.name: _branch_verdicts(b, app_id, slug, context) for b in facts.branches}
    merge_queue = [b.name for b in facts.branches if isinstance(b.rules, list)
                   and any(r.get("type") == "merge_queue" for r in b.rules)]
    notes = []
    if facts.branches_capped:
        notes.append(f"{facts.branches_capped} more protected branches not checked")
    if facts.branch_list is not None:
        notes.append(f"could not list protected branches ({facts.branch_list.why()}): "
                     f"checked {facts.default_branch} only")
    checks = []
    for cid in (REQUIRED_CHECK, CHECK_BOUND_TO_APP, NO_BYPASS):
        verdicts = [v[cid] for v in per_branch.values()]
        bad = [(m, f) for ok, m, f in verdicts if not ok]
        extra = list(notes)
        if cid == REQUIRED_CHECK and merge_queue:
            extra.append(f"merge queue on {', '.join(merge_queue)}: merge groups need the same check"
                         + ("" if merge_group_delivered else
                            ", but the installation does not receive merge_group events"))
            if not merge_group_delivered:
                bad.append((f"merge queue on {', '.join(merge_queue)} without merge_group events",
                            grant_fix(slug, "Merge queues: Read-only and the merge_group event")))
        if bad:
            checks.append(failed(cid, facts.full_name, join([m for m, _ in bad] + extra),
                                 join([f for _, f in bad], " ")))
        else:
            checks.append(passed(cid, facts.full_name, join([m for _, m, _ in verdicts] + extra)))
    return checks


def judge_environments(facts: RepoFacts, policy: Policy, app_id: int, slug: str) -> Check:
    repo = facts.full_name
    if isinstance(facts.environments, Refused):
        return failed(DEPLOYMENT_PROTECTION, repo, f"cannot list environments: {facts.environments.why()}",
                      facts.environments.fix(slug))
    protected = [e for e in facts.environments if is_protected_environment(policy, e)]
    if not protected:
        return passed(DEPLOYMENT_PROTECTION, repo, "no environment matches the policy's protected environments "
                                                   f"({', '.join(policy.chains.protected_environments.patterns)})")
    bad, fixes, good = [], [], []
    for env in protected:
        rules = facts.protection_rules.get(env, [])
        if isinstance(rules, Refused):
            bad.append(f"{env}: cannot read its protection rules: {rules.why()}")
            fixes.append(rules.fix(slug))
        elif any((r.get("app") or {}).get("id") == app_id and r.get("enabled", True) for r in rules):
            good.append(env)
        else:
            bad.append(f"{env} deploys without asking agentgate")
            fixes.append(f"Settings → Environments → {env} → Deployment protection rules → enable {slug}")
    if bad:
        return failed(DEPLOYMENT_PROTECTION, repo, join(bad), join(fixes, " "))
    return passed(DEPLOYMENT_PROTECTION, repo, f"agentgate protects {', '.join(good)}")

