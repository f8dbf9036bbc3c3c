"""The service as deployed: a real gunicorn process on a free loopback port
with a temporary data dir, jobs in child processes.

- five tasks submitted at once never run more than three at a time, and
  start high priority first, then in arrival order;
- ``kill -9`` of master and worker during a job: no job process is left
  behind, and after a restart the task completes with valid workbooks;
- the token is required when set (server started the second supported way,
  ``python async_api_server.py``), and raw traversal paths are refused.
"""

from __future__ import annotations

import http.client
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests
from support.live_server import LiveServer
from support.paths import MODELS_DIR, PLANS_DIR

pytestmark = pytest.mark.slow

YEAR = 2023


def session_members(sid: int) -> list[int]:
    """Live processes of a session (the server's, started with its own session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


class Server(LiveServer):
    """The service with jobs in child processes, at most three at a time."""

    def __init__(self, data_dir: Path, log_dir: Path, *, token: str = "",
                 script: bool = False) -> None:
        super().__init__(data_dir, model_dir=MODELS_DIR, plans_dir=PLANS_DIR, token=token,
                         script=script, log_dir=log_dir,
                         env={"PREDICT_EXECUTION": "process", "PREDICT_MAX_WORKERS": "3",
                              "PREDICT_MAX_PENDING": "50"})

    def submit(self, path: Path, **form: str) -> str:
        with path.open("rb") as fh:
            r = requests.post(f"{self.base}/api/task/start", headers=self.headers(),
                              data={"year": str(YEAR), **form},
                              files={"file": (path.name, fh)}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["data"]["task_id"]

    def status(self, task_id: str) -> dict[str, Any]:
        r = self.get(f"/api/task/status/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def wait(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            d = self.status(task_id)
            if d["status"] in ("completed", "failed"):
                return d
            assert time.monotonic() < end, d
            time.sleep(0.2)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(**kw: Any) -> Server:
        s = Server(tmp_path / "data", tmp_path, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def workbook(tmp_path: Path, name: str, students: int, seed: int) -> Path:
    from destination_predictor.demo.grades import make_grade_workbook

    return make_grade_workbook(tmp_path / name, YEAR, students, plans_dir=PLANS_DIR, seed=seed)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_five_tasks_run_three_at_a_time_in_priority_order(server_factory: Any,
                                                          tmp_path: Path) -> None:
    server = server_factory()
    server.start()
    books = [workbook(tmp_path, f"g{i}.xlsx", 60, seed=100 + i) for i in range(5)]
    priorities = ["normal", "normal", "normal", "normal", "high"]
    ids = [server.submit(b, priority=p) for b, p in zip(books, priorities, strict=True)]

    max_running = 0
    end = time.monotonic() + 150
    while time.monotonic() < end:
        health = server.get("/health").json()["data"]
        listed = server.get("/api/tasks", params={"status": "running"}).json()["data"]["tasks"]
        max_running = max(max_running, health["running"], len(listed))
        assert health["running"] <= 3 and len(listed) <= 3
        if health["tasks"]["completed"] + health["tasks"]["failed"] == 5:
            break
        time.sleep(0.05)
    assert max_running == 3

    done = [server.status(t) for t in ids]
    assert all(d["status"] == "completed" for d in done), done
    spans = [(ts(d["started_at"]), ts(d["finished_at"])) for d in done]
    for start, _ in spans:  # at no start more than three runs overlapped
        assert sum(1 for s, f in spans if s <= start < f) <= 3
    starts = [s for s, _ in spans]
    # The first three started at once; then the high one, then the last normal one.
    assert max(starts[:3]) < starts[4] < starts[3]


def test_kill9_during_a_job_then_restart_completes_it(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    server.start()
    book = workbook(tmp_path, "big.xlsx", 800, seed=5)
    task_id = server.submit(book)
    end = time.monotonic() + 60
    while True:
        d = server.status(task_id)
        if d["status"] == "running" and d["progress"] >= 2:
            break
        assert d["status"] in ("pending", "running") and time.monotonic() < end, d
        time.sleep(0.05)
    sid = server.kill9()

    # The job's process notices its parent is gone and stops: nothing keeps
    # writing files of a task the restarted service will run again.
    end = time.monotonic() + 15
    while session_members(sid) and time.monotonic() < end:
        time.sleep(0.2)
    assert session_members(sid) == []

    server.start()
    d = server.wait(task_id)
    assert d["status"] == "completed", d
    assert d["summary"]["students"] == 800
    assert d["progress"] == 100
    for name in d["result_files"]:
        r = server.get(f"/api/task/result/{task_id}/{name}")
        assert r.status_code == 200
        wb = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
        assert wb.sheetnames
        wb.close()
    log = (tmp_path / "data" / f"async_api_{server.port}.log").read_text("utf-8")
    assert f"event=task.requeued task_id={task_id} was=running" in log


def test_token_and_traversal_on_the_script_server(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(token="t0ken-for-tests", script=True)
    server.start()
    assert requests.get(f"{server.base}/health", timeout=5).status_code == 200
    r = requests.get(f"{server.base}/api/majors", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = requests.get(f"{server.base}/api/majors", headers={"X-API-Key": "nope"}, timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_TOKEN"
    assert server.get("/api/majors").status_code == 200
    assert (tmp_path / "data" / f"async_api_{server.port}.log").is_file()

    task_id = server.submit(workbook(tmp_path, "g.xlsx", 30, seed=1))
    assert server.wait(task_id)["status"] == "completed"
    raw = [f"/api/task/result/{task_id}/../../tasks.sqlite3",
           f"/api/task/result/{task_id}/..%2F..%2Ftasks.sqlite3",
           f"/api/task/result/{task_id}/%2e%2e%2ftasks.sqlite3",
           "/api/task/status/..%2F..%2Fetc%2Fpasswd",
           f"/api/task/result/{task_id}/..%5Ctasks.sqlite3"]
    for path in raw:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", path, headers=server.headers())
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status in (400, 404), (path, resp.status)
        assert json.loads(body)["success"] is False
        assert b"SQLite" not in body
