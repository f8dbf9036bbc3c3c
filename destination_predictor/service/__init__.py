"""The async HTTP prediction service: ``create_app`` builds it."""

from .app import create_app

__all__ = ["create_app"]
