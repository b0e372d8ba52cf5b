"""Turn stored objects into GitHub's full JSON shapes.

``base`` is the API root the client used (``http://127.0.0.1:PORT``); every API URL inside a
response is built from it so URL-following clients keep talking to the fake. Browser URLs use
``HTML_ROOT`` like github.com does. Stored keys always win over the defaults here, so a test can
seed deliberately odd values (e.g. a PR whose ``changed_files`` disagrees with its file list).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from .state import FakeState, Repo, fake_sha, iso, stable_id, who

HTML_ROOT = "https://github.com"


def node_id(kind: str, num: int) -> str:
    """GitHub's legacy global node id format, e.g. ``MDQ6VXNlcjE=`` for User 1."""
    return base64.b64encode(f"0{len(kind)}:{kind}{num}".encode()).decode()


def user(base: str, u: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """A "simple-user" object."""
    s = who(u)
    if s is None:
        return None
    login, url = s["login"], f"{base}/users/{s['login']}"
    return {
        "login": login, "id": s["id"], "node_id": node_id(s["type"], s["id"]),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{s['id']}?v=4", "gravatar_id": "",
        "url": url, "html_url": f"{HTML_ROOT}/{login}", "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}", "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs", "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}", "received_events_url": f"{url}/received_events",
        "type": s["type"], "user_view_type": "public", "site_admin": False,
        **{k: v for k, v in s.items() if k not in ("login", "id", "type")},
    }


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
    "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
    "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
    "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags",
    "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}


def repository(state: FakeState, base: str, full_name: str) -> dict[str, Any]:
    """A full "repository" object; repos that were never seeded (e.g. a fork) get stable defaults."""
    r = state.find_repo(full_name) or Repo(full_name=full_name, id=stable_id(full_name),
                                           private=False, owner_type="User")
    api, html = f"{base}/repos/{r.full_name}", f"{HTML_ROOT}/{r.full_name}"
    return {
        "id": r.id, "node_id": node_id("Repository", r.id), "name": r.name, "full_name": r.full_name,
        "owner": user(base, {"login": r.owner, "type": r.owner_type}), "private": r.private,
        "visibility": "private" if r.private else "public", "html_url": html, "description": None,
        "fork": state.find_repo(full_name) is None, "url": api,
        **{k: api + suffix for k, suffix in _REPO_URLS.items()},
        "git_url": f"git://github.com/{r.full_name}.git", "ssh_url": f"git@github.com:{r.full_name}.git",
        "clone_url": f"{html}.git", "svn_url": html, "mirror_url": None, "homepage": None,
        "language": None, "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers": 0,
        "watchers_count": 0, "size": 0, "default_branch": r.default_branch, "open_issues": 0,
        "open_issues_count": 0, "is_template": False, "topics": [], "has_issues": True,
        "has_projects": True, "has_wiki": True, "has_pages": False, "has_downloads": True,
        "has_discussions": False, "archived": False, "disabled": False, "license": None,
        "pushed_at": "2024-01-01T00:00:00Z", "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z", "allow_forking": True, "network_count": 0,
        "subscribers_count": 0,
    }


def label(base: str, repo: Repo, name: str) -> dict[str, Any]:
    lid = stable_id(f"{repo.full_name}:label:{name}")
    return {"id": lid, "node_id": node_id("Label", lid),
            "url": f"{base}/repos/{repo.full_name}/labels/{quote(name)}", "name": name,
            "description": None, "color": "ededed", "default": False}


def author_association(repo: Repo, login: str | None) -> str:
    """Derived like GitHub does, from ownership and collaborator role (unless seeded)."""
    if login == repo.owner:
        return "OWNER"
    if repo.permissions.get(login or "", "none") != "none":
        return "MEMBER" if repo.owner_type == "Organization" else "COLLABORATOR"
    return "NONE"


def head_repo_name(repo: Repo, pr: dict[str, Any], side: str = "head") -> str:
    """Full name of a PR side's repo: seeded ``repo.full_name``, else the PR's own repo. An explicit
    ``"repo": null`` (fork deleted) is kept as "" -> rendered as null like GitHub."""
    branch = pr[side]
    if "repo" not in branch:
        return repo.full_name
    return (branch["repo"] or {}).get("full_name", "")


def _branch(state: FakeState, base: str, repo: Repo, pr: dict[str, Any], side: str) -> dict[str, Any]:
    full_name = head_repo_name(repo, pr, side)
    owner = full_name.split("/")[0] if full_name else "ghost"
    return {"label": f"{owner}:{pr[side]['ref']}", "ref": pr[side]["ref"], "sha": pr[side]["sha"],
            "user": user(base, owner), "repo": repository(state, base, full_name) if full_name else None}


# Keys "pull-request" has and "pull-request-simple" (list endpoints) lacks.
_FULL_PR_ONLY = ("merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments",
                 "review_comments", "maintainer_can_modify", "commits", "additions", "deletions",
                 "changed_files")


def pull(state: FakeState, base: str, repo: Repo, pr: dict[str, Any], *, simple: bool = False) -> dict[str, Any]:
    n = pr["number"]
    api, html = f"{base}/repos/{repo.full_name}", f"{HTML_ROOT}/{repo.full_name}/pull/{n}"
    files, commits = repo.files.get(n, [])[:3000], repo.commits.get(n, [])
    login = (pr.get("user") or {}).get("login")
    links = {"self": f"{api}/pulls/{n}", "html": html, "issue": f"{api}/issues/{n}",
             "comments": f"{api}/issues/{n}/comments", "review_comments": f"{api}/pulls/{n}/comments",
             "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{api}/pulls/{n}/commits",
             "statuses": f"{api}/statuses/{pr['head']['sha']}"}
    out: dict[str, Any] = {
        "url": links["self"], "id": pr.get("id", stable_id(f"{repo.full_name}#{n}")),
        "html_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
        "issue_url": links["issue"], "commits_url": links["commits"],
        "review_comments_url": links["review_comments"], "review_comment_url": links["review_comment"],
        "comments_url": links["comments"], "statuses_url": links["statuses"], "number": n,
        "state": "open", "locked": False, "title": "", "body": None,
        "created_at": iso(state.now()), "updated_at": iso(state.now()), "closed_at": None,
        "merged_at": None, "merge_commit_sha": None, "assignee": None, "assignees": [],
        "requested_reviewers": [], "requested_teams": [], "milestone": None, "draft": False,
        "_links": {k: {"href": v} for k, v in links.items()},
        "author_association": author_association(repo, login), "auto_merge": None,
        "active_lock_reason": None, "merged": False, "mergeable": True, "rebaseable": True,
        "mergeable_state": "clean", "merged_by": None, "comments": len(repo.comments.get(n, [])),
        "review_comments": 0, "maintainer_can_modify": False, "commits": len(commits),
        "additions": sum(f.get("additions", 0) for f in files),
        "deletions": sum(f.get("deletions", 0) for f in files), "changed_files": len(files),
    }
    out.update({k: v for k, v in pr.items() if k not in ("user", "head", "base", "labels")})
    out["node_id"] = node_id("PullRequest", out["id"])
    out["user"] = user(base, pr.get("user") or "ghost")
    out["head"] = _branch(state, base, repo, pr, "head")
    out["base"] = _branch(state, base, repo, pr, "base")
    out["labels"] = [label(base, repo, name) for name in repo.labels.get(n, [])]
    if simple:
        for k in _FULL_PR_ONLY:
            out.pop(k, None)
    return out


def issue(state: FakeState, base: str, repo: Repo, number: int) -> dict[str, Any]:
    """An "issue" object; for a PR number, the issue side of the PR (with ``pull_request``)."""
    api = f"{base}/repos/{repo.full_name}"
    pr = repo.pulls.get(number)
    src = pr if pr is not None else repo.issues[number]
    kind = "pull" if pr is not None else "issues"
    iid = src.get("issue_id", stable_id(f"{repo.full_name}#issue{number}"))
    out: dict[str, Any] = {
        "id": iid, "node_id": node_id("Issue", iid), "url": f"{api}/issues/{number}",
        "repository_url": api, "labels_url": f"{api}/issues/{number}/labels{{/name}}",
        "comments_url": f"{api}/issues/{number}/comments", "events_url": f"{api}/issues/{number}/events",
        "html_url": f"{HTML_ROOT}/{repo.full_name}/{kind}/{number}", "number": number,
        "state": src.get("state", "open"), "state_reason": None, "title": src.get("title", ""),
        "body": src.get("body"), "user": user(base, src.get("user") or "ghost"),
        "labels": [label(base, repo, name) for name in repo.labels.get(number, [])],
        "assignee": None, "assignees": [], "milestone": None, "locked": False,
        "active_lock_reason": None, "comments": len(repo.comments.get(number, [])),
        "created_at": src.get("created_at"), "updated_at": src.get("updated_at"),
        "closed_at": src.get("closed_at"),
        "author_association": author_association(repo, (src.get("user") or {}).get("login")),
    }
    if pr is not None:
        html = f"{HTML_ROOT}/{repo.full_name}/pull/{number}"
        out["draft"] = pr.get("draft", False)
        out["pull_request"] = {"url": f"{api}/pulls/{number}", "html_url": html,
                               "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
                               "merged_at": pr.get("merged_at")}
    else:
        out.update({k: v for k, v in src.items() if k not in ("user", "labels")})
    return out


def pr_file(base: str, repo: Repo, f: dict[str, Any]) -> dict[str, Any]:
    sha = f.get("sha") or fake_sha(f"{repo.full_name}:{f['filename']}:{f.get('status')}")
    path = quote(f["filename"])
    return {"sha": sha, "filename": f["filename"], "status": f.get("status", "modified"),
            "additions": f.get("additions", 0), "deletions": f.get("deletions", 0),
            "changes": f.get("changes", f.get("additions", 0) + f.get("deletions", 0)),
            "blob_url": f"{HTML_ROOT}/{repo.full_name}/blob/{sha}/{path}",
            "raw_url": f"{HTML_ROOT}/{repo.full_name}/raw/{sha}/{path}",
            "contents_url": f"{base}/repos/{repo.full_name}/contents/{path}?ref={sha}",
            **{k: v for k, v in f.items() if k != "sha"}}


def review(base: str, repo: Repo, number: int, rv: dict[str, Any]) -> dict[str, Any]:
    html = f"{HTML_ROOT}/{repo.full_name}/pull/{number}#pullrequestreview-{rv['id']}"
    pr_url = f"{base}/repos/{repo.full_name}/pulls/{number}"
    login = (rv.get("user") or {}).get("login")
    out = {"id": rv["id"], "node_id": node_id("PullRequestReview", rv["id"]), "body": "",
           "html_url": html, "pull_request_url": pr_url,
           "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
           "author_association": author_association(repo, login), **rv,
           "user": user(base, rv.get("user"))}
    if out["state"] == "PENDING":
        out.pop("submitted_at", None)  # GitHub omits it until the review is submitted
    return out


def commit(base: str, repo: Repo, c: dict[str, Any]) -> dict[str, Any]:
    api, html = f"{base}/repos/{repo.full_name}", f"{HTML_ROOT}/{repo.full_name}"
    sha = c["sha"]
    tree = c.get("commit", {}).get("tree", {}).get("sha") or fake_sha(f"tree:{sha}")
    inner = {"url": f"{api}/git/commits/{sha}", "comment_count": 0,
             "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
             "verification": {"verified": False, "reason": "unsigned", "signature": None,
                              "payload": None, "verified_at": None},
             **c.get("commit", {})}
    return {"sha": sha, "node_id": node_id("Commit", stable_id(sha)), "url": f"{api}/commits/{sha}",
            "html_url": f"{html}/commit/{sha}", "comments_url": f"{api}/commits/{sha}/comments",
            "commit": inner, "author": user(base, c.get("author")),
            "committer": user(base, c.get("committer")),
            "parents": [{"sha": p["sha"], "url": f"{api}/commits/{p['sha']}",
                         "html_url": f"{html}/commit/{p['sha']}"} for p in c.get("parents", [])]}


def status(base: str, repo: Repo, sha: str, s: dict[str, Any]) -> dict[str, Any]:
    creator = user(base, s.get("creator"))
    return {"url": f"{base}/repos/{repo.full_name}/statuses/{sha}",
            "avatar_url": (creator or {}).get("avatar_url"), "id": s["id"],
            "node_id": node_id("StatusContext", s["id"]), "state": s["state"],
            "description": s.get("description"), "target_url": s.get("target_url"),
            "context": s.get("context", "default"), "created_at": s["created_at"],
            "updated_at": s.get("updated_at", s["created_at"]), "creator": creator}


def comment(base: str, repo: Repo, number: int, c: dict[str, Any]) -> dict[str, Any]:
    api = f"{base}/repos/{repo.full_name}"
    kind = "pull" if number in repo.pulls else "issues"
    login = (c.get("user") or {}).get("login")
    return {"id": c["id"], "node_id": node_id("IssueComment", c["id"]),
            "url": f"{api}/issues/comments/{c['id']}",
            "html_url": f"{HTML_ROOT}/{repo.full_name}/{kind}/{number}#issuecomment-{c['id']}",
            "issue_url": f"{api}/issues/{number}", "author_association": author_association(repo, login),
            **c, "user": user(base, c.get("user"))}


# Timeline entries that are not "issue events" and have shapes of their own; passed through as seeded.
_NOT_ISSUE_EVENTS = {"commented", "reviewed", "committed", "cross-referenced", "line-commented",
                     "commit-commented"}


def issue_event(base: str, repo: Repo, e: dict[str, Any]) -> dict[str, Any]:
    """An issue event (labeled, unlabeled, assigned, ...). Clients need ``url``: PyGithub, for one,
    refuses to read ``raw_data`` of an event without it."""
    if e.get("event") in _NOT_ISSUE_EVENTS:
        return e
    eid = e.get("id") or stable_id(repr(sorted(e.items())))
    return {"id": eid, "node_id": node_id("IssueEvent", eid),
            "url": f"{base}/repos/{repo.full_name}/issues/events/{eid}", "commit_id": None,
            "commit_url": None, "created_at": "2024-01-01T00:00:00Z", "performed_via_github_app": None,
            **e, "actor": user(base, e.get("actor") or "ghost")}


def timeline_event(state: FakeState, base: str, repo: Repo, e: dict[str, Any]) -> dict[str, Any]:
    """A timeline item. A ``cross-referenced`` event may be seeded with ``source: {"issue": N}`` (the
    number of the issue or pull request in this repository whose text referenced this one); it is
    rendered the way GitHub shows it, ``source: {"type": "issue", "issue": <the full issue object>}``,
    with ``updated_at`` defaulted to ``created_at``."""
    if e.get("event") == "cross-referenced":
        source = dict(e.get("source") or {})
        number = source.get("issue")
        if isinstance(number, int) and repo.has_issue(number):
            source = {"type": source.get("type", "issue"), "issue": issue(state, base, repo, number)}
        created = e.get("created_at") or "2024-01-01T00:00:00Z"
        out = {"event": "cross-referenced", "created_at": created, "updated_at": e.get("updated_at") or created,
               **{k: v for k, v in e.items() if k not in ("source", "actor", "id")}, "source": source}
        if e.get("actor") is not None:
            out["actor"] = user(base, e["actor"])
        return out
    return issue_event(base, repo, e)


def app(state: FakeState, base: str) -> dict[str, Any]:
    """The "integration" object for this App (as shown on check runs)."""
    return {"id": int(state.app_id), "slug": state.app_slug, "node_id": node_id("App", int(state.app_id)),
            "client_id": f"Iv1.{state.app_id}", "owner": user(base, "agentgate-dev"),
            "name": state.app_slug, "description": "", "external_url": "https://example.invalid",
            "html_url": f"{HTML_ROOT}/apps/{state.app_slug}", "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z", "permissions": {}, "events": []}


def check_run(state: FakeState, base: str, repo: Repo, run: dict[str, Any]) -> dict[str, Any]:
    rid = run["id"]
    out = {"id": rid, "node_id": node_id("CheckRun", rid), "head_sha": run["head_sha"],
           "external_id": "", "url": f"{base}/repos/{repo.full_name}/check-runs/{rid}",
           "html_url": f"{HTML_ROOT}/{repo.full_name}/runs/{rid}", "details_url": None,
           "status": "queued", "conclusion": None, "started_at": None, "completed_at": None,
           "name": run["name"], "check_suite": {"id": stable_id(f"suite:{run['head_sha']}")},
           "app": app(state, base), "pull_requests": [], **run}
    output = {"title": None, "summary": None, "text": None, "annotations_count": 0,
              "annotations_url": f"{out['url']}/annotations"}
    output.update({k: v for k, v in (run.get("output") or {}).items() if k in output})
    out["output"] = output
    return out


def workflow_run(state: FakeState, base: str, repo: Repo, run: dict[str, Any]) -> dict[str, Any]:
    rid, api = run["id"], f"{base}/repos/{repo.full_name}"
    url = f"{api}/actions/runs/{rid}"
    workflow_id = run.get("workflow_id", stable_id(f"{repo.full_name}:wf:{run.get('name')}"))
    prs = []
    for n in run.get("pull_requests", []):
        pr = repo.pulls[n]
        short = {"id": repo.id, "url": api, "name": repo.name}
        prs.append({"id": pr["id"], "number": n, "url": f"{api}/pulls/{n}",
                    "head": {"ref": pr["head"]["ref"], "sha": pr["head"]["sha"], "repo": short},
                    "base": {"ref": pr["base"]["ref"], "sha": pr["base"]["sha"], "repo": short}})
    actor = user(base, run.get("actor"))
    suite_id = stable_id(f"suite:{run.get('head_sha')}")
    git_actor = {"name": (actor or {}).get("login", ""), "email": "noreply@github.com"}
    out = {"id": rid, "node_id": node_id("WorkflowRun", rid), "name": run.get("name"),
           "display_title": run.get("name"), "run_number": 1, "run_attempt": 1,
           "path": f".github/workflows/{run.get('name', 'ci')}.yml", "workflow_id": workflow_id,
           "url": url, "html_url": f"{HTML_ROOT}/{repo.full_name}/actions/runs/{rid}",
           "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs", "check_suite_url": f"{api}/check-suites/{suite_id}",
           "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel", "rerun_url": f"{url}/rerun",
           "workflow_url": f"{api}/actions/workflows/{workflow_id}",
           "head_commit": {"id": run.get("head_sha"), "tree_id": fake_sha(f"tree:{run.get('head_sha')}"),
                           "message": "", "timestamp": run.get("created_at"), "author": git_actor,
                           "committer": git_actor},
           "repository": repository(state, base, repo.full_name),
           "head_repository": repository(state, base, repo.full_name),
           **run, "pull_requests": prs, "actor": actor,
           # whoever started the latest attempt (a re-run), else the run's actor
           "triggering_actor": user(base, run.get("triggering_actor")) if run.get("triggering_actor") else actor}
    return out


def content_file(base: str, repo: Repo, ref: str, path: str, text: str) -> dict[str, Any]:
    """A "content-file" object: base64 wrapped at 60 columns with a trailing newline, as GitHub does."""
    raw = text.encode()
    sha = git_blob_sha(raw)
    encoded = base64.b64encode(raw).decode()
    wrapped = "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))
    if len(raw) > 1_000_000:  # GitHub: 1-100 MB files come back without content
        wrapped, encoding = "", "none"
    else:
        encoding = "base64"
    return {"type": "file", "encoding": encoding, "size": len(raw), "name": path.rsplit("/", 1)[-1],
            "path": path, "content": wrapped, "sha": sha, **_content_urls(base, repo, ref, path, sha, "blob")}


def content_entry(base: str, repo: Repo, ref: str, path: str, kind: str, text: str = "") -> dict[str, Any]:
    """One item of a directory listing (no ``content``)."""
    sha = git_blob_sha(text.encode()) if kind == "file" else fake_sha(f"tree:{ref}:{path}")
    return {"type": kind, "size": len(text.encode()) if kind == "file" else 0,
            "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
            **_content_urls(base, repo, ref, path, sha, "blob" if kind == "file" else "tree")}


def _content_urls(base: str, repo: Repo, ref: str, path: str, sha: str, kind: str) -> dict[str, Any]:
    qp = quote(path)
    url = f"{base}/repos/{repo.full_name}/contents/{qp}?ref={quote(ref)}"
    git_url = f"{base}/repos/{repo.full_name}/git/{kind}s/{sha}"
    html_url = f"{HTML_ROOT}/{repo.full_name}/{kind}/{ref}/{qp}"
    return {"url": url, "git_url": git_url, "html_url": html_url,
            "download_url": f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{qp}"
            if kind == "blob" else None,
            "_links": {"self": url, "git": git_url, "html": html_url}}


def git_blob_sha(data: bytes) -> str:
    """The sha git (and GitHub's contents API) reports for a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
