"""The web process: webhook receivers, health, metrics and the decision pages."""

from gatekeeper.web.app import create_app

__all__ = ["create_app"]
