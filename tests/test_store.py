"""``destination_predictor.service.store``: durable task records (SQLite)
with an in-memory index, and one service per data dir."""

from __future__ import annotations

import pytest
from flask import Flask
from support.service import data_dir

from destination_predictor.service.store import DataDirInUse, TaskStore


def test_one_service_per_data_dir(app: Flask) -> None:
    with pytest.raises(DataDirInUse):
        TaskStore(data_dir(app) / "tasks.sqlite3", lock_wait_s=0)
