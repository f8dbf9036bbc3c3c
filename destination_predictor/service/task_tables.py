"""The task records' tables, behind one SQLAlchemy URL (SQLite or PostgreSQL).

Why SQLAlchemy Core: the same statements serve the embedded service's SQLite
file (``tasks.sqlite3`` in the data dir, the layout every earlier version
wrote, so old files keep loading) and the distributed mode's PostgreSQL,
where several API instances and workers share the records (issue 12).

Tables:

- ``tasks``: one row per task; ``record`` is the task's JSON (``Task.to_record``),
  the other columns are what queries select on;
- ``meta``: small key/value facts (the write probe after a failed write);
- ``task_endings``: the outbox of task endings in the shared mode. The
  transition that ends a task inserts a row in the same transaction; a process
  with ``on_finished`` listeners (an API instance) claims the row, tells its
  listeners and deletes it, so an ending made in a worker process is heard
  once, by one instance, and none is lost when a process dies in between.

Task creation order (``seq``): the embedded store counts in memory; PostgreSQL
takes it from the ``tasks_seq`` sequence, so every instance draws from one.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Sequence,
    Table,
    Text,
)
from sqlalchemy.engine import URL, make_url

from .sqldb import open_engine

metadata = MetaData()

tasks = Table(
    "tasks", metadata,
    Column("id", Text, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("cache_key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("record", Text, nullable=False),
    Index("tasks_cache_key", "cache_key"),
)

meta = Table(
    "meta", metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

task_endings = Table(
    "task_endings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Text, nullable=False),
    Column("ended_at", Float, nullable=False),
)

# Only PostgreSQL creates it (SQLite has no sequences; create_all skips it there).
task_seq = Sequence("tasks_seq", metadata=metadata, start=1)


class UnsupportedTasksDb(ValueError):
    """``PREDICT_TASKS_DB_URL`` names a database the task store cannot use."""


def resolve_tasks_url(url: str) -> URL:
    """``postgresql://`` (or ``postgres://``) is driven by psycopg 3 (the
    importer's driver too); ``sqlite:///file``; anything else is refused."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise UnsupportedTasksDb("PREDICT_TASKS_DB_URL: a SQLite URL must name a file")
        return parsed
    raise UnsupportedTasksDb(
        f"PREDICT_TASKS_DB_URL: unsupported database {backend!r} (postgresql:// or sqlite:///)")


def open_tasks_db(url: str | URL) -> Engine:
    """The engine, tables created if missing. A SQLite file is created with
    mode 0600 (every task's file name, summary and warnings are in it) and
    used in WAL mode from several threads; PostgreSQL connections are checked
    before use, so a restarted database server costs one failed request at most."""
    parsed = url if isinstance(url, URL) else resolve_tasks_url(url)
    engine = open_engine(parsed)
    metadata.create_all(engine)
    return engine
