"""`agentgate setup`: (being built)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this module's commands to the `agentgate` parser's subcommands."""
    _ = (sub, argparse)
