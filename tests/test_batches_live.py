"""Batches and schedules in the service as operators run it (gunicorn, jobs in
child processes, the token): a batch larger than the pool's room is refused
whole; a batch of three (one broken) survives a ``kill -9`` of the service in
the middle, ends ``partial`` after the restart and is reported once; a
schedule survives the restart with its next run; schedule routes need the token."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.live_server import LiveServer
from support.paths import REPO
from support.service import YEAR, grade_workbook

TOKEN = "batch-live-token"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    (tmp_path / "exports" / "registrar").mkdir(parents=True)
    srv = LiveServer(tmp_path / "data", model_dir=REPO / "models", plans_dir=REPO / "plans",
                     token=TOKEN, env={"PREDICT_SCHEDULE_ROOT": str(tmp_path / "exports"),
                                       "PREDICT_MAX_WORKERS": "1", "PREDICT_MAX_PENDING": "2"})
    with srv:
        yield srv


def post_batch(server: LiveServer, paths: list[Path]) -> requests.Response:
    handles = [p.open("rb") for p in paths]
    try:
        return requests.post(f"{server.base}/api/batch/start", headers=server.headers(),
                             data={"year": str(YEAR)}, timeout=60,
                             files=[("files", (p.name, fh)) for p, fh in zip(paths, handles,
                                                                              strict=True)])
    finally:
        for fh in handles:
            fh.close()


def kill9(server: LiveServer) -> None:
    """SIGKILL gunicorn's master and worker (the worker's pid needs the token on /health)."""
    assert server.proc is not None
    worker = server.get("/health").json()["data"]["pid"]
    os.kill(server.proc.pid, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    server.proc.wait(10)


def batch_status(server: LiveServer, batch_id: str) -> dict[str, Any]:
    r = server.get(f"/api/batch/status/{batch_id}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_batch_across_a_kill_and_a_schedule_across_a_restart(server: LiveServer,
                                                                  tmp_path: Path) -> None:
    books = [grade_workbook(tmp_path / f"班级{i}.xlsx", 12, seed=10 + i) for i in range(4)]
    broken = tmp_path / "坏文件.xlsx"
    broken.write_bytes(b"\x00 not a workbook")

    # One worker and two places in the queue: four files do not fit, none starts.
    r = post_batch(server, books)
    assert r.status_code == 503 and r.json()["code"] == "QUEUE_FULL", r.text
    assert server.get("/api/tasks").json()["data"]["count"] == 0

    r = requests.post(f"{server.base}/api/schedules", timeout=10,
                      json={"cron": "0 7 * * 1-5", "year": YEAR, "source_dir": "registrar"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = requests.post(f"{server.base}/api/schedules", headers=server.headers(), timeout=10,
                      json={"cron": "0 7 * * 1-5", "year": YEAR, "source_dir": "registrar"})
    assert r.status_code == 200, r.text
    schedule = r.json()["data"]["schedule"]

    r = post_batch(server, [books[0], broken, books[1]])
    assert r.status_code == 200, r.text
    batch_id = r.json()["data"]["batch_id"]
    assert batch_status(server, batch_id)["state"] == "running"
    kill9(server)  # while the batch's tasks run or wait

    server.start()
    end = time.monotonic() + 120
    while (data := batch_status(server, batch_id))["state"] == "running":
        assert time.monotonic() < end, data
        time.sleep(0.2)
    assert data["state"] == "partial", data
    assert data["counts"]["completed"] == 2 and data["counts"]["failed"] == 1
    assert data["tasks"][1]["error_code"] == "BAD_FILE_CONTENT"

    listed = server.get("/api/schedules").json()["data"]["schedules"]
    assert [(s["schedule_id"], s["next_run_at"]) for s in listed] == [
        (schedule["schedule_id"], schedule["next_run_at"])]

    log = server.data_dir / f"async_api_{server.port}.log"
    end = time.monotonic() + 10

    def ends() -> int:
        return sum(1 for line in log.read_text(errors="replace").splitlines()
                   if "event=batch.finished" in line and batch_id in line)

    while ends() == 0:
        assert time.monotonic() < end, "the batch's end was not reported"
        time.sleep(0.1)
    time.sleep(0.5)
    assert ends() == 1
    # The kill did interrupt the batch: its tasks were queued again at the restart.
    assert "event=task.requeued" in log.read_text(errors="replace")
