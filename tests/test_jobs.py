"""The worker's evaluation job against GitHub's REST API (faked with `responses`) and a real Redis."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import jwt
import pytest
import responses

from gatekeeper.forges.factory import build_runtime
from gatekeeper.forges.port import ForgeError
from gatekeeper.state.keys import key
from gatekeeper.worker import jobs, runtime
from tests import github_api as gh
from tests.keys import app_key_pair

TOKEN = "ghs_" + "t" * 36
R = f"{gh.API}/repos/{gh.REPO}"


@pytest.fixture
def worker_runtime(settings, redis_conn):
    private, _ = app_key_pair()
    configured = replace(settings, github_app_id="12345", github_private_key=private, github_api_url=gh.API)
    runtime.configure(build_runtime(configured, redis_conn))
    yield configured
    runtime.configure(None)


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{gh.API}/app/installations/42/access_tokens", status=201,
                  json={"token": TOKEN, "expires_at": "2099-01-01T00:00:00Z", "permissions": {}})
        mock.get(f"{R}/contents/.agentgate.yml", status=404, json={"message": "Not Found"})
        mock.get(f"{R}/pulls/7/commits", json=[])
        mock.get(f"{R}/branches/main", json={"name": "main", "commit": {"sha": gh.BASE_SHA}, "protected": True})
        mock.get(f"{R}/issues/7", json={"number": 7, "performed_via_github_app": None})
        mock.post(re.compile(rf"{R}/statuses/\w+"), status=201, json={"id": 1, "state": "pending"})
        mock.get(re.compile(rf"{R}/commits/\w+/pulls"), json=[])
        mock.get(f"{R}/issues/7/timeline", json=[])
        # Who agentgate is (asked once a day, when a bot's account could be its own App's).
        mock.get(f"{gh.API}/app", json={"id": 1, "slug": "agentgate", "name": "agentgate"})
        yield mock


def seed(api, *, pr=None, files=("src/app.py",), reviews=(), perms=None):
    api.get(f"{R}/pulls/7", json=pr or gh.pull())
    api.get(f"{R}/pulls/7/files", json=[gh.file(f) for f in files])
    api.get(f"{R}/pulls/7/reviews", json=list(reviews))
    for login, level in (perms or {}).items():
        api.get(f"{R}/collaborators/{login}/permission", json=gh.permission(login, level))


def posted_statuses(api) -> list[dict]:
    return [json.loads(c.request.body) | {"url": c.request.url} for c in api.calls
            if c.request.method == "POST" and "/statuses/" in c.request.url]


def run(**kw):
    args = {"platform": "github", "repo": gh.REPO, "number": 7, "installation": 42,
            "trigger": "pull_request.opened"} | kw
    return jobs.evaluate(**args)


def test_agent_pr_gets_pending_status_on_head(worker_runtime, api):
    """An agent's PR into main gets `pending` on its head SHA, with a details link."""
    seed(api)
    result = run()
    [status] = posted_statuses(api)
    assert status["url"].endswith(f"/statuses/{gh.HEAD}")
    assert status["state"] == "pending"
    assert status["context"] == "agentgate"
    assert status["target_url"] == f"https://agentgate.example/decisions/{result['decision']}"
    assert len(status["description"]) <= 140


def test_human_approval_flips_to_success(worker_runtime, api):
    """A human with write access approving the head turns the status to success."""
    seed(api, reviews=[gh.review("maintainer")], perms={"maintainer": "write"})
    assert run()["outcome"] == "success"
    assert posted_statuses(api)[0]["state"] == "success"


def test_bot_and_stale_approvals_stay_pending(worker_runtime, api):
    """A bot's approval and a human's approval of an older commit leave the PR pending."""
    seed(api, reviews=[gh.review("dependabot[bot]"), gh.review("maintainer", commit="b" * 40, review_id=2)],
         perms={"maintainer": "write"})
    assert run()["outcome"] == "pending"
    # The bot's permission is never looked up: its review cannot count anyway.
    assert not any("dependabot" in c.request.url for c in api.calls)


def test_human_pr_passes(worker_runtime, api):
    """A human's PR gets success."""
    seed(api, pr=gh.pull(author="octocat"))
    assert run()["outcome"] == "success"


def test_same_verdict_is_not_posted_twice(worker_runtime, api):
    """Re-evaluating unchanged facts changes nothing on GitHub (idempotent job, one status)."""
    seed(api)
    first, second = run(), run()
    assert first["decision"] == second["decision"]
    assert (first["posted"], second["posted"]) == (True, False)
    assert len(posted_statuses(api)) == 1


def test_token_is_scoped_cached_and_encrypted(worker_runtime, api, redis_conn):
    """The installation token is minted for one repo with least permissions, cached in Redis encrypted."""
    seed(api)
    run()
    run()
    mints = [c for c in api.calls if c.request.url.endswith("/access_tokens")]
    assert len(mints) == 1
    body = json.loads(mints[0].request.body)
    assert body == {"repositories": ["widgets"], "permissions": {
        "contents": "read", "metadata": "read", "issues": "read", "pull_requests": "write", "statuses": "write"}}
    claims = jwt.decode(mints[0].request.headers["Authorization"].split()[1], options={"verify_signature": False})
    assert claims["iss"] == "12345"
    assert claims["exp"] - claims["iat"] == 600  # iat backdated 60 s, exp 9 min ahead
    cached = [redis_conn.get(k) for k in redis_conn.scan_iter(key("token", "*"))]
    assert len(cached) == 1 and TOKEN.encode() not in cached[0]
    assert redis_conn.ttl(next(redis_conn.scan_iter(key("token", "*")))) > 0


def test_policy_is_read_at_base_sha_and_cached(worker_runtime, api):
    """The policy comes from the base branch's head commit (never the PR's head), fetched once per SHA."""
    seed(api)
    run()
    run()
    reads = [c.request.url for c in api.calls if "/contents/" in c.request.url]
    assert len(reads) == 1
    assert f"ref={gh.BASE_SHA}" in reads[0]


def test_present_policy_file_is_never_ignored(worker_runtime, api):
    """A policy file the worker cannot understand yields `error`, not the default."""
    import base64

    api.replace(responses.GET, f"{R}/contents/.agentgate.yml", json={
        "type": "file", "encoding": "base64", "content": base64.b64encode(b"version: 99\n").decode(),
        "path": ".agentgate.yml", "name": ".agentgate.yml", "sha": "1" * 40, "size": 12})
    seed(api, pr=gh.pull(author="octocat"))
    assert run()["outcome"] == "error"
    assert posted_statuses(api)[0]["state"] == "error"


def test_api_failure_posts_error_and_retries(worker_runtime, api):
    """When facts cannot be gathered the job raises (RQ retries) and the head gets `error`, never success."""
    api.get(f"{R}/pulls/7", json=gh.pull())
    api.get(f"{R}/pulls/7/files", status=502, json={"message": "Bad Gateway"})
    with pytest.raises(ForgeError):
        run()
    [status] = posted_statuses(api)
    assert status["state"] == "error"
    assert "Could not evaluate" in status["description"]


def test_first_read_failing_still_gives_the_delivered_head_a_status(worker_runtime, api):
    """Even when reading the PR itself fails, the head the delivery named gets `error` (after the last
    try; `pending` while retrying), never a stale success."""
    api.get(f"{R}/pulls/7", status=502, json={"message": "Bad Gateway"})
    with pytest.raises(ForgeError):
        run(head_sha=gh.HEAD)
    [status] = posted_statuses(api)
    assert status["url"].endswith(f"/statuses/{gh.HEAD}") and status["state"] == "error"


def test_closed_pr_is_skipped(worker_runtime, api):
    """Closed pull requests are not evaluated."""
    seed(api, pr=gh.pull(state="closed"))
    assert "skipped" in run()
    assert posted_statuses(api) == []


def test_token_never_logged(worker_runtime, api, caplog):
    """Nothing logged during an evaluation contains the token."""
    seed(api)
    with caplog.at_level("DEBUG"):
        run()
    assert TOKEN not in caplog.text


def test_pr_opened_through_an_app_for_a_user_is_governed(worker_runtime, api):
    """A PR a user's token opened through an app (performed_via_github_app) is a bot's, not a human's."""
    api.replace(responses.GET, f"{R}/issues/7", json={"number": 7, "performed_via_github_app": {"slug": "helper"}})
    seed(api, pr=gh.pull(author="octocat"))
    assert run()["outcome"] == "pending"


def test_capped_commit_list_fails_closed(worker_runtime, api):
    """GitHub lists at most 250 commits: a human's PR with more cannot be shown agent-free, so it is governed."""
    commits = [{"sha": f"{i:040x}", "commit": {"message": "x"}, "author": gh.user("octocat"),
                "committer": gh.user("octocat")} for i in range(249)] + [
        {"sha": gh.HEAD, "commit": {"message": "x"}, "author": gh.user("octocat"), "committer": gh.user("octocat")}]
    api.replace(responses.GET, f"{R}/pulls/7/commits", json=commits)
    seed(api, pr=gh.pull(author="octocat"))
    assert run()["outcome"] == "pending"


def test_more_commits_than_listed_still_get_a_status(worker_runtime, api):
    """GitHub lists at most 250 commits, so the last one listed is not the head: the PR is still judged
    (failing closed), never left without a status."""
    commits = [{"sha": f"{i:040x}", "commit": {"message": "x"}, "author": gh.user("octocat"),
                "committer": gh.user("octocat")} for i in range(250)]
    api.replace(responses.GET, f"{R}/pulls/7/commits", json=commits)
    seed(api, pr=gh.pull(author="octocat"))
    assert run()["outcome"] == "pending"
    assert [s["state"] for s in posted_statuses(api)] == ["pending"]


def test_head_moving_while_reading_skips_quietly(worker_runtime, api):
    """When the PR gets a new push mid-evaluation, nothing is posted: the push's own delivery evaluates it."""
    api.replace(responses.GET, f"{R}/pulls/7/commits", json=[
        {"sha": "9" * 40, "commit": {"message": "new"}, "author": None, "committer": None}])
    seed(api)
    assert "skipped" in run()
    assert posted_statuses(api) == []


def test_unknown_base_commit_is_not_a_missing_policy(worker_runtime, api):
    """GitHub's 404 "No commit found for the ref" is not "no policy file": it must not fall back to the
    default; the evaluation fails closed and is retried."""
    api.replace(responses.GET, f"{R}/contents/.agentgate.yml", status=404,
                json={"message": f"No commit found for the ref {gh.BASE_SHA}"})
    seed(api, pr=gh.pull(author="octocat"))
    with pytest.raises(ForgeError):
        run()
    assert [s["state"] for s in posted_statuses(api)] == ["error"]
