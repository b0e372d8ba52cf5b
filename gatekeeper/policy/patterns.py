"""Regular expressions from a policy, compiled once and matched so that no pattern can hang a worker.

An admin's pattern meets text the pull request's author controls (title, body), so catastrophic
backtracking is an attack surface. Patterns are compiled with the `regex` module, the subject is cut
to a bounded length, and every search carries a timeout; a timeout surfaces as `PatternTimeout`, which
the decision turns into a fail-closed `error` rather than a silent non-match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import regex

MAX_PATTERN_LENGTH = 512
MAX_SUBJECT_LENGTH = 65536  # characters of a title or body a pattern ever sees
MATCH_TIMEOUT_SECONDS = 0.05
# The same title and body are matched again on every re-evaluation of a pull request; short ones
# are remembered (bounded: at most _MEMO_ENTRIES texts of at most _MEMO_TEXT characters per pattern).
_MEMO_ENTRIES = 128
_MEMO_TEXT = 4096


class PatternError(ValueError):
    """A pattern that cannot be compiled, with a message meant for the policy's author."""


class PatternTimeout(Exception):
    def __init__(self, pattern: str) -> None:
        super().__init__(f"pattern {pattern!r} took longer than {MATCH_TIMEOUT_SECONDS}s")
        self.pattern = pattern


def check_pattern(source: str) -> str:
    """Validate one pattern as written in a policy; returns it unchanged or raises PatternError."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        regex.compile(source, regex.IGNORECASE | regex.MULTILINE)
    except regex.error as exc:
        raise PatternError(f"invalid regular expression {source!r}: {exc}") from exc
    return source


@dataclass(frozen=True)
class Pattern:
    """A case-insensitive, multi-line regular expression searched anywhere in the subject."""

    source: str
    _compiled: regex.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)
    _memo: dict[str, bool] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", regex.compile(self.source, regex.IGNORECASE | regex.MULTILINE))
        object.__setattr__(self, "_memo", {})

    def search(self, text: str, timeout: float = MATCH_TIMEOUT_SECONDS) -> bool:
        memo = self._memo
        found = memo.get(text)
        if found is not None:
            return found
        try:
            found = self._compiled.search(text[:MAX_SUBJECT_LENGTH], timeout=timeout) is not None
        except TimeoutError as exc:
            raise PatternTimeout(self.source) from exc
        if len(text) <= _MEMO_TEXT:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[text] = found
        return found
