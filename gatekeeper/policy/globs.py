"""Glob matching compiled once per policy: paths and branch names are matched many times per verdict.

The semantics are wcmatch's `globmatch` with GLOBSTAR | DOTGLOB | BRACE | NEGATE (a hypothesis test
holds the two together), but the translation is our own: wcmatch guards every `**` against `.` and
`..` segments with a per-character lookahead, which costs ~17 µs per path for the default sensitive
set. Platform paths never contain such segments, so `**` can be a plain `.*` here (~1 µs).

- `*` matches within one path segment (and a leading dot: dotfiles are files like any other);
- `**` as a whole segment matches any number of segments, including none (`**/*.pem` catches
  `key.pem` and `.ssh/id.pem`); `dir/**` matches everything under `dir/`;
- `?` one character, `[abc]` / `[!abc]` a class, `{a,b}` alternatives;
- a pattern starting with `!` excludes what it matches from the set.

All include patterns of a set are joined into one regex, all excludes into another, so a match is at
most two C-level regex calls; results are memoised per value because the same paths and branch names
recur across evaluations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import bracex

_MEMO_LIMIT = 16384
MAX_PATTERN_LENGTH = 256
MAX_BRACE_EXPANSION = 64
_GLOBSTAR = object()


class GlobError(ValueError):
    """A glob that cannot be used, with a message meant for the policy's author."""


def check_glob(pattern: str) -> str:
    """Validate one glob as written in a policy; returns it unchanged or raises GlobError."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body.strip():
        raise GlobError("empty pattern")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise GlobError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters")
    if body.startswith("/"):
        raise GlobError(f"{pattern!r}: paths and branches are relative; drop the leading '/'")
    if body.endswith("/"):
        raise GlobError(f"{pattern!r} matches nothing: write {pattern + '**'!r} to match everything under it")
    if "//" in body:
        raise GlobError(f"{pattern!r} contains an empty segment ('//')")
    _expand(body)
    return pattern


def _expand(pattern: str) -> list[str]:
    try:
        expanded = bracex.expand(pattern, limit=MAX_BRACE_EXPANSION)
    except bracex.ExpansionLimitException as exc:
        raise GlobError(f"{pattern!r}: braces expand to more than {MAX_BRACE_EXPANSION} alternatives") from exc
    return expanded or [pattern]


def _segment(seg: str, brackets: bool = True) -> str:
    out: list[str] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "[" and not brackets:
            out.append(re.escape(c))
        elif c == "*":
            while i + 1 < n and seg[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            negate = j < n and seg[j] in "!^"
            if negate:
                j += 1
            if j < n and seg[j] == "]":  # a leading ']' is a literal member
                j += 1
            close = seg.find("]", j)
            if close < 0:
                out.append(re.escape(c))
            else:
                members = seg[i + 1 + (1 if negate else 0): close]
                members = members.replace("\\", "\\\\").replace("[", "\\[").replace("^", "\\^")
                if members.startswith("]"):
                    members = "\\" + members
                out.append(f"[^/{members}]" if negate else f"[{members}]")
                i = close
        else:
            out.append(re.escape(c))
        i += 1
    regex = "".join(out)
    # A segment made only of stars must still match something: `release/*` is not `release/`.
    return f"(?=[^/]){regex}" if set(seg) == {"*"} else regex


def translate(pattern: str, brackets: bool = True) -> str:
    """One glob (no braces, no `!`) as an anchored-at-both-ends regex body."""
    parts: list[object] = []
    for seg in pattern.split("/"):
        part: object = _GLOBSTAR if seg == "**" else _segment(seg, brackets)
        if part is _GLOBSTAR and parts and parts[-1] is _GLOBSTAR:
            continue
        parts.append(part)
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part is _GLOBSTAR:
            if i == 0 and i == last:
                out.append(".*")
            elif i == 0:
                out.append("(?:.*/)?")
            elif i == last:
                out.append("/.*")
            else:
                out.append("/(?:.*/)?")
        else:
            if i > 0 and parts[i - 1] is not _GLOBSTAR:
                out.append("/")
            out.append(str(part))
    return "".join(out)


def _compile(patterns: Iterable[str], ignore_case: bool, brackets: bool) -> re.Pattern[str] | None:
    bodies = [translate(p, brackets) for pattern in patterns for p in _expand(pattern)]
    if not bodies:
        return None
    return re.compile("(?:" + "|".join(bodies) + r")\Z", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True)
class GlobSet:
    """Globs that match when any include pattern matches and no `!` exclude pattern does.

    For logins (`logins=True`) matching ignores case and `[` is literal, so `dependabot[bot]` and
    `renovate*` mean what they say."""

    patterns: tuple[str, ...]
    ignore_case: bool = False
    # Logins end in `[bot]`: for login globs a bracket is itself, not a character class.
    logins: bool = False
    _include: re.Pattern[str] | None = field(init=False, repr=False, compare=False, hash=False)
    _exclude: re.Pattern[str] | None = field(init=False, repr=False, compare=False, hash=False)
    _memo: dict[str, bool] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        patterns = tuple(self.patterns)
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "_include",
                           _compile((p for p in patterns if not p.startswith("!")), self.ignore_case,
                                    not self.logins))
        object.__setattr__(self, "_exclude",
                           _compile((p[1:] for p in patterns if p.startswith("!")), self.ignore_case,
                                    not self.logins))
        object.__setattr__(self, "_memo", {})

    def match(self, value: str) -> bool:
        memo = self._memo
        hit = memo.get(value)
        if hit is not None:
            return hit
        include, exclude = self._include, self._exclude
        result = bool(include is not None and include.match(value)
                      and (exclude is None or not exclude.match(value)))
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[value] = result
        return result

    def any(self, values: Iterable[str]) -> bool:
        return any(self.match(v) for v in values)

    def matching(self, values: Iterable[str]) -> list[str]:
        return [v for v in values if self.match(v)]
