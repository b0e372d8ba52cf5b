"""Glob semantics: our fast translation agrees with wcmatch on repository paths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wcmatch import glob

from gatekeeper.policy.globs import GlobError, GlobSet, check_glob

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
