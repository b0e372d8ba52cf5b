"""PathIndex: one mask per changed path over all of a policy's path glob sets, as each set would answer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.core.facts import ChangedFile
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.model import SENSITIVE_PATHS
from gatekeeper.policy.pathindex import PathIndex

SETS = [GlobSet(SENSITIVE_PATHS), GlobSet(("**/migrations/1_*.sql", "db/1/**")), GlobSet(("docs/4/**", "**/*.md")),
        GlobSet(("src/**", "!src/**/*_test.py", "!**/vendor/**")), GlobSet(("**",)), GlobSet(("*.md",))]
SEGMENTS = ["src", "docs", "4", "db", "1", "migrations", "vendor", ".github", "workflows", "ci.yml", "README.md",
            "1_init.sql", "2_init.sql", "a_test.py", "a.py", "key.pem", ".env", ".env.local", "CODEOWNERS", "x.MD"]


@settings(max_examples=300, deadline=None)
@given(files=st.lists(st.tuples(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4),
                                st.none() | st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4)),
                      min_size=1, max_size=6))
def test_summary_agrees_with_each_glob_set(files):
    """Each path's bit for a set is that set's own answer; any/all masks are the OR/AND over every path."""
    changed = tuple(ChangedFile("/".join(path), previous_path="/".join(old) if old else None) for path, old in files)
    index = PathIndex.of(SETS)
    summary = index.summarise(changed)
    assert summary.paths == tuple(p for f in changed for p in f.paths)
    for globset in SETS:
        bit = index.bit(globset)
        matching = [p for p in summary.paths if globset.match(p)]
        assert summary.matching(bit) == matching
        assert bool(summary.any_mask & bit) == bool(matching)
        assert bool(summary.all_mask & bit) == (len(matching) == len(summary.paths))
    assert index.summarise(changed) is summary


def test_memoised_masks_survive_a_new_pull_request():
    """A path seen before is not matched again; a new pull request's paths are."""
    index = PathIndex.of(SETS)
    index.summarise((ChangedFile("docs/4/a.md"),))
    assert set(index.memo) == {"docs/4/a.md"}
    summary = index.summarise((ChangedFile("docs/4/a.md"), ChangedFile(".github/workflows/ci.yml")))
    assert summary.any_mask & index.bit(SETS[0]) and not summary.all_mask & index.bit(SETS[0])
