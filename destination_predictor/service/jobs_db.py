"""The records of batches and schedules: four tables behind one SQLAlchemy URL.

Why SQLAlchemy Core and not ``sqlite3`` like ``store``: these tables are
meant to move to PostgreSQL with the task records (issue 12) without a
rewrite, and the one rule that keeps a schedule from firing twice -- a run row
keyed by ``(schedule_id, scheduled_for)`` under a unique constraint, inserted
to claim the run -- means the same on both. The default URL is a SQLite file
in the data dir (``jobs.sqlite3``, readable by the service's user only), or
the task records' database when ``PREDICT_TASKS_DB_URL`` names PostgreSQL
(``Settings.jobs_url``): the table names here differ from the task store's and
the notifications', so the three can share one database.

Tables (times are Unix seconds):

- ``batches``: one row per ``POST /api/batch/start``; ``sealed`` once every
  file has its task, ``reported_at`` once the batch's end was told to the
  ``on_batch_finished`` listeners;
- ``batch_tasks``: the batch's files in upload order and their task ids;
- ``schedules``: cron, time zone, year/major/config, source folder, paused,
  the next run and the content hash of the last file used;
- ``schedule_runs``: each run (started, skipped, failed, missed), unique per
  ``(schedule_id, scheduled_for)``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .sqldb import open_engine

metadata = MetaData()

batches = Table(
    "batches", metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("year", Integer),              # None when the files have different years
    Column("major", Text),
    Column("config", Text, nullable=False, default="{}"),
    Column("priority", String(16), nullable=False, default="normal"),
    Column("file_count", Integer, nullable=False),
    Column("sealed", Boolean, nullable=False, default=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("state", String(16)),          # completed/failed/partial/cancelled once ended
    Column("finished_at", Float),
    Column("reported_at", Float),
)

batch_tasks = Table(
    "batch_tasks", metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("task_id", String(36), nullable=False),
    Column("file_name", Text, nullable=False),
)

schedules = Table(
    "schedules", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", Text, nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("major", Text),
    Column("config", Text, nullable=False, default="{}"),
    Column("source_dir", Text, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("next_run_at", Float),
    Column("last_sha256", String(64)),
    Column("last_file", Text),
)

schedule_runs = Table(
    "schedule_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule_id", String(36), nullable=False, index=True),
    Column("scheduled_for", Float, nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # claimed, started, skipped, failed, missed
    Column("task_id", String(36)),
    Column("file_name", Text),
    Column("code", String(64)),
    Column("message", Text),
    # The claim: whoever inserts this row first runs it (one instance per run).
    UniqueConstraint("schedule_id", "scheduled_for", name="schedule_runs_once"),
)


def open_jobs_db(url: str) -> Engine:
    """The engine for ``url``, tables created if missing. A SQLite file is
    created with mode 0600 (it names the uploaded files) and used in WAL mode,
    from several threads (the pool threads' task endings, the scheduler, requests)."""
    engine = open_engine(url)
    metadata.create_all(engine)
    return engine
