"""Comment text as a command-reading bot might see it, so hidden and look-alike characters hide nothing.

Two concerns live here, both pure:

- **Which lines can carry a command.** Structure is read from the raw text, exactly as a forge renders
  it and as bots parse it, never from the normalised text: a look-alike backtick must not turn a real
  command into "code". Block quotes (`> /deploy`) and the inside of *closed* fenced code blocks are not
  commands: forges show them as quotes and code, and the common command parsers (prow, bors) skip
  them. Inline code needs no rule: a line that starts with a backtick does not start with a command.
  Everything else is scanned, on purpose:
  - an unclosed fence: a forge renders the rest as code, but a bot that strips `` ```...``` `` pairs
    still reads the lines;
  - indented code blocks: a bot that trims its lines reads them, and telling one from a list
    continuation takes a full Markdown parser;
  - HTML comments (`<!-- /deploy -->` on its own lines): hidden from humans, read by bots (prow acts on
    them), the most dangerous place of all;
  - lines after `\\x1e`, `\\x85`, U+2028 and the other separators `str.splitlines` knows: some bots split
    there, so they start lines too (even inside a quoted Markdown line).
- **What a line says.** `normalize_command_text`: invisible characters are dropped, compatibility forms
  folded (NFKC: fullwidth `／ｄｅｐｌｏｙ`, ligatures, mathematical letters), accents and other combining
  marks dropped, and every non-ASCII character that Unicode's confusables data (UTS #39
  `confusables.txt`, as shipped by the `confusable-homoglyphs` package) maps to a single ASCII
  prototype is replaced by it (Cyrillic `ԁерӏоу`, Greek `ο`, fraction slash `⁄`). ASCII is never
  reinterpreted: `1` stays `1`, so a bot matching ASCII text reads what we read.

Unicode's prototypes for the "vertical stroke" letters are ambiguous for our purpose (it maps Cyrillic
palochka `ӏ` and dotless `ı` to `i`, Greek `Ι` and `ǀ` to `l`), so `command_readings` also returns the
readings with every such stroke taken as `l`, and as `i`. Matching any reading is a match: folding
generously only ever finds more commands in a bot's comment, which costs a human one repeated command.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

from confusable_homoglyphs.confusables import confusables_data

# Separators `str.splitlines` breaks on; kept by the normaliser so lines stay lines.
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

# Format (zero-width, bidi controls, soft hyphen, tags), controls, surrogates, private use, unassigned,
# and combining marks (variation selectors, the grapheme joiner, zalgo).
_DROPPED_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Mn", "Me"})
# Default-ignorable code points that are letters, so their category does not give them away.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
# ASCII prototypes of the letters that are, in most fonts, a plain vertical stroke.
_STROKE_PROTOTYPES = frozenset({"i", "l", "I", "1", "|"})
_STRIP_FROM_TARGETS = str.maketrans("", "", "\u200e\u200f")


def _visible(ch: str) -> bool:
    if ch in LINE_BREAKS or ch == "\t":
        return True
    return ch not in _FILLERS and unicodedata.category(ch) not in _DROPPED_CATEGORIES


def _drop_invisible(text: str) -> str:
    return "".join(ch for ch in text if _visible(ch))


@lru_cache(maxsize=1)
def _confusable_tables() -> tuple[dict[int, str], frozenset[str], dict[str, dict[int, str]]]:
    """Non-ASCII character -> its ASCII prototype; the characters whose prototype is a stroke; and the
    table with every stroke read as `l`, and as `i`.

    The package's data lists, for a prototype, all its look-alikes, and for a look-alike, its
    prototype; a non-ASCII character with exactly one ASCII entry is a look-alike of that ASCII text.
    """
    table: dict[int, str] = {}
    strokes: set[str] = set()
    for char, entries in confusables_data.items():
        if len(char) != 1 or char.isascii() or len(entries) != 1:
            continue
        target = entries[0]["c"].translate(_STRIP_FROM_TARGETS)
        if target and target.isascii() and target.isprintable():
            table[ord(char)] = target
            if target in _STROKE_PROTOTYPES:
                strokes.add(char)
    stroke_tables = {letter: table | {ord(ch): letter for ch in strokes} for letter in ("l", "i")}
    return table, frozenset(strokes), stroke_tables


def _unmarked(text: str) -> str:
    """Invisible characters dropped, compatibility forms folded, combining marks removed."""
    text = unicodedata.normalize("NFKD", _drop_invisible(text))
    # NFKD moved every mark out of its letter, so dropping marks once more removes accents too.
    return unicodedata.normalize("NFC", _drop_invisible(text))


def normalize_command_text(text: str) -> str:
    """The text as a bot that folds Unicode would read it: the canonical reading of `command_readings`.

    Rules: characters of categories Cf (zero-width U+200B..U+200F, U+2060..U+2064, U+FEFF, soft hyphen
    U+00AD, bidi controls U+202A..U+202E and U+2066..U+2069, tags), Cc (except tab and line breaks),
    Cs, Co, Cn, Mn, Me and the Hangul fillers are removed; the rest is NFKD-decomposed and recomposed
    (NFKC's folding without its marks); then each non-ASCII look-alike becomes its ASCII prototype.
    Case is kept: matching is case-insensitive, and confusables differ by case (`Ѕ` -> `S`).
    """
    table, _, _ = _confusable_tables()
    return _drop_invisible(_unmarked(text).translate(table))


def command_readings(text: str) -> tuple[str, ...]:
    """Every reading a command check must try: the canonical one, and when the text holds an
    ambiguous non-ASCII stroke letter (`ӏ`, `ı`, `Ι`...), the readings with all of them as `l` and as `i`."""
    table, strokes, stroke_tables = _confusable_tables()
    unmarked = _unmarked(text)
    readings = [_drop_invisible(unmarked.translate(table))]
    if not strokes.isdisjoint(unmarked):
        for variant in stroke_tables.values():
            reading = _drop_invisible(unmarked.translate(variant))
            if reading not in readings:
                readings.append(reading)
    return tuple(readings)


# CommonMark: a fence is 3+ backticks or tildes after at most 3 spaces; a backtick fence's info
# string holds no backtick; the closing fence uses the same character, at least as many, and nothing else.
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$", re.DOTALL)
_QUOTE = re.compile(r"^ {0,3}>")
_MARKDOWN_LINES = re.compile(r"\r\n|\r|\n")


def _fence_of(line: str) -> tuple[str, int, bool] | None:
    """(fence character, length, could close) when the line opens or closes a fence."""
    match = _FENCE.match(line)
    if not match:
        return None
    fence, info = match.group("fence"), match.group("info")
    if fence[0] == "`" and "`" in info:
        return None
    return fence[0], len(fence), not info.strip(" \t")


def code_line_flags(lines: list[str]) -> list[bool]:
    """For each Markdown line, whether it is part of a *closed* fenced code block (fences included).

    An opener with no closer below it is ordinary text (fail closed: see the module docstring). Linear
    time: a suffix maximum of closer lengths tells at once whether an opener can be closed at all.
    """
    fences = [_fence_of(line) for line in lines]
    longest_after: list[dict[str, int]] = [{} for _ in range(len(lines) + 1)]
    for i in range(len(lines) - 1, -1, -1):
        longest_after[i] = dict(longest_after[i + 1])
        fence = fences[i]
        if fence and fence[2]:
            char, length, _ = fence
            longest_after[i][char] = max(length, longest_after[i].get(char, 0))
    code = [False] * len(lines)
    i = 0
    while i < len(lines):
        fence = fences[i]
        if fence and longest_after[i + 1].get(fence[0], 0) >= fence[1]:
            j = i + 1
            while not ((closer := fences[j]) and closer[2] and closer[0] == fence[0] and closer[1] >= fence[1]):
                j += 1
            code[i : j + 1] = [True] * (j + 1 - i)
            i = j + 1
        else:
            i += 1
    return code


def scannable_lines(body: str) -> Iterator[str]:
    """The raw lines of a Markdown body that can carry a command, in order (see the module docstring)."""
    lines = _MARKDOWN_LINES.split(body)
    for line, in_code in zip(lines, code_line_flags(lines), strict=True):
        if in_code:
            continue
        pieces = line.splitlines() or [line]
        if _QUOTE.match(line):
            pieces = pieces[1:]  # the quoted line itself; a bot that splits further sees the rest
        yield from pieces
