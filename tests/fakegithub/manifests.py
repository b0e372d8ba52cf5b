"""Fake GitHub for the App-manifest flow `agentgate setup github` drives.

Two halves, as on GitHub, where they live on two hosts:

- the API route `POST /app-manifests/{code}/conversions` (api.github.com), served by the fake's app
  like every other REST route: no authentication; a code converts once (then 404) and within one hour
  (then 422). The conversion registers the App in the fake: `state.app_id`, `app_slug` and the public
  key become the new App's, and `hook_url`/`hook_secret` its webhook, so the credentials written by
  setup can be used against the fake right away.
- github.com's form receiver `POST /settings/apps/new` (and `/organizations/{org}/settings/apps/new`),
  a web page rather than an API, so it is served by its own small app (`create_web_app`, started with
  `running_fake_github_web`) and `agentgate setup github --github-url` points at it. It validates the
  posted `manifest` as GitHub does and redirects to `redirect_url?code=...&state=...`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, g, redirect, request
from werkzeug.serving import make_server
from werkzeug.wrappers import Response as BaseResponse

from . import render
from .app import GitHubError, _state, route
from .state import FakeState, iso

CODE_LIFETIME = 3600  # GitHub: "you have one hour" to exchange the code

# GitHub App permission names and the levels each accepts: the `app-permissions` schema of GitHub's
# OpenAPI description (@octokit/openapi, api.github.com.json, components.schemas.app-permissions).
PERMISSION_LEVELS: dict[str, tuple[str, ...]] = {
    **{name: ("read", "write") for name in (
        "actions", "administration", "artifact_metadata", "attestations", "checks", "code_quality", "codespaces",
        "contents", "dependabot_secrets", "deployments", "discussions", "environments", "issues", "merge_queues",
        "metadata", "packages", "pages", "pull_requests", "repository_custom_properties", "repository_hooks",
        "secret_scanning_alerts", "secrets", "security_events", "single_file", "statuses",
        "vulnerability_alerts", "custom_properties_for_organizations", "members", "organization_administration",
        "organization_custom_roles", "organization_custom_org_roles", "organization_copilot_seat_management",
        "organization_copilot_agent_settings", "organization_announcement_banners", "organization_hooks",
        "organization_personal_access_tokens", "organization_personal_access_token_requests",
        "organization_packages", "organization_secrets", "organization_self_hosted_runners",
        "organization_user_blocking", "email_addresses", "followers", "git_ssh_keys", "gpg_keys",
        "interaction_limits", "starring")},
    **{name: ("read", "write", "admin") for name in (
        "repository_projects", "organization_custom_properties", "organization_projects",
        "enterprise_custom_properties_for_organizations")},
    "workflows": ("write",), "profile": ("write",), "organization_events": ("read",), "organization_plan": ("read",),
}
# Webhook events a GitHub App can subscribe to (the same description's `x-webhooks`), with the
# permission GitHub requires before it lets an App subscribe to the ones agentgate uses.
EVENT_PERMISSION: dict[str, str | None] = {
    "pull_request": "pull_requests", "pull_request_review": "pull_requests",
    "pull_request_review_comment": "pull_requests", "pull_request_review_thread": "pull_requests",
    "issue_comment": "issues", "issues": "issues", "label": "issues", "milestone": "issues",
    "push": "contents", "create": "contents", "delete": "contents", "release": "contents",
    "commit_comment": "contents", "status": "statuses", "check_run": "checks", "check_suite": "checks",
    "workflow_run": "actions", "workflow_job": "actions", "workflow_dispatch": "contents",
    "merge_group": "merge_queues", "deployment": "deployments", "deployment_status": "deployments",
    "deployment_protection_rule": "deployments", "deployment_review": "deployments",
    "branch_protection_rule": "administration", "branch_protection_configuration": "administration",
    "repository_ruleset": "administration", "repository": "metadata", "member": "members",
    "meta": None, "public": "metadata", "star": "metadata", "watch": "metadata", "fork": "metadata",
}
# What a manifest may carry (GitHub's "GitHub App Manifest parameters").
MANIFEST_KEYS = {"name", "url", "hook_attributes", "redirect_url", "callback_urls", "setup_url", "description",
                 "public", "default_events", "default_permissions", "request_oauth_on_install", "setup_on_update"}


@dataclass
class Registration:
    """A manifest GitHub accepted, waiting for its code to be converted."""

    manifest: dict[str, Any]
    owner: str
    created_at: float
    converted: bool = False


@dataclass
class ManifestCodes:
    """The codes the form receiver handed out, and the manifests it accepted (for assertions)."""

    pending: dict[str, Registration] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)


def codes(state: FakeState) -> ManifestCodes:
    """The manifest codes of this fake. FakeState has no field for them, so they ride on the instance."""
    with state.lock:
        found = state.__dict__.get("_manifest_codes")
        if found is None:
            found = ManifestCodes()
            state.__dict__["_manifest_codes"] = found
        return found


def add_manifest_code(state: FakeState, manifest: dict[str, Any], owner: str = "octocat",
                      code: str | None = None) -> str:
    """Seed a code as if `owner` had just registered `manifest` on GitHub's page; returns the code."""
    code = code or secrets.token_hex(10)
    with state.lock:
        codes(state).pending[code] = Registration(manifest, owner, state.now())
    return code


# -- api.github.com ----------------------------------------------------------------------------------
@route("POST", "/app-manifests/{code}/conversions", 201, auth="none")
def create_app_from_manifest(code: str) -> dict[str, Any]:
    state = _state()
    reg = codes(state).pending.get(code)
    if reg is None or reg.converted:
        raise GitHubError(404, "Not Found")
    if state.now() - reg.created_at > CODE_LIFETIME:
        raise GitHubError(422, "Validation Failed",
                          [{"resource": "Integration", "code": "custom", "field": "code",
                            "message": "The code has expired"}])
    reg.converted = True
    manifest = reg.manifest
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    app_id = state.next_id()
    slug = re.sub(r"[^a-z0-9]+", "-", str(manifest["name"]).lower()).strip("-") or f"app-{app_id}"
    webhook_secret = secrets.token_hex(20) if manifest.get("hook_attributes") else None
    # From now on the fake is this App: its JWTs are accepted and its webhook is signed with its secret.
    state.app_id, state.app_slug, state.public_key_pem = app_id, slug, public
    state.hook_url = (manifest.get("hook_attributes") or {}).get("url")
    state.hook_secret = webhook_secret or ""
    app = render.app(state, g.base)
    app.update({"name": manifest["name"], "description": manifest.get("description") or "",
                "external_url": manifest["url"], "owner": render.user(g.base, reg.owner),
                "created_at": iso(state.now()), "updated_at": iso(state.now()),
                "permissions": dict(manifest.get("default_permissions") or {}),
                "events": list(manifest.get("default_events") or [])})
    return {**app, "client_id": f"Iv1.{secrets.token_hex(8)}", "client_secret": secrets.token_hex(20),
            "webhook_secret": webhook_secret, "pem": pem}


# -- github.com: the registration form ------------------------------------------------------------------
def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate_manifest(manifest: Any) -> list[str]:
    """What GitHub's page would refuse in a posted manifest; empty when it would register the App."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    errors = [f"unknown manifest key {k!r}" for k in sorted(set(manifest) - MANIFEST_KEYS)]
    name = manifest.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 34:
        errors.append("name must be 1-34 characters")
    if not _http_url(manifest.get("url")):
        errors.append("url (the homepage) is required and must be an http(s) URL")
    hook = manifest.get("hook_attributes")
    if hook is not None and (not isinstance(hook, dict) or not _http_url(hook.get("url"))):
        errors.append("hook_attributes.url must be an http(s) URL")
    if not _http_url(manifest.get("redirect_url")):
        errors.append("redirect_url is required to receive the code and must be an http(s) URL")
    perms = manifest.get("default_permissions") or {}
    if not isinstance(perms, dict):
        errors.append("default_permissions must be an object")
        perms = {}
    for perm, level in perms.items():
        if perm not in PERMISSION_LEVELS:
            errors.append(f"unknown permission {perm!r}")
        elif level not in PERMISSION_LEVELS[perm]:
            errors.append(f"{perm}: {level!r} is not one of {', '.join(PERMISSION_LEVELS[perm])}")
    events = manifest.get("default_events") or []
    if not isinstance(events, list):
        errors.append("default_events must be a list")
        events = []
    for event in events:
        if event not in EVENT_PERMISSION:
            errors.append(f"unknown event {event!r}")
        elif (needed := EVENT_PERMISSION[event]) is not None and needed not in perms and needed != "metadata":
            errors.append(f"event {event!r} needs the {needed!r} permission")
    if events and not hook:
        errors.append("default_events need hook_attributes (a webhook to deliver them to)")
    return errors


def create_web_app(state: FakeState) -> Flask:
    """github.com's side of the flow: the page a manifest is posted to."""
    app = Flask("fakegithub-web", static_folder=None)

    def receive(owner: str) -> BaseResponse:
        raw = request.form.get("manifest")
        try:
            manifest = json.loads(raw) if raw is not None else None
        except ValueError:
            manifest = "not JSON"
        errors = ["the form has no manifest field"] if raw is None else validate_manifest(manifest)
        if errors:
            return Response("Invalid GitHub App manifest:\n" + "\n".join(errors), status=422,
                            content_type="text/plain; charset=utf-8")
        assert isinstance(manifest, dict)
        code = add_manifest_code(state, manifest, owner)
        with state.lock:
            codes(state).accepted.append(manifest)
        query = {"code": code, **({"state": request.args["state"]} if "state" in request.args else {})}
        sep = "&" if urlsplit(manifest["redirect_url"]).query else "?"
        return redirect(f"{manifest['redirect_url']}{sep}{urlencode(query)}", code=302)

    @app.post("/settings/apps/new")
    def new_personal_app() -> BaseResponse:
        return receive("octocat")

    @app.post("/organizations/<org>/settings/apps/new")
    def new_org_app(org: str) -> BaseResponse:
        return receive(org)

    return app


@contextmanager
def running_fake_github_web(state: FakeState) -> Iterator[str]:
    """Serve `create_web_app(state)` on a free loopback port; yields its base URL."""
    from . import QuietHandler

    server = make_server("127.0.0.1", 0, create_web_app(state), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True,
                              name=f"fakegithub-web:{server.server_port}")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


__all__ = ["CODE_LIFETIME", "ManifestCodes", "add_manifest_code", "codes", "create_web_app",
           "running_fake_github_web", "validate_manifest"]
