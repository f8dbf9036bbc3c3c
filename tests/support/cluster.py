"""The distributed mode as operators run it, on this machine: a real
``redis-server`` (Debian's package, ``make system-deps``), the suite's private
PostgreSQL, API instances (``python async_api_server.py``) and worker
commands (``python -m destination_predictor.worker``), all sharing one data dir.

Every process is started in its own session and stopped by its pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

from support.live_server import (
    LiveServer,
    free_port,
    not_installed,
    wait_until_listening,
)
from support.paths import MODELS_DIR, PLANS_DIR, REPO


def need_redis() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)
    if found is None:
        not_installed("needs Debian's redis-server (apt-get install -y redis-server, "
                      "or make system-deps)")
    return found


class RedisServer:
    """One redis-server on a fixed port; ``stop()`` and ``start()`` again keep
    the port (a restarted Redis, empty: nothing is saved to disk)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        wait_until_listening(self.proc, self.port, self.root / "redis.log", "redis-server", 20)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


def cluster_env(redis_url: str, tasks_db_url: str, extra: dict[str, str] | None = None
                ) -> dict[str, str]:
    return {"PREDICT_QUEUE_URL": redis_url, "PREDICT_TASKS_DB_URL": tasks_db_url,
            "PREDICT_EXECUTION": "thread", "PREDICT_CLEAN_INTERVAL_S": "3600",
            **(extra or {})}


def api_instance(data_dir: Path, env: dict[str, str], log_dir: Path, *,
                 gunicorn_workers: int = 0) -> LiveServer:
    """``python async_api_server.py``, or gunicorn with ``gunicorn_workers`` processes."""
    if gunicorn_workers:
        env = {**env, "PREDICT_HTTP_WORKERS": str(gunicorn_workers)}
    return LiveServer(data_dir, model_dir=MODELS_DIR, plans_dir=PLANS_DIR, env=env,
                      script=not gunicorn_workers, log_dir=log_dir)


class WorkerCommand:
    """``python -m destination_predictor.worker --workers N`` in its own session."""

    def __init__(self, data_dir: Path, env: dict[str, str], log_dir: Path, workers: int = 1,
                 name: str = "worker") -> None:
        self.data_dir = data_dir
        self.env = env
        self.log_dir = log_dir
        self.workers = workers
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> WorkerCommand:
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
        env.update({"PREDICT_DATA_DIR": str(self.data_dir), "PREDICT_MODEL_DIR": str(MODELS_DIR),
                    "PREDICT_PLANS_DIR": str(PLANS_DIR), **self.env})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "destination_predictor.worker", "--workers",
                 str(self.workers)], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[int]:
        """Live processes whose ancestry leads to this command (the RQ workers, horses)."""
        assert self.proc is not None
        found: list[int] = []
        parents = {self.proc.pid}
        changed = True
        table = _process_table()
        while changed:
            changed = False
            for pid, ppid in table.items():
                if ppid in parents and pid not in parents:
                    parents.add(pid)
                    found.append(pid)
                    changed = True
        return found

    def kill9(self) -> list[int]:
        """``kill -9`` of this command's process only; returns the pids that were
        below it (they must die with it)."""
        assert self.proc is not None
        below = self.descendants()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return below

    def stop(self) -> None:
        """Whole session: SIGTERM, then SIGKILL (a test's own processes only)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every live process (from /proc)."""
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        table[int(entry)] = int(fields[1])
    return table


def alive(pid: int) -> bool:
    return pid in _process_table()


def describe(pid: int) -> str:
    """A process as ``pid: command line`` (for failure messages)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmd = "?"
    return f"{pid}: {cmd.strip()}"


def rq_workers(redis_url: str) -> list[dict[str, Any]]:
    """RQ's own view of the workers (what ``rq info`` shows)."""
    from rq import Worker

    conn = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return [{"name": w.name, "pid": w.pid, "state": str(w.get_state()),
                 "job": w.get_current_job_id()} for w in Worker.all(connection=conn)]
    finally:
        conn.close()


def upload(base: str, path: Path, *, priority: str = "normal", year: int = 2023,
           timeout: float = 30) -> requests.Response:
    with path.open("rb") as fh:
        return requests.post(f"{base}/api/task/start", data={"year": str(year),
                                                              "priority": priority},
                             files={"file": (path.name, fh)}, timeout=timeout)


def status(base: str, task_id: str) -> dict[str, Any]:
    resp = requests.get(f"{base}/api/task/status/{task_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def wait_status(base: str, task_id: str, until: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = status(base, task_id)
        if until(data):
            return data
        assert time.monotonic() < deadline, f"task {task_id} stuck at {data}"
        time.sleep(0.2)


def start_worker_for(config: Any, log_dir: Path) -> WorkerCommand:
    """A worker command with an app config's ``PREDICT_*`` settings, waited for
    until RQ lists it (or until it refused its settings with exit code 2)."""
    env = {k: str(v) for k, v in config.items() if k.startswith("PREDICT_")}
    worker = WorkerCommand(Path(env["PREDICT_DATA_DIR"]), env, log_dir).start()
    deadline = time.monotonic() + 90
    try:
        while not rq_workers(env["PREDICT_QUEUE_URL"]):
            assert worker.proc is not None
            if worker.proc.poll() is not None:  # refused its settings (no model, say)
                assert worker.proc.returncode == 2, worker.output()
                break
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)
    except BaseException:
        worker.stop()  # nobody else knows about it yet
        raise
    return worker

