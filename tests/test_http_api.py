"""The HTTP contract end to end through Flask's test client (``routes``,
``responses``, ``auth``, ``manager``): health, majors, errors of the
framework, a real run with its downloads, refused form fields, task ids and
traversal, the token, list filters.

Real engine runs use small generated workbooks.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.paths import PLANS_DIR
from support.service import (
    UNKNOWN_TASK_ID,
    YEAR,
    assert_error,
    data_dir,
    finished,
    listing,
    start,
    tiny_xlsx,
    wait_for,
)

from destination_predictor.service import task as T

# --- health, majors, errors of the framework ------------------------------------


def test_health_is_open_and_reports_the_service(client: FlaskClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json
    assert body["success"] is True and body["status"] == "ok"
    data = body["data"]
    assert data["model_loaded"] is True and isinstance(data["model_version"], str)
    assert data["running"] == 0 and data["pending"] == 0 and data["max_workers"] == 3
    assert data["free_disk_bytes"] > 0


def test_majors_come_from_the_plans(client: FlaskClient) -> None:
    r = client.get("/api/majors")
    assert r.status_code == 200
    data = r.json["data"]
    on_disk = sorted(int(p.name.removeprefix("education-plan")) for p in PLANS_DIR.iterdir()
                     if p.name.startswith("education-plan"))
    assert data["years"] == on_disk
    names = {m["name"] for m in data["majors"][str(YEAR)]}
    assert "智能科学与技术" in names
    assert all(m["code"] for m in data["majors"][str(YEAR)])


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    assert_error(client.get("/api/nope"), 404, "NOT_FOUND")
    assert_error(client.get("/api/task/start"), 405, "METHOD_NOT_ALLOWED")


def test_unexpected_exception_is_a_generic_500(app_config: dict[str, Any], make_app: Any) -> None:
    application = make_app()

    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    application.add_url_rule("/api/boom", "boom", boom)
    r = application.test_client().get("/api/boom")
    assert_error(r, 500, "INTERNAL_ERROR")
    assert "secret" not in r.get_data(as_text=True)
    log = (Path(app_config["PREDICT_DATA_DIR"]) / "async_api_8080.log").read_text("utf-8")
    assert "RuntimeError" in log  # the stack trace goes to the log, not the client


def test_missing_model_degrades_health_and_refuses_work(app_config: dict[str, Any],
                                                        make_app: Any, tmp_path: Path) -> None:
    app_config["PREDICT_MODEL_DIR"] = tmp_path / "no-model"
    c = make_app().test_client()
    r = c.get("/health")
    assert r.status_code == 503 and r.json["data"]["model_loaded"] is False
    assert_error(start(c, tiny_xlsx()), 503, "MODEL_UNAVAILABLE")


# --- a real run end to end ---------------------------------------------------------

def test_full_run_contract(app: Flask, client: FlaskClient, grades: Path) -> None:
    r = start(client, grades.read_bytes(), name=grades.name)
    assert r.status_code == 200
    assert r.json["success"] is True
    task_id = r.json["data"]["task_id"]
    assert r.json["data"]["message"] == "预测任务已启动"
    assert T.is_valid_task_id(task_id)

    seen: list[dict[str, Any]] = []
    data = wait_for(client, task_id, finished, seen=seen)
    assert data["status"] == "completed", data
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress), progress
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in progress)
    assert data["progress"] == 100 and data["error"] is None
    for key in ("id", "status", "progress", "message", "result_files", "error", "created_at",
                "started_at", "finished_at", "year", "major", "file_name", "warnings", "summary"):
        assert key in data
    assert data["year"] == YEAR and data["file_name"] == grades.name
    assert data["summary"]["students"] == 40
    for m in data["summary"]["majors"]:
        assert set(m["destinations"]) == {"1", "2", "3"}
    files = data["result_files"]
    assert files and all(f.startswith(f"{task_id}_Cohort{YEAR}_Predictions_") for f in files)
    assert files[-1] == f"{task_id}_Cohort{YEAR}_Predictions_All.xlsx"
    # Stored are exactly these (in the data dir, or in the object store).
    assert sorted(files) == sorted(app.extensions["predict"].storage.names("results", ""))

    for name in files:
        d = client.get(f"/api/task/result/{task_id}/{name}")
        assert d.status_code == 200
        assert "attachment" in d.headers["Content-Disposition"]
        openpyxl.load_workbook(io.BytesIO(d.data), read_only=True).close()

    z = client.get(f"/api/task/{task_id}/results.zip")
    assert z.status_code == 200 and z.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.data)) as zf:
        assert sorted(zf.namelist()) == sorted(f.removeprefix(f"{task_id}_") for f in files)

    listed = client.get("/api/tasks").json["data"]["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    assert client.get("/api/tasks?status=failed").json["data"]["tasks"] == []

    uploads = listing(data_dir(app) / "uploads")
    assert len(uploads) == 1 and uploads[0].endswith("_" + grades.name)
    # The service's logs: in the distributed mode a worker logs the run (worker_<host>.log,
    # in a data dir of its own when the files are in an object store).
    log = "".join(p.read_text("utf-8") for p in sorted(data_dir(app).parent.glob("*/*.log")))
    for event in ("task.created", "task.started", "task.progress", "task.completed"):
        assert f"event={event} task_id={task_id}" in log


def test_engine_refusal_becomes_a_failed_task(client: FlaskClient) -> None:
    r = start(client, tiny_xlsx())  # a valid workbook without the grade columns
    assert r.status_code == 200
    data = wait_for(client, r.json["data"]["task_id"], finished)
    assert data["status"] == "failed"
    assert data["error"] and data["error_code"] and data["error_code"] != "INTERNAL_ERROR"
    assert data["result_files"] == []
    tid = data["id"]
    assert_error(client.get(f"/api/task/result/{tid}/x.xlsx"), 409, "TASK_FAILED")


# --- refused starts: nothing written --------------------------------------------------

@pytest.mark.parametrize(("form", "status", "code"), [
    ({"year": None}, 400, "MISSING_YEAR"),
    ({"year": "20x4"}, 400, "BAD_YEAR"),
    ({"year": "1999"}, 400, "UNKNOWN_YEAR"),
    ({"major": "天文学"}, 400, "UNKNOWN_MAJOR"),
    ({"priority": "urgent"}, 400, "BAD_PRIORITY"),
    ({"config": "{not json"}, 400, "BAD_CONFIG"),
    ({"config": json.dumps({"min_grade": 95, "max_grade": 60})}, 400, "BAD_CONFIG"),
    ({"config": json.dumps({"rm -rf": 1})}, 400, "BAD_CONFIG"),
])
def test_bad_form_fields_are_refused(app: Flask, client: FlaskClient, form: dict[str, Any],
                                     status: int, code: str) -> None:
    data = {"year": str(YEAR), **form}
    data = {k: v for k, v in data.items() if v is not None}
    data["file"] = (io.BytesIO(tiny_xlsx()), "g.xlsx")
    assert_error(client.post("/api/task/start", data=data), status, code)
    assert listing(data_dir(app) / "uploads") == []
    assert client.get("/api/tasks").json["data"]["tasks"] == []


def test_missing_file_is_refused(client: FlaskClient) -> None:
    assert_error(client.post("/api/task/start", data={"year": str(YEAR)}), 400, "MISSING_FILE")


# --- ids, file names, traversal ----------------------------------------------------------

def test_unknown_and_malformed_task_ids(client: FlaskClient) -> None:
    unknown = UNKNOWN_TASK_ID
    assert_error(client.get(f"/api/task/status/{unknown}"), 404, "TASK_NOT_FOUND")
    assert_error(client.get(f"/api/task/result/{unknown}/a.xlsx"), 404, "TASK_NOT_FOUND")
    assert_error(client.get(f"/api/task/{unknown}/results.zip"), 404, "TASK_NOT_FOUND")
    assert_error(client.post(f"/api/task/{unknown}/cancel"), 404, "TASK_NOT_FOUND")
    for bad in ("abc", "..", "%2e%2e", unknown.upper(), unknown + "x", "..%2F..%2Fetc"):
        r = client.get(f"/api/task/status/{bad}")
        assert r.status_code in (400, 404) and r.json["success"] is False, bad


def test_downloads_serve_only_files_recorded_on_the_task(app: Flask, client: FlaskClient,
                                                          grades: Path) -> None:
    tid = start(client, grades.read_bytes()).json["data"]["task_id"]
    assert wait_for(client, tid, finished)["status"] == "completed"
    secret = data_dir(app) / "results" / f"{tid}_secret.xlsx"
    secret.write_bytes(b"not listed on the task")
    for name in (f"{tid}_secret.xlsx", "../tasks.sqlite3", "..%2Ftasks.sqlite3",
                 "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "....//tasks.sqlite3", "/etc/passwd",
                 "..\\tasks.sqlite3", "tasks.sqlite3"):
        r = client.get(f"/api/task/result/{tid}/{name}")
        assert r.status_code in (400, 404), (name, r.status_code)
        assert r.json["success"] is False
    files = client.get(f"/api/task/status/{tid}").json["data"]["result_files"]
    assert_error(client.get(f"/api/task/result/{UNKNOWN_TASK_ID}/{files[0]}"), 404,
                 "TASK_NOT_FOUND")


# --- auth -------------------------------------------------------------------------------

def test_token_is_required_when_configured(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_API_TOKEN"] = "s3cret-token"
    application = make_app()
    c = application.test_client()
    assert c.get("/health").status_code == 200
    assert_error(c.get("/api/majors"), 401, "UNAUTHORIZED")
    assert_error(c.get("/api/majors", headers={"Authorization": "Bearer wrong"}), 401,
                 "INVALID_TOKEN")
    assert_error(c.get("/api/majors", headers={"X-API-Key": "s3cret-token-x"}), 401,
                 "INVALID_TOKEN")
    assert_error(start(c, tiny_xlsx()), 401, "UNAUTHORIZED")
    assert listing(data_dir(application) / "uploads") == []
    assert c.get("/api/majors", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert c.get("/api/majors", headers={"X-API-Key": "s3cret-token"}).status_code == 200
    assert_error(c.get("/api/tasks?limit=0", headers={"X-API-Key": "s3cret-token"}), 400,
                 "BAD_LIMIT")


# --- list filters ------------------------------------------------------------------------

def test_list_filters_are_validated(client: FlaskClient) -> None:
    assert_error(client.get("/api/tasks?status=done"), 400, "BAD_STATUS")
    assert_error(client.get("/api/tasks?limit=x"), 400, "BAD_LIMIT")
    assert_error(client.get("/api/tasks?limit=100000"), 400, "BAD_LIMIT")
    assert client.get("/api/tasks?status=pending&limit=5").status_code == 200
