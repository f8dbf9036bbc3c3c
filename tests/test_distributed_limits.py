"""Limits of the embedded mode that hold in the distributed one, with a real
redis-server, PostgreSQL and worker command: the time limit (the job's own
deadline, checked at the engine's steps in the worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.cluster import RedisServer, start_worker_for
from support.pg import PgServer, next_database_name
from support.service import grade_workbook, wait_for

pytestmark = pytest.mark.slow


def test_the_time_limit_fails_a_task_run_by_a_worker(
        app_config: dict[str, Any], make_app: Any, pg: PgServer, redis_server: RedisServer,
        tmp_path: Path) -> None:
    redis_server.client().flushdb()
    app_config.update(PREDICT_QUEUE_URL=redis_server.url, PREDICT_TASK_TIMEOUT_S=0.2,
                      PREDICT_TASKS_DB_URL=pg.create_database(next_database_name("limits")))
    client = make_app().test_client()
    worker = start_worker_for(app_config, tmp_path)
    try:
        book = grade_workbook(tmp_path / "成绩 1000.xlsx", 1000, seed=21)
        with book.open("rb") as fh:
            started = client.post("/api/task/start", data={"year": "2023", "file": (fh, book.name)},
                                  content_type="multipart/form-data")
        assert started.status_code in (200, 202), started.json
        data = wait_for(client, started.json["data"]["task_id"],
                        lambda d: d["status"] in ("completed", "failed"), timeout=90)
        assert (data["status"], data["error_code"]) == ("failed", "TIMEOUT"), data
        assert "0.2 秒" in data["error"]
        assert not list((Path(app_config["PREDICT_DATA_DIR"]) / "results").glob(
            f"{data['id']}_*"))
    finally:
        worker.stop()


def test_a_job_removes_only_its_own_heartbeat(redis_server: RedisServer) -> None:
    """Two jobs of one task (a re-dispatch racing a slow dequeue): the one that
    lost the start ends at once and must not delete the winner's heartbeat, or
    the reconciler would take the running task for dead."""
    from destination_predictor.service.dispatch import ALIVE_KEY
    from destination_predictor.worker.jobs import _DELETE_IF_OURS

    conn = redis_server.client()
    key = ALIVE_KEY.format("t1")
    conn.set(key, "111:t1_0", ex=10)
    conn.eval(_DELETE_IF_OURS, 1, key, "222:t1_0")  # the loser's end
    assert conn.get(key) == b"111:t1_0"
    conn.eval(_DELETE_IF_OURS, 1, key, "111:t1_0")  # the winner's end
    assert conn.get(key) is None
