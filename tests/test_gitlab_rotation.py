"""agentgate's own GitLab token, rotated on a schedule against the fake GitLab: the old token stops working,
every process then acts with the new one (kept encrypted in Redis), and two rotations never race (GitLab
revokes the whole line when a rotated token is used again)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
import requests

from gatekeeper.forges.gitlab.credentials import current_token, rotate, rotation_due
from gatekeeper.forges.gitlab.forge import open_gitlab
from gatekeeper.forges.port import EVALUATE
from gatekeeper.settings import Settings
from gatekeeper.state import keys
from tests.fakegitlab import FakeGitLab, FakeGitLabState, running_fake_gitlab
from tests.fakegitlab.admin import admin_of
from tests.fakegitlab.state import MAINTAINER

PROJECT = "acme/widgets"
SERVICE, TOKEN = "agentgate-service", "glpat-original-service"


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    state = FakeGitLabState()
    state.add_project(PROJECT, default_branch="main")
    state.set_member(PROJECT, SERVICE, MAINTAINER)
    state.add_token(SERVICE, TOKEN, ["api"])
    with running_fake_gitlab(state) as gl:
        yield gl


def settings_for(gl: FakeGitLab, days: int = 7) -> Settings:
    return Settings(redis_url="unused", gitlab_url=gl.url, gitlab_token=TOKEN, gitlab_rotate_days=days)


def works(gl: FakeGitLab, token: str) -> bool:
    return requests.get(f"{gl.url}/api/v4/projects/acme%2Fwidgets", headers={"PRIVATE-TOKEN": token},
                        timeout=10).status_code == 200


def test_rotation_replaces_the_token_everywhere_and_kills_the_old_one(fake, redis_conn) -> None:
    """The first run rotates (the configured token's age is unknown); the new token is in Redis only
    encrypted, forges opened afterwards act with it, and the configured one is refused by GitLab."""
    settings = settings_for(fake)
    assert rotation_due(redis_conn, settings, now=1_000.0)
    assert rotate(redis_conn, settings)["rotated"] is True
    [(old, new)] = admin_of(fake.state).rotations
    assert old == TOKEN and current_token(redis_conn, settings) == new
    assert not works(fake, TOKEN) and works(fake, new)
    blob = b"".join(v for v in redis_conn.hgetall(keys.GITLAB_OWN_TOKEN).values())
    assert new.encode() not in blob and TOKEN.encode() not in blob
    forge = open_gitlab(settings, redis_conn, PROJECT, EVALUATE)
    assert forge.default_branch() == "main"  # acting with the new token


def test_not_due_means_no_call_and_off_means_never(fake, redis_conn) -> None:
    """Rotated once, the next rotation waits `AGENTGATE_GITLAB_ROTATE_DAYS`; 0 days: never rotated, and
    the configured token is used as it is."""
    settings = settings_for(fake)
    rotate(redis_conn, settings)
    assert rotate(redis_conn, settings) == {"rotated": False}
    assert len(admin_of(fake.state).rotations) == 1
    off = replace(settings, gitlab_rotate_days=0)
    assert not rotation_due(redis_conn, off, now=10**12) and current_token(redis_conn, off) == TOKEN


def test_two_processes_never_rotate_at_once(fake, redis_conn: redis.Redis) -> None:
    """Workers racing at the same slot: one rotates, the other does nothing (a second rotation with the
    old token would make GitLab revoke the new one too)."""
    settings = settings_for(fake)
    results: list[dict] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        barrier.wait()
        results.append(rotate(redis.Redis.from_url(_url(redis_conn)), settings))  # a process of its own

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r.get("rotated") is True for r in results) == 1 and len(results) == 4
    assert len(admin_of(fake.state).rotations) == 1
    assert works(fake, current_token(redis_conn, settings))


def _url(conn: redis.Redis) -> str:
    kw = conn.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
