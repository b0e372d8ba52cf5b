"""`agentgate doctor`, the platform-neutral half: the check record, the policy-file check, and the text and
JSON renderings. What each platform is asked, and how its answers become checks, lives in its adapter
(`gatekeeper/forges/github/doctor.py`, `gatekeeper/forges/gitlab/doctor.py`).

A check is a claim about the installation that must hold for agentgate to gate at all: that a required
status exists, is bound to agentgate, cannot be bypassed, and so on. Anything doctor could not verify
(a permission it lacks, an API error) is reported as not holding: an unverified gate is not a gate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gatekeeper.core.text import normalize_command_text
from gatekeeper.policy import DEFAULT_POLICY, InvalidPolicy, load_policy
from gatekeeper.policy.load import POLICY_PATH, check_policy, org_refs
from gatekeeper.policy.model import Policy

# The stable ids (../shared/INTERFACE.md), in the order a report lists them.
PERMISSIONS = "permissions"
REQUIRED_CHECK = "required-check"
CHECK_BOUND_TO_APP = "check-bound-to-app"
NO_BYPASS = "no-bypass"
DEPLOYMENT_PROTECTION = "deployment-protection"
DELIVERIES = "deliveries"
POLICY_VALID = "policy-valid"
CHECK_IDS = (PERMISSIONS, REQUIRED_CHECK, CHECK_BOUND_TO_APP, NO_BYPASS, DEPLOYMENT_PROTECTION, DELIVERIES,
             POLICY_VALID)

MAX_ERRORS_SHOWN = 3  # policy errors quoted in a message; `agentgate check-config` shows them all


class DoctorError(Exception):
    """Doctor itself cannot run (no credentials, the platform unreachable or refusing the credentials):
    exit 2, as distinct from a check that does not hold (exit 1)."""


@dataclass(frozen=True)
class Check:
    id: str
    repo: str | None  # None: App-wide (or token-wide)
    ok: bool
    message: str
    fix: str | None = None  # what a repository admin does to make it hold; None when it holds

    def __post_init__(self) -> None:
        if self.id not in CHECK_IDS:
            raise ValueError(f"unknown check id {self.id!r}")

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "repo": self.repo, "ok": self.ok, "message": self.message, "fix": self.fix}


def passed(check_id: str, repo: str | None, message: str) -> Check:
    return Check(check_id, repo, True, message, None)


def failed(check_id: str, repo: str | None, message: str, fix: str) -> Check:
    return Check(check_id, repo, False, message, fix)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = field(default=())  # what doctor left out (caps); shown in text only

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def ordered(self) -> tuple[Check, ...]:
        """App-wide checks first, then each repository in the order met, each in `CHECK_IDS` order."""
        repos = list(dict.fromkeys(c.repo for c in self.checks))
        repos.sort(key=lambda r: r is not None)  # stable: None first, the rest as met
        rank = {cid: i for i, cid in enumerate(CHECK_IDS)}
        return tuple(sorted(self.checks, key=lambda c: (repos.index(c.repo), rank[c.id])))


def render_json(report: Report) -> str:
    """Exactly `{"ok": bool, "checks": [{"id", "repo", "ok", "message", "fix"}]}` (INTERFACE.md)."""
    return json.dumps({"ok": report.ok, "checks": [c.to_dict() for c in report.ordered()]}, indent=2)


def render_text(report: Report) -> str:
    """A checklist: one line per check, the fix under each that fails, a summary line last."""
    lines: list[str] = []
    current: object = object()
    width = max(len(cid) for cid in CHECK_IDS)
    for check in report.ordered():
        if check.repo != current:
            current = check.repo
            if lines:
                lines.append("")
            lines.append(check.repo or "All repositories (the App, its installations, the token)")
        mark = "[ok]  " if check.ok else "[FAIL]"
        lines.append(f"  {mark} {check.id.ljust(width)}  {_one_line(check.message)}")
        if not check.ok and check.fix:
            lines.append(f"         fix: {_one_line(check.fix)}")
    for note in report.notes:
        lines.append(f"note: {_one_line(note)}")
    failing = sum(1 for c in report.checks if not c.ok)
    total = len(report.checks)
    lines.append("")
    lines.append(f"{total - failing} of {total} checks hold" + ("." if not failing else
                                                                 f"; {failing} do not: agentgate does not "
                                                                 "fully gate until they do."))
    return "\n".join(lines)


_TERMINAL_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _one_line(text: str) -> str:
    # Messages quote platform data (branch, ruleset and environment names): each check stays on its own
    # line, and nothing in a name can move the cursor, recolour or reorder what the terminal shows.
    folded = " ".join(text.split())
    return _TERMINAL_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), folded)


# ---- the policy file, the same on every platform --------------------------------------------------------------

@dataclass(frozen=True)
class PolicyFile:
    """The default branch's `.agentgate.yml` as fetched: its text (None: absent), or why it could not be read."""

    text: str | None
    unreadable: str | None = None  # e.g. "GitHub refused (403)"
    unreadable_fix: str | None = None


def policy_check(repo: str, branch: str, file: PolicyFile,
                 org_files: Mapping[str, str | None] | None = None) -> tuple[Check, Policy]:
    """`policy-valid`, and the policy the rest of the checks read (protected environments): the secure
    default when the file is absent, invalid or unreadable, as the worker does for chains."""
    where = f"{POLICY_PATH} on {branch}"
    if file.unreadable is not None:
        return (failed(POLICY_VALID, repo, f"could not read {where}: {file.unreadable}",
                       file.unreadable_fix or "run doctor again"), DEFAULT_POLICY)
    if file.text is None:
        return passed(POLICY_VALID, repo, f"no {POLICY_PATH} on {branch}: the secure default applies"), DEFAULT_POLICY
    errors = [str(e) for e in check_policy(file.text, source=POLICY_PATH)]
    loaded = load_policy(file.text, source=POLICY_PATH, extends=dict(org_files or {}))
    if not errors and isinstance(loaded, InvalidPolicy):
        errors = [str(e) for e in loaded.errors]  # an `extends: org:...` file is missing or invalid
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN]) + (f" (and {len(errors) - MAX_ERRORS_SHOWN} more)"
                                                        if len(errors) > MAX_ERRORS_SHOWN else "")
        return (failed(POLICY_VALID, repo, f"{where} is invalid, so every pull request gets `error`: {shown}",
                       f"Fix {POLICY_PATH} on {branch} (run `agentgate check-config {POLICY_PATH}` to see every "
                       "error) and commit it"), DEFAULT_POLICY)
    refs = org_refs(file.text)
    extra = f" (extends {', '.join(refs)})" if refs else ""
    assert isinstance(loaded, Policy)
    return passed(POLICY_VALID, repo, f"{where} is valid{extra}"), loaded


def is_protected_environment(policy: Policy, name: str) -> bool:
    """The policy's `chains.protected_environments`, matched as the deployment rule matches them
    (case-insensitively, look-alike characters folded)."""
    names = {name, name.casefold(), normalize_command_text(name).casefold()}
    return any(policy.chains.protected_environments.match(n) for n in names)


def join(parts: Iterable[str], sep: str = "; ") -> str:
    return sep.join(dict.fromkeys(p for p in parts if p))
