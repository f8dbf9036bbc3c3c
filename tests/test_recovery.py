"""``destination_predictor.service.recovery``: at start-up no task stays
pending or running forever -- unfinished tasks are queued again in their
order, or failed with a reason when they cannot run.

A first app is shut down like a crash (nothing finished), a second one on the
same data dir recovers; ``make_app`` shuts both down whatever happens.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from support.service import FakeRunner, finished, start, tiny_xlsx, wait_for
from support.tasks_db import sqlite_store_only

from destination_predictor.service import task as T
from destination_predictor.service.store import TaskStore


@sqlite_store_only
def test_recovery_requeues_unfinished_tasks(app_config: dict[str, Any], make_app: Any) -> None:
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=10)
    first = make_app(runner=FakeRunner())
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
    c = make_app(runner=fresh).test_client()
    for t in ids:
        data = wait_for(c, t, finished)
        assert data["status"] == "completed"
    # The queue rules hold after a restart too: high first, then arrival order.
    assert fresh.started == [ids[2], ids[0], ids[1]]
    first_task = c.get(f"/api/task/status/{ids[0]}").json["data"]
    assert first_task["progress"] == 100
    log = (Path(app_config["PREDICT_DATA_DIR"]) / "async_api_8080.log").read_text("utf-8")
    assert f"event=task.requeued task_id={ids[0]} was=running" in log


@sqlite_store_only
def test_recovery_fails_tasks_it_cannot_run(app_config: dict[str, Any], make_app: Any) -> None:
    app_config.update(PREDICT_MAX_WORKERS=1)
    first = make_app(runner=FakeRunner())
    c = first.test_client()
    a = start(c, tiny_xlsx()).json["data"]["task_id"]
    b = start(c, tiny_xlsx()).json["data"]["task_id"]
    wait_for(c, a, lambda d: d["status"] == "running")
    first.extensions["predict"].shutdown(wait_s=5)

    db = Path(app_config["PREDICT_DATA_DIR"]) / "tasks.sqlite3"
    store = TaskStore(db, lock_wait_s=0)
    upload_b = store.get(b).upload_name
    store.update(a, lambda t: dataclasses.replace(t, attempts=T.MAX_ATTEMPTS))
    store.close()
    (Path(app_config["PREDICT_DATA_DIR"]) / "uploads" / upload_b).unlink()

    c = make_app(runner=FakeRunner(hold=False)).test_client()
    da = c.get(f"/api/task/status/{a}").json["data"]
    db_ = c.get(f"/api/task/status/{b}").json["data"]
    assert (da["status"], da["error_code"]) == ("failed", "TOO_MANY_ATTEMPTS")
    assert (db_["status"], db_["error_code"]) == ("failed", "UPLOAD_MISSING")


def test_recovery_removes_the_staging_of_a_killed_job(app_config: dict[str, Any],
                                                      make_app: Any) -> None:
    """A job killed mid-write leaves ``results/.staging-*`` (the engine stages every
    workbook there, then moves them in); recovery removes it at the next start,
    instead of leaving it to the retention sweep a day later."""
    results = Path(app_config["PREDICT_DATA_DIR"]) / "results"
    staging = results / ".staging-killed"
    staging.mkdir(parents=True)
    (staging / "Cohort2024_Predictions_ai.xlsx").write_bytes(b"half a workbook")
    kept = results / "unrelated.txt"
    kept.write_text("x")
    make_app(runner=FakeRunner(hold=False))
    assert not staging.exists()
    assert kept.exists(), "only staging folders go at start-up"


def test_a_worker_machine_keeps_only_what_a_live_job_or_a_completed_task_owns(
        tmp_path: Path) -> None:
    """``tidy_worker_results``: the start of ``python -m destination_predictor.worker``."""
    import os
    import time

    from destination_predictor.service.recovery import tidy_worker_results

    store = TaskStore(tmp_path / "tasks.sqlite3")
    results = tmp_path / "results"
    results.mkdir()

    def task(seq: int) -> T.Task:
        t = T.Task(id=T.new_task_id(), seq=seq, year=2024, file_name="a.xlsx", upload_name="x",
                   file_sha256="0", cache_key="k", created_at=0.0)
        store.add(t)
        return t

    running = store.update(task(1).id, lambda t: T.start(t, 1.0))
    pending = task(2)
    done = store.update(store.update(task(3).id, lambda t: T.start(t, 1.0)).id,
                        lambda t: T.complete(t, 2.0, [f"{t.id}_Cohort_ai.xlsx"], None, []))
    failed = store.update(store.update(task(4).id, lambda t: T.start(t, 1.0)).id,
                          lambda t: T.fail(t, 2.0, "X", "失败"))
    keep = [f"{running.id}_half.xlsx", f"{pending.id}_old.xlsx", f"{done.id}_Cohort_ai.xlsx",
            "notes.txt"]
    gone = [f"{failed.id}_half.xlsx", f"{done.id}_extra.xlsx",
            f"{T.new_task_id()}_unknown.xlsx"]
    for name in keep + gone:
        (results / name).write_bytes(b"x")
    stale, fresh = results / ".staging-a", results / ".staging-b"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (time.time() - 4000, time.time() - 4000))
    try:
        assert tidy_worker_results(results, store, stale_after_s=3600, now=time.time()) == 4
    finally:
        store.close()
    assert sorted(p.name for p in results.iterdir()) == sorted(keep + [".staging-b"])
