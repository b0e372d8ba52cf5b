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

A policy asks ~30 path sets about each changed file. `PathMatcher` answers all of them at once: most
globs (`dir/**`, `**/*.ext`, `**/name`, exact paths) are dict lookups on the path's directories and
last segment, and only the rest run their regex, when a cheap necessary condition holds.
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
# A segment ends at a separator or at the end of the value, never inside a name.
_SEGMENT_END = "(?![^/])"


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


def alternatives(pattern: str) -> int:
    """How many globs a pattern stands for once its braces are expanded: what it costs to match."""
    try:
        return len(_expand(pattern.removeprefix("!")))
    except GlobError:
        return 1  # refused by check_glob anyway


def _expand(pattern: str) -> list[str]:
    try:
        expanded = bracex.expand(pattern, limit=MAX_BRACE_EXPANSION)
    except bracex.ExpansionLimitException as exc:
        raise GlobError(f"{pattern!r}: braces expand to more than {MAX_BRACE_EXPANSION} alternatives") from exc
    return expanded or [pattern]


def _items(seg: str, brackets: bool) -> list[str | None]:
    """A segment as regex items, each matching exactly one character, with None for a run of `*`."""
    out: list[str | None] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "[" and not brackets:
            out.append(re.escape(c))
        elif c == "*":
            while i + 1 < n and seg[i + 1] == "*":
                i += 1
            out.append(None)
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
                # A class never matches the separator, even through a range that spans it (`[.-0]`).
                out.append(f"[^/{members}]" if negate else f"(?!/)[{members}]")
                i = close
        else:
            out.append(re.escape(c))
        i += 1
    return out


def _segment(seg: str, brackets: bool = True) -> str:
    """One path segment, matched in linear time, ending exactly at a `/` or the end.

    Between its stars a segment is a sequence of fixed-width chunks, and the earliest place a middle
    chunk fits is always as good as any later one (it leaves the most room for the rest). So each
    middle chunk is found by a lazy scan inside an atomic group, which commits to that earliest
    place: `*a*a*a*b` can no longer try every way of spreading its stars (Python's `re` has no
    timeout, and the naive translation took 33 s for a 13-character glob on a 100-character name)."""
    chunks: list[str] = [""]
    for item in _items(seg, brackets):
        if item is None:
            chunks.append("")
        else:
            chunks[-1] += item
    if len(chunks) == 1:
        regex = chunks[0]
    else:
        middle = "".join(f"(?>[^/]*?{chunk})" for chunk in chunks[1:-1])
        regex = f"{chunks[0]}{middle}[^/]*{chunks[-1]}"
    # A segment made only of stars must still match something: `release/*` is not `release/`.
    if set(seg) == {"*"}:
        regex = f"(?=[^/]){regex}"
    return regex + _SEGMENT_END


def _parts(pattern: str) -> list[object]:
    """A glob's segments, `**` as `_GLOBSTAR` (consecutive globstars collapsed into one)."""
    parts: list[object] = []
    for seg in pattern.split("/"):
        part: object = _GLOBSTAR if seg == "**" else seg
        if part is _GLOBSTAR and parts and parts[-1] is _GLOBSTAR:
            continue
        parts.append(part)
    return parts


def translate(pattern: str, brackets: bool = True) -> str:
    """One glob (no braces, no `!`) as an anchored-at-both-ends regex body, matched in linear time.

    `**` stands for any number of whole segments. A run of segments between two globstars is placed at
    the earliest segment where it fits, inside an atomic group: a later place never helps (the same
    argument as for stars within a segment), and without it `a/**/b/**/c/...` could backtrack over
    every combination of places."""
    parts = _parts(pattern)
    if parts == [_GLOBSTAR]:
        return ".*"
    groups: list[list[str]] = [[]]  # the segment runs between globstars
    for part in parts:
        if part is _GLOBSTAR:
            groups.append([])
        else:
            groups[-1].append(_segment(str(part), brackets))
    out = "/".join(groups[0])
    last = len(groups) - 1
    for i, group in enumerate(groups[1:], start=1):
        body = "/".join(group)
        prefix = "" if i == 1 and not groups[0] else "/"  # after a leading `**`, no separator of its own
        if i == last and not group:
            out += "/.*" if prefix else ".*"  # a trailing `**`: everything under the path so far
        elif i == last:
            out += f"{prefix}(?:.*/)?{body}"
        else:
            out += f"{prefix}(?>(?:.*?/)??{body})"
    return out


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


# -- many glob sets against one path at once -------------------------------------------------------

_EXACT, _ANCESTOR, _COMPONENT, _BASE, _SUFFIX, _PREFIX, _TAIL = range(7)


def _is_literal(seg: str, brackets: bool) -> bool:
    return "*" not in seg and "?" not in seg and not (brackets and "[" in seg)


def _star_form(seg: str, brackets: bool) -> tuple[int, str] | None:
    """`*lit` as (_SUFFIX, lit), `lit*` as (_PREFIX, lit): a segment with stars only at one end."""
    rest = seg.lstrip("*")
    if rest != seg and rest and _is_literal(rest, brackets):
        return _SUFFIX, rest
    rest = seg.rstrip("*")
    if rest != seg and rest and _is_literal(rest, brackets):
        return _PREFIX, rest
    return None


def _classify(pattern: str, brackets: bool) -> tuple[int, str, bool] | None:
    """A glob (braces expanded, no `!`) as a test a dict lookup answers exactly: (kind, key, root only).

    None when only its regex can tell. Each form is what `translate` makes of the pattern, read off
    the regex: e.g. `(?:.*/)?[^/]*\\.pem` matches exactly the paths whose last segment ends in `.pem`."""
    parts = _parts(pattern)
    segs = [p for p in parts if p is not _GLOBSTAR]
    literal = all(_is_literal(str(s), brackets) for s in segs)
    n = len(parts)
    if _GLOBSTAR not in parts:
        if literal:
            return _EXACT, pattern, False
        if n == 1:  # `*.md`: a file at the top level
            form = _star_form(pattern, brackets)
            return (form[0], form[1], True) if form else None
        return None
    if n == 1:
        return None  # `**`: the caller treats it as always matching
    first, last = parts[0] is _GLOBSTAR, parts[-1] is _GLOBSTAR
    if last and not first and _GLOBSTAR not in parts[:-1] and literal:  # `dir/**`
        return _ANCESTOR, "/".join(map(str, parts[:-1])), False
    if first and last and n == 3 and literal:  # `**/dir/**`
        return _COMPONENT, str(parts[1]), False
    if first and not last and _GLOBSTAR not in parts[1:]:
        if n == 2:  # `**/name`, `**/*.ext`, `**/name*`
            seg = str(parts[1])
            if _is_literal(seg, brackets):
                return _BASE, seg, False
            form = _star_form(seg, brackets)
            return (form[0], form[1], False) if form else None
        if literal:  # `**/dir/name`
            return _TAIL, "/".join(map(str, parts[1:])), False
    return None


def _guard(pattern: str, brackets: bool) -> tuple[int, str] | None:
    """A necessary condition for a regex-only glob, so that its regex runs only on likely paths.

    Read off `translate`'s regex, whose segments are joined by literal `/`s and whose last segment
    is anchored at the end: a literal segment other than the last is a component of any matching
    path (`**/migrations/*.sql`); a literal last segment is its last segment; the characters after
    the last wildcard of the last segment end it (`*.sql`), and, when that segment has no class
    (which could match a `/`), those before the first wildcard start its last segment (`test_*`).
    A literal last segment is taken first, else the longest key, as the likeliest to be rare."""
    parts = _parts(pattern)
    found: list[tuple[int, int, str]] = []
    for part in parts[:-1]:
        if part is not _GLOBSTAR and _is_literal(str(part), brackets):
            found.append((len(str(part)), _COMPONENT, str(part)))
    if parts[-1] is not _GLOBSTAR:
        seg = str(parts[-1])
        if _is_literal(seg, brackets) and len(parts) > 1:
            found.append((len(seg) + MAX_PATTERN_LENGTH, _BASE, seg))
        magic = "*?[]" if brackets else "*?"
        end = len(seg)
        while end > 0 and seg[end - 1] not in magic:
            end -= 1
        if 0 < end < len(seg):
            found.append((len(seg) - end, _SUFFIX, seg[end:]))
        start = 0
        while start < len(seg) and seg[start] not in magic:
            start += 1
        if 0 < start < len(seg) and not (brackets and "[" in seg):
            found.append((start, _PREFIX, seg[:start]))
    if not found:
        return None
    _, kind, key = max(found)
    return kind, key


class _Table:
    """Keys to bit masks, for one kind of lookup."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    def add(self, key: str, bit: int) -> None:
        self.keys[key] = self.keys.get(key, 0) | bit

    def by_length(self) -> tuple[tuple[int, dict[str, int]], ...]:
        lengths: dict[int, dict[str, int]] = {}
        for key, bits in self.keys.items():
            lengths.setdefault(len(key), {})[key] = bits
        return tuple(sorted(lengths.items()))


class PathMatcher:
    """Which of many glob sets match a path, found by splitting the path once and a few dict lookups.

    A set's result is exactly `GlobSet.match` (a hypothesis test holds the two together). Each
    expanded pattern is read as an exact path, a `dir/**` ancestor, a `**/dir/**` component, a
    `**/name`, `**/*.ext` or `**/name*` last segment (or `*.ext` at the top level), or a `**/a/b`
    tail; each of those is a dict from key to the bits of the sets (include or exclude half) it
    feeds. The rest keep their regex, run only when a cheap necessary condition holds (see `_guard`:
    such patterns get a candidate bit, set by the same tables). Case-insensitive sets (logins, never
    paths) keep their own regexes: `re.IGNORECASE` folds case as Unicode does, not as `str.lower`.

    Bit layout of the working mask, for n sets: [0, n) include, [n, 2n) exclude, [2n, 4n) the same
    for patterns that hold only for top-level paths, [4n, ...) candidate regexes."""

    def __init__(self, globsets: Iterable[GlobSet]) -> None:
        sets = list(globsets)
        n = self.size = len(sets)
        tables = [_Table() for _ in range(7)]
        always = 0
        fallback: dict[tuple[tuple[int, str] | None, int], list[str]] = {}  # (guard, target bit index) -> regex bodies
        flags = re.DOTALL
        for index, globset in enumerate(sets):
            if globset.ignore_case:
                continue  # below
            brackets = not globset.logins
            for pattern in globset.patterns:
                exclude = pattern.startswith("!")
                target = index + n if exclude else index
                for body in _expand(pattern[1:] if exclude else pattern):
                    if _parts(body) == [_GLOBSTAR]:
                        always |= 1 << target
                        continue
                    form = _classify(body, brackets)
                    if form is not None:
                        kind, key, root = form
                        tables[kind].add(key, 1 << (target + 2 * n if root else target))
                        continue
                    fallback.setdefault((_guard(body, brackets), target), []).append(translate(body, brackets))
        # Regexes for includes first, so that an exclude's regex runs only when its include matched.
        checks: list[tuple[re.Pattern[str], int, int]] = []
        candidates = 4 * n
        for (guard, target), bodies in sorted(fallback.items(), key=lambda item: item[0][1] >= n):
            bit = 1 << candidates + len(checks)
            if guard is None:
                always |= bit
            else:
                tables[guard[0]].add(guard[1], bit)
            need = 1 << target - n if target >= n else 0
            checks.append((re.compile("(?:" + "|".join(bodies) + r")\Z", flags), 1 << target, need))
        for index, globset in enumerate(sets):  # case-insensitive sets: their own regexes, always run
            if globset.ignore_case:
                for target, regex in ((index, globset._include), (index + n, globset._exclude)):
                    if regex is not None:
                        always |= 1 << candidates + len(checks)
                        checks.append((regex, 1 << target, 1 << target - n if target >= n else 0))
        self._always = always
        self._exact = tables[_EXACT].keys
        self._ancestors = tables[_ANCESTOR].keys
        self._components = tables[_COMPONENT].keys
        self._bases = tables[_BASE].keys
        dotted = {k: v for k, v in tables[_SUFFIX].keys.items() if k.startswith(".") and k.count(".") == 1}
        self._dotted = dotted  # `.ext` suffixes: one lookup, from the last `.` of the last segment
        suffixes = _Table()
        suffixes.keys = {k: v for k, v in tables[_SUFFIX].keys.items() if k not in dotted}
        self._suffixes = suffixes.by_length()
        self._suffix_finals = frozenset(key[-1] for key in suffixes.keys)
        self._prefixes = tables[_PREFIX].by_length()
        self._prefix_initials = frozenset(key[0] for key in tables[_PREFIX].keys)
        tails: dict[int, dict[str, int]] = {}  # by number of segments
        for key, bits in tables[_TAIL].keys.items():
            tails.setdefault(key.count("/") + 1, {})[key] = bits
        self._tails = tuple(sorted(tails.items()))
        self._checks = tuple(checks)
        self._candidates = candidates
        self._root = any(bits >> 2 * n & ((1 << 2 * n) - 1) for table in tables for bits in table.keys.values())
        self._full = (1 << n) - 1
        # A pull request's files share a few directories: their part of the mask is memoised.
        self.directories: dict[str, int] = {}

    def _directory(self, directory: str) -> int:
        """The bits a path's directory (all but its last segment) sets: its ancestors and components."""
        m = 0
        ancestors, components = self._ancestors, self._components
        if ancestors or components:
            start, i = 0, directory.find("/")
            while True:
                end = len(directory) if i < 0 else i
                if ancestors:
                    m |= ancestors.get(directory[:end], 0)
                if components:
                    m |= components.get(directory[start:end], 0)
                if i < 0:
                    break
                start = i + 1
                i = directory.find("/", start)
        directories = self.directories
        if len(directories) >= _MEMO_LIMIT:
            directories.clear()
        directories[directory] = m
        return m

    def mask(self, path: str) -> int:
        """Bit i set when set i matches `path`."""
        m = self._always
        exact = self._exact
        if exact:
            m |= exact.get(path, 0)
        slash = path.rfind("/")
        if slash >= 0:
            directory = path[:slash]
            found = self.directories.get(directory)
            m |= self._directory(directory) if found is None else found
            base = path[slash + 1:]
        else:
            base = path
        bases = self._bases
        if bases:
            m |= bases.get(base, 0)
        dotted = self._dotted
        if dotted:
            i = base.rfind(".")
            if i >= 0:
                m |= dotted.get(base[i:], 0)
        if base[-1:] in self._suffix_finals:
            for length, keys in self._suffixes:
                m |= keys.get(base[-length:], 0)
        if base[:1] in self._prefix_initials:
            for length, keys in self._prefixes:
                m |= keys.get(base[:length], 0)
        if self._tails:
            segments = path.split("/")
            for count, keys in self._tails:
                if len(segments) >= count:
                    m |= keys.get("/".join(segments[-count:]), 0)
        n = self.size
        if self._root and slash < 0:
            m |= m >> 2 * n
        candidates = m >> self._candidates
        if candidates:
            checks = self._checks
            while candidates:
                low = candidates & -candidates
                regex, bit, need = checks[low.bit_length() - 1]
                if not m & bit and m & need == need and regex.match(path):
                    m |= bit
                candidates ^= low
        return m & self._full & ~(m >> n)
