"""Errors the engine raises on purpose.

Every refusal carries a machine code (UPPER_SNAKE) and a one-line Chinese
message, so the CLI can print it and the HTTP layer can return it as JSON
without knowing which step failed.
"""

from __future__ import annotations


class PredictionError(Exception):
    """A refusal of bad input or configuration, safe to show to a user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class PredictionCancelled(PredictionError):
    """Raised between steps when the caller asked the run to stop."""

    def __init__(self, message: str = "任务已取消") -> None:
        super().__init__("CANCELLED", message)
