"""The webhook receiver: verify before parsing, answer per INTERFACE.md, never a 500, act once."""

from __future__ import annotations

import json

import pytest
from rq import Queue

from gatekeeper.settings import Settings
from gatekeeper.state import store
from gatekeeper.web import create_app
from tests.conftest import GITHUB_FIXTURES, SECRET, github_fixture, sign


@pytest.fixture
def client(settings, redis_conn):
    return create_app(settings, redis_conn).test_client()


def _pr_opened() -> dict:
    payload = github_fixture("pull_request.opened.1")
    payload["installation"] = {"id": 42}
    return payload


def post(client, payload, *, event="pull_request", delivery="d-1", secret=SECRET, signature=None, headers=None,
         body=None):
    body = body if body is not None else json.dumps(payload).encode()
    hdrs = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else sign(body, secret)}
    hdrs.update(headers or {})
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    return client.post("/webhooks/github", data=body, headers=hdrs)


def queued(redis_conn) -> list:
    return Queue("agentgate", connection=redis_conn).get_jobs()


def test_signed_pull_request_is_queued_with_primitive_arguments(client, redis_conn):
    """A correctly signed pull_request delivery is answered 202 and becomes one job of primitives."""
    resp = post(client, _pr_opened())
    assert resp.status_code == 202
    assert resp.json["result"] == "queued"
    [job] = queued(redis_conn)
    assert job.func_name == "gatekeeper.worker.jobs.evaluate"
    assert job.kwargs == {"platform": "github", "installation": 42, "repo": "Codertocat/Hello-World",
                          "number": 2, "trigger": "pull_request.opened", "delivery": "d-1",
                          "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"}
    assert job.retries_left == 5


def test_missing_signature_is_401(client, redis_conn):
    """No X-Hub-Signature-256 header: 401, nothing queued."""
    resp = post(client, _pr_opened(), headers={"X-Hub-Signature-256": None})
    assert resp.status_code == 401
    assert queued(redis_conn) == []


def test_forged_signature_is_401(client, redis_conn):
    """A signature made with another secret is refused."""
    resp = post(client, _pr_opened(), secret="not-the-secret")
    assert resp.status_code == 401
    assert queued(redis_conn) == []


def test_sha1_only_signature_is_401(client, redis_conn):
    """SHA-1 signatures (X-Hub-Signature) are not accepted, even when correct."""
    import hashlib
    import hmac

    body = json.dumps(_pr_opened()).encode()
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    resp = post(client, None, body=body, headers={"X-Hub-Signature-256": None, "X-Hub-Signature": sha1})
    assert resp.status_code == 401
    resp = post(client, None, body=body, signature=sha1)
    assert resp.status_code == 401


def test_non_ascii_signature_is_401_not_500(client):
    """A header that cannot even be compared is a bad signature, not a crash."""
    resp = post(client, _pr_opened(), signature="sha256=é" + "0" * 63)
    assert resp.status_code == 401


def test_signature_is_checked_over_raw_body(client):
    """Re-serialising the JSON changes the bytes; only the exact bytes signed are accepted."""
    body = json.dumps(_pr_opened()).encode()
    resp = post(client, None, body=body.replace(b", ", b","), signature=sign(body))
    assert resp.status_code == 401


def test_rotated_secrets_are_all_accepted(redis_conn):
    """During rotation several secrets are configured; a delivery signed with any of them is accepted."""
    settings = Settings(redis_url="x", github_webhook_secrets=("old-secret", "new-secret"))
    client = create_app(settings, redis_conn).test_client()
    assert post(client, _pr_opened(), secret="old-secret", delivery="a").status_code == 202
    assert post(client, _pr_opened(), secret="new-secret", delivery="b").status_code == 202
    assert post(client, _pr_opened(), secret="other", delivery="c").status_code == 401


def test_no_secret_configured_refuses_everything(redis_conn):
    """Without a configured secret nothing can be verified, so nothing is accepted."""
    client = create_app(Settings(redis_url="x"), redis_conn).test_client()
    assert post(client, _pr_opened()).status_code == 401


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_json_is_400(client, redis_conn, body):
    """A signed body that is not a JSON object is 400."""
    resp = post(client, None, body=body)
    assert resp.status_code == 400
    assert queued(redis_conn) == []


def test_missing_event_or_delivery_header_is_400(client):
    """X-GitHub-Event and X-GitHub-Delivery are part of every GitHub delivery."""
    assert post(client, _pr_opened(), headers={"X-GitHub-Event": None}).status_code == 400
    assert post(client, _pr_opened(), headers={"X-GitHub-Delivery": None}).status_code == 400


@pytest.mark.parametrize("headers", [{"X-GitHub-Delivery": "a b:c"}, {"X-GitHub-Delivery": "x" * 300},
                                     {"X-GitHub-Event": "Pull Request"}, {"X-GitHub-Event": "x" * 100}])
def test_implausible_event_or_delivery_header_is_400(client, redis_conn, headers):
    """Delivery ids are GUIDs and events snake_case words: other values are refused, not queued."""
    assert post(client, _pr_opened(), headers=headers).status_code == 400
    assert queued(redis_conn) == []


def test_wrongly_shaped_payload_is_400_not_500(client):
    """A signed payload of a handled event with the wrong shape is a client error."""
    resp = post(client, {"action": "opened", "pull_request": "nope", "repository": {"full_name": "a/b"}})
    assert resp.status_code == 400


def test_form_encoded_delivery_is_accepted(client, redis_conn):
    """Webhooks configured as application/x-www-form-urlencoded carry the JSON in `payload`."""
    import urllib.parse

    body = urllib.parse.urlencode({"payload": json.dumps(_pr_opened())}).encode()
    resp = post(client, None, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 202
    assert len(queued(redis_conn)) == 1


def test_oversized_body_is_413(client, redis_conn):
    """Bodies over 25 MB are refused before they are read or verified."""
    body = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    resp = post(client, None, body=body)
    assert resp.status_code == 413
    assert queued(redis_conn) == []


def test_ping_is_answered(client, redis_conn):
    """GitHub's ping after installation gets 200 and queues nothing."""
    resp = post(client, github_fixture("ping.event.1"), event="ping")
    assert resp.status_code == 200
    assert resp.json["result"] == "pong"
    assert queued(redis_conn) == []


def test_unknown_event_is_accepted_and_ignored(client, redis_conn):
    """Events agentgate does not handle are 2xx so GitHub does not retry them."""
    resp = post(client, {"action": "created", "repository": {"full_name": "a/b"}}, event="star")
    assert resp.status_code == 202
    assert resp.json["result"] == "ignored"
    assert queued(redis_conn) == []


def test_duplicate_delivery_is_processed_once(client, redis_conn):
    """A redelivery of an accepted delivery (same X-GitHub-Delivery) does not queue a second job."""
    assert post(client, _pr_opened(), delivery="same").status_code == 202
    second = post(client, _pr_opened(), delivery="same")
    assert second.status_code == 200
    assert second.json["result"] == "duplicate"
    assert len(queued(redis_conn)) == 1


def test_redis_refusing_a_write_is_503_and_redelivery_is_processed(client, redis_conn):
    """When Redis refuses the job part way (here: the queue key holds the wrong type) the answer is 503
    and nothing records the delivery, so GitHub's redelivery is processed."""
    redis_conn.set("rq:queue:agentgate", "not a list")
    resp = post(client, _pr_opened(), delivery="flaky")
    assert resp.status_code == 503 and resp.json["result"] == "unavailable"
    redis_conn.delete("rq:queue:agentgate")
    resp = post(client, _pr_opened(), delivery="flaky")
    assert resp.status_code == 202 and resp.json["result"] == "queued"
    assert len(queued(redis_conn)) == 1


def test_unreachable_redis_is_503(settings):
    """No Redis at all (nothing listens): 503, never a 500 or a hang."""
    dead = store.connect("redis://127.0.0.1:1/0")
    client = create_app(settings, dead).test_client()
    assert post(client, _pr_opened()).status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_retarget_to_another_base_is_evaluated(client, redis_conn):
    """Retargeting (an `edited` with a base change) can move a PR under protection: it is evaluated."""
    payload = _pr_opened() | {"action": "edited"}
    payload["changes"] = {"base": {"ref": {"from": "dev"}, "sha": {"from": "abc"}}}
    assert post(client, payload, delivery="b").json["result"] == "queued"


def test_metrics_count_deliveries(client):
    """/metrics shows deliveries by result, shared through the store."""
    post(client, _pr_opened(), delivery="m1")
    post(client, _pr_opened(), secret="bad", delivery="m2")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'agentgate_webhooks_total{event="pull_request",platform="github",result="queued"} 1.0' in text
    # Unverified headers never become labels: a forged request cannot grow the metrics.
    assert 'agentgate_webhooks_total{event="-",platform="github",result="bad-signature"} 1.0' in text
    assert 'agentgate_queue_depth{queue="agentgate"} 1.0' in text


def test_redelivery_of_a_failed_delivery_is_requeued(client, redis_conn):
    """A delivery whose job failed for good is run again when GitHub redelivers it; one that worked is not."""
    from rq import SimpleWorker

    assert post(client, _pr_opened(), delivery="broken").status_code == 202
    [job] = queued(redis_conn)
    job.retries_left = 0
    job.save()
    # No runtime is configured in this process, so the job fails: as after a long outage.
    SimpleWorker([Queue("agentgate", connection=redis_conn)], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    again = post(client, _pr_opened(), delivery="broken")
    assert again.status_code == 202 and again.json["result"] == "requeued"
    assert [j.id for j in queued(redis_conn)] == [job.id]


def test_signed_payload_missing_fields_is_400(client):
    """A signed payload of a handled event missing documented fields is a client error, not a 503."""
    payload = {"action": "checks_requested", "repository": {"full_name": "a/b"}, "merge_group": {}}
    assert post(client, payload, event="merge_group").status_code == 400


def test_gitlab_token_is_checked(redis_conn):
    """GitLab deliveries need the configured X-Gitlab-Token (compared in constant time), then a delivery
    id (Idempotency-Key, or the event UUID) and an object kind; then 202."""
    client = create_app(Settings(redis_url="x", gitlab_webhook_secret="gl-secret"), redis_conn).test_client()
    url = "/webhooks/gitlab"
    body = json.dumps({"object_kind": "merge_request"})
    named = {"X-Gitlab-Token": "gl-secret", "Idempotency-Key": "5f0f4c3e-1b2a-4c5d-8e9f-0a1b2c3d4e5f"}
    assert client.post(url, data=body, headers={"X-Gitlab-Event": "Merge Request Hook"}).status_code == 401
    assert client.post(url, data=body, headers={"X-Gitlab-Token": "wrong"}).status_code == 401
    assert client.post(url, data=body, headers={"X-Gitlab-Token": "gl-secreté"}).status_code == 401
    assert client.post(url, data="{", headers=named).status_code == 400
    # Past the token and the JSON check, GitLab is never refused (it disables hooks that fail): a
    # delivery without ids is named by its body, an unknown shape is ignored.
    assert client.post(url, data=body, headers={"X-Gitlab-Token": "gl-secret"}).status_code == 202
    odd = client.post(url, data=json.dumps({"object_kind": "Merge Request"}), headers=named)
    assert (odd.status_code, odd.json["result"]) == (202, "ignored")
    assert client.post(url, data=body, headers=named | {"Idempotency-Key": "another-one"}).status_code == 202


def test_gitlab_merge_request_is_queued_once(redis_conn):
    """A verified GitLab merge request delivery becomes its jobs on the gitlab platform (GitLab's example
    opens a merge request with a label and an assignee); the same delivery again (same Idempotency-Key)
    is a duplicate."""
    client = create_app(Settings(redis_url="x", gitlab_webhook_secret="gl-secret"), redis_conn).test_client()
    payload = json.loads((GITHUB_FIXTURES.parent / "gitlab" / "merge_request.json").read_text())
    headers = {"X-Gitlab-Token": "gl-secret", "X-Gitlab-Event": "Merge Request Hook",
               "Idempotency-Key": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "Content-Type": "application/json"}
    first = client.post("/webhooks/gitlab", data=json.dumps(payload), headers=headers)
    assert first.status_code == 202 and first.json["result"] == "queued"
    jobs = queued(redis_conn)
    assert [job.func_name.rsplit(".", 1)[1] for job in jobs] == ["evaluate", "handle", "handle"]
    assert jobs[0].kwargs["platform"] == "gitlab" and jobs[0].kwargs["repo"] == "gitlabhq/gitlab-test"
    again = client.post("/webhooks/gitlab", data=json.dumps(payload), headers=headers)
    assert again.status_code == 200 and again.json["result"] == "duplicate"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'agentgate_webhooks_total{event="merge_request",platform="gitlab",result="queued"} 1.0' in text


def test_burst_for_one_pr_coalesces_into_one_waiting_evaluation(client, redis_conn):
    """While an evaluation of a PR waits in the queue, more deliveries about it add no job: the waiting
    one reads fresh state when it starts. Once it started, the next delivery of the same burst is
    folded into one evaluation at the end of the PR's settle window (tests/test_receiver_settle.py)."""
    from rq.registry import ScheduledJobRegistry
    from rq.scheduler import RQScheduler

    from gatekeeper.state.keys import eval_waiting as waiting_key

    redis_conn.set(RQScheduler.get_locking_key("agentgate"), "a-worker", ex=60)  # a worker runs the scheduler
    for n in range(3):
        assert post(client, _pr_opened(), delivery=f"burst-{n}").status_code == 202
    assert len(queued(redis_conn)) == 1
    redis_conn.delete(waiting_key("github", "Codertocat/Hello-World", 2))  # what the job does on start
    assert post(client, _pr_opened(), delivery="after-start").json["jobs"] == ["github-after-start-0"]
    assert len(queued(redis_conn)) == 1
    assert ScheduledJobRegistry("agentgate", connection=redis_conn).get_job_ids() == ["github-after-start-0"]


def test_slot_of_a_lost_evaluation_is_taken_over(client, redis_conn):
    """If the evaluation a PR's deliveries were coalesced into is gone (a failover, a crash), the next
    delivery queues a new one instead of being dropped."""
    from gatekeeper.state.keys import eval_waiting as waiting_key

    redis_conn.set(waiting_key("github", "Codertocat/Hello-World", 2), "github-lost-job-0", ex=600)
    assert post(client, _pr_opened(), delivery="after-loss").json["result"] == "queued"
    assert [j.id for j in queued(redis_conn)] == ["github-after-loss-0"]


def test_gitlab_tokens_rotate(redis_conn):
    """Several GitLab secret tokens may be configured (comma-separated) while one is rotated: each is
    accepted, anything else is 401."""
    client = create_app(Settings(redis_url="x", gitlab_webhook_secret="old-token, new-token"), redis_conn).test_client()
    body = json.dumps({"object_kind": "merge_request"})
    for n, token in enumerate(("old-token", "new-token")):
        headers = {"X-Gitlab-Token": token, "Idempotency-Key": f"5f0f4c3e-1b2a-4c5d-8e9f-0a1b2c3d4e5{n}"}
        assert client.post("/webhooks/gitlab", data=body, headers=headers).status_code == 202
    assert client.post("/webhooks/gitlab", data=body, headers={"X-Gitlab-Token": "old-token,new-token"}
                       ).status_code == 401


def test_deeply_nested_json_is_malformed_not_an_error(client, redis_conn):
    """A signed body nested deeper than the JSON parser goes is a 400 like any malformed body."""
    body = b"[" * 100_000
    assert post(client, None, body=body).status_code == 400
