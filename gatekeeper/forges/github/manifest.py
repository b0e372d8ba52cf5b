"""The agentgate GitHub App's manifest, and the one API call of GitHub's App-manifest flow.

The App's permissions are a ceiling, not what agentgate uses: every job mints an installation token
scoped to one repository and the few permissions its capabilities need (forge.py), and every agent
token carries only what the repository's policy grants. The ceiling is the union of four needs, each
kept here as its own constant with the reason for every entry, so a reviewer can see why the App asks
for each permission and a test can hold the manifest, the code and docs/setup.md to each other:

- what agentgate's own jobs do (forge.PERMISSIONS, capability by capability);
- what the subscribed webhook events require (GitHub sends an event only to an App holding its permission);
- what `agentgate doctor` reads to prove the gate is real (branch protection, rulesets, environments);
- what agentgate may hand on to agents (`AGENT_GRANTABLE`): an installation cannot mint a token with
  more than the App holds.

The flow (GitHub's "Registering a GitHub App from a manifest"): a form posts `manifest` (JSON) to
`{github}/settings/apps/new?state=S` (or `/organizations/ORG/settings/apps/new`); GitHub creates the
App and redirects to `redirect_url?code=C&state=S`; within one hour, `POST /app-manifests/C/conversions`
(no authentication) answers 201 with the App's id, slug, private key (`pem`), `webhook_secret`,
`client_id`, `client_secret` and `html_url`. A code converts once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from gatekeeper.forges.github.forge import permissions_for
from gatekeeper.forges.github.webhooks import SUBSCRIBED
from gatekeeper.forges.port import Capability

API_VERSION = "2022-11-28"
DEFAULT_APP_NAME = "agentgate"
_LEVEL = {"read": 1, "write": 2, "admin": 3}

# -- the four needs ---------------------------------------------------------------------------------
# agentgate's own jobs: the union over every capability (evaluate, comment, labels, deployments, the
# optional check run). Derived, so a new capability in forge.py reaches the manifest by itself.
OWN_PERMISSIONS: dict[str, str] = permissions_for(frozenset(Capability))

# The permission GitHub requires of an App before it delivers each event (GitHub's "Webhook events and
# payloads", the availability of each event for GitHub Apps).
EVENT_PERMISSIONS: dict[str, tuple[str, str]] = {
    "pull_request": ("pull_requests", "read"),
    "pull_request_review": ("pull_requests", "read"),
    "pull_request_review_comment": ("pull_requests", "read"),
    "issue_comment": ("issues", "read"),
    "issues": ("issues", "read"),
    "push": ("contents", "read"),
    "status": ("statuses", "read"),
    "check_suite": ("checks", "read"),
    "check_run": ("checks", "read"),
    "workflow_run": ("actions", "read"),
    "workflow_job": ("actions", "read"),
    "merge_group": ("merge_queues", "read"),
    "deployment_protection_rule": ("deployments", "read"),
}

# `agentgate doctor`: branch protection and rulesets (who must pass `agentgate`, who may bypass it) are
# Administration: read; environments and their deployment protection rules are Actions: read (GitHub
# documents both environment reads under Actions, so the broader Environments permission, which covers
# environment secrets and variables, is not asked for). The delivery log is read with the App's JWT.
DOCTOR_PERMISSIONS: dict[str, str] = {"administration": "read", "actions": "read"}

# What an agent may be given through `POST /api/v1/tokens`, at most. The App must hold each of these,
# since an installation token cannot exceed the App; a policy that grants anything else is refused by
# GitHub (fail closed) until an owner adds that permission to the App by hand.
AGENT_GRANTABLE: dict[str, str] = {
    "contents": "write",  # push the agent's branch
    "pull_requests": "write",  # open and update its pull request, answer review comments
    "issues": "write",  # comment on and update the task issue it works on
    "checks": "read",  # read CI results to fix its own change
    "statuses": "read",  # the same for commit statuses (including agentgate's verdict)
    "actions": "read",  # read workflow runs and their logs
}
# Never grantable through the App, on purpose: each would let an agent route around the gate.
NEVER_GRANTED: dict[str, str] = {
    "workflows": "changing .github/workflows runs code with the repository's secrets and can rewrite CI itself",
    "administration": "would let an agent change branch protection, rulesets and the required `agentgate` check",
    "secrets": "would hand an agent the credentials CI and deployments use",
    "environments": "covers environment secrets and variables, and environment protection",
}

# Why the App holds each permission: the reason shown in docs/setup.md (a test keeps the two equal).
PERMISSION_REASONS: dict[str, str] = {
    "metadata": "mandatory for every App: repository names, ids and collaborators' permission levels",
    "contents": "read `.agentgate.yml` at the base commit, files and commits of a pull request; "
                "write only in tokens granted to agents (push their branch)",
    "pull_requests": "read pull requests, reviews and files; write the one agentgate comment; agents may be "
                     "granted write to open and update their pull request",
    "issues": "read the task issue, its labels and timeline; write to remove a bot's trigger label; agents may "
              "be granted write to comment on their task",
    "statuses": "write the `agentgate` commit status, the verdict branch protection requires",
    "checks": "write the optional `agentgate` check run (AGENTGATE_CHECK_RUNS); receive check_run and "
              "check_suite events",
    "deployments": "write: approve or reject a deployment through the deployment protection rule callback",
    "actions": "read workflow runs (who started a chain), environments and their protection rules "
               "(`agentgate doctor`)",
    "merge_queues": "read: receive merge_group events to gate a merge queue's SHA",
    "administration": "read branch protection and rulesets: `agentgate doctor` checks that `agentgate` is a "
                      "required check bound to this App with no bypass",
}

EVENT_REASONS: dict[str, str] = {
    "pull_request": "evaluate a pull request when it is opened, pushed to, retargeted or edited",
    "pull_request_review": "an approval of the head (or a dismissal) changes the verdict",
    "pull_request_review_comment": "commands to other bots written in review comments",
    "issue_comment": "commands to other bots (`/deploy`, `bors r+`, ...) and edits of them",
    "issues": "task issues: their approval labels, assignments, closing (which also revokes agent tokens)",
    "push": "pushes straight to a protected branch, and tag pushes that start release workflows",
    "status": "someone else posting an `agentgate` status is tampering",
    "check_suite": "a new head's CI starting: re-evaluate the pull requests at that head",
    "check_run": "re-requested runs and runs that report on a head",
    "workflow_run": "workflow runs a bot or agent started (a chain to privileged workflows)",
    "workflow_job": "jobs waiting on a protected environment",
    "merge_group": "give a merge queue's SHA an `agentgate` status",
    "deployment_protection_rule": "approve or reject a deployment to a protected environment",
}


def _merge(*sources: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for source in sources:
        for name, level in source.items():
            if _LEVEL[level] > _LEVEL.get(merged.get(name, ""), 0):
                merged[name] = level
    return merged


def app_events() -> list[str]:
    """The events the App subscribes to: exactly those webhooks.py parses."""
    return sorted(SUBSCRIBED)


def app_permissions() -> dict[str, str]:
    """The App's permissions: the union of the four needs, each at the highest level one of them needs."""
    # KeyError here: a newly parsed event needs its permission named in EVENT_PERMISSIONS.
    for_events = [dict([EVENT_PERMISSIONS[event]]) for event in app_events()]
    merged = _merge(OWN_PERMISSIONS, *for_events, DOCTOR_PERMISSIONS, AGENT_GRANTABLE)
    return dict(sorted(merged.items()))


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def build_manifest(public_url: str, *, name: str = DEFAULT_APP_NAME, redirect_url: str | None = None) -> dict[str, Any]:
    """The manifest GitHub registers the App from. `public_url` is where GitHub reaches `agentgate serve`."""
    base = _http_url(public_url, "the public URL")
    if not name.strip() or len(name) > 34:  # GitHub: an App's name is at most 34 characters
        raise ValueError("the App's name must be 1 to 34 characters")
    manifest: dict[str, Any] = {
        "name": name,
        "url": base,
        "description": "Governs what AI coding agents and other bots may do: a required `agentgate` status, "
                       "chain controls and just-in-time agent tokens.",
        "hook_attributes": {"url": f"{base}/webhooks/github", "active": True},
        # Private: only the account that registers it can install it, so no one else's deliveries arrive.
        "public": False,
        "default_permissions": app_permissions(),
        "default_events": app_events(),
        "request_oauth_on_install": False,
    }
    if redirect_url is not None:
        manifest["redirect_url"] = _http_url(redirect_url, "the redirect URL")
    return manifest


# -- the conversion ---------------------------------------------------------------------------------
# GitHub's codes are short hex strings. Anything else is refused before it is put in a URL path, so a
# crafted callback cannot turn the unauthenticated POST into a request to another API path.
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")
# What can be written unquoted to a .env line (GitHub's webhook secrets and ids are hex and digits).
_ENV_SAFE = re.compile(r"[A-Za-z0-9._~+/=:@-]{1,512}")


class ConversionError(Exception):
    """The code could not be exchanged; the message says why and what to do, and holds no secret."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RegisteredApp:
    """What the conversion returns. Secrets are kept out of repr, so a log of this object leaks nothing."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str
    client_id: str
    pem: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    client_secret: str = field(repr=False, default="")


def valid_code(code: str) -> bool:
    return bool(_CODE.fullmatch(code))


def convert(code: str, api_url: str, *, timeout: float = 15.0,
            session: requests.Session | None = None) -> RegisteredApp:
    """`POST /app-manifests/{code}/conversions`: the App's id, key and webhook secret, once per code."""
    if not valid_code(code):
        raise ConversionError("the callback's code is not a GitHub manifest code; nothing was exchanged")
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    http = session or requests.Session()
    try:
        # No Authorization: the code is the credential. Redirects are not followed: the answer carries
        # the App's private key and must come from the API URL that was configured.
        resp = http.post(url, headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                                       "User-Agent": "agentgate-setup"},
                         timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise ConversionError(f"could not reach the GitHub API at {api_url}: {type(exc).__name__}") from None
    if resp.status_code == 404:
        raise ConversionError("GitHub does not know this code: it was already exchanged, or it expired (a code "
                              "is valid for one hour). Run `agentgate setup github` again.", 404)
    if resp.status_code == 422:
        raise ConversionError(f"GitHub refused the code ({_message(resp)}). Run `agentgate setup github` again.",
                              422)
    if resp.status_code != 201:
        raise ConversionError(f"GitHub answered {resp.status_code} to the code exchange ({_message(resp)})",
                              resp.status_code)
    try:
        data = resp.json()
    except ValueError:
        raise ConversionError("GitHub's answer to the code exchange is not JSON", 201) from None
    return _registered(data)


def _message(resp: requests.Response) -> str:
    # Only error answers get here: they carry a message, never credentials.
    try:
        message = resp.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else f"HTTP {resp.status_code}"


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


def _registered(data: Any) -> RegisteredApp:
    """Check the 201 answer's shape without ever echoing its values (it holds the private key)."""
    if not isinstance(data, dict):
        raise ConversionError("GitHub's answer to the code exchange is not an object", 201)
    app_id, pem, secret = data.get("id"), data.get("pem"), data.get("webhook_secret")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
        raise ConversionError("GitHub's answer has no App id", 201)
    if not isinstance(pem, str) or "PRIVATE KEY-----" not in pem:
        raise ConversionError("GitHub's answer has no private key", 201)
    if secret is not None and (not isinstance(secret, str) or not _ENV_SAFE.fullmatch(secret)):
        raise ConversionError("GitHub's answer has a webhook secret agentgate cannot store safely", 201)
    raw_owner = data.get("owner")
    owner: dict[str, Any] = raw_owner if isinstance(raw_owner, dict) else {}
    slug, name, html_url = (str(data.get(k) or "") for k in ("slug", "name", "html_url"))
    # These reach the .env (a comment line) and the terminal: only shapes GitHub gives them, nothing that
    # could start a line of its own.
    if slug and not _SLUG.fullmatch(slug):
        raise ConversionError("GitHub's answer has an App slug agentgate cannot store safely", 201)
    if html_url and not (html_url.startswith("https://") and env_safe(html_url)):
        raise ConversionError("GitHub's answer has an App URL agentgate cannot store safely", 201)
    if any(not ch.isprintable() for ch in name) or len(name) > 100:
        raise ConversionError("GitHub's answer has an App name agentgate cannot store safely", 201)
    return RegisteredApp(id=app_id, slug=slug, name=name,
                         html_url=html_url, owner=str(owner.get("login") or ""),
                         client_id=str(data.get("client_id") or ""), pem=pem, webhook_secret=secret or None,
                         client_secret=str(data.get("client_secret") or ""))


def env_safe(value: str) -> bool:
    """A value that can be written to a .env line as it is."""
    return bool(_ENV_SAFE.fullmatch(value))


__all__ = ["AGENT_GRANTABLE", "DOCTOR_PERMISSIONS", "EVENT_PERMISSIONS", "EVENT_REASONS", "NEVER_GRANTED",
           "OWN_PERMISSIONS", "PERMISSION_REASONS", "ConversionError", "RegisteredApp", "app_events",
           "app_permissions", "build_manifest", "convert", "env_safe", "valid_code"]
