"""``destination_predictor.service.cache``: identical work (same bytes,
year, major, config and model) is done once; a twin task completes at once
with its own copies of the results."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from support.service import finished, start, wait_for

from destination_predictor.service.cache import cache_key


def test_result_cache_reuses_identical_work(app: Flask, client: FlaskClient, grades: Path) -> None:
    first = start(client, grades.read_bytes()).json["data"]["task_id"]
    done = wait_for(client, first, finished)
    assert done["status"] == "completed"

    second = start(client, grades.read_bytes(), name="renamed.xlsx").json["data"]["task_id"]
    data = client.get(f"/api/task/status/{second}").json["data"]
    assert data["status"] == "completed" and data["cached"] is True
    assert data["cached_from"] == first and data["progress"] == 100
    assert data["summary"] == done["summary"]
    assert [f.removeprefix(second) for f in data["result_files"]] == \
        [f.removeprefix(first) for f in done["result_files"]]
    for name in data["result_files"]:
        assert name.startswith(second)
        assert client.get(f"/api/task/result/{second}/{name}").status_code == 200

    # Another config is other work.
    third = start(client, grades.read_bytes(), config=json.dumps({"max_grade": 85}))
    data = wait_for(client, third.json["data"]["task_id"], finished)
    assert data["status"] == "completed" and data["cached"] is False


def test_cache_key_is_every_input_and_nothing_else() -> None:
    base = ("ab" * 32, 2024, "物联网工程", {"min_grade": 60, "max_grade": 90}, "v1")
    key = cache_key(*base)
    assert len(key) == 64 and key == cache_key(*base)
    # The config's key order is not part of the work.
    assert cache_key(*base[:3], {"max_grade": 90, "min_grade": 60}, "v1") == key
    for i, other in enumerate(("cd" * 32, 2023, None, {"min_grade": 60}, "v2")):
        changed = list(base)
        changed[i] = other
        assert cache_key(*changed) != key, i
