"""Every path condition of a policy, matched against a changed file in one go and memoised by path.

A verdict asks many questions of the same changed files (is any sensitive? does some rule's `paths`
match? do all match a trusted bot's `only_paths`?). Each distinct glob set gets a bit; a path's
answer to all of them is one integer, computed once per path and policy by a `PathMatcher` over all
the sets (the path is split once and looked up in a few dicts, rather than run through each set's
regex). A verdict then ORs (some path matches) and ANDs (every path matches) the integers of its files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import and_, attrgetter, or_

from gatekeeper.core.facts import ChangedFile
from gatekeeper.policy.globs import GlobSet, PathMatcher

_MEMO_LIMIT = 65536
_PATH = attrgetter("path")
_PREVIOUS = attrgetter("previous_path")


_SUMMARY_LIMIT = 1024


@dataclass
class PathSummary:
    paths: tuple[str, ...]  # every changed path, renamed-from paths right after their new names
    masks: dict[str, int]
    any_mask: int  # bit set when some changed path matches
    all_mask: int  # bit set when every changed path matches (0 when there are no files)
    _matching: dict[int, list[str]] = field(default_factory=dict)

    def matching(self, bit: int) -> list[str]:
        """The changed paths with `bit` set, in file order."""
        found = self._matching.get(bit)
        if found is None:
            masks = self.masks
            found = self._matching[bit] = [p for p in self.paths if masks[p] & bit]
        return found


_EMPTY = PathSummary((), {}, 0, 0)


@dataclass
class PathIndex:
    globsets: list[GlobSet] = field(default_factory=list)
    bits: dict[int, int] = field(default_factory=dict)  # id(globset) -> bit
    memo: dict[str, int] = field(default_factory=dict)
    # The same pull request is evaluated again on every review, label and push: its file list is the
    # same value (compared by equality, not identity), so its summary is too.
    summaries: dict[tuple[tuple[str, ...], tuple[str | None, ...]], PathSummary] = field(default_factory=dict)
    _matcher: PathMatcher | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, globsets: Iterable[GlobSet]) -> PathIndex:
        index = cls()
        for globset in globsets:
            if id(globset) not in index.bits:
                index.bits[id(globset)] = len(index.globsets)
                index.globsets.append(globset)
        return index

    def bit(self, globset: GlobSet) -> int:
        return 1 << self.bits[id(globset)]

    @property
    def matcher(self) -> PathMatcher:
        """All the glob sets compiled together, built on first use (and again if sets were added)."""
        matcher = self._matcher
        if matcher is None or matcher.size != len(self.globsets):
            matcher = self._matcher = PathMatcher(self.globsets)
        return matcher

    def _masks(self, paths: tuple[str, ...]) -> dict[str, int]:
        memo, matcher = self.memo, self.matcher
        masks: dict[str, int] = {}
        for path in paths:
            mask = memo.get(path)
            if mask is None:
                mask = matcher.mask(path)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[path] = mask
            masks[path] = mask
        return masks

    def summarise(self, files: tuple[ChangedFile, ...]) -> PathSummary:
        if not files:
            return _EMPTY
        key = (tuple(map(_PATH, files)), tuple(map(_PREVIOUS, files)))
        found = self.summaries.get(key)
        if found is not None:
            return found
        names, previous = key
        paths = names if not any(previous) else tuple(
            p for f in files for p in ((f.path, f.previous_path) if f.previous_path else (f.path,)))
        masks = self._masks(paths)
        values = set(masks.values())
        summary = PathSummary(paths, masks, reduce(or_, values, 0), reduce(and_, values))
        if len(self.summaries) >= _SUMMARY_LIMIT:
            self.summaries.clear()
        self.summaries[key] = summary
        return summary
