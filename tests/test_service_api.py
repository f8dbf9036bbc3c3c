"""The HTTP contract of the prediction service through Flask's test client:
response shapes, every refusal, the pool's queue rules, cancel, time limit,
result cache, expiry, recovery at start-up.

Real engine runs use small workbooks; queue, priority and cancel tests use a
controllable fake runner so they do not depend on how fast the engine is.
"""

from __future__ import annotations

import io
import json
import threading
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from conftest import PLANS_DIR
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_predictor.engine.errors import PredictionCancelled
from destination_predictor.service import create_app
from destination_predictor.service import task as T
from destination_predictor.service.runner import JobOutcome, JobSpec, TaskTimedOut
from destination_predictor.service.store import DataDirInUse, TaskStore
from destination_predictor.service.uploads import safe_original_name

YEAR = 2023
FINISHED = ("completed", "failed")


# --- helpers -------------------------------------------------------------------

def grade_workbook(path: Path, n_students: int = 40, seed: int = 1, year: int = YEAR) -> Path:
    from destination_predictor.demo.grades import make_grade_workbook

    make_grade_workbook(path, year, n_students, plans_dir=PLANS_DIR, seed=seed)
    return path


@pytest.fixture(scope="module")
def grades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grade_workbook(tmp_path_factory.mktemp("grades") / "成绩 2023级.xlsx", 40, seed=7)


@pytest.fixture(scope="module")
def grades_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grade_workbook(tmp_path_factory.mktemp("grades") / "other.xlsx", 30, seed=8)


def tiny_xlsx(tag: str | None = None) -> bytes:
    """A valid workbook without grade columns; unique bytes unless ``tag`` is
    given, so that tests of the queue are not merged by the result cache."""
    wb = openpyxl.Workbook()
    wb.active.append(["SNH", "Grade"])
    wb.active.append([tag or uuid.uuid4().hex, 0])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def start(client: FlaskClient, content: bytes, name: str = "grades.xlsx", headers: Any = None,
          **form: Any) -> Any:
    data = {"year": str(YEAR), **form, "file": (io.BytesIO(content), name)}
    return client.post("/api/task/start", data=data, headers=headers or {},
                       content_type="multipart/form-data")


def wait_for(client: FlaskClient, task_id: str, until: Callable[[dict[str, Any]], bool],
             timeout: float = 60.0, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/task/status/{task_id}")
        assert r.status_code == 200, r.json
        data = r.json["data"]
        if seen is not None:
            seen.append(data)
        if until(data):
            return data
        assert time.monotonic() < end, f"task {task_id} stuck: {data}"
        time.sleep(0.02)


def finished(data: dict[str, Any]) -> bool:
    return data["status"] in FINISHED


def assert_error(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = resp.json
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["error"]), body["error"]
    assert "Traceback" not in resp.get_data(as_text=True)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def data_dir(app: Flask) -> Path:
    return app.extensions["predict"].settings.data_dir


class FakeRunner:
    """Records start order; each job waits until released (or cancelled,
    or past its deadline), reports out-of-order progress, writes one workbook."""

    def __init__(self, hold: bool = True) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def run(self, spec: JobSpec, progress: Callable[[int, str], None], cancel: Any,
            deadline: float) -> JobOutcome:
        with self._lock:
            self.started.append(spec.task_id)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            progress(40, "正在预测智能科学与技术专业...")
            progress(20, "倒退的进度")  # must not move the bar back
            while not self.release.is_set():
                if cancel.is_set():
                    raise PredictionCancelled()
                if time.monotonic() >= deadline:
                    raise TaskTimedOut()
                time.sleep(0.005)
            progress(80, "正在写入结果文件...")
            name = f"{spec.file_prefix}Cohort{spec.year}_Predictions_All.xlsx"
            Path(spec.out_dir, name).write_bytes(tiny_xlsx())
            return JobOutcome(files=[name], summary={"year": spec.year, "students": 1,
                                                     "majors": []}, warnings=[])
        finally:
            with self._lock:
                self.running -= 1

    def close(self) -> None:
        return None


@pytest.fixture
def fake_app(app_config: dict[str, Any]) -> Iterator[tuple[Flask, FakeRunner]]:
    runner = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=3)
    application = create_app(app_config, runner=runner)
    yield application, runner
    runner.release.set()
    application.extensions["predict"].shutdown(wait_s=10)


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


def test_unexpected_exception_is_a_generic_500(app_config: dict[str, Any]) -> None:
    application = create_app(app_config)
    try:
        def boom() -> None:
            raise RuntimeError("secret internals /etc/passwd")

        application.add_url_rule("/api/boom", "boom", boom)
        r = application.test_client().get("/api/boom")
        assert_error(r, 500, "INTERNAL_ERROR")
        assert "secret" not in r.get_data(as_text=True)
        log = (Path(app_config["PREDICT_DATA_DIR"]) / "async_api_8080.log").read_text("utf-8")
        assert "RuntimeError" in log  # the stack trace goes to the log, not the client
    finally:
        application.extensions["predict"].shutdown()


def test_missing_model_degrades_health_and_refuses_work(app_config: dict[str, Any],
                                                        tmp_path: Path) -> None:
    app_config["PREDICT_MODEL_DIR"] = tmp_path / "no-model"
    application = create_app(app_config)
    try:
        c = application.test_client()
        r = c.get("/health")
        assert r.status_code == 503 and r.json["data"]["model_loaded"] is False
        assert_error(start(c, tiny_xlsx()), 503, "MODEL_UNAVAILABLE")
    finally:
        application.extensions["predict"].shutdown()


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
    results = data_dir(app) / "results"
    assert sorted(files) == sorted(p.name for p in results.iterdir() if p.is_file())

    for name in files:
        d = client.get(f"/api/task/result/{task_id}/{name}")
        assert d.status_code == 200
        assert "attachment" in d.headers["Content-Disposition"]
        openpyxl.load_workbook(io.BytesIO(d.data), read_only=True).close()

    z = client.get(f"/api/task/{task_id}/results.zip")
    assert z.status_code == 200 and z.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.data)) as zf:
        assert sorted(zf.namelist()) == sorted(files)

    listed = client.get("/api/tasks").json["data"]["tasks"]
    assert [t["id"] for t in listed] == [task_id]
    assert client.get("/api/tasks?status=failed").json["data"]["tasks"] == []

    uploads = listing(data_dir(app) / "uploads")
    assert len(uploads) == 1 and uploads[0].endswith("_" + grades.name)
    log = (data_dir(app) / "async_api_8080.log").read_text("utf-8")
    for event in ("task.created", "task.started", "task.progress", "task.completed"):
        assert f"event={event} task_id={task_id}" in log


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


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


@pytest.mark.parametrize(("content", "name", "code"), [
    (b"SNH,Grade\n1,90\n", "grades.csv", "UNSUPPORTED_FILE_TYPE"),
    (b"#!/bin/sh\nrm -rf /\n", "grades.sh", "UNSUPPORTED_FILE_TYPE"),
    (b"not a workbook at all", "grades.xlsx", "BAD_FILE_CONTENT"),
    (b"", "grades.xlsx", "EMPTY_FILE"),
    (_zip_bytes({"a.txt": b"hello"}), "grades.xlsx", "BAD_FILE_CONTENT"),
    (tiny_xlsx(), "grades.xls", "BAD_FILE_CONTENT"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "grades.xlsx", "BAD_FILE_CONTENT"),
    (tiny_xlsx()[:200], "grades.xlsx", "BAD_FILE_CONTENT"),
    (_zip_bytes({"[Content_Types].xml": b"<x/>", "xl/bomb.xml": b"\0" * (64 * 1024 * 1024)}),
     "grades.xlsx", "SUSPICIOUS_ARCHIVE"),
])
def test_bad_uploads_are_refused_and_nothing_is_kept(app: Flask, client: FlaskClient,
                                                     content: bytes, name: str, code: str) -> None:
    assert_error(start(client, content, name=name), 400, code)
    for sub in ("uploads", "results", ".staging"):
        assert listing(data_dir(app) / sub) == [], sub
    assert client.get("/api/tasks").json["data"]["tasks"] == []


def test_total_unzipped_size_is_bounded(app_config: dict[str, Any]) -> None:
    app_config["PREDICT_MAX_UNZIPPED_MB"] = 1
    application = create_app(app_config)
    try:
        # Low ratio per member (random-ish text), but 2 MB in total.
        text = "".join(f"<c r='A{i}'><v>{i * 7919 % 100003}</v></c>" for i in range(80_000))
        body = _zip_bytes({"[Content_Types].xml": b"<x/>", "xl/s.xml": text.encode()})
        c = application.test_client()
        assert_error(start(c, body), 400, "SUSPICIOUS_ARCHIVE")
        assert listing(data_dir(application) / "uploads") == []
    finally:
        application.extensions["predict"].shutdown()


def test_oversize_upload_is_413_json(app_config: dict[str, Any]) -> None:
    app_config["PREDICT_MAX_UPLOAD_MB"] = 0.05
    application = create_app(app_config)
    try:
        c = application.test_client()
        # Within the request allowance, over the file limit: refused while streaming.
        assert_error(start(c, b"PK" + b"\0" * 60_000), 413, "FILE_TOO_LARGE")
        # Over the whole request limit: refused by the framework, still JSON.
        assert_error(start(c, b"PK" + b"\0" * 1_200_000), 413, "FILE_TOO_LARGE")
        for sub in ("uploads", ".staging"):
            assert listing(data_dir(application) / sub) == []
    finally:
        application.extensions["predict"].shutdown()


# --- ids, file names, traversal ----------------------------------------------------------

def test_unknown_and_malformed_task_ids(client: FlaskClient) -> None:
    unknown = "12345678-1234-4234-8234-123456789abc"
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
    other = "12345678-1234-4234-8234-123456789abc"
    files = client.get(f"/api/task/status/{tid}").json["data"]["result_files"]
    assert_error(client.get(f"/api/task/result/{other}/{files[0]}"), 404, "TASK_NOT_FOUND")


def test_stored_upload_names_are_safe_and_unique(app: Flask, client: FlaskClient) -> None:
    assert safe_original_name("../../etc/passwd.xlsx") == "passwd.xlsx"
    assert safe_original_name("C:\\成绩\\2024级 成绩表.XLSX") == "2024级 成绩表.xlsx"
    assert safe_original_name("a\x00b\n|c?.xlsx") == "ab_c_.xlsx"
    assert safe_original_name(".xlsx") == "upload.xlsx"
    assert len(safe_original_name("长" * 400 + ".xlsx").encode()) <= 210
    runner_app = app  # same second, same name: distinct stored files
    ids = [start(client, tiny_xlsx(), name="../../成绩.xlsx").json["data"]["task_id"]
           for _ in range(3)]
    stored = listing(data_dir(runner_app) / "uploads")
    assert len(set(stored)) == 3 and all(s.endswith("成绩.xlsx") and "/" not in s for s in stored)
    for tid in ids:
        wait_for(client, tid, finished)


# --- auth -------------------------------------------------------------------------------

def test_token_is_required_when_configured(app_config: dict[str, Any]) -> None:
    app_config["PREDICT_API_TOKEN"] = "s3cret-token"
    application = create_app(app_config)
    try:
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
    finally:
        application.extensions["predict"].shutdown()


def test_list_filters_are_validated(client: FlaskClient) -> None:
    assert_error(client.get("/api/tasks?status=done"), 400, "BAD_STATUS")
    assert_error(client.get("/api/tasks?limit=x"), 400, "BAD_LIMIT")
    assert_error(client.get("/api/tasks?limit=100000"), 400, "BAD_LIMIT")
    assert client.get("/api/tasks?status=pending&limit=5").status_code == 200


# --- the pool: queue limit, priority, cancel, timeout -------------------------------------

def test_queue_full_is_503_and_keeps_nothing(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app  # 1 worker, 3 may wait
    c = application.test_client()
    ids = [start(c, tiny_xlsx()).json["data"]["task_id"] for _ in range(4)]
    wait_for(c, ids[0], lambda d: d["status"] == "running")
    before = listing(data_dir(application) / "uploads")
    assert len(before) == 4
    assert_error(start(c, tiny_xlsx()), 503, "QUEUE_FULL")
    assert listing(data_dir(application) / "uploads") == before
    health = c.get("/health").json["data"]
    assert health["running"] == 1 and health["pending"] == 3
    statuses = [c.get(f"/api/task/status/{t}").json["data"] for t in ids]
    assert [s["queue_position"] for s in statuses] == [None, 1, 2, 3]
    runner.release.set()
    for t in ids:
        assert wait_for(c, t, finished)["status"] == "completed"
    assert runner.max_running == 1


def test_high_priority_first_then_fifo(app_config: dict[str, Any]) -> None:
    runner = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=10)
    application = create_app(app_config, runner=runner)
    try:
        c = application.test_client()
        blocker = start(c, tiny_xlsx()).json["data"]["task_id"]
        wait_for(c, blocker, lambda d: d["status"] == "running")
        order = ["normal", "normal", "high", "normal", "high"]
        ids = [start(c, tiny_xlsx(), priority=p).json["data"]["task_id"] for p in order]
        runner.release.set()
        for t in ids:
            wait_for(c, t, finished)
        expected = [ids[2], ids[4], ids[0], ids[1], ids[3]]
        assert runner.started == [blocker, *expected]
        starts = [c.get(f"/api/task/status/{t}").json["data"]["started_at"] for t in expected]
        assert starts == sorted(starts)
    finally:
        runner.release.set()
        application.extensions["predict"].shutdown()


def test_cancel_pending_running_and_finished(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    c = application.test_client()
    running = start(c, tiny_xlsx()).json["data"]["task_id"]
    pending = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, running, lambda d: d["status"] == "running")

    r = c.post(f"/api/task/{pending}/cancel")
    assert r.status_code == 200 and r.json["data"]["status"] == "failed"
    data = c.get(f"/api/task/status/{pending}").json["data"]
    assert data["status"] == "failed" and data["cancelled"] is True
    assert data["error"] == "任务已取消" and data["error_code"] == "CANCELLED"

    r = c.post(f"/api/task/{running}/cancel")
    assert r.status_code == 200
    data = wait_for(c, running, finished)
    assert data["status"] == "failed" and data["cancelled"] is True
    assert data["progress"] == 40  # where it stopped; never reset
    assert listing(data_dir(application) / "results") == []
    assert pending not in runner.started

    assert_error(c.post(f"/api/task/{running}/cancel"), 409, "TASK_FINISHED")
    assert_error(c.get(f"/api/task/result/{running}/x.xlsx"), 409, "TASK_FAILED")


def test_progress_never_goes_back(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    c = application.test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    data = wait_for(c, tid, lambda d: d["progress"] >= 40)
    assert data["status"] == "running" and data["message"] == "倒退的进度"
    assert data["progress"] == 40
    runner.release.set()
    seen: list[dict[str, Any]] = []
    wait_for(c, tid, finished, seen=seen)
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress) and progress[-1] == 100


def test_time_limit_fails_the_task(app_config: dict[str, Any]) -> None:
    runner = FakeRunner()
    app_config.update(PREDICT_TASK_TIMEOUT_S=0.3)
    application = create_app(app_config, runner=runner)
    try:
        c = application.test_client()
        tid = start(c, tiny_xlsx()).json["data"]["task_id"]
        data = wait_for(c, tid, finished, timeout=10)
        assert data["status"] == "failed" and data["error_code"] == "TIMEOUT"
        assert "超时" in data["error"]
    finally:
        application.extensions["predict"].shutdown()


def test_time_limit_terminates_a_child_process(app_config: dict[str, Any], grades: Path) -> None:
    """The real process runner: a job that cannot finish in time is stopped hard."""
    app_config.update(PREDICT_EXECUTION="process", PREDICT_TASK_TIMEOUT_S=0.5)
    application = create_app(app_config)
    try:
        c = application.test_client()
        t0 = time.monotonic()
        tid = start(c, grades.read_bytes()).json["data"]["task_id"]
        data = wait_for(c, tid, finished, timeout=30)
        assert data["status"] == "failed" and data["error_code"] == "TIMEOUT", data
        assert time.monotonic() - t0 < 10
        assert listing(data_dir(application) / "results") == []
    finally:
        application.extensions["predict"].shutdown()


# --- retention ----------------------------------------------------------------------------

def test_expired_results_answer_410(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    runner.release.set()
    c = application.test_client()
    same = tiny_xlsx("same")
    tid = start(c, same).json["data"]["task_id"]
    data = wait_for(c, tid, finished)
    name = data["result_files"][0]
    assert c.get(f"/api/task/result/{tid}/{name}").status_code == 200
    manager = application.extensions["predict"]
    orphan = data_dir(application) / "results" / "orphan.xlsx"
    orphan.write_bytes(b"x")
    report = manager.cleaner.sweep(now=time.time() + 25 * 3600)
    assert report.expired_tasks == 1
    data = c.get(f"/api/task/status/{tid}").json["data"]
    assert data["expired"] is True and data["status"] == "completed"
    assert_error(c.get(f"/api/task/result/{tid}/{name}"), 410, "TASK_EXPIRED")
    assert_error(c.get(f"/api/task/{tid}/results.zip"), 410, "TASK_EXPIRED")
    assert listing(data_dir(application) / "uploads") == []
    assert listing(data_dir(application) / "results") == []
    # An expired task is no longer a cache source.
    tid2 = start(c, same).json["data"]["task_id"]
    assert wait_for(c, tid2, finished)["cached"] is False


def test_cleaner_never_touches_active_tasks(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    c = application.test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, tid, lambda d: d["status"] == "running")
    application.extensions["predict"].cleaner.sweep(now=time.time() + 100 * 3600)
    assert len(listing(data_dir(application) / "uploads")) == 1
    runner.release.set()
    assert wait_for(c, tid, finished)["status"] == "completed"


# --- recovery at start-up -------------------------------------------------------------------

def test_recovery_requeues_unfinished_tasks(app_config: dict[str, Any]) -> None:
    held = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=10)
    first = create_app(app_config, runner=held)
    c = first.test_client()
    ids = [start(c, tiny_xlsx(), priority=p).json["data"]["task_id"]
           for p in ("normal", "normal", "high")]
    wait_for(c, ids[0], lambda d: d["status"] == "running" and d["progress"] == 40)
    first.extensions["predict"].shutdown(wait_s=5)  # like a crash: nothing finished

    store = TaskStore(Path(app_config["PREDICT_DATA_DIR"]) / "tasks.sqlite3", lock_wait_s=0)
    states = {t.id: t.status for t in store.all()}
    store.close()
    assert [states[i] for i in ids] == ["running", "pending", "pending"]

    fresh = FakeRunner(hold=False)
    second = create_app(app_config, runner=fresh)
    try:
        c = second.test_client()
        for t in ids:
            data = wait_for(c, t, finished)
            assert data["status"] == "completed"
        # The queue rules hold after a restart too: high first, then arrival order.
        assert fresh.started == [ids[2], ids[0], ids[1]]
        first_task = c.get(f"/api/task/status/{ids[0]}").json["data"]
        assert first_task["progress"] == 100
        log = (Path(app_config["PREDICT_DATA_DIR"]) / "async_api_8080.log").read_text("utf-8")
        assert f"event=task.requeued task_id={ids[0]} was=running" in log
    finally:
        second.extensions["predict"].shutdown()


def test_recovery_fails_tasks_it_cannot_run(app_config: dict[str, Any]) -> None:
    held = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1)
    first = create_app(app_config, runner=held)
    c = first.test_client()
    a = start(c, tiny_xlsx()).json["data"]["task_id"]
    b = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, a, lambda d: d["status"] == "running")
    first.extensions["predict"].shutdown(wait_s=5)

    db = Path(app_config["PREDICT_DATA_DIR"]) / "tasks.sqlite3"
    store = TaskStore(db, lock_wait_s=0)
    upload_b = store.get(b).upload_name
    store.update(a, lambda t: __import__("dataclasses").replace(t, attempts=T.MAX_ATTEMPTS))
    store.close()
    (Path(app_config["PREDICT_DATA_DIR"]) / "uploads" / upload_b).unlink()

    second = create_app(app_config, runner=FakeRunner(hold=False))
    try:
        c = second.test_client()
        da = c.get(f"/api/task/status/{a}").json["data"]
        db_ = c.get(f"/api/task/status/{b}").json["data"]
        assert (da["status"], da["error_code"]) == ("failed", "TOO_MANY_ATTEMPTS")
        assert (db_["status"], db_["error_code"]) == ("failed", "UPLOAD_MISSING")
    finally:
        second.extensions["predict"].shutdown()


def test_one_service_per_data_dir(app: Flask) -> None:
    with pytest.raises(DataDirInUse):
        TaskStore(data_dir(app) / "tasks.sqlite3", lock_wait_s=0)


# --- the task record's transitions ----------------------------------------------------------

def test_transitions_refuse_impossible_changes() -> None:
    t = T.Task(id=T.new_task_id(), seq=1, year=2024, file_name="a.xlsx", upload_name="x",
               file_sha256="0", cache_key="k", created_at=0.0)
    with pytest.raises(T.InvalidTransition):
        T.complete(T.fail(t, 1.0, "X", "失败"), 2.0, [], None, [])
    with pytest.raises(T.InvalidTransition):
        T.expire(t, 1.0)
    r = T.start(t, 1.0)
    r = T.report_progress(r, 50, "a")
    assert T.report_progress(r, 10, "b").progress == 50
    assert T.report_progress(r, 100, "c").progress == 99
    assert T.requeue(r).progress == 50
    assert T.Task.from_record(json.loads(json.dumps(r.to_record()))) == r


def test_xls_upload_runs(client: FlaskClient, tmp_path: Path) -> None:
    from destination_predictor.demo.grades import make_grade_workbook

    path = make_grade_workbook(tmp_path / "成绩.xls", YEAR, 20, plans_dir=PLANS_DIR, seed=3,
                               fmt="xls")
    r = start(client, path.read_bytes(), name=path.name)
    assert r.status_code == 200, r.json
    data = wait_for(client, r.json["data"]["task_id"], finished)
    assert data["status"] == "completed", data
    assert data["summary"]["students"] == 20


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from([".xlsx", ".xls", ".XLSX", ""]))
def test_any_client_name_becomes_one_plain_file_name(name: str, ext: str) -> None:
    safe = safe_original_name(name + ext)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in (".", "..") and not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 255
    assert all(unicodedata.category(ch)[0] != "C" for ch in safe)
    if ext:
        assert safe.endswith(ext.lower())
