"""Faults that must not stop the service silently: a pool thread that dies, a
task store that cannot be written, a full disk. Each is noticed (``/health``
503 with the reason), refused where it matters (``DISK_FULL``), and recovered
from without a restart."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from support.live_server import LiveServer
from support.paths import MODELS_DIR, PLANS_DIR
from support.service import FakeRunner, grade_workbook, start, tiny_xlsx, wait_for
from support.tasks_db import sqlite_store_only

from destination_predictor.service.executor import WATCH_INTERVAL_S
from destination_predictor.service.runner import JobOutcome, JobSpec


def eventually(check: Callable[[], bool], timeout: float = 10 * WATCH_INTERVAL_S) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def done(data: dict[str, Any]) -> bool:
    return data["status"] in ("completed", "failed")


class PanicException(BaseException):
    """Stands for pyo3's PanicException: a BaseException, not an Exception."""


class ScriptedRunner(FakeRunner):
    """FakeRunner whose next jobs raise the given exceptions, in order."""

    def __init__(self) -> None:
        super().__init__(hold=False)
        self.raises: list[BaseException] = []

    def run(self, spec: JobSpec, progress: Any, cancel: Any, deadline: float) -> JobOutcome:
        if self.raises:
            raise self.raises.pop(0)
        return super().run(spec, progress, cancel, deadline)


@pytest.fixture
def scripted(app_config: dict[str, Any], make_app: Any) -> Iterator[tuple[Flask, ScriptedRunner]]:
    runner = ScriptedRunner()
    app_config.update(PREDICT_MAX_WORKERS=1)
    yield make_app(runner=runner), runner


def test_a_panic_in_a_job_fails_that_task_and_the_pool_goes_on(
        scripted: tuple[Flask, ScriptedRunner]) -> None:
    app, runner = scripted
    client = app.test_client()
    runner.raises.append(PanicException("reader panicked"))
    first = wait_for(client, start(client, tiny_xlsx("a")).json["data"]["task_id"], done)
    assert (first["status"], first["error_code"]) == ("failed", "INTERNAL_ERROR")
    second = wait_for(client, start(client, tiny_xlsx("b")).json["data"]["task_id"], done)
    assert second["status"] == "completed"
    assert client.get("/health").status_code == 200


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_pool_thread_is_noticed_restarted_and_its_task_failed(
        scripted: tuple[Flask, ScriptedRunner]) -> None:
    app, runner = scripted
    client = app.test_client()
    executor = app.extensions["predict"].executor
    runner.raises.append(SystemExit(3))  # ends the thread that runs the job
    lost = start(client, tiny_xlsx("a")).json["data"]["task_id"]
    eventually(lambda: executor.worker_restarts == 1)
    data = wait_for(client, lost, done)
    assert (data["status"], data["error_code"]) == ("failed", "INTERNAL_ERROR")
    after = wait_for(client, start(client, tiny_xlsx("b")).json["data"]["task_id"], done)
    assert after["status"] == "completed"
    assert client.get("/health").get_json()["data"]["worker_restarts"] == 1


def test_dead_worker_makes_health_503(scripted: tuple[Flask, ScriptedRunner]) -> None:
    app, _ = scripted
    executor = app.extensions["predict"].executor
    with executor._cond:  # a thread that ended, as the watchdog would find it
        executor._threads[0] = _ended_thread()
    body = app.test_client().get("/health")
    assert body.status_code == 503 and body.get_json()["code"] == "WORKER_DEAD"
    eventually(lambda: app.test_client().get("/health").status_code == 200)


def _ended_thread() -> Any:
    import threading

    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return t


@sqlite_store_only
def test_unwritable_store_is_503_and_recovers(scripted: tuple[Flask, ScriptedRunner]) -> None:
    """The disk fills while a task runs: its end cannot be written. Health says so,
    new work is refused, and once writes go through again the task's failure is
    recorded and the next task completes."""
    app, runner = scripted
    client = app.test_client()
    store = app.extensions["predict"].store
    broken = {"on": False}
    real_upsert = store._upsert

    def upsert(task: Any) -> None:
        if broken["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        real_upsert(task)

    store._upsert = upsert
    runner.release.clear()
    task_id = start(client, tiny_xlsx("a")).json["data"]["task_id"]
    eventually(lambda: runner.started == [task_id])
    broken["on"] = True
    runner.release.set()
    eventually(lambda: app.extensions["predict"].executor.unrecorded_failures() == 1)
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["code"] == "STORE_UNWRITABLE"
    refused = start(client, tiny_xlsx("b"))
    assert refused.status_code == 503 and refused.json["code"] == "STORE_UNWRITABLE"
    broken["on"] = False
    data = wait_for(client, task_id, done)
    assert (data["status"], data["error_code"]) == ("failed", "STORE_UNWRITABLE")
    eventually(lambda: client.get("/health").status_code == 200)
    assert wait_for(client, start(client, tiny_xlsx("c")).json["data"]["task_id"],
                    done)["status"] == "completed"


def test_low_disk_refuses_uploads_with_disk_full(app_config: dict[str, Any],
                                                 make_app: Any) -> None:
    app_config["PREDICT_MIN_FREE_MB"] = 10 ** 12  # more than any disk has
    client = make_app().test_client()
    refused = start(client, tiny_xlsx())
    assert refused.status_code == 503 and refused.json["code"] == "DISK_FULL"
    assert refused.headers["Retry-After"]
    assert client.get("/health").get_json()["code"] == "DISK_FULL"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs as the data dir (root only: mount)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_full_disk_mid_task_then_freed_real_service(tmpfs: Path, tmp_path: Path) -> None:
    """Real gunicorn with its data dir on a small tmpfs: filled while a task runs,
    the task fails and /health says why (503); freed, the next task runs to completion."""
    grades = grade_workbook(tmp_path / "g.xlsx", 400, seed=3)
    filler = tmpfs / "filler.bin"
    server = LiveServer(tmpfs / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR,
                        log_dir=tmp_path / "logs", env={"PREDICT_MIN_FREE_MB": "4"})
    with server:
        base = server.base

        def submit() -> str:
            with grades.open("rb") as fh:
                r = requests.post(f"{base}/api/task/start", files={"file": ("g.xlsx", fh)},
                                  data={"year": "2023"}, timeout=30)
            assert r.status_code == 200, r.text
            return r.json()["data"]["task_id"]

        def status(task_id: str) -> dict[str, Any]:
            return requests.get(f"{base}/api/task/status/{task_id}", timeout=10).json()["data"]

        first = submit()
        eventually(lambda: status(first)["status"] == "running", timeout=60)
        # Fill the disk to the last byte while the job works.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True,
                       check=False)
        eventually(lambda: requests.get(f"{base}/health", timeout=10).status_code == 503,
                   timeout=60)
        health = requests.get(f"{base}/health", timeout=10).json()
        assert health["code"] in ("DISK_FULL", "STORE_UNWRITABLE"), health
        refused = requests.post(f"{base}/api/task/start", files={"file": ("g.xlsx", b"x")},
                                data={"year": "2023"}, timeout=30)
        assert refused.status_code == 503
        filler.unlink()
        eventually(lambda: requests.get(f"{base}/health", timeout=10).status_code == 200,
                   timeout=60)
        eventually(lambda: status(first)["status"] in ("completed", "failed"), timeout=120)
        second = submit()
        eventually(lambda: status(second)["status"] == "completed", timeout=120)
