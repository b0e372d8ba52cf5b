"""Shared fixtures. Redis is real (127.0.0.1:6379, database 13); `.ci/run` starts one when none answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gatekeeper.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB_FIXTURES = FIXTURES / "github"
TEST_REDIS_URL = os.environ.get("AGENTGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
SECRET = "test-webhook-secret"


def github_fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((GITHUB_FIXTURES / f"{name}.json").read_text()))


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem, not a test result
        pytest.fail(f"tests need a real Redis at {TEST_REDIS_URL}: {exc}")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        redis_url=TEST_REDIS_URL,
        github_webhook_secrets=(SECRET,),
        public_url="https://agentgate.example",
        status_context="agentgate",
    )
