"""The one exception the importer raises."""

from __future__ import annotations

from ..engine.errors import PredictionError


class ImportRefused(PredictionError):
    """The import did not happen and the database is unchanged.

    Same shape as every engine refusal: ``code`` is UPPER_SNAKE for programs,
    ``message`` one Chinese line for people (never containing a password).
    """
