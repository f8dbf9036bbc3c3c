"""Which task store the suite's apps use (``PREDICT_TEST_TASKS_DB``, see
``conftest.app_config``) and the mark for tests that reach into the SQLite
file or the embedded store's internals (they say nothing about PostgreSQL,
whose own tests are in ``test_store_sql.py``)."""

from __future__ import annotations

import os

import pytest

ON_POSTGRES = os.environ.get("PREDICT_TEST_TASKS_DB") == "postgresql"

sqlite_store_only = pytest.mark.skipif(
    ON_POSTGRES, reason="opens tasks.sqlite3 or patches the embedded store directly")
