"""``POST /api/whatif`` and ``GET /api/task/<id>/student/<snh>`` through the test
client: answers, refusals, and the round trip task -> student -> what-if giving
the task's own Predictions row."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask.testing import FlaskClient
from support.service import (
    UNKNOWN_TASK_ID,
    YEAR,
    assert_error,
    finished,
    start,
    tiny_xlsx,
    wait_for,
)

from destination_predictor.engine.grades import read_grades


def _post(client: FlaskClient, body: Any) -> Any:
    return client.post("/api/whatif", data=json.dumps(body), content_type="application/json")


@pytest.fixture
def done_task(client: FlaskClient, grades: Path) -> dict[str, Any]:
    r = start(client, grades.read_bytes(), grades.name)
    assert r.status_code == 200, r.json
    data = wait_for(client, r.json["data"]["task_id"], finished, timeout=120)
    assert data["status"] == "completed", data
    return data


def _predictions(client: FlaskClient, task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """SNH -> Predictions row, over every per-major workbook of the task."""
    rows: dict[str, dict[str, Any]] = {}
    for name in task["result_files"]:
        if name.endswith("_All.xlsx"):
            continue
        body = client.get(f"/api/task/result/{task['id']}/{name}").data
        wb = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
        it = wb["Predictions"].iter_rows(values_only=True)
        header = next(it)
        for row in it:
            d = dict(zip(header, row, strict=False))
            rows[str(d["SNH"])] = d
        wb.close()
    return rows


def test_student_round_trip_gives_the_tasks_predictions(client: FlaskClient, grades: Path,
                                                        done_task: dict[str, Any]) -> None:
    tid = done_task["id"]
    table = _predictions(client, done_task)
    cohort = read_grades(grades)
    for snh in cohort.students[:5]:
        r = client.get(f"/api/task/{tid}/student/{snh}")
        assert r.status_code == 200, r.json
        view = r.json["data"]
        assert view["snh"] == snh and view["year"] == YEAR and view["task_id"] == tid
        answer = _post(client, {"year": view["year"], "major": view["major"],
                                "grades": view["grades"]})
        assert answer.status_code == 200, answer.json
        got = answer.json["data"]
        row = table[snh]
        # The workbook stores each float's shortest exact digits: the same floats.
        assert [got["probabilities"][k] for k in "123"] == [
            row["current_prob1"], row["current_prob2"], row["current_prob3"]]
        assert got["predicted"] == row["current_pred"]
        assert got["missing"] == view["missing"]
        s1 = row["target1_min_required_score"]
        assert got["thresholds"]["s1"] == (None if s1 is None else float(s1))
        assert set(got["reasons"]["contributions"]) == {*got["features"]}
        assert got["demo_model"] is True


def test_sliders_change_the_answer(client: FlaskClient, grades: Path,
                                   done_task: dict[str, Any]) -> None:
    tid = done_task["id"]
    for snh in read_grades(grades).students:
        view = client.get(f"/api/task/{tid}/student/{snh}").json["data"]
        if view["missing"]:
            break
    body = {"year": YEAR, "major": view["major"], "grades": view["grades"]}
    low = _post(client, {**body, "assume": dict.fromkeys(view["missing"], 0)}).json["data"]
    high = _post(client, {**body, "assume": dict.fromkeys(view["missing"], 100)}).json["data"]
    assert low["probabilities"] != high["probabilities"]
    assert low["thresholds"] == high["thresholds"]


def test_student_refusals(client: FlaskClient, done_task: dict[str, Any]) -> None:
    tid = done_task["id"]
    assert_error(client.get(f"/api/task/{tid}/student/nobody"), 404, "STUDENT_NOT_FOUND")
    assert_error(client.get(f"/api/task/{UNKNOWN_TASK_ID}/student/1"), 404, "TASK_NOT_FOUND")
    assert_error(client.get("/api/task/not-a-task/student/1"), 400, "INVALID_TASK_ID")


def test_a_running_task_has_no_students(fake_app: Any) -> None:
    app, _runner = fake_app
    c = app.test_client()
    task_id = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, task_id, lambda d: d["status"] == "running")
    assert_error(c.get(f"/api/task/{task_id}/student/1"), 409, "TASK_NOT_COMPLETED")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"major": "ai", "grades": {}}, 400, "MISSING_YEAR"),
    ({"year": "20x4", "major": "ai", "grades": {}}, 400, "BAD_YEAR"),
    ({"year": True, "major": "ai", "grades": {}}, 400, "BAD_YEAR"),
    ({"year": 1999, "major": "ai", "grades": {}}, 400, "UNKNOWN_YEAR"),
    ({"year": YEAR, "major": "天文", "grades": {}}, 400, "UNKNOWN_MAJOR"),
    ({"year": YEAR, "grades": {}}, 400, "BAD_WHATIF"),
    ({"year": YEAR, "major": "ai"}, 400, "BAD_WHATIF"),
    ({"year": YEAR, "major": "ai", "grades": []}, 400, "BAD_WHATIF"),
    ({"year": YEAR, "major": "ai", "grades": {}, "extra": 1}, 400, "BAD_WHATIF"),
    ({"year": YEAR, "major": "ai", "grades": {"高等数学": 101}}, 400, "BAD_SCORE"),
    ({"year": YEAR, "major": "ai", "grades": {"高等数学": "90"}}, 400, "BAD_SCORE"),
    ({"year": YEAR, "major": "ai", "grades": {}, "assume": {"高等数学": -1}}, 400, "BAD_SCORE"),
    ({"year": YEAR, "major": "ai", "grades": {"": 80}}, 400, "BAD_WHATIF"),
    ({"year": YEAR, "major": "ai", "grades": {}, "config": {"min_grade": 95}}, 400, "BAD_CONFIG"),
    ({"year": YEAR, "major": "ai", "grades": {f"c{i}": 80 for i in range(2000)}}, 422,
     "TOO_MANY_COURSES"),
    ([1, 2], 400, "BAD_WHATIF"),
])
def test_whatif_refusals(client: FlaskClient, body: Any, status: int, code: str) -> None:
    assert_error(_post(client, body), status, code)


def test_malformed_and_oversized_bodies(client: FlaskClient) -> None:
    for raw in (b"{", b"\xff\xfe", b'{"year": NaN}', b"[" * 60_000):
        r = client.post("/api/whatif", data=raw, content_type="application/json")
        assert_error(r, 400, "BAD_JSON")
    big = json.dumps({"year": YEAR, "major": "ai", "grades": {"x" * 100: 1}, "pad": "y" * 70_000})
    assert_error(client.post("/api/whatif", data=big, content_type="application/json"),
                 413, "BODY_TOO_LARGE")


def test_the_model_is_loaded_once(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from destination_predictor.engine import model as model_mod

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("model loaded per request")

    monkeypatch.setattr(model_mod.DestinationModel, "load", refuse)
    body = {"year": YEAR, "major": "ai", "grades": {}}
    assert _post(client, body).status_code == 200
    t0 = time.perf_counter()
    for _ in range(20):
        assert _post(client, body).status_code == 200
    assert (time.perf_counter() - t0) / 20 < 0.5
