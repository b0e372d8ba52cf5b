"""The operator dashboard at /dashboard (being built)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("dashboard", __name__)
