"""`agentgate setup github`: register the GitHub App through GitHub's App-manifest flow and write its
settings to a `.env` only its owner can read.

A one-shot web server on 127.0.0.1 serves one page, once, at a random path: a form that posts the
manifest to GitHub (`{github}/settings/apps/new?state=S`). GitHub creates the App and sends the
browser back to `/callback?code=C&state=S`; the callback checks `state` (random, compared in constant
time: a callback this command did not start is refused and changes nothing), exchanges the code
(`POST /app-manifests/C/conversions`), writes the private key and the `.env` (mode 0600 from their
first byte) and stops. Nothing secret is printed: not the key, the webhook secret or the code."""

from __future__ import annotations

import argparse
import hmac
import html
import json
import os
import re
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_GITHUB_URL = "https://github.com"
DEFAULT_TIMEOUT = 900  # seconds the local server waits for the callback; GitHub's code lives an hour
KEY_FILE_NAME = "agentgate-github-app.pem"
_ORG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")  # GitHub account names: letters, digits, hyphens


def register(sub: Any) -> None:
    """Add this module's commands to the `agentgate` parser's subcommands."""
    p = sub.add_parser("setup", help="register agentgate with a platform")
    platforms = p.add_subparsers(dest="platform", required=True)
    g = platforms.add_parser(
        "github", help="register the GitHub App from its manifest and write its settings to a private .env",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--org", help="register the App for this organisation (default: your personal account)")
    g.add_argument("--public-url", help="where GitHub reaches `agentgate serve` (webhooks go to "
                                        "URL/webhooks/github); default AGENTGATE_PUBLIC_URL")
    g.add_argument("--env-file", default=".env", type=Path, help="the .env to write (default ./.env)")
    g.add_argument("--key-file", type=Path, help=f"where the App's private key goes (default {KEY_FILE_NAME} "
                                                 "next to the .env)")
    g.add_argument("--port", type=int, default=0, help="local port for the page and the callback (0: any free)")
    g.add_argument("--github-url", default=DEFAULT_GITHUB_URL,
                   help="GitHub's web URL (GitHub Enterprise Server: https://HOST); the API URL is "
                        "AGENTGATE_GITHUB_API_URL")
    g.add_argument("--name", default=None, help="the App's name, 1-34 characters, unique on GitHub "
                                                "(editable on GitHub's page; default agentgate)")
    g.add_argument("--force", action="store_true", help="replace an existing .env and key file")
    g.add_argument("--no-browser", action="store_true", help="print the page's URL instead of opening it")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for GitHub's callback")
    g.add_argument("--print-manifest", action="store_true",
                   help="print the manifest (JSON) and exit, without registering anything")
    g.set_defaults(func=cmd_setup_github)


# -- files only the owner can read ----------------------------------------------------------------------
def write_private(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path`, readable and writable by its owner only (0600) from the moment it exists.

    Without `force`, O_CREAT|O_EXCL makes the refusal atomic: an existing file, or a symlink planted in
    its place, is never written through. With `force`, a new 0600 file is written next to it and renamed
    over it, so there is no moment with a partly written or more widely readable file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    target = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp") if force else path
    fd = os.open(target, flags, 0o600)  # the mode is masked by umask, never widened by it
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fd = -1  # the file object owns it now
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        target.unlink(missing_ok=True)
        raise


def env_text(app: Any, key_path: Path, public_url: str, api_url: str | None) -> str:
    from gatekeeper.forges.github.manifest import env_safe

    lines = [f"# Written by `agentgate setup github` at {datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
             f"# for the GitHub App {app.slug or app.name} ({app.html_url}). Keep this file private.",
             f"AGENTGATE_GITHUB_APP_ID={app.id}",
             f"AGENTGATE_GITHUB_PRIVATE_KEY_PATH={key_path}"]
    if app.webhook_secret:
        lines.append(f"AGENTGATE_GITHUB_WEBHOOK_SECRET={app.webhook_secret}")
    for name, value in (("AGENTGATE_PUBLIC_URL", public_url), ("AGENTGATE_GITHUB_API_URL", api_url)):
        if value and env_safe(value):
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


# -- the one-shot local server --------------------------------------------------------------------------
@dataclass
class Flow:
    """One registration: its secrets (the state and the page's path), and how it ended."""

    state: str
    page_path: str
    page: bytes
    hosts: frozenset[str]
    on_code: Callable[[str], tuple[bool, str]]  # the exchange: (ok, what to tell the person)
    page_served: bool = False
    done: bool = False
    ok: bool = False
    message: str = ""


def _page(manifest: dict[str, Any], action: str) -> bytes:
    data = html.escape(json.dumps(manifest), quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Register agentgate on GitHub</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>Register agentgate on GitHub</h1>
<p>This sends agentgate's App manifest to GitHub, where you name the App and create it. GitHub then
sends you back here, and agentgate writes the App's settings to a private <code>.env</code>.</p>
<form method="post" action="{html.escape(action, quote=True)}">
<input type="hidden" name="manifest" value="{data}">
<button type="submit">Create the GitHub App</button>
</form>
<details><summary>The manifest</summary><pre>{html.escape(json.dumps(manifest, indent=2))}</pre></details>
</body></html>
""".encode()


def _result_page(ok: bool, message: str) -> bytes:
    title = "agentgate is registered" if ok else "agentgate was not registered"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto\">"
            f"<h1>{title}</h1><p>{html.escape(message)}</p><p>You can close this page.</p></body></html>").encode()


class _Handler(BaseHTTPRequestHandler):
    server: _FlowServer
    timeout = 15  # a connection that sends nothing cannot hold the one-request-at-a-time server for long
    server_version = "agentgate-setup"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the default logs each request line, and the callback's carries the code and the state

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)),
                   "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                   "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                   "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                              f"frame-ancestors 'none'; form-action {self.server.form_origin} 'self'",
                   **(extra or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        flow = self.server.flow
        # Only the names this server was reached by: a page that rebinds its own host name to 127.0.0.1
        # cannot read the form (and the state in it) from the victim's browser.
        if self.headers.get("Host", "") not in flow.hosts:
            self._send(400, _result_page(False, "Unexpected Host header."))
            return
        parts = urlsplit(self.path)
        if parts.path == flow.page_path:
            if flow.page_served:
                # Someone else had the page's URL first (it is on the browser's command line, visible to
                # local users): the state they hold must never be exchanged. The registration ends here.
                print("agentgate setup github: the setup page was opened twice; stopping (nothing written)",
                      file=sys.stderr, flush=True)
                if not flow.done:
                    flow.done, flow.ok, flow.message = True, False, (
                        "the setup page was opened twice, so someone else may hold its state; nothing was "
                        "written. Run `agentgate setup github` again.")
                self._send(410, _result_page(False, "This page was already opened once; the registration was "
                                                    "stopped. Run `agentgate setup github` again."))
                return
            flow.page_served = True
            self._send(200, flow.page)
        elif parts.path == "/callback":
            self._callback(parse_qs(parts.query))
        else:
            self._send(404, _result_page(False, "Not found."))

    def _callback(self, query: dict[str, list[str]]) -> None:
        flow = self.server.flow
        state, code = (query.get("state") or [""])[0], (query.get("code") or [""])[0]
        if flow.done or not hmac.compare_digest(state.encode(), flow.state.encode()):
            # Not this registration's callback (a forged link, an old tab): refuse, keep waiting.
            print("agentgate setup github: refused a callback that does not carry this registration's state",
                  file=sys.stderr, flush=True)
            self._send(400, _result_page(False, "This callback does not belong to the registration that is "
                                                "running (the state does not match). Nothing was written."))
            return
        ok, message = flow.on_code(code)
        flow.done, flow.ok, flow.message = True, ok, message
        self._send(200 if ok else 502, _result_page(ok, message))

    def do_POST(self) -> None:  # noqa: N802
        self._send(405, _result_page(False, "Method not allowed."))


class _FlowServer(HTTPServer):
    def __init__(self, port: int, flow_factory: Callable[[int], Flow], form_origin: str):
        super().__init__(("127.0.0.1", port), _Handler)  # loopback only: nothing else can reach it
        self.flow = flow_factory(self.server_port)
        self.form_origin = form_origin


# -- the command ----------------------------------------------------------------------------------------
def _fail(message: str, code: int = 2) -> int:
    print(f"agentgate setup github: {message}", file=sys.stderr)
    return code


def cmd_setup_github(args: argparse.Namespace) -> int:
    from gatekeeper.forges.github import manifest as manifests
    from gatekeeper.settings import DEFAULT_GITHUB_API_URL

    public_url = (args.public_url or os.environ.get("AGENTGATE_PUBLIC_URL") or "").strip().rstrip("/")
    name = args.name or manifests.DEFAULT_APP_NAME
    if not public_url:
        return _fail("--public-url (or AGENTGATE_PUBLIC_URL) is required: GitHub sends webhooks to "
                     "PUBLIC_URL/webhooks/github")
    try:
        draft = manifests.build_manifest(public_url, name=name)
    except ValueError as exc:
        return _fail(str(exc))
    if args.print_manifest:
        print(json.dumps(draft, indent=2))
        return 0
    if args.org is not None and not _ORG.fullmatch(args.org):
        return _fail(f"--org {args.org!r} is not a GitHub organisation name")
    github = urlsplit(args.github_url)
    if github.scheme not in ("http", "https") or not github.hostname or github.query or github.fragment:
        return _fail(f"--github-url {args.github_url!r} is not an http(s) URL")
    if not 0 <= args.port <= 65535:
        return _fail("--port must be 0-65535")
    if urlsplit(public_url).scheme == "http":
        print("agentgate setup github: warning: the public URL is http://, so webhooks (and their signatures) "
              "travel unencrypted", file=sys.stderr)
    api_url = (os.environ.get("AGENTGATE_GITHUB_API_URL") or DEFAULT_GITHUB_API_URL).rstrip("/")
    env_path = Path(os.path.abspath(args.env_file))
    key_path = Path(os.path.abspath(args.key_file)) if args.key_file else env_path.with_name(KEY_FILE_NAME)
    if env_path == key_path:
        return _fail("--key-file and --env-file must differ")
    for path in (env_path, key_path):
        if not path.parent.is_dir():
            return _fail(f"{path.parent} is not a directory")
        if (path.exists() or path.is_symlink()) and not args.force:
            return _fail(f"{path} exists; refusing to overwrite it (--force replaces it)")

    github_base = args.github_url.rstrip("/")
    new_app = f"{github_base}/organizations/{args.org}/settings/apps/new" if args.org else \
        f"{github_base}/settings/apps/new"
    state = secrets.token_urlsafe(32)

    def exchange(code: str) -> tuple[bool, str]:
        try:
            app = manifests.convert(code, api_url)
        except manifests.ConversionError as exc:
            return False, str(exc)
        try:
            write_private(key_path, app.pem, force=args.force)
        except OSError as exc:
            return False, f"could not write the private key to {key_path}: {exc.strerror or exc}; " \
                          f"the App {app.slug} (id {app.id}) exists: generate a new key in its settings"
        try:
            write_private(env_path, env_text(app, key_path, public_url,
                                             api_url if api_url != DEFAULT_GITHUB_API_URL else None),
                          force=args.force)
        except OSError as exc:
            return False, f"could not write {env_path}: {exc.strerror or exc}; the App {app.slug} (id {app.id}) " \
                          f"exists and its key is in {key_path}; its webhook secret is in the App's settings"
        done = f"Registered the GitHub App {app.slug or app.name} (id {app.id}); wrote {env_path} and {key_path} " \
               f"(mode 0600)."
        if not app.webhook_secret:
            return False, done + " GitHub returned no webhook secret: set one in the App's settings and in " \
                                 "AGENTGATE_GITHUB_WEBHOOK_SECRET (agentgate serve refuses unsigned webhooks)."
        install = f"{app.html_url}/installations/new" if app.html_url else "the App's page on GitHub"
        return True, f"{done} Next: install it on the repositories to govern: {install}"

    def flow_for(port: int) -> Flow:
        redirect = f"http://127.0.0.1:{port}/callback"
        manifest = manifests.build_manifest(public_url, name=name, redirect_url=redirect)
        action = f"{new_app}?state={state}"
        return Flow(state=state, page_path=f"/{secrets.token_urlsafe(16)}", page=_page(manifest, action),
                    hosts=frozenset({f"127.0.0.1:{port}", f"localhost:{port}"}), on_code=exchange)

    try:
        server = _FlowServer(args.port, flow_for, f"{github.scheme}://{github.netloc}")
    except OSError as exc:
        return _fail(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    flow = server.flow
    with server:
        page_url = f"http://127.0.0.1:{server.server_port}{flow.page_path}"
        print(f"Open this page to register agentgate on GitHub (it works once, for {args.timeout:.0f} s):\n"
              f"{page_url}", flush=True)
        if not args.no_browser:
            webbrowser.open(page_url)
        deadline = time.monotonic() + args.timeout
        try:
            while not flow.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _fail("no callback from GitHub in time; nothing was written. Run it again.", 1)
                server.timeout = remaining
                server.handle_request()
        except KeyboardInterrupt:
            return _fail("interrupted; nothing was written", 130)
    if not flow.ok:
        return _fail(flow.message, 1)
    print(flow.message, flush=True)
    return 0
