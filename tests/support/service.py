"""Helpers for the service tests through Flask's test client: grade
workbooks, starting and polling tasks, the error envelope, and a controllable
fake job runner (queue, priority, cancel and time-limit tests must not depend
on how fast the engine is)."""

from __future__ import annotations

import io
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
from flask import Flask
from flask.testing import FlaskClient

from destination_predictor.engine.errors import PredictionCancelled
from destination_predictor.service.runner import JobOutcome, JobSpec, TaskTimedOut
from support.paths import PLANS_DIR

YEAR = 2023
FINISHED = ("completed", "failed")
# A well-formed task id that no test ever creates.
UNKNOWN_TASK_ID = "12345678-1234-4234-8234-123456789abc"


# --- workbooks ---------------------------------------------------------------

def grade_workbook(path: Path, n_students: int = 40, seed: int = 1, year: int = YEAR,
                   fmt: str = "xlsx") -> Path:
    """A generated grade workbook for the plans the service tests use."""
    from destination_predictor.demo.grades import make_grade_workbook

    return make_grade_workbook(path, year, n_students, plans_dir=PLANS_DIR, seed=seed, fmt=fmt)


def tiny_xlsx(tag: str | None = None) -> bytes:
    """A valid workbook without grade columns; unique bytes unless ``tag`` is
    given, so that tests of the queue are not merged by the result cache."""
    wb = openpyxl.Workbook()
    wb.active.append(["SNH", "Grade"])
    wb.active.append([tag or uuid.uuid4().hex, 0])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


# --- talking to the app ------------------------------------------------------

def start(client: FlaskClient, content: bytes, name: str = "grades.xlsx", headers: Any = None,
          **form: Any) -> Any:
    """``POST /api/task/start`` with ``content`` as the file and ``year`` = YEAR unless given."""
    data = {"year": str(YEAR), **form, "file": (io.BytesIO(content), name)}
    return client.post("/api/task/start", data=data, headers=headers or {},
                       content_type="multipart/form-data")


def wait_for(client: FlaskClient, task_id: str, until: Callable[[dict[str, Any]], bool],
             timeout: float = 60.0, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll the task's status until ``until(data)``; every answer is appended to ``seen``."""
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
    """The failure envelope: status, code, a Chinese message, no stack trace."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = resp.json
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["error"]), body["error"]
    assert "Traceback" not in resp.get_data(as_text=True)


def listing(directory: Path) -> list[str]:
    """Visible file names in ``directory`` (each task's upload, each result); the
    stored contents behind the uploads (``uploads/.content``) are ``contents()``."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def contents(app: Flask) -> list[str]:
    """The distinct upload contents the service keeps (``uploads/.content``)."""
    return listing_all(data_dir(app) / "uploads" / ".content")


def listing_all(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def data_dir(app: Flask) -> Path:
    return app.extensions["predict"].settings.data_dir


# --- a job runner the test controls ---------------------------------------------

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
