"""How agentgate's processes log: one JSON object per line on stdout (`json`, the default of `agentgate
serve` and `agentgate worker`, for log collectors), or plain lines for a person (`text`, `agentgate dev`).
`AGENTGATE_LOG_FORMAT` chooses.

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message` and the record's extra fields
(a decision's `delivery`, `repo`, `pr`, `sha`, `verdict`, ...). Whatever a user wrote and a message
quotes (a branch, an environment's name) is JSON-escaped, non-ASCII included, so it can neither end
the line nor forge a field; the text format escapes line breaks and control characters for the same
reason."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("json", "text")
ENV = "AGENTGATE_LOG_FORMAT"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Extra fields never written, whatever a caller passes: a log is no place for a secret or a payload.
_NEVER = re.compile(r"(token|secret|password|passwd|key|authorization|cookie|credential|body|payload)$", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not _NEVER.search(name):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: every character outside ASCII (U+2028 too) is an escape, so the line stays one line.
        return json.dumps(entry, ensure_ascii=True, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # The line itself, escaped: a message cannot add lines. A traceback is appended after this, as is.
        return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), super().formatMessage(record))


def log_format(env: Mapping[str, str], default: str) -> str:
    """The format `AGENTGATE_LOG_FORMAT` asks for, or `default`. Anything else is an error, not a guess."""
    value = (env.get(ENV) or "").strip().lower() or default
    if value not in FORMATS:
        raise ValueError(f"{ENV} must be one of {', '.join(FORMATS)}, not {value[:40]!r}")
    return value


def configure(fmt: str, *, verbose: bool = False, stream: IO[str] | None = None) -> None:
    """Log everything at INFO (DEBUG when `verbose`) in `fmt` ("json" or "text"): JSON to stdout, text
    to stderr (a terminal). Replaces any handler configured before."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    handler = logging.StreamHandler(stream or (sys.stdout if fmt == "json" else sys.stderr))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
