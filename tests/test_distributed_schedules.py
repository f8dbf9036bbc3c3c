"""Schedules, batches' and webhooks' records in the distributed mode (issue 12).

- Where the records go: with ``PREDICT_TASKS_DB_URL`` on PostgreSQL and no
  setting of their own, batches, schedules and webhooks share that database
  (an explicit SQLite file in the distributed mode is refused at start, with
  the reason, because instances on several machines cannot share one).
- One run per schedule and fire time with several schedulers: two real API
  instances, each with its own data dir (as on two machines), race over the
  same due schedules; each run and its task exist once and every instance sees them.
- A run whose claiming instance dies is taken over: the claim is an
  uncommitted row on PostgreSQL, rolled back by the server when the holder's
  connection dies (shown here with ``pg_terminate_backend``, which is what
  the server does for a ``kill -9``-ed client), and the run's task id is fixed,
  so a task already started is recorded rather than started again.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import pytest
import requests
import sqlalchemy as sa
from croniter import croniter
from support.cluster import RedisServer, api_instance, cluster_env, need_redis
from support.live_server import LiveServer
from support.paths import REPO
from support.pg import PgServer, next_database_name
from support.service import YEAR, grade_workbook, tiny_xlsx

from destination_predictor.service.jobs_db import open_jobs_db, schedule_runs
from destination_predictor.service.jobs_db import schedules as schedules_table
from destination_predictor.service.schedules import Scheduler, run_task_id
from destination_predictor.service.settings import SettingsError, load_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
PG_URL = "postgresql://u:pw@db.example:5432/predict"


# --- where the records go -------------------------------------------------------

def test_records_follow_the_task_records_to_postgres_unless_set(tmp_path: Path) -> None:
    embedded = load_settings({"PREDICT_DATA_DIR": tmp_path}, environ={})
    assert embedded.jobs_url == f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    assert embedded.webhooks_url == f"sqlite:///{tmp_path / 'notifications.sqlite3'}"
    for mode in ({}, {"PREDICT_QUEUE_URL": "redis://127.0.0.1:6379/0"}):
        shared = load_settings({"PREDICT_DATA_DIR": tmp_path, "PREDICT_TASKS_DB_URL": PG_URL,
                                **mode}, environ={})
        assert shared.jobs_url == shared.webhooks_url == PG_URL
    sqlite_tasks = load_settings({"PREDICT_TASKS_DB_URL": f"sqlite:///{tmp_path / 't.sqlite3'}",
                                  "PREDICT_DATA_DIR": tmp_path}, environ={})
    assert sqlite_tasks.jobs_url == f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    own = load_settings({"PREDICT_TASKS_DB_URL": PG_URL, "PREDICT_JOBS_DATABASE_URL": "x://j",
                         "PREDICT_WEBHOOK_DATABASE_URL": "postgres://w"}, environ={})
    assert (own.jobs_url, own.webhooks_url) == ("x://j", "postgres://w")


@pytest.mark.parametrize("var", ["PREDICT_JOBS_DATABASE_URL", "PREDICT_WEBHOOK_DATABASE_URL"])
def test_a_sqlite_file_is_refused_in_the_distributed_mode(var: str, tmp_path: Path) -> None:
    """Refused before anything starts, by the command operators run, in Chinese."""
    env = {"PREDICT_QUEUE_URL": "redis://127.0.0.1:1/0", "PREDICT_TASKS_DB_URL": PG_URL,
           var: f"sqlite:///{tmp_path / 'own.sqlite3'}"}
    with pytest.raises(SettingsError, match=var):
        load_settings({}, environ=env)
    load_settings({}, environ={**env, "PREDICT_QUEUE_URL": ""})  # embedded: its own file is fine
    proc = subprocess.run([sys.executable, "async_api_server.py", "--port", "1"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "PREDICT_DATA_DIR": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert var in proc.stderr and "分布式模式" in proc.stderr and "无法共用" in proc.stderr


# --- a claim held by a process that dies ---------------------------------------------

@dataclass
class FakeTask:
    id: str
    file_name: str
    file_sha256: str


class SharedTasks:
    """The task records every instance sees (PostgreSQL in the real service)."""

    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}

    def get(self, task_id: str) -> FakeTask | None:
        return self.tasks.get(task_id)


class FakeManager:
    """What the scheduler uses of ``TaskManager``; ``start_task`` can be held."""

    def __init__(self, store: SharedTasks, *, hold_before: bool = False,
                 hold_after: bool = False) -> None:
        self.store = store
        self.hold_before, self.hold_after = hold_before, hold_after
        self.inside = threading.Event()
        self.release = threading.Event()
        self.started: list[str] = []

    def resolve_major(self, year: int, major: str | None) -> str | None:
        return major

    def start_task(self, stream: BinaryIO, name: str, *, task_id: str, **_: Any) -> FakeTask:
        stream.read()
        if self.hold_before:
            self.inside.set()
            self.release.wait(30)
        task = FakeTask(task_id, name, "sha")
        self.store.tasks[task_id] = task
        self.started.append(task_id)
        if self.hold_after:
            self.inside.set()
            self.release.wait(30)
        return task


@pytest.mark.slow
@pytest.mark.parametrize("dies", ["before starting the task", "after starting the task"])
def test_a_run_whose_instance_dies_is_taken_over_once(pg: PgServer, tmp_path: Path,
                                                      dies: str) -> None:
    url = pg.create_database(next_database_name("sched"))
    root = tmp_path / "exports"
    (root / "registrar").mkdir(parents=True)
    (root / "registrar" / "a.xlsx").write_bytes(tiny_xlsx())
    tasks = SharedTasks()
    held = FakeManager(tasks, hold_before=dies.startswith("before"),
                       hold_after=dies.startswith("after"))
    other = FakeManager(tasks)
    log = logging.getLogger("test.schedules")
    engines = [open_jobs_db(url), open_jobs_db(url)]  # two processes' pools
    a, b = (Scheduler(m, e, log, root=root, default_timezone="Asia/Shanghai", grace_s=3600,
                      clock=lambda: datetime(2026, 11, 30, 6, 59, tzinfo=SHANGHAI).timestamp())
            for m, e in zip((held, other), engines, strict=True))
    try:
        sid = a.create({"cron": "0 7 * * *", "year": YEAR, "source_dir": "registrar"})[
            "schedule_id"]
        due = datetime(2026, 11, 30, 7, 0, 5, tzinfo=SHANGHAI).timestamp()
        results: dict[str, Any] = {}

        def tick(name: str, s: Scheduler) -> None:
            try:
                results[name] = s.tick(due)
            except sa.exc.DBAPIError as exc:  # the dead one's connection
                results[name] = exc

        ta = threading.Thread(target=tick, args=("a", a))
        ta.start()
        assert held.inside.wait(10)  # A holds the claim, inside start_task
        tb = threading.Thread(target=tick, args=("b", b))
        tb.start()
        tb.join(1.0)
        assert tb.is_alive() and other.started == []  # B waits for A's outcome
        with engines[0].connect() as conn:  # "kill -9" of A, as the server sees it
            [victim] = conn.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction'")).scalars().all()
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": victim})
        tb.join(10)
        assert not tb.is_alive()
        held.release.set()
        ta.join(10)
        assert isinstance(results["a"], sa.exc.DBAPIError)
        [run] = results["b"]
        expected = run_task_id(sid, datetime(2026, 11, 30, 7, 0, tzinfo=SHANGHAI).timestamp())
        assert (run["status"], run["task_id"]) == ("started", expected)
        assert list(tasks.tasks) == [expected]  # one task, whoever started it
        assert other.started == ([] if dies.startswith("after") else [expected])
        with engines[1].connect() as conn:
            rows = conn.execute(sa.select(schedule_runs.c.status, schedule_runs.c.task_id)).all()
        assert [tuple(r) for r in rows] == [("started", expected)]
    finally:
        held.release.set()
        for e in engines:
            e.dispose()


def test_a_claim_left_by_a_crash_records_the_task_it_started(tmp_path: Path) -> None:
    """SQLite (one service): a committed claim found at start is the run's task
    if the crash came after the task was created, else an interrupted run."""
    engine = open_jobs_db(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    tasks = SharedTasks()
    scheduler = Scheduler(FakeManager(tasks), engine, logging.getLogger("test.schedules"),
                          root=None, default_timezone="Asia/Shanghai", grace_s=3600)
    with engine.begin() as conn:
        for sid in ("s-started", "s-not-started"):
            conn.execute(sa.insert(schedules_table).values(
                id=sid, name=sid, cron="0 7 * * *", timezone="Asia/Shanghai", year=YEAR,
                source_dir="/x", created_at=0.0, next_run_at=1e10))
            conn.execute(sa.insert(schedule_runs).values(
                schedule_id=sid, scheduled_for=600.0, claimed_at=601.0, status="claimed"))
    started = run_task_id("s-started", 600.0)
    tasks.tasks[started] = FakeTask(started, "成绩.xlsx", "sha")
    assert scheduler.close_interrupted() == 2
    with engine.connect() as conn:
        rows = {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(
            schedule_runs.c.schedule_id, schedule_runs.c.status, schedule_runs.c.task_id,
            schedule_runs.c.code))}
    assert rows == {"s-started": ("started", started, None),
                    "s-not-started": ("failed", None, "INTERRUPTED")}
    engine.dispose()


# --- two real API instances racing over the same due schedules -----------------------

SCHEDULES = 6
CRON = "0 3 * * *"


@dataclass
class TwoInstances:
    a: LiveServer
    b: LiveServer
    db: str
    root: Path


@pytest.fixture
def two_instances(pg: PgServer, tmp_path: Path) -> Iterator[TwoInstances]:
    """Redis, a fresh PostgreSQL database and two API instances in the
    distributed mode, each with its own data dir (no shared files: what they
    share must be in PostgreSQL); no worker commands (the tasks wait)."""
    redis_server = RedisServer(need_redis(), tmp_path / "redis").start()
    db = pg.create_database(next_database_name("two"))
    root = tmp_path / "exports"
    (root / "registrar").mkdir(parents=True)
    # Two days of grace: the run due at the last 03:00 is still run.
    env = cluster_env(redis_server.url, db, {"PREDICT_SCHEDULE_ROOT": str(root),
                                             "PREDICT_SCHEDULE_GRACE_S": "172800"})
    a = api_instance(tmp_path / "a", env, tmp_path / "logs")
    b = api_instance(tmp_path / "b", env, tmp_path / "logs")
    a.script = b.script = True
    try:
        a.start()  # one after the other: each creates missing tables at start
        b.start()
        yield TwoInstances(a, b, db, root)
    finally:
        for api in (a, b):
            api.stop()
        redis_server.stop()


def api(server: LiveServer, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(method, server.base + path, timeout=30, **kw)
    assert resp.status_code in (200, 201, 202), resp.text
    return resp.json()["data"]


def last_fire_time(now: float) -> float:
    return float(croniter(CRON, datetime.fromtimestamp(now, SHANGHAI)).get_prev(float))


@pytest.mark.slow
def test_two_instances_run_each_due_schedule_once(two_instances: TwoInstances) -> None:
    """Schedules made through A and due now are seen by both schedulers at once
    (each ticks every second, in its own order): every (schedule, time) is run
    by one of them, with one task, and B shows it all."""
    a, b = two_instances.a, two_instances.b
    grade_workbook(two_instances.root / "registrar" / "成绩 2024.xlsx", 40, seed=5)
    made = [api(a, "POST", "/api/schedules", json={
        "cron": CRON, "year": YEAR, "source_dir": "registrar", "name": f"每日 {i}"})["schedule"]
        for i in range(SCHEDULES)]
    ids = {s["schedule_id"] for s in made}
    assert {s["schedule_id"] for s in api(b, "GET", "/api/schedules")["schedules"]} == ids

    # Due now, as a schedule made days ago whose last 03:00 has not been run yet
    # (instead of waiting for a fire time): both schedulers find them in their next tick.
    now = time.time()
    engine = sa.create_engine(two_instances.db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(schedules_table).values(
                created_at=now - 3 * 86400, next_run_at=last_fire_time(now)))
        due_at = last_fire_time(now)
        deadline = time.monotonic() + 30
        while True:
            listed = api(b, "GET", "/api/schedules")["schedules"]
            if all(s["runs"] for s in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        time.sleep(2)  # a second run of any of them would be recorded by now
        listed = api(b, "GET", "/api/schedules")["schedules"]
        with engine.connect() as conn:
            per_run = conn.execute(sa.select(
                schedule_runs.c.schedule_id, schedule_runs.c.scheduled_for, sa.func.count())
                .group_by(schedule_runs.c.schedule_id, schedule_runs.c.scheduled_for)).all()
            scheduled_tasks = conn.execute(sa.text(
                "SELECT record::json->>'schedule_id' FROM tasks")).scalars().all()
    finally:
        engine.dispose()
    assert sorted(per_run) == sorted((sid, due_at, 1) for sid in ids)
    assert sorted(scheduled_tasks) == sorted(ids)  # one task per schedule, no other
    for s in listed:
        [run] = s["runs"]
        assert run["status"] == "started", run
        assert run["scheduled_for"] == datetime.fromtimestamp(due_at, SHANGHAI).isoformat()
        task = api(b, "GET", f"/api/task/status/{run['task_id']}")
        assert task["schedule_id"] == s["schedule_id"] and task["status"] == "pending"
    # Both schedulers took part (so the claim was raced for, not merely taken in turn).
    logs = {name: "".join(p.read_text() for p in server.data_dir.glob("async_api_*.log"))
            for name, server in (("a", a), ("b", b))}
    runs = {name: text.count("event=schedule.run ") for name, text in logs.items()}
    assert sum(runs.values()) == SCHEDULES and all(runs.values()), runs


@pytest.mark.slow
def test_webhooks_and_batches_made_on_one_instance_are_known_to_the_other(
        two_instances: TwoInstances) -> None:
    """No SQLite file of their own: what A records, B lists."""
    a, b = two_instances.a, two_instances.b
    hook = api(a, "POST", "/api/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert hook["webhook"]["id"] in [h["id"] for h in api(b, "GET", "/api/webhooks")["webhooks"]]
    files = [("files", (f"成绩 {i}.xlsx", io.BytesIO(tiny_xlsx()))) for i in range(2)]
    batch = api(a, "POST", "/api/batch/start", data={"year": str(YEAR)}, files=files)
    assert api(b, "GET", f"/api/batch/status/{batch['batch_id']}")["total"] == 2
    for server in (a, b):
        assert not list(server.data_dir.glob("*.sqlite3")), list(server.data_dir.iterdir())
    assert "event=records.sqlite_not_used" not in "".join(
        p.read_text() for p in a.data_dir.glob("async_api_*.log"))
