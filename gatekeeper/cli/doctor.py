"""`agentgate doctor`: checks that the installation really gates (INTERFACE.md: stable check ids, exit 0 when
every check holds, 1 when one does not, 2 when doctor itself cannot run)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

_REPO = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")


def _repo(value: str) -> str:
    if not _REPO.fullmatch(value) or ".." in value:
        raise argparse.ArgumentTypeError(f"not OWNER/NAME: {value!r}")
    return value


def register(sub: Any) -> None:
    """Add this module's commands to the `agentgate` parser's subcommands."""
    p = sub.add_parser("doctor", help="check that the installation really gates (exit 0 only when all hold)")
    p.add_argument("--repo", type=_repo, metavar="OWNER/NAME", help="check this repository (GitLab: project path) only")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--platform", choices=["github", "gitlab"],
                   help="check this platform only (default: each one with credentials)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from gatekeeper.doctor import Check, DoctorError, Report, render_json, render_text
    from gatekeeper.settings import Settings

    try:
        settings = Settings.from_env()
    except (OSError, ValueError) as exc:
        print(f"agentgate doctor: cannot read the settings: {exc}", file=sys.stderr)
        return 2
    platforms = [args.platform] if args.platform else [
        name for name, configured in (("github", settings.has_github_credentials),
                                      ("gitlab", bool(settings.gitlab_url and settings.gitlab_token)))
        if configured]
    if not platforms:
        print("agentgate doctor: no platform credentials: set AGENTGATE_GITHUB_APP_ID and "
              "AGENTGATE_GITHUB_PRIVATE_KEY_PATH (GitHub), or AGENTGATE_GITLAB_URL and AGENTGATE_GITLAB_TOKEN "
              "(GitLab)", file=sys.stderr)
        return 2
    checks: list[Check] = []
    notes: list[str] = []
    try:
        for platform in platforms:
            if platform == "github":
                from gatekeeper.forges.github import doctor as github_doctor

                report = github_doctor.run(settings, args.repo)
            else:
                from gatekeeper.forges.gitlab import doctor as gitlab_doctor

                report = gitlab_doctor.run(settings, args.repo)
            checks += report.checks
            notes += report.notes
    except DoctorError as exc:
        print(f"agentgate doctor: {exc}", file=sys.stderr)
        return 2
    combined = Report(tuple(checks), tuple(notes))
    print(render_json(combined) if args.format == "json" else render_text(combined))
    return combined.exit_code
