"""Batches (service.batches, /api/batch): several files as one unit through the
same bounded pool, refusals per file, one zip, cancel, and the batch's end
reported once -- also across a restart. Jobs are a controllable FakeRunner
here; the real engine in child processes is test_batches_live.py's and
test_console_batches.py's."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from support.service import YEAR, FakeRunner, assert_error, tiny_xlsx, zip_bytes

from destination_predictor.service.settings import load_settings
from destination_predictor.service.sqldb import open_engine


def start_batch(client: FlaskClient, files: list[tuple[bytes, str]], **form: Any) -> Any:
    data: dict[str, Any] = {"year": str(YEAR), **form,
                            "files": [(io.BytesIO(c), n) for c, n in files]}
    return client.post("/api/batch/start", data=data, content_type="multipart/form-data")


def wait_batch(client: FlaskClient, batch_id: str, state: str = "running",
               timeout: float = 30.0) -> dict[str, Any]:
    """Poll until the batch is no longer ``running`` (or reaches ``state`` if given otherwise)."""
    end = time.monotonic() + timeout
    while True:
        data = client.get(f"/api/batch/status/{batch_id}").get_json()["data"]
        if (data["state"] != "running") if state == "running" else data["state"] == state:
            return data
        assert time.monotonic() < end, data
        time.sleep(0.02)


def listen(app: Flask) -> list[dict[str, Any]]:
    heard: list[dict[str, Any]] = []
    app.extensions["batches"].on_batch_finished(heard.append)
    return heard


def test_one_broken_file_fails_alone_and_the_zip_has_a_folder_per_file(
        fake_app: tuple[Flask, FakeRunner]) -> None:
    app, runner = fake_app
    heard = listen(app)
    client = app.test_client()
    r = start_batch(client, [(tiny_xlsx(), "一班.xlsx"), (b"this is not a workbook", "坏文件.xlsx"),
                             (tiny_xlsx(), "二班.xlsx")])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()["data"]
    assert len(body["task_ids"]) == 3
    runner.release.set()
    data = wait_batch(client, body["batch_id"])
    assert data["state"] == "partial"
    assert data["counts"]["completed"] == 2 and data["counts"]["failed"] == 1
    assert data["progress"] == 100
    broken = data["tasks"][1]
    assert broken["source_file"] == "坏文件.xlsx" and broken["status"] == "failed"
    assert broken["error_code"] == "BAD_FILE_CONTENT" and "xlsx" in broken["error"]
    assert all(t["batch_id"] == body["batch_id"] for t in data["tasks"])
    # Each task is an ordinary task too.
    one = client.get(f"/api/task/status/{body['task_ids'][0]}").get_json()["data"]
    assert one["status"] == "completed" and one["batch_id"] == body["batch_id"]

    r = client.get(f"/api/batch/result/{body['batch_id']}")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.data)).namelist()
    assert {n.split("/")[0] for n in names} == {"一班", "坏文件", "二班"}, names
    assert "坏文件/失败原因.txt" in names
    assert f"一班/Cohort{YEAR}_Predictions_All.xlsx" in names

    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(heard) == 1
    report = heard[0]
    assert report["batch_id"] == body["batch_id"] and report["state"] == "partial"
    assert report["counts"]["completed"] == 2 and report["year"] == YEAR
    assert [t["file"] for t in report["tasks"]] == ["一班.xlsx", "坏文件.xlsx", "二班.xlsx"]
    assert report["tasks"][1]["status"] == "failed" and report["tasks"][1]["error"]


def test_a_zip_of_workbooks_is_one_file_each(fake_app: tuple[Flask, FakeRunner]) -> None:
    app, runner = fake_app
    runner.release.set()
    client = app.test_client()
    archive = zip_bytes({"exports/a.xlsx": tiny_xlsx(), "exports/b.xlsx": tiny_xlsx(),
                         "__MACOSX/exports/._a.xlsx": b"junk", "exports/readme.txt": b"hi"})
    r = start_batch(client, [(archive, "导出.zip")])
    assert r.status_code == 200, r.get_json()
    data = wait_batch(client, r.get_json()["data"]["batch_id"])
    by_file = {t["source_file"]: t for t in data["tasks"]}
    assert set(by_file) == {"a.xlsx", "b.xlsx", "readme.txt"}
    assert by_file["readme.txt"]["error_code"] == "UNSUPPORTED_FILE_TYPE"
    assert by_file["a.xlsx"]["status"] == "completed"


def test_the_pool_bound_holds_and_a_batch_larger_than_the_room_is_refused_whole(
        fake_app: tuple[Flask, FakeRunner]) -> None:
    app, runner = fake_app  # one worker, three waiting: room for four
    client = app.test_client()
    r = start_batch(client, [(tiny_xlsx(), f"f{i}.xlsx") for i in range(5)])
    assert_error(r, 503, "QUEUE_FULL")
    assert "5" in r.get_json()["error"] and r.headers["Retry-After"]
    assert client.get("/api/tasks").get_json()["data"]["count"] == 0  # nothing started

    r = start_batch(client, [(tiny_xlsx(), f"f{i}.xlsx") for i in range(4)])
    assert r.status_code == 200, r.get_json()
    batch_id = r.get_json()["data"]["batch_id"]
    data = client.get(f"/api/batch/status/{batch_id}").get_json()["data"]
    assert data["state"] == "running" and data["counts"]["pending"] >= 3
    runner.release.set()
    assert wait_batch(client, batch_id)["state"] == "completed"
    assert runner.max_running == 1
    assert len(runner.started) == 4


def test_cancel_a_batch(fake_app: tuple[Flask, FakeRunner]) -> None:
    app, runner = fake_app
    heard = listen(app)
    client = app.test_client()
    batch_id = start_batch(client, [(tiny_xlsx(), "a.xlsx"), (tiny_xlsx(), "b.xlsx"),
                                    (tiny_xlsx(), "c.xlsx")]).get_json()["data"]["batch_id"]
    r = client.post(f"/api/batch/{batch_id}/cancel")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["data"]["cancelled_tasks"] == 3
    data = wait_batch(client, batch_id)
    assert data["state"] == "cancelled" and data["counts"]["cancelled"] == 3
    assert all(t["cancelled"] for t in data["tasks"])
    assert_error(client.post(f"/api/batch/{batch_id}/cancel"), 409, "BATCH_FINISHED")
    assert_error(client.get(f"/api/batch/result/{batch_id}"), 409, "BATCH_NO_RESULTS")
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [h["state"] for h in heard] == ["cancelled"]


def test_refusals_of_the_whole_request(fake_app: tuple[Flask, FakeRunner]) -> None:
    app, _ = fake_app
    client = app.test_client()
    assert_error(client.post("/api/batch/start", data={"year": str(YEAR)},
                             content_type="multipart/form-data"), 400, "MISSING_FILE")
    assert_error(start_batch(client, [(tiny_xlsx(), "a.xlsx")], year="20x4"), 400, "BAD_YEAR")
    assert_error(start_batch(client, [(tiny_xlsx(), "a.xlsx"), (tiny_xlsx(), "b.xlsx")],
                             year=[str(YEAR)] * 3), 400, "BAD_YEAR")
    assert_error(start_batch(client, [(tiny_xlsx(), "a.xlsx")], year="1999"), 400, "UNKNOWN_YEAR")
    assert_error(client.get("/api/batch/status/nope"), 400, "INVALID_BATCH_ID")
    assert_error(client.get("/api/batch/status/12345678-1234-4234-8234-123456789abc"), 404,
                 "BATCH_NOT_FOUND")


def test_a_batch_unfinished_at_shutdown_is_reported_once_after_restart(
        app_config: dict[str, Any], make_app: Any) -> None:
    held = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1)
    app1 = make_app(runner=held)
    client = app1.test_client()
    r = start_batch(client, [(tiny_xlsx(), "a.xlsx"), (tiny_xlsx(), "b.xlsx")])
    batch_id = r.get_json()["data"]["batch_id"]
    app1.extensions["predict"].shutdown(wait_s=5)
    held.release.set()

    app2 = make_app(runner=FakeRunner(hold=False))
    data = wait_batch(app2.test_client(), batch_id)
    assert data["state"] == "completed" and data["counts"]["completed"] == 2
    # The batch records' own database (jobs.sqlite3, or the task records' PostgreSQL).
    db = open_engine(load_settings({k: v for k, v in app_config.items()
                                    if k.startswith("PREDICT_")}).jobs_url)
    row = sa.text("SELECT reported_at FROM batches WHERE id = :id").bindparams(id=batch_id)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with db.connect() as conn:
            reported = conn.execute(row).scalar_one()
        if reported is not None:
            break
        time.sleep(0.02)
    assert reported is not None
    app2.extensions["predict"].shutdown(wait_s=5)
    # Ended but not marked reported (a crash between the listeners and the mark):
    # the next start reports it.
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE batches SET reported_at = NULL WHERE id = :id"),
                     {"id": batch_id})
    db.dispose()
    app3 = make_app(runner=FakeRunner(hold=False))
    app3.extensions["predict"].shutdown(wait_s=5)
    log = next(Path(app_config["PREDICT_DATA_DIR"]).glob("async_api_*.log")).read_text()
    ends = [line for line in log.splitlines()
            if "event=batch.finished" in line and batch_id in line]
    assert len(ends) == 2, ends  # once after the restart, once more after the simulated crash


def test_a_full_disk_refuses_the_whole_batch(app_config: dict[str, Any], make_app: Any) -> None:
    app_config.update(PREDICT_MIN_FREE_MB=10**12)
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    r = start_batch(client, [(tiny_xlsx(), "a.xlsx"), (tiny_xlsx(), "b.xlsx")])
    assert_error(r, 503, "DISK_FULL")
    assert client.get("/api/tasks").get_json()["data"]["count"] == 0


def test_a_batch_whose_task_records_are_gone_is_forgotten(fake_app: tuple[Flask, FakeRunner]) -> None:
    app, runner = fake_app
    runner.release.set()
    client = app.test_client()
    body = start_batch(client, [(tiny_xlsx(), "a.xlsx")]).get_json()["data"]
    wait_batch(client, body["batch_id"])
    batches = app.extensions["batches"]
    assert batches.prune() == 0  # not while its task record exists
    app.extensions["predict"].store.delete(body["task_ids"][0])  # the cleaner, after retention
    deadline = time.monotonic() + 5
    while batches.prune() == 0:  # once the batch's end has been reported
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert_error(client.get(f"/api/batch/status/{body['batch_id']}"), 404, "BATCH_NOT_FOUND")
