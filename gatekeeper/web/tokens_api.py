"""`/api/v1/tokens`: agents ask for short-lived platform tokens (being built)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("tokens_api", __name__)
