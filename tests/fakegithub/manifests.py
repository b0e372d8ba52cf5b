"""Fake GitHub routes: the App-manifest flow agentgate setup github drives (being built)."""

from __future__ import annotations
