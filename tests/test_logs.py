"""Logs: one JSON object per line on stdout for `serve` and `worker` (AGENTGATE_LOG_FORMAT=json), plain
lines for `dev`; whatever a user wrote stays inside its field and on its line; secrets never appear."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gatekeeper import logs
from gatekeeper.worker import pipeline

FORGED = 'Fix\n{"level":"CRITICAL","verdict":"success"}\r\u2028\u202e\x1b[31m'


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """Logging configured into a buffer; the root logger's handlers are put back afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    buffer = io.StringIO()
    yield buffer, logging.getLogger("gatekeeper.worker.pipeline")
    root.handlers[:] = saved
    root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_a_decision_line_is_json_with_its_fields(captured):
    """The decision record becomes one JSON object with time, level, logger, message and the decision's
    delivery, repository, PR, head, verdict and latency."""
    buffer, log = captured
    logs.configure("json", stream=buffer)
    fields = pipeline.decision_fields("github", "acme/widgets", 7, "a" * 40, "pending", "d-1",
                                      "pull_request.opened", "dec-1", 0.0421)
    log.info("acme/widgets#7 aaaaaaa -> pending (pull_request.opened)", extra=fields)
    [line] = _lines(buffer)
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "gatekeeper.worker.pipeline"
    assert entry["time"].endswith("Z") and entry["message"].startswith("acme/widgets#7")
    assert {k: entry[k] for k in ("event", "delivery", "repo", "pr", "sha", "verdict", "decision")} == {
        "event": "decision", "delivery": "d-1", "repo": "acme/widgets", "pr": 7, "sha": "a" * 40,
        "verdict": "pending", "decision": "dec-1"}
    assert entry["latency_seconds"] == 0.0421


def test_user_text_cannot_break_a_json_line_or_forge_a_field(captured):
    """A PR title with a line break, a carriage return, U+2028, a bidi override and an escape sequence
    stays one line, inside `message`, and adds no field: every non-ASCII and control character is an
    escape. An extra field named `message` or `level` cannot overwrite the real ones."""
    buffer, log = captured
    logs.configure("json", stream=buffer)
    log.warning("title: %s", FORGED, extra={"repo": FORGED})
    lines = _lines(buffer)
    assert len(lines) == 1 and lines[0].isascii()
    entry = json.loads(lines[0])
    assert entry["level"] == "WARNING" and entry["message"] == f"title: {FORGED}" and entry["repo"] == FORGED
    assert "verdict" not in entry


def test_secret_named_fields_are_never_written(captured):
    """A field named like a secret or a payload (token, secret, body, ...) is dropped, whoever passes it."""
    buffer, log = captured
    logs.configure("json", stream=buffer)
    log.info("issued", extra={"token": "ghs_abc", "webhook_secret_x": "ok", "Secret": "s3cr3t", "body": "{...}",
                              "token_id": "t-1"})
    entry = json.loads(_lines(buffer)[0])
    assert "token" not in entry and "Secret" not in entry and "body" not in entry
    assert entry["token_id"] == "t-1"
    assert "ghs_abc" not in buffer.getvalue() and "s3cr3t" not in buffer.getvalue()


def test_an_exception_stays_inside_its_line(captured):
    """A traceback is a field of the line (`exception`), not lines of its own."""
    buffer, log = captured
    logs.configure("json", stream=buffer)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("job failed")
    [line] = _lines(buffer)
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "ValueError: bad\nthing" in entry["exception"]


def test_text_lines_escape_line_breaks(captured):
    """The text format (dev) escapes control characters and line breaks in the message too."""
    buffer, log = captured
    logs.configure("text", stream=buffer)
    log.warning("title: %s", FORGED)
    [line] = _lines(buffer)
    assert "INFO" not in line and "WARNING gatekeeper.worker.pipeline: title: Fix\\n" in line


def test_the_format_is_chosen_by_the_environment_and_checked():
    """AGENTGATE_LOG_FORMAT picks json or text (any case); unset means the command's default; anything
    else is a clear error, never a silent fallback."""
    assert logs.log_format({}, "json") == "json"
    assert logs.log_format({}, "text") == "text"
    assert logs.log_format({"AGENTGATE_LOG_FORMAT": " JSON "}, "text") == "json"
    with pytest.raises(ValueError, match="AGENTGATE_LOG_FORMAT must be one of json, text"):
        logs.log_format({"AGENTGATE_LOG_FORMAT": "xml"}, "json")


def test_json_logs_go_to_stdout_and_a_bad_format_stops_the_command():
    """Configured from the CLI's `_logging`, JSON lines go to stdout (stderr stays empty); an unknown
    format makes the command exit with the reason instead of starting."""
    code = ("import logging; from gatekeeper.cli.main import _logging; _logging(default_format='json'); "
            "logging.getLogger('x').info('hello', extra={'repo': 'acme/widgets'})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["repo"] == "acme/widgets"
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "AGENTGATE_LOG_FORMAT": "yaml"})
    assert bad.returncode != 0 and "AGENTGATE_LOG_FORMAT must be one of json, text" in bad.stderr
