"""Glob matching compiled once per policy: paths and branch names are matched many times per verdict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from wcmatch import glob

# `**` crosses directories, `*` does not, dotfiles match like any other file: `.github/**` must
# catch `.github/workflows/x.yml` and `**/*.pem` must catch `.ssh/id.pem`.
_FLAGS = glob.GLOBSTAR | glob.DOTGLOB | glob.BRACE | glob.NEGATE | glob.SPLIT


@dataclass(frozen=True)
class GlobSet:
    patterns: tuple[str, ...]
    _matcher: object = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        matcher = glob.compile(list(self.patterns), flags=_FLAGS) if self.patterns else None
        object.__setattr__(self, "_matcher", matcher)

    def match(self, value: str) -> bool:
        matcher = self._matcher
        return bool(matcher is not None and matcher.match(value))  # type: ignore[attr-defined]

    def any(self, values: Iterable[str]) -> bool:
        return any(self.match(v) for v in values)

    def matching(self, values: Iterable[str]) -> list[str]:
        return [v for v in values if self.match(v)]
