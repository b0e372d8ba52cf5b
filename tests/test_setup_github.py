"""`agentgate setup github`: the App-manifest flow, the manifest's justified permissions, and the private
`.env` it writes. Unit tests fake GitHub's API with `responses`; the end-to-end tests run the command as
a process against the fake GitHub (API and github.com's registration form) and drive it like a browser."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import responses

from gatekeeper.cli.setup import write_private
from gatekeeper.forges.github import manifest as m
from gatekeeper.forges.github.forge import PERMISSIONS
from gatekeeper.forges.github.webhooks import SUBSCRIBED
from gatekeeper.policy.schema import TokenPermissionName
from tests.fakegithub import FakeGitHub, FakeState, running_fake_github
from tests.fakegithub.manifests import (
    CODE_LIFETIME,
    EVENT_PERMISSION,
    PERMISSION_LEVELS,
    add_manifest_code,
    codes,
    running_fake_github_web,
    validate_manifest,
)

ROOT = Path(__file__).parents[1]
PUBLIC_URL = "https://agentgate.example.test"
API = "https://api.github.test"
LEVEL = {"read": 1, "write": 2, "admin": 3}


def at_least(held: dict[str, str], name: str, level: str) -> bool:
    return LEVEL.get(held.get(name, ""), 0) >= LEVEL[level]


# -- the manifest: every permission and event justified ---------------------------------------------------
def test_manifest_events_are_exactly_the_parsed_events_each_with_its_permission() -> None:
    """The App subscribes to exactly the events webhooks.py parses, and holds the permission GitHub
    requires before delivering each one."""
    manifest = m.build_manifest(PUBLIC_URL)
    assert manifest["default_events"] == sorted(SUBSCRIBED)
    for event in manifest["default_events"]:
        name, level = m.EVENT_PERMISSIONS[event]
        assert at_least(manifest["default_permissions"], name, level), event
        assert EVENT_PERMISSION[event] == name  # the fake GitHub agrees on what each event needs


def test_manifest_holds_every_permission_agentgate_jobs_doctor_and_agents_need() -> None:
    """The App's permissions are a ceiling over every capability's token (forge.py), doctor's reads and
    every permission an agent may be granted: a token can never exceed the App."""
    perms = m.build_manifest(PUBLIC_URL)["default_permissions"]
    for needs in [*PERMISSIONS.values(), m.DOCTOR_PERMISSIONS, m.AGENT_GRANTABLE]:
        for name, level in needs.items():
            assert at_least(perms, name, level), (name, level)
    assert perms["administration"] == "read"  # doctor reads branch protection and rulesets, never writes
    assert set(perms) <= set(PERMISSION_LEVELS)  # names GitHub knows, at levels it accepts
    assert all(level in PERMISSION_LEVELS[name] for name, level in perms.items())


def test_agents_can_never_be_granted_what_would_let_them_route_around_the_gate() -> None:
    """Workflows, administration (write), secrets and environments are never in the agent-grantable set, and
    the App does not hold workflows, secrets or environments at all; the grantable set uses names the policy's
    `tokens` section accepts."""
    perms = m.app_permissions()
    assert not set(m.NEVER_GRANTED) & set(m.AGENT_GRANTABLE)
    assert "workflows" not in perms and "secrets" not in perms and "environments" not in perms
    assert perms.get("administration") != "write"
    assert set(m.AGENT_GRANTABLE) <= set(typing.get_args(TokenPermissionName))


def test_every_permission_and_event_has_a_reason_in_code_and_docs() -> None:
    """Each permission and event the App asks for is justified in manifest.py and in docs/setup.md's tables,
    and nothing is justified that the App does not ask for (the docs cannot go stale)."""
    manifest = m.build_manifest(PUBLIC_URL)
    assert set(m.PERMISSION_REASONS) == set(manifest["default_permissions"])
    assert set(m.EVENT_REASONS) == set(manifest["default_events"])
    docs = (ROOT / "docs" / "setup.md").read_text()
    permissions = table(docs, "## Why the App asks for each permission")
    never = table(docs, "### What agents may be granted")
    events = table(docs, "## Why the App subscribes to each event")
    assert permissions == manifest["default_permissions"]
    assert events == {e: m.EVENT_PERMISSIONS[e][0] for e in manifest["default_events"]}
    assert set(never) == set(m.NEVER_GRANTED)


def table(docs: str, heading: str) -> dict[str, str]:
    """The first table under `heading` (up to the next heading): its first column (a `name`) -> its second."""
    section = docs.split(heading, 1)[1]
    section = re.split(r"^#{2,3} ", section, maxsplit=1, flags=re.MULTILINE)[0]
    return {row.group(1): row.group(2).strip() for row in
            re.finditer(r"^\| `(\w+)` \| ([^|]*)\|", section, re.MULTILINE)}


def test_the_fake_github_form_accepts_the_manifest_and_refuses_what_github_would() -> None:
    """The manifest passes the fake's GitHub-like validation; unknown names, missing URLs and an event
    without its permission are refused."""
    good = m.build_manifest(PUBLIC_URL, redirect_url="http://127.0.0.1:9/callback")
    assert validate_manifest(good) == []
    bad = {**good, "default_permissions": {"pull_request": "write"}, "default_events": ["push", "pushes"],
           "hook_attributes": {"url": "ftp://x"}, "colour": "red"}
    bad.pop("redirect_url")
    errors = "\n".join(validate_manifest(bad))
    for expected in ("unknown permission 'pull_request'", "unknown event 'pushes'", "'push' needs the 'contents'",
                     "hook_attributes.url", "redirect_url", "unknown manifest key 'colour'"):
        assert expected in errors
    with pytest.raises(ValueError):
        m.build_manifest("ftp://agentgate.example")
    with pytest.raises(ValueError):
        m.build_manifest(PUBLIC_URL, name="x" * 35)


# -- the conversion call -------------------------------------------------------------------------------
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEfake\n-----END RSA PRIVATE KEY-----\n"
CONVERTED = {"id": 777, "slug": "agentgate-acme", "name": "agentgate-acme", "node_id": "A_1",
             "owner": {"login": "acme"}, "html_url": "https://github.com/apps/agentgate-acme",
             "client_id": "Iv1.abc", "client_secret": "shh-client", "webhook_secret": "a1b2c3" * 6, "pem": PEM}


@responses.activate
def test_convert_posts_the_code_unauthenticated_and_keeps_secrets_out_of_repr() -> None:
    """The code is exchanged with POST /app-manifests/{code}/conversions and no Authorization; the result's
    repr names the App but never its key or secrets."""
    call = responses.post(f"{API}/app-manifests/abc123/conversions", json=CONVERTED, status=201)
    app = m.convert("abc123", API + "/")
    assert (app.id, app.slug, app.owner, app.pem, app.webhook_secret) == (777, "agentgate-acme", "acme", PEM,
                                                                         "a1b2c3" * 6)
    sent = call.calls[0].request
    assert "Authorization" not in sent.headers and sent.headers["X-GitHub-Api-Version"] == m.API_VERSION
    assert "PRIVATE" not in repr(app) and "a1b2c3" not in repr(app) and "shh" not in repr(app)


@responses.activate
@pytest.mark.parametrize(("status", "body", "expected"), [
    (404, {"message": "Not Found"}, "already exchanged, or it expired"),
    (422, {"message": "Validation Failed"}, "GitHub refused the code (Validation Failed)"),
    (500, {"message": "Server Error"}, "GitHub answered 500"),
    (201, {"id": 1, "pem": "nope"}, "no private key"),
    (201, {**CONVERTED, "webhook_secret": "line\nbreak"}, "cannot store safely"),
])
def test_convert_refusals_say_why(status: int, body: dict[str, Any], expected: str) -> None:
    """A used or expired code, a server error or a malformed answer is a clear error, never a partial App."""
    responses.post(f"{API}/app-manifests/c0de/conversions", json=body, status=status)
    with pytest.raises(m.ConversionError, match=re.escape(expected)):
        m.convert("c0de", API)


@responses.activate
@pytest.mark.parametrize("code", ["../../user", "a/b", "x?y=1", "", "a" * 201, "c%2F"])
def test_a_crafted_code_never_reaches_the_api(code: str) -> None:
    """A code that is not GitHub's shape is refused before any request, so a crafted callback cannot
    steer the unauthenticated POST to another API path."""
    with pytest.raises(m.ConversionError, match="not a GitHub manifest code"):
        m.convert(code, API)
    assert len(responses.calls) == 0


# -- private files -------------------------------------------------------------------------------------
def test_private_files_are_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    """The .env and the key are created 0600 from their first byte (O_CREAT|O_EXCL with the mode), whatever
    the umask; an existing file or a planted symlink is refused without --force and never written through."""
    old = os.umask(0)
    try:
        write_private(tmp_path / ".env", "A=1\n", force=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(tmp_path / ".env", "A=2\n", force=False)
    assert (tmp_path / ".env").read_text() == "A=1\n"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "link", "B=1\n", force=False)
    assert victim.read_text() == "precious"


def test_force_replaces_atomically_with_a_private_file(tmp_path: Path) -> None:
    """--force renames a new 0600 file over the old one (a world-readable old file does not lend its mode),
    and leaves no temporary file behind."""
    env = tmp_path / ".env"
    env.write_text("OLD=1\n")
    env.chmod(0o644)
    write_private(env, "NEW=1\n", force=True)
    assert env.read_text() == "NEW=1\n" and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


# -- end to end: the command, the fake GitHub, a browser's requests ------------------------------------
class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("name"):
            self.fields[str(a["name"])] = a.get("value") or ""


@dataclass
class Setup:
    process: subprocess.Popen[str]
    page_url: str

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@pytest.fixture
def fake() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeState(app_id=1)
    with running_fake_github(state) as api, running_fake_github_web(state) as web:
        yield api, web


def start_setup(api: FakeGitHub, web: str, env_file: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTGATE_GITHUB_API_URL": api.url}
    env.pop("AGENTGATE_PUBLIC_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gatekeeper.cli.main", "setup", "github", "--no-browser", "--port", "0",
         "--public-url", PUBLIC_URL, "--env-file", str(env_file), "--github-url", web, "--timeout", "60", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def page_url_of(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for _ in range(5):  # the URL is printed before the server waits; EOF ("") means it exited
        line = process.stdout.readline()
        if line.startswith("http://127.0.0.1:"):
            return line.strip()
        if not line:
            break
    _, err = process.communicate(timeout=10)
    raise AssertionError(f"setup printed no page URL: {err}")


def submit_to_github(page_url: str) -> str:
    """What the browser does: open the page, post its form to GitHub; returns where GitHub redirects."""
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    assert set(form.fields) == {"manifest"}
    answer = requests.post(form.action, data=form.fields, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def secrets_in(app: dict[str, Any]) -> list[str]:
    return [app["webhook_secret"], app["client_secret"], app["pem"].splitlines()[1]]


def test_setup_registers_the_app_and_writes_a_private_env_that_works(fake: tuple[FakeGitHub, str],
                                                                     tmp_path: Path) -> None:
    """The page posts the manifest to GitHub with a state, GitHub redirects to the callback with a code, the
    code is exchanged once, and the App id, key path and webhook secret land in a 0600 .env (the key in its own
    0600 file) that authenticates as the new App; no secret is printed, in stdout, stderr or the pages."""
    api, web = fake
    env_file = tmp_path / ".env"
    process = start_setup(api, web, env_file)
    page_url = page_url_of(process)
    location = submit_to_github(page_url)
    assert location.startswith(f"http://127.0.0.1:{page_url.split(':')[2].split('/')[0]}/callback?")
    callback = requests.get(location, timeout=30)
    code, out, err = Setup(process, page_url).finish()
    assert code == 0, err
    assert callback.status_code == 200 and "agentgate is registered" in callback.text

    accepted = codes(api.state).accepted
    assert len(accepted) == 1 and accepted[0]["default_permissions"] == m.app_permissions()
    assert accepted[0]["hook_attributes"]["url"] == f"{PUBLIC_URL}/webhooks/github"
    conversions = api.state.calls_matching("POST", r"/app-manifests/\w+/conversions")
    assert len(conversions) == 1 and conversions[0].auth == "none"

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    key_file = Path(values["AGENTGATE_GITHUB_PRIVATE_KEY_PATH"])
    assert key_file == tmp_path / "agentgate-github-app.pem" and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert values["AGENTGATE_GITHUB_APP_ID"] == str(api.state.app_id)
    assert values["AGENTGATE_GITHUB_WEBHOOK_SECRET"] == api.state.hook_secret != ""
    assert values["AGENTGATE_GITHUB_API_URL"] == api.url and values["AGENTGATE_PUBLIC_URL"] == PUBLIC_URL

    now = int(time.time())
    token = jwt.encode({"iat": now - 30, "exp": now + 300, "iss": values["AGENTGATE_GITHUB_APP_ID"]},
                       key_file.read_text(), algorithm="RS256")
    me = requests.get(f"{api.url}/app", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 200 and me.json()["slug"] == "agentgate"

    shown = out + err + callback.text
    for secret in [values["AGENTGATE_GITHUB_WEBHOOK_SECRET"], key_file.read_text().splitlines()[1]]:
        assert secret not in shown
    assert "code=" not in shown and "agentgate/installations/new" in out
    with pytest.raises(requests.ConnectionError):
        requests.get(page_url, timeout=5)


def test_a_callback_with_the_wrong_state_is_refused_and_changes_nothing(fake: tuple[FakeGitHub, str],
                                                                       tmp_path: Path) -> None:
    """A callback whose state is not this registration's (CSRF: an attacker's App's code) is refused: its code
    is never exchanged and nothing is written; the real callback still completes afterwards. The page is
    served once, and only to the Host names the server was reached by."""
    api, web = fake
    env_file = tmp_path / ".env"
    process = start_setup(api, web, env_file)
    page_url = page_url_of(process)
    origin = page_url.rsplit("/", 1)[0]
    attacker_code = add_manifest_code(api.state, m.build_manifest("https://evil.example"), owner="mallory")
    for query in (f"code={attacker_code}&state=wrong", f"code={attacker_code}"):
        refused = requests.get(f"{origin}/callback?{query}", timeout=10)
        assert refused.status_code == 400 and "Nothing was written" in refused.text
    rebound = requests.get(page_url, headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 400
    assert not env_file.exists() and not (tmp_path / "agentgate-github-app.pem").exists()
    assert api.state.calls_matching("POST", r"/app-manifests/.*") == []

    location = submit_to_github(page_url)
    assert requests.get(location, timeout=30).status_code == 200
    code, _, err = Setup(process, page_url).finish()
    assert code == 0, err
    assert "refused a callback" in err
    assert codes(api.state).pending[attacker_code].converted is False
    assert env_file.exists()


@pytest.mark.parametrize("spoil", ["reused", "expired"])
def test_a_reused_or_expired_code_is_a_clear_error_and_writes_nothing(fake: tuple[FakeGitHub, str],
                                                                     tmp_path: Path, spoil: str) -> None:
    """GitHub answers 404 to a code already exchanged and 422 to one older than an hour: setup says so,
    exits 1 and writes neither the .env nor the key."""
    api, web = fake
    env_file = tmp_path / ".env"
    process = start_setup(api, web, env_file)
    page_url = page_url_of(process)
    location = submit_to_github(page_url)
    code_value = re.search(r"code=(\w+)", location).group(1)  # type: ignore[union-attr]
    if spoil == "reused":
        assert requests.post(f"{api.url}/app-manifests/{code_value}/conversions", timeout=10).status_code == 201
    else:
        api.state.advance(CODE_LIFETIME + 1)
    callback = requests.get(location, timeout=30)
    code, out, err = Setup(process, page_url).finish()
    assert code == 1 and callback.status_code == 502
    expected = "already exchanged, or it expired" if spoil == "reused" else "GitHub refused the code"
    assert expected in err and expected in callback.text
    assert "Run `agentgate setup github` again" in err
    assert not env_file.exists() and not (tmp_path / "agentgate-github-app.pem").exists()


def test_an_existing_env_is_not_overwritten_without_force(fake: tuple[FakeGitHub, str], tmp_path: Path) -> None:
    """An existing .env stops setup before anything starts (no page, no App registered); with --force
    the flow runs and replaces it with a private file."""
    api, web = fake
    env_file = tmp_path / ".env"
    env_file.write_text("MINE=1\n")
    process = start_setup(api, web, env_file)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2 and "refusing to overwrite" in err and "--force" in err
    assert "http://127.0.0.1" not in out and env_file.read_text() == "MINE=1\n"

    process = start_setup(api, web, env_file, "--force", "--org", "acme")
    page_url = page_url_of(process)
    location = submit_to_github(page_url)
    assert requests.get(location, timeout=30).status_code == 200
    code, _, err = Setup(process, page_url).finish()
    assert code == 0, err
    assert "AGENTGATE_GITHUB_APP_ID=" in env_file.read_text() and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert [r.owner for r in codes(api.state).pending.values()] == ["acme"]  # --org registers it for acme


def test_setup_gives_up_after_its_timeout_and_writes_nothing(fake: tuple[FakeGitHub, str], tmp_path: Path) -> None:
    """With no callback before --timeout, the local server stops, setup exits 1 and nothing is written."""
    api, web = fake
    process = start_setup(api, web, tmp_path / ".env", "--timeout", "0.5")
    page_url = page_url_of(process)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and "no callback from GitHub in time" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(page_url, timeout=5)


def test_setup_needs_a_public_url_and_prints_the_manifest(tmp_path: Path) -> None:
    """Without a public URL there is nowhere for webhooks to go: setup refuses (exit 2); --print-manifest
    prints the manifest and registers nothing."""
    env = {k: v for k, v in os.environ.items() if k != "AGENTGATE_PUBLIC_URL"}
    base = [sys.executable, "-m", "gatekeeper.cli.main", "setup", "github", "--no-browser",
            "--env-file", str(tmp_path / ".env")]
    run = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "--public-url" in run.stderr
    run = subprocess.run([*base, "--public-url", PUBLIC_URL, "--print-manifest"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and json.loads(run.stdout) == m.build_manifest(PUBLIC_URL)
    assert not (tmp_path / ".env").exists()
