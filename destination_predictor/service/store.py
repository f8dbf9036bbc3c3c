"""Durable task records: SQLite (WAL) in the data dir plus an in-memory index.

Status requests are answered from memory so they never wait on the disk; every
change is written through to SQLite before it becomes visible, so a ``kill -9``
loses nothing that a client has already been told. One connection guarded by
the store's lock is enough: writes are tiny and already serialised by it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import ServiceError
from .task import ACTIVE, COMPLETED, Task, TaskState

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id         TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    status     TEXT NOT NULL,
    cache_key  TEXT NOT NULL,
    created_at REAL NOT NULL,
    record     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_cache_key ON tasks (cache_key);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreUnwritable(ServiceError):
    """The task store could not be written (disk full, read-only file system).

    The change was not made: neither on disk nor in memory."""

    def __init__(self, detail: str) -> None:
        super().__init__("STORE_UNWRITABLE", "任务记录无法写入（数据目录磁盘已满或不可写），请联系管理员")
        self.detail = detail


class TaskNotFound(KeyError):
    """No task with this id (never created, or deleted after a refused start)."""


class DataDirInUse(RuntimeError):
    """Another live process already serves this data dir."""


class _ProcessLock:
    """An exclusive ``flock`` next to the database.

    Two services on one data dir (e.g. gunicorn started with several worker
    processes) would each run their own pool and re-queue each other's running
    tasks; the second one refuses to start instead. The kernel drops the lock
    when its holder dies, even by ``kill -9``. The lock is waited for a
    while, because on a graceful reload gunicorn starts the new worker before
    the old one has stopped.
    """

    def __init__(self, path: Path, wait_s: float) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip() or "?"
                    os.close(self._fd)
                    self._fd = None
                    raise DataDirInUse(
                        f"data dir {path.parent} is in use by process {holder}; "
                        "run one service (one gunicorn worker) per data dir") from None
                time.sleep(0.2)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TaskStore:
    """All reads and writes of task records go through here."""

    def __init__(self, db_path: Path, *, lock_wait_s: float = 60.0) -> None:
        self._process_lock = _ProcessLock(db_path.with_name(db_path.name + ".lock"), lock_wait_s)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(db_path), check_same_thread=False,
                                     isolation_level=None, timeout=10.0)
        db_path.chmod(0o600)  # every task's file name, summary and warnings
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._tasks: dict[str, Task] = {}
        for (record,) in self._conn.execute("SELECT record FROM tasks ORDER BY seq"):
            task = Task.from_record(json.loads(record))
            self._tasks[task.id] = task
        self._next_seq = max((t.seq for t in self._tasks.values()), default=0) + 1
        self.write_error: str | None = None  # the last failed write, until one succeeds
        # Called once per task when it leaves pending/running (completed, failed,
        # cancelled), after the change is durable and outside the store's lock.
        self._on_finished: list[Callable[[Task], None]] = []

    def on_finished(self, listener: Callable[[Task], None]) -> None:
        """Subscribe to task endings (batches, notifications). Listeners must be
        quick (hand the work to their own thread or table); one that raises is
        logged and does not stop the others or the transition."""
        self._on_finished.append(listener)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._process_lock.release()

    def release_data_dir(self) -> None:
        """Let another service take the data dir even if this store stays open."""
        self._process_lock.release()

    def next_seq(self) -> int:
        """Creation order, kept across restarts so recovered tasks stay first in line."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def add(self, task: Task) -> None:
        with self._lock:
            if task.id in self._tasks:
                raise ValueError(f"duplicate task id {task.id}")
            self._write(task)
            self._tasks[task.id] = task

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def update(self, task_id: str, change: Callable[[Task], Task]) -> Task:
        """Apply one transition atomically (read, change, persist, publish)."""
        with self._lock:
            old = self._tasks.get(task_id)
            if old is None:
                raise TaskNotFound(task_id)
            new = change(old)
            if new is not old:
                self._write(new)
                self._tasks[task_id] = new
        if new is not old and old.status in ACTIVE and new.status not in ACTIVE:
            self._finished(new)
        return new

    def _finished(self, task: Task) -> None:
        for listener in list(self._on_finished):
            try:
                listener(task)
            except Exception:  # noqa: BLE001 - one listener must not break a transition
                log.exception("event=store.listener_failed task_id=%s", task.id)

    def delete(self, task_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
            self._tasks.pop(task_id, None)

    def all(self) -> list[Task]:
        """Oldest first."""
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.seq)

    def newest(self, states: tuple[TaskState, ...] | None = None, limit: int = 50) -> list[Task]:
        """Newest first, only ``states`` when given."""
        with self._lock:
            tasks = [t for t in self._tasks.values() if states is None or t.status in states]
        tasks.sort(key=lambda t: t.seq, reverse=True)
        return tasks[:limit]

    def counts(self) -> dict[TaskState, int]:
        with self._lock:
            out: dict[TaskState, int] = {}
            for t in self._tasks.values():
                out[t.status] = out.get(t.status, 0) + 1
            return out

    def active(self) -> list[Task]:
        with self._lock:
            return sorted((t for t in self._tasks.values() if t.status in ACTIVE),
                          key=lambda t: t.seq)

    def completed_with_key(self, cache_key: str) -> list[Task]:
        """Candidates for the result cache, newest first."""
        with self._lock:
            found = [t for t in self._tasks.values()
                     if t.cache_key == cache_key and t.status == COMPLETED and not t.expired]
        found.sort(key=lambda t: t.seq, reverse=True)
        return found

    def writable(self) -> bool:
        """Whether a write goes through now (tried only after a write failed)."""
        with self._lock:
            if self.write_error is None:
                return True
            try:
                self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                   ("probe", str(time.time())))
            except sqlite3.Error as exc:
                self.write_error = str(exc)
                return False
            self.write_error = None
            return True

    def _write(self, task: Task) -> None:
        try:
            self._upsert(task)
        except sqlite3.Error as exc:
            self.write_error = str(exc)
            raise StoreUnwritable(str(exc)) from exc
        self.write_error = None

    def _upsert(self, task: Task) -> None:
        self._conn.execute(
            "INSERT INTO tasks (id, seq, status, cache_key, created_at, record) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "status = excluded.status, record = excluded.record",
            (task.id, task.seq, task.status.value, task.cache_key, task.created_at,
             json.dumps(task.to_record(), ensure_ascii=False)),
        )
