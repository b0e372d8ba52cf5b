"""Glob semantics: our fast translation agrees with wcmatch on repository paths."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wcmatch import glob

from gatekeeper.policy.globs import GlobError, GlobSet, PathMatcher, _classify, check_glob

_WCMATCH = glob.GLOBSTAR | glob.DOTGLOB | glob.BRACE | glob.NEGATE

PATTERNS = [".github/workflows/**", "**/*.pem", "**/.env", "**/.env.*", "release/*", "release/**", "*",
            "**", "docs/**/*.md", "src/*/test_*.py", "{a,b}/x", "a?c", "[ab]*", "[!a]*", "**/id_rsa*", "k8s/**",
            "Jenkinsfile", "**/action.y{a,}ml", "a/**/b/**/c"]
SEGMENTS = ["a", "b", "c", "x", "abc", "acc", ".github", "workflows", "ci.yml", ".env", ".env.local", "key.pem",
            "docs", "readme.md", "src", "test_a.py", "release", "1.0", "id_rsa.pub", "k8s", "action.yml", "Jenkinsfile"]


@settings(max_examples=400, deadline=None)
@given(pattern=st.sampled_from(PATTERNS), path=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5))
def test_translation_agrees_with_wcmatch(pattern, path):
    """For paths without `.`/`..` segments, GlobSet matches exactly when wcmatch's globmatch does."""
    value = "/".join(path)
    assert GlobSet((pattern,)).match(value) == glob.globmatch(value, pattern, flags=_WCMATCH)


def test_negation_excludes():
    """`!pattern` removes matches from the set."""
    globs = GlobSet(("docs/**", "!docs/internal/**"))
    assert globs.match("docs/a.md") and not globs.match("docs/internal/a.md")


def test_login_globs_take_brackets_literally_and_ignore_case():
    """Login globs: `dependabot[bot]` is a login, not a character class, and case does not matter."""
    logins = GlobSet(("dependabot[bot]", "renovate*"), ignore_case=True, logins=True)
    assert logins.match("Dependabot[bot]") and logins.match("renovate[bot]") and not logins.match("dependabotb")


@pytest.mark.parametrize(("pattern", "message"), [
    ("", "empty pattern"),
    ("/etc/**", "'/etc/**': paths and branches are relative; drop the leading '/'"),
    ("docs/", "'docs/' matches nothing: write 'docs/**' to match everything under it"),
    ("a//b", "'a//b' contains an empty segment ('//')"),
    ("{1..1000}", "'{1..1000}': braces expand to more than 64 alternatives"),
])
def test_unusable_globs_are_refused(pattern, message):
    """Globs that could never match, or expand without bound, are errors for the policy's author."""
    with pytest.raises(GlobError) as info:
        check_glob(pattern)
    assert str(info.value) == message


# -- the combined matcher (dict lookups) agrees with each set's regex ------------------------------

PATTERN_SEGMENTS = ["a", "b", "A", "src", "docs", ".github", "workflows", ".env", "x.md", "X.MD", "id_rsa",
                    "migrations", "Jenkinsfile", "dependabot[bot]", "[bot]", "**", "*", "*.md", "*.MD", "*.yml",
                    "*.tar.gz", "*_test.py", "a*", "*a", "id_rsa*", ".env.*", "test_*", "1_*.sql", "?", "a?c",
                    "[ab]*", "[!a]*", "*[bot]", "bot-*", "[+-0]x", "a[+-0]x", "x{,.md}", "{a,b}", "{src,docs}", "re*s",
                    "***", "", "a]b", "[]a]", "["]
PATH_SEGMENTS = ["a", "b", "A", "B", "c", "abc", "acc", "src", "Src", "docs", "DOCS", ".github", "workflows", ".env",
                 ".env.local", ".ENV", "x.md", "X.MD", "x.MD", "readme.md", ".md", "id_rsa", "id_rsa.pub",
                 "migrations", "1_init.sql", "x.tar.gz", "a_test.py", "test_a.py", "Jenkinsfile", "dependabot[bot]",
                 "Dependabot[Bot]", "[bot]", "b", "bot-1", "bot-1[bot]", "res", "rs", "x", "+x", "0x", "a]b", "]", "",
                 "é", "K", "ſ", "\n"]


def _globsets():
    # `**` is drawn often: most fast forms (`dir/**`, `**/dir/**`, `**/*.ext`) need it at an end.
    segment = st.one_of(st.just("**"), st.sampled_from(PATTERN_SEGMENTS))
    pattern = st.builds(lambda neg, segs: ("!" if neg else "") + "/".join(segs),
                        st.booleans(), st.lists(segment, min_size=1, max_size=4))
    globset = st.builds(lambda patterns, ignore_case, logins: (tuple(patterns), ignore_case, logins),
                        st.lists(pattern, min_size=1, max_size=4), st.booleans(), st.booleans())
    return st.lists(globset, min_size=1, max_size=5)


# What a wildcard of a pattern may become in a path drawn near it (None: drop it).
_FILL = [None, "", "a", "x", ".", "/", "a/x", "x.md", "]", "+", "A", "0"]
_TOKEN = re.compile(r"\*+|\?|\[!?\]?[^]]*\]|.", re.DOTALL)


def _near(data, text):
    """A path drawn near a pattern: each wildcard (`*`, `?`, a class) filled in or dropped, each other character
    mostly kept, so that paths matching (or only just failing to match) the pattern are common."""
    out = []
    for token in _TOKEN.findall(text):
        wild = token[0] in "*?" or len(token) > 1
        if not wild and data.draw(st.integers(0, 5)):
            out.append(token)
        else:
            fill = data.draw(st.sampled_from(_FILL))
            if fill is not None:
                out.append(fill)
    return "".join(out)


@pytest.mark.parametrize(("pattern", "path"), [
    ("**/a[+-0]x", "q/a/x"), ("**/a[+-0]x", "a/x"), ("**/a/b", "a/b"), ("**/a/b", "/a/b"), ("**/*[]a]", "x/]a]"),
    ("**/x/**", "x/"), ("**/x/**", "a/x/b"), ("a/**", "a/"), ("**/", "a/"), ("**/", ""), ("", ""), ("/**", "/x"),
    ("*.md", "a/x.md"), ("*.md", ".md"), ("**/*", "a/"), ("a*", "a/b"), ("{a,}/x", "/x"), ("**/.env.*", ".env."),
])
def test_path_matcher_edge_cases(pattern, path):
    """Paths at the edges of the fast forms: empty segments, a class that spans `/`, whole-path tails."""
    for logins in (False, True):
        globset = GlobSet((pattern,), logins=logins)
        assert bool(PathMatcher([globset]).mask(path) & 1) == globset.match(path)


@settings(max_examples=1500, deadline=None)
@given(specs=_globsets(), data=st.data())
def test_path_matcher_agrees_with_regexes(specs, data):
    """PathMatcher's bit for each set is exactly GlobSet.match (the regex), for any globs and paths: dotfiles,
    nested and empty segments, case (sensitive and not), literal `[bot]` logins, braces and negations."""
    sets = [GlobSet(patterns, ignore_case=ignore_case, logins=logins) for patterns, ignore_case, logins in specs]
    matcher = PathMatcher(sets)
    texts = [p.lstrip("!") for patterns, _, _ in specs for p in patterns]
    paths = [_near(data, data.draw(st.sampled_from(texts))) if data.draw(st.booleans())
             else "/".join(data.draw(st.lists(st.sampled_from(PATH_SEGMENTS), min_size=1, max_size=5)))
             for _ in range(data.draw(st.integers(1, 8)))]
    for path in paths:
        mask = matcher.mask(path)
        for i, globset in enumerate(sets):
            assert bool(mask >> i & 1) == globset.match(path), (globset.patterns, path)


@settings(max_examples=1500, deadline=None)
@given(pattern=st.text("ab.*?[]!/{},A-+0x", min_size=1, max_size=12), logins=st.booleans(), data=st.data())
def test_path_matcher_agrees_on_arbitrary_text(pattern, logins, data):
    """The same on arbitrary pattern and path text, for whatever patterns the regex translation accepts."""
    try:
        globset = GlobSet((pattern,), logins=logins)
    except (GlobError, re.error, FutureWarning):  # e.g. `[?--]`: the regex module warns of set syntax
        assume(False)
    matcher = PathMatcher([globset])
    for _ in range(data.draw(st.integers(1, 6))):
        path = _near(data, pattern) if data.draw(st.booleans()) else data.draw(st.text("ab./A[]-+0x", max_size=12))
        assert bool(matcher.mask(path) & 1) == globset.match(path), path


@pytest.mark.parametrize(("pattern", "form"), [
    ("Jenkinsfile", "exact"), (".github/workflows/**", "ancestor"), ("**/node_modules/**", "component"),
    ("**/action.yml", "base"), ("**/*.pem", "suffix"), ("*.md", "suffix, top level"), ("**/id_rsa*", "prefix"),
    ("**/.github/CODEOWNERS", "tail"), ("**/migrations/*.sql", None), ("docs/**/*.md", None), ("**", None),
])
def test_common_globs_need_no_regex(pattern, form):
    """The globs policies use are answered by dict lookups; the rest keep a regex behind a cheap guard."""
    forms = {0: "exact", 1: "ancestor", 2: "component", 3: "base", 4: "suffix", 5: "prefix", 6: "tail"}
    found = _classify(pattern, brackets=True)
    assert (None if found is None else forms[found[0]] + (", top level" if found[2] else "")) == form
    matcher = PathMatcher([GlobSet((pattern,))])
    assert len(matcher._checks) == (0 if form or pattern == "**" else 1)
