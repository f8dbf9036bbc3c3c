"""``destination_predictor.service.cleaner``: retention -- old uploads and
results are removed and their tasks answer 410; files of active tasks are
never touched, however old."""

from __future__ import annotations

import time

from flask import Flask
from support.service import (
    FakeRunner,
    assert_error,
    data_dir,
    finished,
    listing,
    start,
    tiny_xlsx,
    wait_for,
)


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


def test_results_within_retention_are_kept(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    runner.release.set()
    c = application.test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    name = wait_for(c, tid, finished)["result_files"][0]
    report = application.extensions["predict"].cleaner.sweep(now=time.time() + 23 * 3600)
    assert (report.expired_tasks, report.removed_files) == (0, 0)
    assert c.get(f"/api/task/result/{tid}/{name}").status_code == 200


def test_cleaner_never_touches_active_tasks(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    c = application.test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, tid, lambda d: d["status"] == "running")
    application.extensions["predict"].cleaner.sweep(now=time.time() + 100 * 3600)
    assert len(listing(data_dir(application) / "uploads")) == 1
    runner.release.set()
    assert wait_for(c, tid, finished)["status"] == "completed"
