"""The async HTTP prediction service: ``create_app`` builds it.

``create_app`` is imported on first use, so the service's plain modules (the
task record, settings, the store) can be used -- and unit-tested -- without
loading Flask.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
