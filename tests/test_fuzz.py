"""Fuzzing with hypothesis, bounded so CI stays fast (a few seconds each): the parsers that meet
untrusted text never fail in a way the caller does not handle.

- the policy parser: `load_policy` never raises, on any text; it returns a Policy or an InvalidPolicy
  whose errors point at a line and column of that text;
- the GitHub webhook parser: on any mutation of GitHub's published example payloads, `parse` returns
  events or raises only the errors the receiver answers 400 to;
- the receiver, through Flask's test client: no body or headers, signed or not, get a 5xx answer.

More examples locally: `AGENTGATE_FUZZ_EXAMPLES=3000 pytest tests/test_fuzz.py` (about two minutes)."""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.forges.github.webhooks import audit_entry, parse
from gatekeeper.forges.port import Event
from gatekeeper.policy import InvalidPolicy, Policy, load_policy
from gatekeeper.policy.load import check_policy, org_refs
from gatekeeper.policy.presets import PRESET_NAMES, preset_text
from gatekeeper.web import create_app
from tests.conftest import GITHUB_FIXTURES, sign

# 100 examples keep each fuzzer to a few seconds in CI; the fixtures' state is not per example (the
# receiver only adds deliveries and jobs to the test database, which is flushed after each test).
FUZZ = settings(max_examples=int(os.environ.get("AGENTGATE_FUZZ_EXAMPLES", "100")), deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- the policy parser -------------------------------------------------------------------------------

# Words the policy language knows, so that generated documents reach the schema and the compiler.
KEYS = ["version", "extends", "identities", "agents", "bots", "trusted_bots", "login", "only_paths", "approvals",
        "labels", "commands", "teams", "protected_branches", "sensitive_paths", "required", "sensitive",
        "min_permission", "from", "exclude_requesters", "exclude_committers", "stale_after_push", "task",
        "approved_labels", "limits", "files", "lines", "chains", "trigger_labels", "protected_environments",
        "remove_bot_labels", "allow", "actor", "workflows", "ci_events", "rules", "name", "when", "unless",
        "require", "block", "message", "unblock", "reviewers", "event", "branch", "head_branch", "paths",
        "title", "body", "draft", "fork", "add", "remove"]
WORDS = ["agent", "bot", "human", "automated", "preset:strict", "preset:nope", "org:.github", "team:x", "main",
         "**", "docs/**", "!x", "/abs", "a//b", "{1..999}", "(a|aa)+$", "[", "write", "admin", "dependabot[bot]"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True),
                    st.sampled_from(WORDS), st.text(max_size=20))
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25)
VALID = [text for text in (preset_text(name) for name in PRESET_NAMES) if text] + [
    "version: 1\nextends: [preset:coding-agents]\nsensitive_paths: {add: ['db/**']}\nrules:\n"
    "  - name: no-agent-releases\n    when: {actor: agent, branch: 'release/**', title: '^wip'}\n"
    "    unless: {labels: [ok]}\n    block: {message: no, unblock: label ok}\n"]
NOISE = st.sampled_from([":", "- ", "{", "}", "[", "]", ",", "&a ", "*a", "!!python/object:os.system ", "<<: ",
                         "\t", "'", '"', "\n", "\n  ", "#", "%YAML 1.1\n", "---\n", "? ", "|\n", ">-\n", "\\",
                         "\x00", "\ufeff", "\u2028", "9" * 5000, "~", "0x1F", ".inf", "2001-12-14"])


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    """A valid policy with a few characters deleted, replaced or inserted at random places."""
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        insert = draw(st.one_of(NOISE, st.text(max_size=6)))
        text = text[:at] + insert + text[at + cut:]
    return text


POLICY_TEXTS = st.one_of(
    st.text(max_size=400),
    DOCUMENTS.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    st.dictionaries(st.sampled_from(KEYS), DOCUMENTS, max_size=6).map(
        lambda doc: yaml.safe_dump({"version": 1, **doc}, allow_unicode=True)),
    mutated_policies(),
)


@FUZZ
@given(POLICY_TEXTS)
def test_the_policy_parser_never_raises(text):
    """`load_policy` returns a Policy or an InvalidPolicy whose every error is at a line and column of
    the text, never an exception; `check_policy` and `org_refs` (read before loading) never raise."""
    result = load_policy(text)
    assert isinstance(result, Policy | InvalidPolicy)
    if isinstance(result, InvalidPolicy):
        assert result.errors
        lines = len(text.splitlines()) + 1
        for error in result.errors:
            assert 1 <= error.line <= lines and error.col >= 1 and error.message.strip(), error
            assert str(error).startswith(f".agentgate.yml:{error.line}:{error.col}: ")
    assert isinstance(check_policy(text), list)
    assert all(ref.startswith("org:") for ref in org_refs(text))


# -- the webhook parser ------------------------------------------------------------------------------

FIXTURES = {path.name.removesuffix(".json"): json.loads(path.read_text())
            for path in sorted(GITHUB_FIXTURES.glob("*.json"))}
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
EVENT_NAMES = sorted({name.split(".")[0] for name in FIXTURES})
# What the receiver answers 400 to, besides events (see gatekeeper/web/receiver.py).
CLIENT_ERRORS = (LookupError, TypeError, ValueError, AttributeError)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a payload."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _places(item, (*path, i))
    return found


@st.composite
def mutated_deliveries(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(event, payload): one of GitHub's example payloads with a few values replaced by other JSON,
    removed, or turned into the wrong type."""
    name = draw(st.sampled_from(sorted(FIXTURES)))
    payload = copy.deepcopy(FIXTURES[name])
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in _places(payload) if p]
        if not places:
            break
        *parent_path, key = draw(st.sampled_from(places))
        parent = payload
        for part in parent_path:
            parent = parent[part]
        how = draw(st.sampled_from(["replace", "remove", "wrap", "stringify"]))
        if how == "remove" and isinstance(parent, dict):
            del parent[key]
        elif how == "wrap":
            parent[key] = [parent[key]]
        elif how == "stringify":
            parent[key] = json.dumps(parent[key])[:50]
        else:
            parent[key] = draw(JSON)
    event = draw(st.one_of(st.just(name.split(".", 1)[0]), st.sampled_from(EVENT_NAMES)))
    return event, payload


@FUZZ
@given(mutated_deliveries())
def test_the_webhook_parser_returns_events_or_a_client_error(delivery):
    """`parse` on a mutated payload returns events, or raises only what the receiver answers 400 to;
    so does building the delivery's audit entry."""
    event, payload = delivery
    try:
        events = parse(event, payload, "d-1")
    except CLIENT_ERRORS:
        return
    assert all(isinstance(e, Event) for e in events)
    for e in events:
        json.dumps(e.to_dict())  # what is enqueued is plain data
    try:
        audit_entry(event, payload, "d-1", datetime(2026, 12, 1, tzinfo=UTC))
    except CLIENT_ERRORS:
        pass


# -- the receiver ------------------------------------------------------------------------------------

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=40)
EVENTS = st.one_of(st.sampled_from([*EVENT_NAMES, "ping", "gitlab", ""]), HEADER_TEXT)


@st.composite
def http_deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A body (a mutated example payload, JSON of another shape, form-encoded, or bytes) and headers,
    signed with the webhook secret or not."""
    kind = draw(st.sampled_from(["payload", "json", "form", "bytes"]))
    if kind == "payload":
        body = json.dumps(draw(mutated_deliveries())[1]).encode()
    elif kind == "json":
        body = json.dumps(draw(JSON)).encode()
    elif kind == "form":
        body = urllib.parse.urlencode({draw(st.sampled_from(["payload", "x"])): draw(st.text(max_size=50))}).encode()
    else:
        body = draw(st.binary(max_size=200))
    headers = {"X-GitHub-Event": draw(EVENTS), "X-GitHub-Delivery": draw(st.one_of(st.uuids().map(str), HEADER_TEXT)),
               "Content-Type": draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                                     "text/plain", ""]))}
    signature = draw(st.sampled_from(["valid", "none", "wrong", "text"]))
    if signature == "valid":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature == "wrong":
        headers["X-Hub-Signature-256"] = sign(body, "not-the-secret")
    elif signature == "text":
        headers["X-Hub-Signature-256"] = draw(HEADER_TEXT)
    for name in draw(st.sets(st.sampled_from(["X-GitHub-Event", "X-GitHub-Delivery", "Content-Type"]))):
        headers.pop(name, None)
    return body, headers


@pytest.fixture
def client(settings, redis_conn):
    return create_app(settings, redis_conn).test_client()


@FUZZ
@given(request_=http_deliveries())
def test_the_receiver_never_answers_5xx(client, request_):
    """Whatever arrives at `/webhooks/github`, signed or not, the answer is 2xx or 4xx: never a 5xx,
    which would make GitHub redeliver garbage and hide real outages (Redis is up here)."""
    body, headers = request_
    response = client.post("/webhooks/github", data=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.get_data()[:200])


def test_fixtures_are_there():
    """The webhook fuzzers mutate GitHub's published examples; an empty directory would fuzz nothing."""
    assert len(FIXTURES) > 50 and Path(GITHUB_FIXTURES).is_dir()
