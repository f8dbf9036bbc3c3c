"""``destination_predictor.service.store``: durable task records (SQLite)
with an in-memory index, and one service per data dir."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from support.service import data_dir

from destination_predictor.service import task as T
from destination_predictor.service.store import DataDirInUse, TaskNotFound, TaskStore


def new_task(seq: int, **kw: object) -> T.Task:
    return T.Task(id=T.new_task_id(), seq=seq, year=2024, file_name="a.xlsx",  # type: ignore[arg-type]
                  upload_name="x", file_sha256="0", cache_key="k", created_at=0.0, **kw)


def test_one_service_per_data_dir(app: Flask) -> None:
    with pytest.raises(DataDirInUse):
        TaskStore(data_dir(app) / "tasks.sqlite3", lock_wait_s=0)


def test_records_survive_a_restart_in_order(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    store = TaskStore(db, lock_wait_s=0)
    a = new_task(store.next_seq())
    b = new_task(store.next_seq())
    store.add(a)
    store.add(b)
    running = store.update(a.id, lambda t: T.start(t, 1.0))
    cancelled = store.update(b.id, lambda t: T.cancel(t, 2.0))
    with pytest.raises(ValueError):
        store.add(a)  # a duplicate id
    with pytest.raises(TaskNotFound):
        store.update(T.new_task_id(), lambda t: t)
    store.close()  # also releases the data dir

    again = TaskStore(db, lock_wait_s=0)
    try:
        assert again.all() == [running, cancelled]
        assert again.active() == [running]
        assert again.next_seq() == 3  # creation order goes on after a restart
        assert again.newest((T.CANCELLED,)) == [cancelled]
    finally:
        again.close()


def test_an_old_cancelled_record_on_disk_loads_as_cancelled(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    store = TaskStore(db, lock_wait_s=0)
    store.close()
    old = T.fail(new_task(1), 1.0, "CANCELLED", "任务已取消").to_record()
    old["cancelled"] = True  # how a cancel was written before CANCELLED was a state
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO tasks (id, seq, status, cache_key, created_at, record) "
                     "VALUES (?, 1, 'failed', 'k', 0, ?)", (old["id"], json.dumps(old)))
    conn.close()
    store = TaskStore(db, lock_wait_s=0)
    try:
        loaded = store.get(old["id"])
        assert loaded is not None and loaded.status is T.CANCELLED
        assert store.newest(T.TaskState.from_wire("failed")) == [loaded]
    finally:
        store.close()


def test_listeners_hear_each_ending_once_and_a_failing_one_is_contained(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks.sqlite3", lock_wait_s=0)
    heard: list[tuple[str, str]] = []

    def broken(task: T.Task) -> None:
        raise RuntimeError("listener bug")

    store.on_finished(broken)
    store.on_finished(lambda t: heard.append((t.id, t.status.value)))
    a, b = new_task(store.next_seq()), new_task(store.next_seq())
    store.add(a)
    store.add(b)
    store.update(a.id, lambda t: T.start(t, 1.0))
    store.update(a.id, lambda t: T.report_progress(t, 50, "x"))
    assert heard == []  # not finished yet
    store.update(a.id, lambda t: T.fail(t, 2.0, "X", "坏"))
    store.update(b.id, lambda t: T.cancel(t, 3.0))
    store.update(a.id, lambda t: t)  # no change: not heard again
    assert heard == [(a.id, "failed"), (b.id, "cancelled")]
    store.close()
