"""Regular expressions from a policy, compiled once and matched so that no pattern can hang a worker.

An admin's pattern meets text the pull request's author controls (title, body, a bot's comment), so
catastrophic backtracking is an attack surface. Patterns are compiled with the `regex` module, the
subject is cut to a bounded length, and every search carries a timeout; a timeout surfaces as
`PatternTimeout`, which the decision turns into a fail-closed `error` rather than a silent non-match.

A timeout per search is not enough on its own: a policy of 1,000 rules whose patterns each use their
full 50 ms made one verdict take 59 s. So searches are made in batches (one verdict's rules, one
comment's lines) that share a `RegexBudget`: a total time divided before any search runs into equal
shares, one per search the batch plans to make (at least MIN_SHARE_SECONDS each, and then only as
many searches as the total pays for). A search that runs out of its share spends the budget: nothing
after it runs, and the caller fails closed. No clock is read for this: the regex engine enforces
each share, and the shares add up to the total. The engine's clock is the wall clock, though, and a
process that is not scheduled for a moment can see a small share run out with nothing slow about the
pattern, so such a search is tried once more with a longer timeout, out of one more timeout's worth
per batch. Hence the worst case of a batch, `seconds + cap`, is a small multiple of one timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import regex

MAX_PATTERN_LENGTH = 512
MAX_SUBJECT_LENGTH = 65536  # characters of a title or body a pattern ever sees
MATCH_TIMEOUT_SECONDS = 0.05  # the most one search may take
# What all the searches of one verdict may take together: a small multiple of one timeout.
VERDICT_BUDGET_SECONDS = 4 * MATCH_TIMEOUT_SECONDS
# The least a search is given. Measured on a 2-core machine: searches of short lines ran out of
# shares of 50-100 µs about once in 10,000 (the process was descheduled), of 0.5 ms never in 85,000;
# those rare ones are tried again with RETRY_FACTOR times their share.
MIN_SHARE_SECONDS = 0.0001
RETRY_FACTOR = 20
# The same title and body are matched again on every re-evaluation of a pull request; short ones
# are remembered (bounded: at most _MEMO_ENTRIES texts of at most _MEMO_TEXT characters per pattern).
_MEMO_ENTRIES = 128
_MEMO_TEXT = 4096


class PatternError(ValueError):
    """A pattern that cannot be compiled, with a message meant for the policy's author."""


class PatternTimeout(Exception):
    def __init__(self, pattern: str, seconds: float = MATCH_TIMEOUT_SECONDS) -> None:
        super().__init__(f"pattern {pattern!r} took longer than {_shown(seconds)}")
        self.pattern = pattern
        self.seconds = seconds


class BudgetSpent(Exception):
    """A search was not made: an earlier one of the same batch ran out of time, or the batch's budget
    pays for no more searches."""


def _shown(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def check_pattern(source: str) -> str:
    """Validate one pattern as written in a policy; returns it unchanged or raises PatternError."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        regex.compile(source, regex.IGNORECASE | regex.MULTILINE)
    except regex.error as exc:
        raise PatternError(f"invalid regular expression {source!r}: {exc}") from exc
    return source


@dataclass
class RegexBudget:
    """The time a batch of searches may take together, divided into equal shares before any runs.

    `searches` is how many the batch plans to make, known before the first one runs (the caller
    counts them from the policy and the text alone). Each gets `seconds / searches`, at most `cap`
    and at least MIN_SHARE_SECONDS; at that least, only as many as `seconds` pays for are made (the
    rest raise `BudgetSpent`), so the shares handed out add up to at most `seconds`. A search that runs
    out of its share is tried again with RETRY_FACTOR times it (at most `cap`) while the retries, one
    more `cap` in all, last; one that runs out after that spends the budget, and every later search
    raises `BudgetSpent` without running."""

    seconds: float
    searches: int
    cap: float = MATCH_TIMEOUT_SECONDS
    spent_by: str | None = None  # what ran out first (a rule, a line), once spent
    share: float = field(init=False)
    left: int = field(init=False)  # searches the budget still pays for
    retry_seconds: float = field(init=False)  # left for searches tried again

    def __post_init__(self) -> None:
        self.share = max(MIN_SHARE_SECONDS, min(self.cap, self.seconds / max(self.searches, 1)))
        self.left = max(1, int(self.seconds / self.share + 1e-9))
        self.retry_seconds = self.cap

    def take(self) -> float:
        """The share of the next search; BudgetSpent when the budget is spent or pays for no more."""
        if self.spent_by is None and self.left <= 0:
            self.spent_by = f"{int(self.seconds / self.share + 1e-9)} searches"
        if self.spent_by is not None:
            raise BudgetSpent(self.spent_by)
        self.left -= 1
        return self.share

    def retry(self, share: float) -> float | None:
        """After a search ran out of `share`: the timeout to try it once more with, if any is left."""
        again = min(self.cap, RETRY_FACTOR * share)
        if again <= share or again > self.retry_seconds + 1e-12:
            return None
        self.retry_seconds -= again
        return again

    def search(self, pattern: Pattern, text: str) -> bool:
        """`pattern.search` within its share (see the class); raises PatternTimeout when it runs out,
        having spent the budget, and BudgetSpent when an earlier search did."""
        share = self.take()
        try:
            return pattern.search(text, timeout=share)
        except PatternTimeout as exc:
            again = self.retry(share)
            if again is None:
                self.spent_by = exc.pattern
                raise
        try:
            return pattern.search(text, timeout=again)
        except PatternTimeout:
            self.spent_by = pattern.source
            raise


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
            raise PatternTimeout(self.source, timeout) from exc
        if len(text) <= _MEMO_TEXT:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[text] = found
        return found
