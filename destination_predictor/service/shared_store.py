"""Task records shared by several processes and machines: PostgreSQL, read for
every answer (``PREDICT_TASKS_DB_URL``, the distributed mode of issue 12).

Why no in-memory index here: another API instance or a worker process may have
changed any record a moment ago, so the database is the one truth. Each
transition is one transaction that locks the task's row (``SELECT ... FOR
UPDATE``), applies the change and writes it, so two processes never
interleave their read-change-write of one task (progress never goes back, a
cancel is never overwritten by a late progress report). Creation order comes
from the ``tasks_seq`` sequence, so every instance draws from one counter.

Endings: the transition that ends a task inserts a ``task_endings`` row in
its own transaction. A process with ``on_finished`` listeners (an API
instance; a worker has none) claims rows with ``FOR UPDATE SKIP LOCKED``, calls
its listeners and deletes the rows in that transaction: an ending made in a
worker process is heard once, by one instance; one whose drain was cut short
by a crash is claimed again by the next drain (listeners are told at least
once, exactly once when nothing dies in between). The drain runs right after
a local ending and every ``drain_interval_s`` for the others.

Exclusive use (``exclusive=True``): the embedded executor (one pool per
service) on a PostgreSQL store must be the only service on it, like the data
dir's ``flock`` of the SQLite store. A session-level advisory lock, held on
its own connection, says so; the server drops it when the holder's
connection dies, even by ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text
from sqlalchemy.engine import Engine

from .errors import ServiceError
from .store import DB_ERRORS, BaseTaskStore, DataDirInUse, StoreUnwritable, TaskNotFound
from .store import record_row as _row
from .task import ACTIVE, COMPLETED, Task, TaskState
from .task_tables import open_tasks_db, task_endings, task_seq, tasks

log = logging.getLogger(__name__)

# The advisory lock key of an exclusively used store (any constant shared by
# every process that may open it; "predtask" in ASCII).
_EXCLUSIVE_LOCK_KEY = 0x7072656474736B
_DRAIN_BATCH = 100
# How long an exclusive store waits for the lock: on a graceful reload gunicorn
# starts the new worker before the old one has stopped (as ``store._ProcessLock``).
LOCK_WAIT_S = 60.0


class StoreUnavailable(ServiceError):
    """The shared task database cannot be reached right now: nothing was changed."""

    def __init__(self, detail: str) -> None:
        super().__init__("STORE_UNAVAILABLE", "任务记录数据库暂时无法访问，请稍后再试",
                         {"Retry-After": "10"})
        self.detail = detail


class SharedTaskStore(BaseTaskStore):
    """The same methods as ``store.TaskStore``, every one a database round trip."""

    def __init__(self, url: str, *, exclusive: bool = False, lock_wait_s: float | None = None,
                 drain_interval_s: float = 1.0) -> None:
        super().__init__()
        self._engine: Engine = open_tasks_db(url)
        if self._engine.dialect.name != "postgresql":
            self._engine.dispose()
            raise ValueError("the shared task store needs PostgreSQL")
        self._lock_conn: Connection | None = None
        if exclusive:
            self._lock_conn = _take_exclusive(
                self._engine, LOCK_WAIT_S if lock_wait_s is None else lock_wait_s)
        self._drain_interval_s = drain_interval_s
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None
        self._drain_lock = threading.Lock()

    # --- life ---------------------------------------------------------------

    def start(self) -> None:
        """Drain endings made by other processes, once listeners are wired."""
        if self._on_finished and self._drainer is None:
            self.drain_endings()
            self._drainer = threading.Thread(target=self._drain_loop, name="task-endings",
                                             daemon=True)
            self._drainer.start()

    def close(self) -> None:
        self._stop.set()
        if self._drainer is not None:
            self._drainer.join(timeout=10)
        self.release_data_dir()
        self._engine.dispose()

    def after_fork(self) -> None:
        """In a child forked from this process (an RQ work horse): open new
        connections, never use the parent's sockets."""
        self._engine.dispose(close=False)

    def release_data_dir(self) -> None:
        """Let another service take the store (the advisory lock) now."""
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            except DB_ERRORS:
                log.warning("event=store.unlock_failed")
            self._lock_conn = None

    @contextlib.contextmanager
    def alone(self, job: str) -> Iterator[bool]:
        """True while this process holds ``job``'s advisory lock (not waited
        for: False when another instance holds it, or the database is down)."""
        key = zlib.crc32(f"predict:{job}".encode())
        try:
            conn = self._engine.connect()
        except DB_ERRORS:
            yield False
            return
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        finally:
            conn.close()

    # --- writes -------------------------------------------------------------

    def next_seq(self) -> int:
        with self._reading():
            with self._engine.connect() as conn:
                return int(conn.execute(select(task_seq.next_value())).scalar_one())

    def add(self, task: Task) -> None:
        def insert_row(conn: Connection) -> None:
            if conn.execute(select(tasks.c.id).where(tasks.c.id == task.id)).first():
                raise ValueError(f"duplicate task id {task.id}")
            conn.execute(insert(tasks).values(**_row(task)))
        self._transaction(insert_row)

    def update(self, task_id: str, change: Callable[[Task], Task]) -> Task:
        """Apply one transition in one transaction that holds the row's lock."""
        result: dict[str, Task] = {}

        def transition(conn: Connection) -> None:
            record = conn.execute(select(tasks.c.record).where(tasks.c.id == task_id)
                                  .with_for_update()).scalar_one_or_none()
            if record is None:
                raise TaskNotFound(task_id)
            old = Task.from_record(json.loads(record))
            new = change(old)
            result["old"], result["new"] = old, new
            if new is old:
                return
            row = _row(new)
            conn.execute(tasks.update().where(tasks.c.id == task_id)
                         .values(status=row["status"], record=row["record"]))
            if old.status in ACTIVE and new.status not in ACTIVE:
                conn.execute(insert(task_endings).values(task_id=task_id, ended_at=time.time()))

        self._transaction(transition)
        old, new = result["old"], result["new"]
        if new is not old and old.status in ACTIVE and new.status not in ACTIVE:
            self.drain_endings()
        return new

    def delete(self, task_id: str) -> None:
        self._transaction(lambda conn: conn.execute(delete(tasks).where(tasks.c.id == task_id)))

    def _transaction(self, work: Callable[[Connection], Any]) -> None:
        try:
            with self._engine.begin() as conn:
                work(conn)
        except DB_ERRORS as exc:
            self.write_error = str(exc)
            raise StoreUnwritable(str(exc)) from exc
        self.write_error = None

    # --- reads --------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        rows = self._select(select(tasks.c.record).where(tasks.c.id == task_id))
        return rows[0] if rows else None

    def all(self) -> list[Task]:
        """Oldest first."""
        return self._select(select(tasks.c.record).order_by(tasks.c.seq))

    def newest(self, states: tuple[TaskState, ...] | None = None, limit: int = 50) -> list[Task]:
        query = select(tasks.c.record).order_by(tasks.c.seq.desc()).limit(limit)
        if states is not None:
            query = query.where(tasks.c.status.in_([s.value for s in states]))
        return self._select(query)

    def counts(self) -> dict[TaskState, int]:
        with self._reading():
            with self._engine.connect() as conn:
                rows = conn.execute(select(tasks.c.status, func.count())
                                    .group_by(tasks.c.status)).all()
        return {TaskState(status): int(n) for status, n in rows}

    def active(self) -> list[Task]:
        return self._select(select(tasks.c.record)
                            .where(tasks.c.status.in_([s.value for s in ACTIVE]))
                            .order_by(tasks.c.seq))

    def completed_with_key(self, cache_key: str) -> list[Task]:
        """Candidates for the result cache, newest first."""
        found = self._select(select(tasks.c.record)
                             .where(tasks.c.cache_key == cache_key,
                                    tasks.c.status == COMPLETED.value)
                             .order_by(tasks.c.seq.desc()))
        return [t for t in found if not t.expired]

    def _select(self, query: Any) -> list[Task]:
        with self._reading():
            with self._engine.connect() as conn:
                return [Task.from_record(json.loads(r)) for (r,) in conn.execute(query)]

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Turns a database that cannot be reached into ``StoreUnavailable`` (503)."""
        try:
            yield
        except DB_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    # --- endings ------------------------------------------------------------

    def drain_endings(self) -> int:
        """Tell this process's listeners about endings not yet heard (made here
        or in any other process); how many were told. Nothing without listeners."""
        if not self._on_finished:
            return 0
        told = 0
        with self._drain_lock:
            while True:
                with self._engine.begin() as conn:
                    claimed = conn.execute(
                        select(task_endings.c.id, task_endings.c.task_id)
                        .order_by(task_endings.c.id).limit(_DRAIN_BATCH)
                        .with_for_update(skip_locked=True)).all()
                    for row_id, task_id in claimed:
                        record = conn.execute(select(tasks.c.record)
                                              .where(tasks.c.id == task_id)).scalar_one_or_none()
                        if record is not None:
                            self._finished(Task.from_record(json.loads(record)))
                            told += 1
                        conn.execute(delete(task_endings).where(task_endings.c.id == row_id))
                if len(claimed) < _DRAIN_BATCH:
                    return told

    def _drain_loop(self) -> None:
        while not self._stop.wait(self._drain_interval_s):
            try:
                self.drain_endings()
            except DB_ERRORS as exc:
                log.warning("event=store.drain_failed error=%s", type(exc).__name__)


def _take_exclusive(engine: Engine, wait_s: float) -> Connection:
    conn = engine.connect()
    deadline = time.monotonic() + wait_s
    while True:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                           {"key": _EXCLUSIVE_LOCK_KEY}).scalar_one()
        conn.commit()
        if got:
            return conn
        if time.monotonic() >= deadline:
            holder = conn.execute(text(
                "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.objid = (:key & 4294967295) AND l.classid = (:key >> 32) LIMIT 1"),
                {"key": _EXCLUSIVE_LOCK_KEY}).scalar_one_or_none()
            conn.close()
            raise DataDirInUse(
                f"the task database is in use by another service (server pid {holder}); "
                "run one embedded service per task database, or set PREDICT_QUEUE_URL "
                "for the distributed mode")
        time.sleep(0.2)
