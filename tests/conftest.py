"""Fixtures only (helpers live in ``tests/support/``): apps over a temporary
data dir, with the repository's demo model (``models/``) and plans
(``plans/``), and their test client.

Every test gets a fresh data dir, so tasks, uploads and results never leak
between tests. Jobs run in pool threads here (``PREDICT_EXECUTION=thread``)
because that is faster to start; the child-process mode is exercised by the
real-gunicorn tests.

Every app a test builds comes from ``make_app``, which shuts it down at
teardown even when the test failed, so no pool thread, cleaner thread or
data-dir lock outlives its test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.cluster import RedisServer, need_redis, start_worker_for
from support.paths import MODELS_DIR, PLANS_DIR
from support.pg import PgServer, next_database_name, start_postgres
from support.s3 import ON_S3, S3Server
from support.service import FakeRunner, grade_workbook

MakeApp = Callable[..., Flask]


@pytest.fixture
def app_config(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The mapping ``make_app`` gives ``create_app``; tests may change it before building.

    ``PREDICT_TEST_TASKS_DB=postgresql`` in the environment runs the same tests
    with the task records on PostgreSQL (a fresh database per test), e.g.
    ``PREDICT_TEST_TASKS_DB=postgresql pytest tests/test_http_api.py``."""
    config: dict[str, Any] = {
        "TESTING": True,
        "PREDICT_DATA_DIR": tmp_path / "data",
        "PREDICT_MODEL_DIR": MODELS_DIR,
        "PREDICT_PLANS_DIR": PLANS_DIR,
        "PREDICT_EXECUTION": "thread",
        "PREDICT_CLEAN_INTERVAL_S": 3600,
        "PREDICT_API_TOKEN": "",
    }
    if os.environ.get("PREDICT_TEST_TASKS_DB") == "postgresql" or DISTRIBUTED:
        server: PgServer = request.getfixturevalue("pg")
        config["PREDICT_TASKS_DB_URL"] = server.create_database(next_database_name("tasks"))
    if DISTRIBUTED:
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        redis_server.client().flushdb()
        config["PREDICT_QUEUE_URL"] = redis_server.url
    # ``PREDICT_TEST_STORAGE=s3`` (support/s3.ON_S3): uploads and results in an
    # object store (a moto server process), a fresh bucket per test; with
    # ``PREDICT_TEST_QUEUE=redis`` the worker then has a data dir of its own, so
    # every file it reads or writes goes through the store.
    if ON_S3:
        s3: S3Server = request.getfixturevalue("s3_server")
        config["PREDICT_STORAGE_URL"] = f"s3://{s3.new_bucket()}/files"
        config["PREDICT_S3_ENDPOINT_URL"] = s3.endpoint
    return config


# ``PREDICT_TEST_QUEUE=redis``: the apps the tests build run in the distributed
# mode (records on PostgreSQL, jobs through Redis to a real worker command on
# the test's data dir), so the HTTP contract tests run against both modes:
# ``PREDICT_TEST_QUEUE=redis pytest tests/test_http_api.py``. A test that
# scripts its own runner says nothing about the distributed mode: skipped.
DISTRIBUTED = os.environ.get("PREDICT_TEST_QUEUE") == "redis"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(need_redis(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(app_config: dict[str, Any]) -> Iterator[MakeApp]:
    """``make_app(config=None, runner=None)`` builds an app (``config`` defaults to
    this test's ``app_config`` as it is at the call); every app built is shut
    down at teardown, newest first, even if the test failed or shut it down
    itself (``shutdown`` is idempotent)."""
    from destination_predictor.service import create_app

    with contextlib.ExitStack() as apps:
        def make(config: Mapping[str, Any] | None = None, runner: Any = None) -> Flask:
            config = app_config if config is None else config
            if DISTRIBUTED and runner is not None:
                pytest.skip("scripts its own runner: the distributed mode runs jobs in workers")
            application = create_app(config, runner=runner)
            apps.callback(application.extensions["predict"].shutdown, wait_s=30.0)
            if DISTRIBUTED:
                data_dir = Path(config["PREDICT_DATA_DIR"])
                if ON_S3:
                    config = {**config, "PREDICT_DATA_DIR": data_dir.parent / "worker-data"}
                worker = start_worker_for(config, data_dir.parent)
                apps.callback(worker.stop)
            return application

        yield make


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def fake_app(app_config: dict[str, Any], make_app: MakeApp) -> Iterator[tuple[Flask, FakeRunner]]:
    """An app whose jobs are a held ``FakeRunner`` (released at teardown):
    one worker, at most three tasks waiting."""
    runner = FakeRunner()
    app_config.update(PREDICT_MAX_WORKERS=1, PREDICT_MAX_PENDING=3)
    yield make_app(runner=runner), runner
    runner.release.set()


@pytest.fixture(scope="session")
def grades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated grade workbook of 40 students of 2023 (read-only for tests)."""
    return grade_workbook(tmp_path_factory.mktemp("grades") / "成绩 2023级.xlsx", 40, seed=7)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """A private PostgreSQL for the whole session (skipped locally without it, never in CI)."""
    try:
        server = start_postgres()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (PostgreSQL: a new database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.sqlite3'}"
    server: PgServer = request.getfixturevalue("pg")
    return server.create_database(next_database_name())
