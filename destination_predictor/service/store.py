"""Durable task records of the embedded service: SQLite (WAL) in the data
dir plus an in-memory index.

Status requests are answered from memory so they never wait on the disk; every
change is written through to SQLite before it becomes visible, so a ``kill -9``
loses nothing that a client has already been told. Writes are tiny and
serialised by the store's lock. The statements are SQLAlchemy Core over the
tables of ``task_tables``, the same ones the distributed mode's shared store
(``shared_store``, PostgreSQL, the database read for every answer) uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError

from .errors import ServiceError
from .task import ACTIVE, COMPLETED, Task, TaskState
from .task_tables import meta, open_tasks_db, tasks

log = logging.getLogger(__name__)

# What a failed statement raises: SQLAlchemy wraps the driver's errors; a bare
# sqlite3 error can still come from below it.
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, sqlite3.Error)


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


class BaseTaskStore:
    """What both stores share: the ``on_finished`` listeners and the record of
    the last failed write."""

    _engine: Engine  # set by each store's own __init__

    def __init__(self) -> None:
        self.write_error: str | None = None  # the last failed write, until one succeeds
        # Called once per task when it leaves pending/running (completed, failed,
        # cancelled), after the change is durable and outside the store's lock.
        self._on_finished: list[Callable[[Task], None]] = []

    def on_finished(self, listener: Callable[[Task], None]) -> None:
        """Subscribe to task endings (batches, notifications). Listeners must be
        quick (hand the work to their own thread or table); one that raises is
        logged and does not stop the others or the transition."""
        self._on_finished.append(listener)

    def _finished(self, task: Task) -> None:
        for listener in list(self._on_finished):
            try:
                listener(task)
            except Exception:  # noqa: BLE001 - one listener must not break a transition
                log.exception("event=store.listener_failed task_id=%s", task.id)

    def writable(self) -> bool:
        """Whether a write goes through now (tried only after a write failed)."""
        if self.write_error is None:
            return True
        try:
            with self._engine.begin() as conn:
                probe(conn)
        except DB_ERRORS as exc:
            self.write_error = str(exc)
            return False
        self.write_error = None
        return True

    def start(self) -> None:
        """Start background work once listeners are wired (the shared store's
        drain of endings made elsewhere); nothing for the embedded store."""

    @contextlib.contextmanager
    def alone(self, job: str) -> Iterator[bool]:
        """Whether this process may do ``job`` now with no other doing it (the
        cleaner's sweep): always, for the one service of a data dir."""
        yield True


class TaskStore(BaseTaskStore):
    """All reads and writes of the embedded service's task records go through here."""

    def __init__(self, db_path: Path, *, lock_wait_s: float = 60.0) -> None:
        super().__init__()
        self._process_lock = _ProcessLock(db_path.with_name(db_path.name + ".lock"), lock_wait_s)
        self._lock = threading.RLock()
        try:
            self._engine = open_tasks_db(URL.create("sqlite", database=str(db_path)))
        except BaseException:
            self._process_lock.release()
            raise
        self._tasks: dict[str, Task] = {}
        with self._engine.connect() as conn:
            for (record,) in conn.execute(select(tasks.c.record).order_by(tasks.c.seq)):
                task = Task.from_record(json.loads(record))
                self._tasks[task.id] = task
        self._next_seq = max((t.seq for t in self._tasks.values()), default=0) + 1

    def close(self) -> None:
        with self._lock:
            self._engine.dispose()
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

    def delete(self, task_id: str) -> None:
        with self._lock:
            with self._engine.begin() as conn:
                conn.execute(delete(tasks).where(tasks.c.id == task_id))
            self._tasks.pop(task_id, None)

    def all(self) -> list[Task]:
        """Oldest first."""
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.seq)

    def newest(self, states: tuple[TaskState, ...] | None = None, limit: int = 50) -> list[Task]:
        """Newest first, only ``states`` when given."""
        with self._lock:
            tasks_ = [t for t in self._tasks.values() if states is None or t.status in states]
        tasks_.sort(key=lambda t: t.seq, reverse=True)
        return tasks_[:limit]

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
        with self._lock:
            return super().writable()

    def _write(self, task: Task) -> None:
        try:
            self._upsert(task)
        except DB_ERRORS as exc:
            self.write_error = str(exc)
            raise StoreUnwritable(str(exc)) from exc
        self.write_error = None

    def _upsert(self, task: Task) -> None:
        with self._engine.begin() as conn:
            upsert(conn, task)


def record_row(task: Task) -> dict[str, Any]:
    """The ``tasks`` row of ``task``."""
    return {"id": task.id, "seq": task.seq, "status": task.status.value,
            "cache_key": task.cache_key, "created_at": task.created_at,
            "record": json.dumps(task.to_record(), ensure_ascii=False)}


def upsert(conn: Connection, task: Task) -> None:
    """Insert ``task``'s row, or change its status and record (id, seq, cache
    key and creation time never change)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(tasks).values(**record_row(task))
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[tasks.c.id],
        set_={"status": stmt.excluded.status, "record": stmt.excluded.record}))


def probe(conn: Connection) -> None:
    """A tiny write, to learn whether writes go through again."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(meta).values(key="probe", value=str(time.time()))
    conn.execute(stmt.on_conflict_do_update(index_elements=[meta.c.key],
                                            set_={"value": stmt.excluded.value}))
