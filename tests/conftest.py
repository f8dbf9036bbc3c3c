"""Shared fixtures: an app over a temporary data dir, with the repository's
demo model (``models/``) and plans (``plans/``), and its test client.

Every test gets a fresh data dir, so tasks, uploads and results never leak
between tests. Jobs run in pool threads here (``PREDICT_EXECUTION=thread``)
because that is faster to start; the child-process mode is exercised by the
real-gunicorn tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

REPO = Path(__file__).resolve().parents[1]
# The repository's demo model and plans, for the tests about them exactly.
DEMO_MODELS_DIR = REPO / "models"
DEMO_PLANS_DIR = REPO / "plans"
# Overridable to try the suite against another model or plan set.
MODELS_DIR = Path(os.environ.get("PREDICT_TEST_MODEL_DIR") or DEMO_MODELS_DIR)
PLANS_DIR = Path(os.environ.get("PREDICT_TEST_PLANS_DIR") or DEMO_PLANS_DIR)


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, Any]:
    """The mapping given to ``create_app``; tests may change it before ``app`` is built."""
    return {
        "TESTING": True,
        "PREDICT_DATA_DIR": tmp_path / "data",
        "PREDICT_MODEL_DIR": MODELS_DIR,
        "PREDICT_PLANS_DIR": PLANS_DIR,
        "PREDICT_EXECUTION": "thread",
        "PREDICT_CLEAN_INTERVAL_S": 3600,
        "PREDICT_API_TOKEN": "",
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    from destination_predictor.service import create_app

    application = create_app(app_config)
    yield application
    application.extensions["predict"].shutdown(wait_s=30.0)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
