"""Batches with two API instances on one PostgreSQL (the distributed mode, the
batch records defaulting to the task records' database; Redis and no worker
commands: the tasks wait, and end by being cancelled). In-process apps, so the
test can hold a batch's creation at a chosen file.

- An instance starting while another is still storing a batch's files does
  not seal (and so report) that batch early: the creator holds the batch's
  lock, a PostgreSQL advisory lock.
- A batch left unsealed by a creator that died (its lock gone with its
  connection) is sealed and reported when next looked at.
- Two instances checking the same ended batch at once report it once: the
  check holds the batch's row lock until ``reported_at`` is written.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa
from flask import Flask
from support.cluster import RedisServer
from support.paths import MODELS_DIR, PLANS_DIR
from support.pg import PgServer, next_database_name
from support.service import YEAR, tiny_xlsx

from destination_predictor.service.batches import BatchFile
from destination_predictor.service.errors import ServiceError
from destination_predictor.service.jobs_db import batch_tasks, batches

pytestmark = pytest.mark.slow


def refused(name: str) -> BatchFile:
    """A file refused before reading (a broken zip): its task fails at once."""
    def never() -> Any:
        raise AssertionError("a refused file is never opened")
    return BatchFile(name, never, YEAR, ServiceError("BAD_FILE_CONTENT", "压缩包已损坏"))


def held_file(name: str, entered: threading.Event, release: threading.Event) -> BatchFile:
    """A file whose bytes arrive when the test says so."""
    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        entered.set()
        assert release.wait(30)
        yield io.BytesIO(tiny_xlsx())
    return BatchFile(name, opener, YEAR)


def wait_for(what: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return found


def test_batches_across_two_instances(pg: PgServer, redis_server: RedisServer, tmp_path: Path,
                                      make_app: Any) -> None:
    redis_server.client().flushdb()
    db = pg.create_database(next_database_name("batches"))
    config = {"TESTING": True, "PREDICT_MODEL_DIR": MODELS_DIR, "PREDICT_PLANS_DIR": PLANS_DIR,
              "PREDICT_EXECUTION": "thread", "PREDICT_CLEAN_INTERVAL_S": 3600,
              "PREDICT_API_TOKEN": "", "PREDICT_QUEUE_URL": redis_server.url,
              "PREDICT_TASKS_DB_URL": db}
    a: Flask = make_app(config={**config, "PREDICT_DATA_DIR": tmp_path / "a"})
    reports: list[tuple[str, dict[str, Any]]] = []
    a.extensions["batches"].on_batch_finished(lambda r: reports.append(("a", r)))
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))

    def rows() -> dict[str, Any]:
        with engine.connect() as conn:
            return {r.id: r for r in conn.execute(sa.select(batches))}

    try:
        # 1. B starts while A stores the second file of a batch whose first file failed.
        entered, release = threading.Event(), threading.Event()
        made: dict[str, Any] = {}
        creating = threading.Thread(target=lambda: made.update(zip(("id", "tasks"), a.extensions[
            "batches"].create([refused("坏.zip"), held_file("b.xlsx", entered, release)],
                              major=None, config={}, priority="normal"), strict=True)))
        creating.start()
        assert entered.wait(10)
        b: Flask = make_app(config={**config, "PREDICT_DATA_DIR": tmp_path / "b"})
        b.extensions["batches"].on_batch_finished(lambda r: reports.append(("b", r)))
        [row] = rows().values()
        assert not row.sealed and row.reported_at is None and reports == []
        assert b.test_client().get(f"/api/batch/status/{row.id}").get_json()["data"][
            "state"] == "running"
        release.set()
        creating.join(10)
        assert made["id"] == row.id and rows()[row.id].sealed
        time.sleep(1.5)  # both drains ran: the waiting task keeps the batch open
        assert reports == []
        assert b.test_client().post(f"/api/task/{made['tasks'][1]}/cancel").status_code == 200
        wait_for(lambda: reports)
        time.sleep(1.5)  # a second report would come from the other drain by now
        [(_, report)] = reports
        assert report["batch_id"] == row.id and report["state"] == "failed"
        assert [t["status"] for t in report["tasks"]][0] == "failed" and len(report["tasks"]) == 2

        # 2. Left unsealed by a creator that died (no lock held): sealed when looked at.
        reports.clear()
        dead = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(sa.insert(batches).values(
                id=dead, created_at=time.time(), year=YEAR, config="{}", priority="normal",
                file_count=2, sealed=False, cancel_requested=False))
            conn.execute(sa.insert(batch_tasks).values(
                batch_id=dead, position=0, task_id=made["tasks"][0], file_name="坏.zip"))
        state = b.test_client().get(f"/api/batch/status/{dead}").get_json()["data"]["state"]
        assert state == "failed" and rows()[dead].sealed
        assert [(who, r["batch_id"]) for who, r in reports] == [("b", dead)]

        # 3. Both instances check one ended batch at once: one report.
        reports.clear()
        with engine.begin() as conn:
            conn.execute(sa.update(batches).where(batches.c.id == dead).values(reported_at=None))
        slow = threading.Event()

        def slow_listener(report: dict[str, Any]) -> None:
            slow.set()
            time.sleep(1.0)  # the other instance's check arrives meanwhile
        a.extensions["batches"].on_batch_finished(slow_listener)
        b.extensions["batches"].on_batch_finished(slow_listener)
        checks = [threading.Thread(target=app.extensions["batches"]._check, args=(dead,))
                  for app in (a, b)]
        checks[0].start()
        assert slow.wait(10)
        checks[1].start()
        for t in checks:
            t.join(10)
        assert [r["batch_id"] for _, r in reports] == [dead]
    finally:
        engine.dispose()
