"""Fake GitHub routes: repository administration agentgate doctor reads (protection, rulesets, environments) (being built)."""

from __future__ import annotations
