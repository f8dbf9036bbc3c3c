"""``destination_predictor.service.executor``: the bounded pool -- queue
limit, priority, cancel, time limit, progress that never goes back.

Jobs are a controllable ``FakeRunner`` so the tests do not depend on how fast
the engine is; the real child-process time limit is in ``test_runner.py``.
"""

from __future__ import annotations

from typing import Any

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


def test_high_priority_first_then_fifo(app_config: dict[str, Any], make_app: Any) -> None:
    runner = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=10)
    c = make_app(runner=runner).test_client()
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


def test_failed_filter_lists_cancelled_tasks(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, _ = fake_app
    c = application.test_client()
    running = start(c, tiny_xlsx()).json["data"]["task_id"]
    pending = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, running, lambda d: d["status"] == "running")
    c.post(f"/api/task/{pending}/cancel")
    failed = c.get("/api/tasks?status=failed").json["data"]["tasks"]
    assert [(t["id"], t["status"], t["cancelled"]) for t in failed] == [(pending, "failed", True)]
    assert [t["id"] for t in c.get("/api/tasks?status=running").json["data"]["tasks"]] == [running]
    assert c.get("/health").json["data"]["tasks"]["failed"] == 1


def test_progress_never_goes_back(fake_app: tuple[Flask, FakeRunner]) -> None:
    application, runner = fake_app
    c = application.test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    # The runner reports 40 then 20: wait for the second report, not for 40 (with
    # the records on PostgreSQL a poll between the two is likely).
    data = wait_for(c, tid, lambda d: d["message"] == "倒退的进度")
    assert data["status"] == "running" and data["progress"] == 40
    runner.release.set()
    seen: list[dict[str, Any]] = []
    wait_for(c, tid, finished, seen=seen)
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress) and progress[-1] == 100


def test_time_limit_fails_the_task(app_config: dict[str, Any], make_app: Any) -> None:
    app_config.update(PREDICT_TASK_TIMEOUT_S=0.3)
    c = make_app(runner=FakeRunner()).test_client()
    tid = start(c, tiny_xlsx()).json["data"]["task_id"]
    data = wait_for(c, tid, finished, timeout=10)
    assert data["status"] == "failed" and data["error_code"] == "TIMEOUT"
    assert "超时" in data["error"]
