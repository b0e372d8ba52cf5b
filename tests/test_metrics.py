"""Metrics (GET /metrics): platform calls by endpoint class and the rate limit left, delivery → status
latency, verdicts, queue depth and the oldest job's age, active agent tokens, failed deliveries and job
failures, all kept in the shared Redis so any process's scrape sees every process. Unit tests use a real
Redis, `responses` for the platforms' HTTP and the in-memory forge; the last test runs one delivery end
to end (real `agentgate serve` and `agentgate worker`, the fake GitHub)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
import requests
import responses
from prometheus_client.parser import text_string_to_metric_families

from gatekeeper.core.facts import User
from gatekeeper.forges.github.client import GitHubForge
from gatekeeper.forges.gitlab.client import GitLabForge
from gatekeeper.forges.port import Event, ForgeError
from gatekeeper.state import keys, metrics
from gatekeeper.state.queue import JobQueue
from gatekeeper.web import create_app
from gatekeeper.worker import jobs, recovery, runtime
from tests.conftest import github_fixture
from tests.memoryforge import MemoryForge
from tests.test_recovery import LogStub, _attempt  # the delivery-log stub the recovery tests use

Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]
AGENT = User("copilot-swe-agent[bot]", 1, bot=True, agent=True)
HEAD = "a" * 40


def scrape(client: Any) -> Sample:
    """GET /metrics, parsed as Prometheus parses it: (sample name, labels) -> value."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    out: Sample = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Sample, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def client(settings, redis_conn):
    metrics.flush(redis_conn)  # nothing another test recorded in this process
    redis_conn.flushdb()
    return create_app(settings, redis_conn).test_client()


# ---- endpoint classes


@pytest.mark.parametrize(("path", "endpoint"), [
    ("/repos/acme/widgets/pulls/7", "pulls"),
    ("/repos/acme/widgets/pulls?state=open&per_page=100", "pulls"),
    ("/repos/acme/widgets/pulls/7/files?page=2", "files"),
    ("/repos/acme/widgets/pulls/7/reviews", "reviews"),
    ("/repos/acme/widgets/pulls/7/commits", "commits"),
    ("/repos/acme/widgets/commits/" + HEAD, "commits"),
    ("/repos/acme/widgets/commits/" + HEAD + "/pulls", "pulls"),
    ("/repos/acme/widgets/commits/" + HEAD + "/statuses", "statuses"),
    ("/repos/acme/widgets/statuses/" + HEAD, "statuses"),
    ("/repos/acme/widgets/check-runs/12", "checks"),
    ("/repos/acme/widgets/contents/.agentgate.yml?ref=main", "contents"),
    ("/repos/acme/widgets/contents/src/reviews/pulls", "contents"),  # a path's words are not resources
    ("/repos/acme/widgets/branches/pulls", "branches"),  # nor a branch's name
    ("/repos/acme/widgets/issues/7/comments", "issues"),
    ("/repos/acme/widgets/issues/7/timeline", "issues"),
    ("/repos/acme/widgets/collaborators/mia/permission", "permissions"),
    ("/repos/acme/widgets/actions/runs/5/deployment_protection_rule", "deployments"),
    ("/repos/acme/widgets/actions/runs/5", "actions"),
    ("/app/installations/42/access_tokens", "tokens"),
    ("/installation/token", "tokens"),
    ("/app/hook/deliveries?per_page=100", "deliveries"),
    ("/app/hook/deliveries/9/attempts", "deliveries"),
    ("/app", "app"),
    ("https://ghe.example/api/v3/repos/acme/widgets/pulls/7/reviews?page=2", "reviews"),
    ("/api/v4/projects/acme%2Fwidgets/merge_requests/7", "pulls"),
    ("/api/v4/projects/acme%2Fwidgets/merge_requests/7/approvals", "reviews"),
    ("/api/v4/projects/acme%2Fwidgets/merge_requests/7/diffs", "files"),
    ("/api/v4/projects/acme%2Fwidgets/merge_requests/7/notes", "issues"),
    ("/api/v4/projects/acme%2Fwidgets/repository/files/.agentgate.yml/raw", "contents"),
    ("/api/v4/projects/acme%2Fwidgets/repository/commits/" + HEAD + "/merge_requests", "pulls"),
    ("/api/v4/projects/acme%2Fwidgets/statuses/" + HEAD, "statuses"),
    ("/api/v4/projects/acme%2Fwidgets/members/all/5", "permissions"),
    ("/api/v4/users/5", "users"),
])
def test_endpoint_class_of_each_path(path, endpoint):
    """Each REST path maps to its endpoint class, read from resource names in fixed positions only:
    ids, SHAs, file paths, branch names and the query never decide (nor become) the label."""
    assert metrics.endpoint_class(path) == endpoint


@pytest.mark.parametrize("path", ["/graphql", "/rate_limit", "/repos/acme/widgets", "/repos/acme/widgets/zzz/1",
                                  "/meta", "", "/projects/1/weird", "/../../etc/passwd", "/repos/a/b/pulls\n/x"])
def test_unknown_endpoint_path_is_other(path):
    """A path outside the known resources is `other`: never the raw path."""
    assert metrics.endpoint_class(path) == "other"


# ---- calls counted where the adapters make them

API = "https://api.github.example:443"  # PyGithub spells the port out; responses matches literally


@responses.activate
def test_github_calls_are_counted_by_endpoint_with_the_rate_limit_left(client, redis_conn):
    """Every request the GitHub adapter makes is one call of its endpoint class (each page of a list
    too); the rate limit shown is what GitHub's last answer said in X-RateLimit-Remaining."""
    pr = github_fixture("pull_request.opened.1")["pull_request"]
    limit = {"X-RateLimit-Limit": "5000"}
    responses.get(f"{API}/repos/acme/widgets/pulls/7", json=pr, headers=limit | {"X-RateLimit-Remaining": "4999"})
    responses.get(f"{API}/repos/acme/widgets/pulls/7/files", json=[], headers=limit | {"X-RateLimit-Remaining": "4998"})
    responses.get(f"{API}/repos/acme/widgets/collaborators/mia/permission", status=404,
                  json={"message": "Not Found"}, headers=limit | {"X-RateLimit-Remaining": "4997"})
    forge = GitHubForge("acme/widgets", "ghs_test", API)
    forge.get_pull_request(7)
    forge.list_changed_files(7)
    assert forge.get_permission("mia") == "none"  # an error answer is a call too
    samples = scrape(client)
    assert value(samples, "agentgate_platform_calls_total", platform="github", endpoint="pulls") == 1
    assert value(samples, "agentgate_platform_calls_total", platform="github", endpoint="files") == 1
    assert value(samples, "agentgate_platform_calls_total", platform="github", endpoint="permissions") == 1
    assert value(samples, "agentgate_rate_limit_remaining", platform="github") == 4997
    assert not any(name == "agentgate_platform_calls_total" and dict(labels)["endpoint"] not in metrics.ENDPOINTS
                   for name, labels in samples)


@responses.activate
def test_gitlab_calls_are_counted_by_endpoint_with_the_rate_limit_left(client, redis_conn):
    """The GitLab adapter counts each request by endpoint class and keeps GitLab's RateLimit-Remaining."""
    url = "https://gitlab.example"
    responses.get(f"{url}/api/v4/projects/acme%2Fwidgets/repository/branches/main",
                  json={"name": "main", "commit": {"id": HEAD}}, headers={"RateLimit-Remaining": "1999"})
    responses.get(f"{url}/api/v4/projects/acme%2Fwidgets/repository/branches/gone", status=404,
                  json={"message": "404 Branch Not Found"}, headers={"RateLimit-Remaining": "1998"})
    forge = GitLabForge("acme/widgets", url, "glpat-test", redis_conn)
    assert forge.branch_sha("main") == HEAD
    assert forge.branch_sha("gone") is None
    samples = scrape(client)
    assert value(samples, "agentgate_platform_calls_total", platform="gitlab", endpoint="branches") == 2
    assert value(samples, "agentgate_rate_limit_remaining", platform="gitlab") == 1998


@responses.activate
def test_a_session_hook_counts_the_apps_own_requests(client, redis_conn):
    """`metrics.response_hook` counts each answer a `requests` session gets (the App's token requests,
    the delivery log) by endpoint class, with the rate limit it reports."""
    responses.post(f"{API}/app/installations/42/access_tokens", status=201, json={"token": "ghs_x"},
                   headers={"X-RateLimit-Remaining": "4321"})
    session = requests.Session()
    session.hooks["response"].append(metrics.response_hook("github"))
    session.post(f"{API}/app/installations/42/access_tokens", timeout=5)
    samples = scrape(client)
    assert value(samples, "agentgate_platform_calls_total", platform="github", endpoint="tokens") == 1
    assert value(samples, "agentgate_rate_limit_remaining", platform="github") == 4321


def test_a_nonsense_rate_limit_header_is_not_shown():
    """Only a number a platform could mean is kept: a garbage or absurd header leaves the gauge alone."""
    assert metrics.rate_limit_remaining({"X-RateLimit-Remaining": "12"}) == 12
    assert metrics.rate_limit_remaining({"ratelimit-remaining": "7"}) == 7
    for bad in ("", "lots", "-1", "nan", "inf", "1e99"):
        assert metrics.rate_limit_remaining({"X-RateLimit-Remaining": bad}) is None


# ---- the latency histogram


def test_histogram_buckets_are_cumulative_and_consistent(client, redis_conn):
    """Each observation lands in the first bucket whose bound is at least it (`le`); the scrape shows
    buckets cumulative, never decreasing, with +Inf equal to the count and the sum of the values."""
    observed = [0.01, 0.05, 0.051, 0.3, 2.0, 59.9, 60.0, 61.0, 3600.0]
    for seconds in observed:
        metrics.observe(redis_conn, metrics.JOB_LATENCY, seconds, "github")
    metrics.observe(redis_conn, metrics.JOB_LATENCY, 0.2, "gitlab")
    samples = scrape(client)
    bounds = [*metrics.LATENCY_BUCKETS, float("inf")]
    counts = [value(samples, "agentgate_job_latency_seconds_bucket", platform="github",
                    le="+Inf" if b == float("inf") else str(b)) for b in bounds]
    assert counts == [sum(1 for s in observed if s <= b) for b in bounds]
    assert counts == sorted(counts)
    assert counts[-1] == value(samples, "agentgate_job_latency_seconds_count", platform="github") == len(observed)
    assert value(samples, "agentgate_job_latency_seconds_sum", platform="github") == pytest.approx(sum(observed))
    assert value(samples, "agentgate_job_latency_seconds_count", platform="gitlab") == 1
    assert metrics.LATENCY_BUCKETS[0] == 0.05 and metrics.LATENCY_BUCKETS[-1] == 60


def test_a_clock_ahead_counts_as_zero_and_nan_is_dropped(client, redis_conn):
    """A receipt stamped by a clock slightly ahead is latency 0 (the first bucket), not a negative sum;
    a value that is not a number is not observed at all."""
    metrics.observe(redis_conn, metrics.JOB_LATENCY, -0.5, "github")
    metrics.observe(redis_conn, metrics.JOB_LATENCY, float("nan"), "github")
    samples = scrape(client)
    assert value(samples, "agentgate_job_latency_seconds_bucket", platform="github", le="0.05") == 1
    assert value(samples, "agentgate_job_latency_seconds_count", platform="github") == 1
    assert value(samples, "agentgate_job_latency_seconds_sum", platform="github") == 0


# ---- queue, tokens, deliveries, failures


def _evaluate_event(delivery: str, number: int = 7) -> Event:
    return Event("memory", delivery, "evaluate", "acme/widgets", 1, AGENT, number, {"trigger": "pull_request.opened"})


def test_queue_depth_and_the_oldest_jobs_age(client, settings, redis_conn):
    """The depth is the jobs waiting; the age is how long the one at the head has waited, 0 when none."""
    samples = scrape(client)
    assert value(samples, "agentgate_queue_depth", queue="agentgate") == 0
    assert value(samples, "agentgate_queue_oldest_job_age_seconds", queue="agentgate") == 0
    queued_at = time.time() - 42
    queue = JobQueue(redis_conn, settings.queue_name, settle_quiet=0, clock=lambda: queued_at)
    queue.accept_delivery("memory", "d-old", [_evaluate_event("d-old", 7)])
    JobQueue(redis_conn, settings.queue_name, settle_quiet=0).accept_delivery("memory", "d-new",
                                                                              [_evaluate_event("d-new", 8)])
    samples = scrape(client)
    assert value(samples, "agentgate_queue_depth", queue="agentgate") == 2
    assert 41 <= value(samples, "agentgate_queue_oldest_job_age_seconds", queue="agentgate") < 60


def _token(redis_conn, token_id: str, platform: str | None) -> None:
    redis_conn.zadd(keys.AGENT_TOKENS_ACTIVE, {token_id: time.time() + 1800})
    if platform is not None:
        redis_conn.hset(keys.agent_token(token_id), mapping={"id": token_id, "platform": platform})


def test_active_agent_tokens_by_platform(client, redis_conn, monkeypatch):
    """Every token id in the active set counts, by its record's platform; a platform that is not one of
    agentgate's (or a record gone) is `other`, never a new label. Past the split limit only the total
    is shown, as platform `all`."""
    for token_id, platform in [("t1", "github"), ("t2", "github"), ("t3", "gitlab"), ("t4", "evil\n{x}"),
                               ("t5", None)]:
        _token(redis_conn, token_id, platform)
    samples = scrape(client)
    assert value(samples, "agentgate_active_agent_tokens", platform="github") == 2
    assert value(samples, "agentgate_active_agent_tokens", platform="gitlab") == 1
    assert value(samples, "agentgate_active_agent_tokens", platform="other") == 2
    assert {dict(labels)["platform"] for name, labels in samples if name == "agentgate_active_agent_tokens"} == {
        "github", "gitlab", "other"}
    monkeypatch.setattr(metrics, "ACTIVE_TOKENS_SPLIT_MAX", 3)
    samples = scrape(client)
    assert value(samples, "agentgate_active_agent_tokens", platform="all") == 5
    assert value(samples, "agentgate_active_agent_tokens", platform="github") is None





def test_failed_deliveries_are_counted_once_each(client, settings, redis_conn):
    """The redeliver job counts each failed attempt it finds (a delivery that never succeeded and was
    never accepted) once, however often it reads the log again; delivered ones are not counted."""
    rt = runtime.Runtime(settings, redis_conn, lambda *a: MemoryForge(platform="github"), JobQueue(redis_conn))
    stub = LogStub([_attempt(1, "lost", False), _attempt(2, "fine", True), _attempt(3, "retried", False),
                    _attempt(4, "retried", True)])
    recovery.configure(lambda platform: stub)
    try:
        recovery.redeliver(rt)
        recovery.redeliver(rt)  # the same log read again
        assert value(scrape(client), "agentgate_failed_deliveries_total", platform="github") == 1
        stub.attempts.append(_attempt(5, "lost", False))  # its redelivery failed too: a new failed attempt
        recovery.redeliver(rt)
    finally:
        recovery.configure(None)
    assert value(scrape(client), "agentgate_failed_deliveries_total", platform="github") == 2


@pytest.fixture
def sync_rt(settings, redis_conn):
    """A runtime whose queue runs each job at once (RQ's synchronous mode), on the in-memory forge."""
    memory = MemoryForge()
    memory.branches["main"] = "0" * 40
    rt = runtime.Runtime(replace(settings, dry_run=True), redis_conn, lambda *a: memory,
                         JobQueue(redis_conn, settings.queue_name, is_async=False, settle_quiet=0))
    rt.memory = memory  # type: ignore[attr-defined]
    runtime.configure(rt)
    yield rt
    runtime.configure(None)


def test_a_delivery_is_timed_to_its_status_and_logged_once(sync_rt, client, redis_conn, caplog):
    """A delivery's evaluation observes delivery → status once in the latency histogram, counts its
    verdict, and writes one decision log record with the delivery, repository, PR, head and verdict."""
    sync_rt.memory.add_pull(7, AGENT, HEAD, ["src/app.py"])
    with caplog.at_level(logging.INFO, logger="gatekeeper.worker.pipeline"):
        sync_rt.queue.accept_delivery("memory", "d-7", [_evaluate_event("d-7")])
    assert sync_rt.memory.statuses[-1][:2] == (HEAD, "pending")
    samples = scrape(client)
    assert value(samples, "agentgate_job_latency_seconds_count", platform="memory") == 1
    assert value(samples, "agentgate_job_latency_seconds_bucket", platform="memory", le="+Inf") == 1
    assert value(samples, "agentgate_verdicts_total", platform="memory", outcome="pending") == 1
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "decision"]
    assert (record.delivery, record.repo, record.pr, record.sha, record.verdict) == (
        "d-7", "acme/widgets", 7, HEAD, "pending")
    assert 0 <= record.latency_seconds < 30


def test_an_evaluation_no_delivery_asked_for_is_not_timed(sync_rt, client, redis_conn):
    """A re-check the worker schedules itself (no delivery behind it) reaches a verdict without adding
    to the delivery → status histogram."""
    sync_rt.memory.add_pull(7, AGENT, HEAD, ["src/app.py"])
    sync_rt.queue.enqueue_evaluation("memory", "acme/widgets", 7, 1, "reconcile.missing", "re-7")
    assert sync_rt.memory.statuses
    samples = scrape(client)
    assert value(samples, "agentgate_job_latency_seconds_count", platform="memory") is None
    assert value(samples, "agentgate_verdicts_total", platform="memory", outcome="pending") == 1


def test_failed_jobs_are_counted_by_job(sync_rt, client, redis_conn):
    """A job that raises (a platform error) is counted under its job name, and still raises (RQ retries)."""
    def broken(number: int):
        raise ForgeError("GitHub answered 502: Bad Gateway", 502)

    sync_rt.memory.get_pull_request = broken  # type: ignore[method-assign]
    with pytest.raises(ForgeError):
        jobs.evaluate(platform="memory", repo="acme/widgets", number=7, installation=1, delivery="d-9")
    assert value(scrape(client), "agentgate_job_failures_total", job="evaluate") == 1


def test_a_counter_field_of_the_wrong_shape_is_not_shown(client, redis_conn):
    """Only fields with a known name and its number of labels become series (an old one-label
    `agentgate_platform_calls` field included)."""
    metrics.incr(redis_conn, "agentgate_platform_calls", "github")
    metrics.incr(redis_conn, "agentgate_unknown", "x")
    samples = scrape(client)
    assert not [k for k in samples if k[0] == "agentgate_platform_calls_total"]
    assert not [k for k in samples if k[0].startswith("agentgate_unknown")]


# ---- end to end: one delivery through `agentgate serve` and `agentgate worker`


@pytest.mark.e2e
def test_one_delivery_end_to_end_shows_in_metrics_and_the_log(tmp_path):
    """One agent PR delivered to the real processes: /metrics (of the web process, which made none of
    the calls) shows the webhook, the verdict, the latency, each GitHub call by endpoint class and the
    rate limit GitHub reported; the worker prints one JSON decision line with the delivery, repository,
    PR, head and verdict, and every line it prints stays one JSON object although the PR title holds a
    line break."""
    from tests.e2e import APP_ID, INSTALLATION, REPO, pr_payload, running_agentgate
    from tests.fakegithub import FakeState, running_fake_github
    from tests.keys import app_key_pair

    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    with running_fake_github(state) as fake, running_agentgate(fake, private, tmp_path) as gate:
        pr = state.add_pull(REPO, 7, user="copilot-swe-agent[bot]", head_sha=HEAD, head_ref="copilot/fix-7",
                            base_ref="main", title='Fix\n{"level":"CRITICAL","verdict":"success"}')
        state.add_file(REPO, 7, "src/widget.py")
        delivery = str(uuid.uuid4())
        assert gate.deliver("pull_request", pr_payload(pr), delivery=delivery).status_code == 202
        gate.env["AGENTGATE_LOG_FORMAT"] = "json"
        done = gate.work()
        assert [s["state"] for s in gate.statuses(HEAD)] == ["pending"]

        lines = [line for line in done.stdout.splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]  # each line is one object
        [decision] = [p for p in parsed if p.get("event") == "decision"]
        assert {k: decision[k] for k in ("delivery", "repo", "pr", "sha", "verdict", "level", "logger")} == {
            "delivery": delivery, "repo": REPO, "pr": 7, "sha": HEAD, "verdict": "pending", "level": "INFO",
            "logger": "gatekeeper.worker.pipeline"}
        assert "ghs_" not in done.stdout and "BEGIN" not in done.stdout

        body = requests.get(f"{gate.url}/metrics", timeout=5).text
    samples: Sample = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert value(samples, "agentgate_webhooks_total", platform="github", event="pull_request", result="queued") == 1
    assert value(samples, "agentgate_verdicts_total", platform="github", outcome="pending") == 1
    assert value(samples, "agentgate_job_latency_seconds_count", platform="github") == 1
    for endpoint in ("pulls", "files", "reviews", "commits", "contents", "branches", "statuses"):
        assert value(samples, "agentgate_platform_calls_total", platform="github", endpoint=endpoint) == 1, endpoint
    assert 0 < value(samples, "agentgate_rate_limit_remaining", platform="github") < 5000
    assert value(samples, "agentgate_queue_depth", queue="agentgate") == 0
    assert value(samples, "agentgate_queue_oldest_job_age_seconds", queue="agentgate") == 0
