"""The presets shipped with agentgate (`extends: preset:NAME`), read from package data.

`rules/*.yml` are the copies admins read and copy from; `gatekeeper/presets/*.yml` are what an
installed agentgate resolves. A test keeps the two identical.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PRESET_NAMES = ("default", "strict", "dependency-bots", "coding-agents")


@cache
def preset_text(name: str) -> str | None:
    if name not in PRESET_NAMES:
        return None
    return (resources.files("gatekeeper") / "presets" / f"{name}.yml").read_text(encoding="utf-8")
