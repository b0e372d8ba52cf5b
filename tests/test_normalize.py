"""How a comment is read for commands: hidden and look-alike characters, and which Markdown lines count."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.core.text import command_readings, normalize_command_text, scannable_lines


def test_zero_width_and_format_characters_are_dropped():
    """Zero-width spaces, joiners, word joiners, BOM, soft hyphen and tags say nothing, so they go."""
    hidden = "/\u200bd\u200ce\u200dp\u2060l\u2063o\ufeffy\u00ad\U000e0041"
    assert normalize_command_text(hidden) == "/deploy"


def test_bidi_controls_are_dropped():
    """Bidi embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069) reorder what a human
    sees, not what a bot parses: they are removed, never applied."""
    assert normalize_command_text("\u202e/deploy\u202c") == "/deploy"
    assert normalize_command_text("\u2066/de\u2067ploy\u2069") == "/deploy"


def test_hangul_fillers_and_combining_marks_are_dropped():
    """Letters that render as nothing (Hangul fillers) and combining marks (zalgo, variation selectors,
    accents) do not change the command underneath."""
    assert normalize_command_text("/de\u3164ploy") == "/deploy"
    assert normalize_command_text("/d\u0301e\u0336p\ufe0floy") == "/deploy"
    assert normalize_command_text("/déploy") == "/deploy"


def test_fullwidth_and_compatibility_forms_fold():
    """NFKC folding: fullwidth `／ｄｅｐｌｏｙ`, mathematical letters and ligatures read as ASCII."""
    assert normalize_command_text("／ｄｅｐｌｏｙ") == "/deploy"
    assert normalize_command_text("/\U0001d41d\U0001d41e\U0001d429\U0001d425\U0001d428\U0001d432") == "/deploy"
    assert normalize_command_text("ＡＵＴＯＭＥＲＧＥ") == "AUTOMERGE"


def test_homoglyphs_fold_to_ascii_prototypes():
    """Cyrillic and Greek look-alikes and other slashes become the ASCII they imitate (UTS #39 data)."""
    assert normalize_command_text("/dеploy") == "/deploy"  # Cyrillic е
    assert normalize_command_text("/ԁерlоу") == "/deploy"
    assert normalize_command_text("⁄deploy") == "/deploy"  # fraction slash
    assert normalize_command_text("∕merge") == "/merge"  # division slash
    assert normalize_command_text("/mеrgе") == "/merge"


def test_ascii_is_never_reinterpreted():
    """ASCII means what it says to a bot matching ASCII: `1`, `I` and `|` are not folded into `l`."""
    assert normalize_command_text("/dep1oy /depIoy") == "/dep1oy /depIoy"


def test_stroke_letters_have_both_readings():
    """Unicode reads Cyrillic palochka `ӏ` as `i`; a bot or a person may read it as `l`. Both readings
    are returned, so `ԁерӏоу` is also read as `deploy`."""
    assert "/deploy" in command_readings("/ԁерӏоу")
    assert "/depioy" in command_readings("/ԁерӏоу")
    assert command_readings("/deploy") == ("/deploy",)


def test_line_breaks_survive_normalisation():
    """Every separator `str.splitlines` knows is kept, so lines stay lines."""
    text = "a\nb\rc\x1ed\u2028e\x85f"
    assert normalize_command_text(text) == text


def test_quotes_are_not_scanned_but_lazy_continuations_are():
    """`> /deploy` is a quote. A following unmarked line is rendered inside the quote (lazy
    continuation) yet starts a line for a bot, so it is scanned."""
    assert list(scannable_lines("> /deploy\n/merge\n   > /ship")) == ["/merge"]


def test_closed_fenced_code_is_not_scanned():
    """Lines inside a closed ``` or ~~~ fence, and the fences, are code: prow and bors skip them."""
    body = "before\n```sh\n/deploy\n```\n~~~~\n/merge\n~~~\n~~~~\nafter"
    assert list(scannable_lines(body)) == ["before", "after"]


def test_unclosed_fence_is_scanned():
    """A fence that never closes is rendered as code, but a bot stripping ```...``` pairs still reads
    the rest: fail closed, scan it."""
    assert list(scannable_lines("```\n/deploy")) == ["```", "/deploy"]


def test_look_alike_fence_is_not_a_fence():
    """Structure is read from the raw text: a fence of look-alike backticks or one after a zero-width
    space is no fence to GitHub or to a bot, so the lines inside are scanned."""
    assert "/deploy" in list(scannable_lines("ˋˋˋ\n/deploy\nˋˋˋ"))
    assert "/deploy" in list(scannable_lines("\u200b```\n/deploy\n\u200b```"))


def test_html_comments_and_indented_lines_are_scanned():
    """HTML comments hide text from humans, not from bots; indented lines are read by bots that trim."""
    assert list(scannable_lines("<!--\n/deploy\n-->\n    /merge")) == ["<!--", "/deploy", "-->", "    /merge"]


def test_other_line_separators_start_lines():
    """After U+2028 or \\x1e a bot splitting with `splitlines` sees a new line, even in a quoted line."""
    assert list(scannable_lines("hi\u2028/deploy")) == ["hi", "/deploy"]
    assert list(scannable_lines("> hi\x1e/deploy")) == ["/deploy"]


INVISIBLE = st.one_of(
    st.characters(categories=["Cf"]),
    st.sampled_from(["\u3164", "\u115f", "\u1160", "\uffa0", "\u034f", "\ufe0f", "\U000e0100"]),
)


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=7), INVISIBLE), max_size=12))
def test_invisible_characters_never_change_the_reading(insertions):
    """Inserting any format (Cf) or other default-ignorable characters anywhere leaves the text as it was."""
    text = list("/deploy")
    for position, char in insertions:
        text.insert(min(position, len(text)), char)
    assert normalize_command_text("".join(text)) == "/deploy"


def test_backtick_fence_with_backtick_in_info_is_no_fence():
    """CommonMark: a backtick fence's info string holds no backtick, so "```a`b" opens nothing."""
    assert list(scannable_lines("```a`b\n/deploy\n```")) == ["```a`b", "/deploy", "```"]
