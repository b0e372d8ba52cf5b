"""Realistic GitHub REST response bodies for unit tests, built from GitHub's example payloads."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import github_fixture

API = "https://api.github.test:443"  # PyGithub spells the port out; responses matches literally
REPO = "octo-org/widgets"
HEAD = "a" * 40
BASE_SHA = "c" * 40


def user(login: str) -> dict[str, Any]:
    bot = login.endswith("[bot]")
    return {"login": login, "id": abs(hash(login)) % 10**7, "type": "Bot" if bot else "User",
            "site_admin": False}


def pull(number: int = 7, author: str = "copilot-swe-agent[bot]", head: str = HEAD, base: str = "main",
         changed_files: int = 1, state: str = "open") -> dict[str, Any]:
    pr = copy.deepcopy(github_fixture("pull_request.opened.1")["pull_request"])
    pr.update(number=number, user=user(author), state=state, changed_files=changed_files, draft=False,
              url=f"{API}/repos/{REPO}/pulls/{number}")
    pr["head"].update(sha=head, ref=f"agent/task-{number}")
    pr["head"]["repo"]["full_name"] = REPO
    pr["base"].update(sha=BASE_SHA, ref=base)
    pr["base"]["repo"].update(full_name=REPO, default_branch="main")
    return pr


def review(login: str, state: str = "APPROVED", commit: str = HEAD, review_id: int = 1) -> dict[str, Any]:
    return {"id": review_id, "node_id": f"PRR_{review_id}", "user": user(login), "body": "", "state": state,
            "commit_id": commit, "submitted_at": "2026-11-25T10:00:00Z", "author_association": "MEMBER",
            "html_url": "https://github.com/x", "pull_request_url": "https://api.github.com/x",
            "_links": {"html": {"href": "x"}, "pull_request": {"href": "x"}}}


def file(name: str, status: str = "modified") -> dict[str, Any]:
    return {"sha": "f" * 40, "filename": name, "status": status, "additions": 2, "deletions": 1, "changes": 3,
            "blob_url": "x", "raw_url": "x", "contents_url": "x", "patch": "@@"}


def permission(login: str, level: str) -> dict[str, Any]:
    base = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
    return {"permission": base.get(level, "none"), "role_name": level, "user": user(login)}
