"""The task store on both databases (issue 12): the embedded ``TaskStore``
(SQLite file + in-memory index) and the distributed ``SharedTaskStore``
(PostgreSQL, the database read for every answer), run through the same
behaviour; then what only the shared one promises, with real processes:
transitions of two stores on one row never interleave, an ending made in a
process without listeners is heard once by exactly one listening store, and
the exclusive lock of an embedded service on PostgreSQL dies with its holder."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.paths import REPO
from support.pg import PgServer, next_database_name

from destination_predictor.service import task as T
from destination_predictor.service.shared_store import SharedTaskStore
from destination_predictor.service.store import BaseTaskStore, DataDirInUse, TaskNotFound, TaskStore

Opener = Callable[[], BaseTaskStore]


def new_task(seq: int, key: str = "k", **kw: object) -> T.Task:
    return T.Task(id=T.new_task_id(), seq=seq, year=2024, file_name="a.xlsx",  # type: ignore[arg-type]
                  upload_name="x", file_sha256="0", cache_key=key, created_at=0.0, **kw)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a store on one fresh database of each kind; every store opened is closed."""
    opened: list[BaseTaskStore] = []
    if request.param == "sqlite":
        def make() -> BaseTaskStore:
            opened.append(TaskStore(tmp_path / "tasks.sqlite3", lock_wait_s=0))
            return opened[-1]
    else:
        url = request.getfixturevalue("pg").create_database(next_database_name("tasks"))

        def make() -> BaseTaskStore:
            opened.append(SharedTaskStore(url, exclusive=True, lock_wait_s=0))
            return opened[-1]
    yield make
    for store in reversed(opened):
        store.close()


def test_records_survive_a_reopen_in_order_on_both(opener: Opener) -> None:
    store = opener()
    a, b, c = (new_task(store.next_seq(), key) for key in ("k1", "k1", "k2"))
    for t in (a, b, c):
        store.add(t)
    running = store.update(a.id, lambda t: T.start(t, 1.0))
    cancelled = store.update(b.id, lambda t: T.cancel(t, 2.0))
    done = store.update(c.id, lambda t: T.complete(T.start(t, 3.0), 4.0, ["r.xlsx"], {"n": 1}, []))
    with pytest.raises(ValueError):
        store.add(a)
    with pytest.raises(TaskNotFound):
        store.update(T.new_task_id(), lambda t: t)
    store.close()  # also lets the next store have the database

    again = opener()
    assert again.all() == [running, cancelled, done]
    assert again.get(a.id) == running and again.get(T.new_task_id()) is None
    assert again.active() == [running]
    assert again.next_seq() == 4  # creation order goes on after a restart
    assert again.newest((T.CANCELLED,)) == [cancelled]
    assert again.newest(limit=2) == [done, cancelled]
    assert again.counts() == {T.RUNNING: 1, T.CANCELLED: 1, T.COMPLETED: 1}
    assert again.completed_with_key("k2") == [done] and again.completed_with_key("k1") == []
    again.update(c.id, lambda t: T.expire(t, 5.0))
    assert again.completed_with_key("k2") == []  # files gone: no cache hit
    again.delete(b.id)
    assert again.get(b.id) is None and [t.id for t in again.all()] == [a.id, c.id]
    assert again.writable()


def test_listeners_hear_each_ending_once_on_both(opener: Opener) -> None:
    store = opener()
    heard: list[tuple[str, str]] = []

    def broken(task: T.Task) -> None:
        raise RuntimeError("listener bug")

    store.on_finished(broken)
    store.on_finished(lambda t: heard.append((t.id, t.status.value)))
    store.start()
    a, b = new_task(store.next_seq()), new_task(store.next_seq())
    store.add(a)
    store.add(b)
    store.update(a.id, lambda t: T.start(t, 1.0))
    store.update(a.id, lambda t: T.report_progress(t, 50, "x"))
    assert heard == []
    store.update(a.id, lambda t: T.fail(t, 2.0, "X", "坏"))
    store.update(b.id, lambda t: T.cancel(t, 3.0))
    store.update(a.id, lambda t: t)  # no change: not heard again
    assert heard == [(a.id, "failed"), (b.id, "cancelled")]


def test_a_sqlite_file_of_an_earlier_version_keeps_loading(tmp_path: Path) -> None:
    """The schema the sqlite3-based store created, written by hand."""
    db = tmp_path / "tasks.sqlite3"
    old = T.complete(new_task(7), 1.0, ["f.xlsx"], None, []).to_record()
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE tasks (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,
                cache_key TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL);
            CREATE INDEX tasks_cache_key ON tasks (cache_key);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);""")
        conn.execute("INSERT INTO tasks VALUES (?, 7, 'completed', 'k', 0, ?)",
                     (old["id"], json.dumps(old)))
    conn.close()
    store = TaskStore(db, lock_wait_s=0)
    try:
        assert store.get(old["id"]) == T.Task.from_record(old)
        assert store.next_seq() == 8
        store.update(old["id"], lambda t: T.expire(t, 2.0))
    finally:
        store.close()
    assert oct(db.stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def pg_url(pg: PgServer) -> str:
    return pg.create_database(next_database_name("tasks"))


def bump(task: T.Task) -> T.Task:
    return dataclasses.replace(task, progress=task.progress + 1)


@pytest.mark.slow
def test_two_stores_never_interleave_a_transition(pg_url: str) -> None:
    """Read-change-write of one row from two stores (two connections pools, as
    two processes would have): without the row lock, increments get lost."""
    stores = [SharedTaskStore(pg_url) for _ in range(2)]
    try:
        task = new_task(stores[0].next_seq())
        stores[0].add(task)
        rounds = 40

        def hammer(store: SharedTaskStore) -> None:
            for _ in range(rounds):
                store.update(task.id, bump)

        threads = [threading.Thread(target=hammer, args=(s,)) for s in stores for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[1].get(task.id).progress == 4 * rounds  # type: ignore[union-attr]
        assert stores[0].next_seq() != stores[1].next_seq()  # one sequence for all
    finally:
        for s in stores:
            s.close()


@pytest.mark.slow
def test_endings_made_elsewhere_are_heard_once_by_one_listening_store(pg_url: str) -> None:
    """A worker's store (no listeners) ends tasks; two API stores drain the
    outbox concurrently: every ending heard once in all, none twice."""
    worker = SharedTaskStore(pg_url)
    apis = [SharedTaskStore(pg_url, drain_interval_s=0.05) for _ in range(2)]
    heard: list[tuple[int, str]] = []
    lock = threading.Lock()
    try:
        for n, api in enumerate(apis):
            def listen(task: T.Task, n: int = n) -> None:
                with lock:
                    heard.append((n, task.id))
            api.on_finished(listen)
            api.start()
        ids = []
        for _ in range(30):
            t = new_task(worker.next_seq())
            worker.add(t)
            worker.update(t.id, lambda t: T.start(t, 1.0))
            worker.update(t.id, lambda t: T.complete(t, 2.0, [], None, []))
            ids.append(t.id)
        deadline = time.monotonic() + 10
        while len(heard) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a second hearing would come now
        assert sorted(i for _, i in heard) == sorted(ids)
        assert worker.drain_endings() == 0  # no listeners: the worker never drains
    finally:
        for s in (worker, *apis):
            s.close()


_HOLDER = """
import sys, time
from destination_predictor.service.shared_store import SharedTaskStore
SharedTaskStore(sys.argv[1], exclusive=True, lock_wait_s=0)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_exclusive_use_is_refused_while_held_and_free_once_the_holder_is_killed(
        pg_url: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, pg_url], cwd=REPO,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match="in use by another service"):
            SharedTaskStore(pg_url, exclusive=True, lock_wait_s=0.5)
        shared = SharedTaskStore(pg_url)  # the distributed mode does not ask for it
        shared.close()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        store = SharedTaskStore(pg_url, exclusive=True, lock_wait_s=15)
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_the_shared_store_refuses_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        SharedTaskStore(f"sqlite:///{tmp_path / 'x.sqlite3'}")


@pytest.mark.slow
def test_an_embedded_service_on_postgres_holds_its_task_database(
        pg_url: str, app_config: dict[str, object], make_app: Callable[..., object],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two services with their own pools on one task database would each re-queue
    the other's running tasks at start-up: the second one is refused."""
    app_config["PREDICT_TASKS_DB_URL"] = pg_url
    first = make_app()
    assert type(first.extensions["predict"].store) is SharedTaskStore  # type: ignore[attr-defined]
    other = dict(app_config, PREDICT_DATA_DIR=tmp_path / "other")
    from destination_predictor.service import create_app, shared_store
    monkeypatch.setattr(shared_store, "LOCK_WAIT_S", 0.5)
    with pytest.raises(DataDirInUse):
        create_app(other)


@pytest.mark.slow
def test_one_cleaner_sweeps_at_a_time_across_instances(pg_url: str, tmp_path: Path) -> None:
    """Retention runs in every API instance; while one sweeps, the others skip."""
    import logging

    from destination_predictor.service.cleaner import Cleaner
    from destination_predictor.service.storage import DirStorage

    stores = [SharedTaskStore(pg_url) for _ in range(2)]
    try:
        done = T.complete(T.start(new_task(stores[0].next_seq()), 1.0), 2.0, [], None, [])
        stores[0].add(done)
        dirs = {name: tmp_path / name for name in ("uploads", "results", "staging")}
        for d in dirs.values():
            d.mkdir()
        cleaners = [Cleaner(s, storage=DirStorage(tmp_path),
                            staging_dir=dirs["staging"], retention_s=10.0, interval_s=3600,
                            logger=logging.getLogger("test")) for s in stores]
        with stores[0].alone("cleaner") as mine:
            assert mine
            with stores[1].alone("cleaner") as theirs:
                assert not theirs
            assert cleaners[1].sweep(now=100.0).expired_tasks == 0  # skipped: held
            assert not stores[1].get(done.id).expired  # type: ignore[union-attr]
        assert cleaners[1].sweep(now=100.0).expired_tasks == 1  # free again
        assert stores[0].get(done.id).expired  # type: ignore[union-attr]
    finally:
        for s in stores:
            s.close()


@pytest.mark.slow
def test_records_on_a_stopped_database_answer_503_and_come_back(
        app_config: dict[str, object], make_app: Callable[..., object]) -> None:
    """The task database of the shared store stops (a restart, a failover):
    requests answer 503 STORE_UNAVAILABLE instead of failing obscurely, and
    everything answers again once it is back -- the records were never lost."""
    from support.pg import start_postgres
    from support.service import FakeRunner, finished, start, tiny_xlsx, wait_for

    try:
        server = start_postgres()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        app_config["PREDICT_TASKS_DB_URL"] = server.create_database("paused")
        client = make_app(runner=FakeRunner(hold=False)).test_client()  # type: ignore[attr-defined]
        task_id = start(client, tiny_xlsx()).json["data"]["task_id"]
        assert wait_for(client, task_id, finished)["status"] == "completed"
        server.pause()
        down = client.get(f"/api/task/status/{task_id}")
        assert down.status_code == 503 and down.json["code"] == "STORE_UNAVAILABLE", down.json
        refused = start(client, tiny_xlsx("b"))
        assert refused.status_code == 503, refused.json
        server.resume()
        back = client.get(f"/api/task/status/{task_id}")
        assert back.status_code == 200 and back.json["data"]["status"] == "completed"
        again = start(client, tiny_xlsx("c")).json["data"]["task_id"]
        assert wait_for(client, again, finished)["status"] == "completed"
    finally:
        server.stop()


@pytest.mark.slow
def test_rq_failure_callback_fails_only_the_latest_start_of_a_running_task(
        pg_url: str, tmp_path: Path) -> None:
    """``worker.jobs.job_failed``, as RQ calls it in a worker: its hard time
    limit fails the task with TIMEOUT; a job killed otherwise fails it as an
    internal error; a report about an earlier start, or an abandoned job (its
    worker died: the API's reconciler re-queues it), changes nothing."""
    import logging
    from types import SimpleNamespace

    from rq.exceptions import AbandonedJobError
    from rq.timeouts import JobTimeoutException

    from destination_predictor.service.settings import load_settings
    from destination_predictor.service.storage import open_storage
    from destination_predictor.worker import jobs

    store = SharedTaskStore(pg_url)
    settings = load_settings({"PREDICT_DATA_DIR": tmp_path, "PREDICT_TASK_TIMEOUT_S": 7},
                             environ={})
    settings.ensure_dirs()
    executor = SimpleNamespace(clock=lambda: 5.0)
    storage = open_storage(settings)
    jobs._context.append(jobs.WorkerContext(settings, store, storage,
                                            executor,  # type: ignore[arg-type]
                                            logging.getLogger("test")))
    try:
        def running() -> T.Task:
            t = new_task(store.next_seq())
            store.add(t)
            return store.update(t.id, lambda t: T.start(t, 1.0))  # attempts 1: job "<id>_0"

        timed_out, crashed, stale, abandoned = running(), running(), running(), running()
        (settings.results_dir / f"{timed_out.id}_half.xlsx").write_bytes(b"half")
        jobs.job_failed(SimpleNamespace(id=f"{timed_out.id}_0"), None, JobTimeoutException,
                        JobTimeoutException(), None)
        jobs.job_failed(SimpleNamespace(id=f"{crashed.id}_0"), None, RuntimeError,
                        RuntimeError(), None)
        jobs.job_failed(SimpleNamespace(id=f"{stale.id}_1"), None, JobTimeoutException,
                        JobTimeoutException(), None)  # a later start than the one running
        jobs.job_failed(SimpleNamespace(id=f"{abandoned.id}_0"), None, AbandonedJobError,
                        AbandonedJobError(), None)
        got = {t.id: store.get(t.id) for t in (timed_out, crashed, stale, abandoned)}
        assert (got[timed_out.id].status, got[timed_out.id].error_code) == (T.FAILED, "TIMEOUT")
        assert "7 秒" in (got[timed_out.id].error or "")
        assert not list(settings.results_dir.glob(f"{timed_out.id}_*"))
        assert (got[crashed.id].status, got[crashed.id].error_code) == (T.FAILED, "INTERNAL_ERROR")
        assert got[stale.id].status is T.RUNNING and got[abandoned.id].status is T.RUNNING
    finally:
        jobs._context.clear()
        store.close()


def test_the_distributed_mode_needs_its_records_on_postgres(app_config: dict[str, object],
                                                             tmp_path: Path) -> None:
    """Workers on other machines cannot share a SQLite file: refused at start."""
    from destination_predictor.service import create_app
    from destination_predictor.service.settings import SettingsError

    app_config["PREDICT_QUEUE_URL"] = "redis://127.0.0.1:1/0"
    with pytest.raises(SettingsError, match="PREDICT_TASKS_DB_URL"):
        create_app(app_config)
    app_config["PREDICT_TASKS_DB_URL"] = f"sqlite:///{tmp_path / 'tasks.sqlite3'}"
    with pytest.raises(SettingsError, match="PostgreSQL"):
        create_app(app_config)
