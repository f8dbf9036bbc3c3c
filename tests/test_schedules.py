"""Schedules (service.schedules, /api/schedules) under a clock the test
controls: firing, nothing new -> skipped, paused, a missed run once after a
restart (and only once), durability, and the source folder kept under
PREDICT_SCHEDULE_ROOT. Jobs are a FakeRunner that finishes at once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from support.service import YEAR, FakeRunner, assert_error, tiny_xlsx

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = 86400.0


def at(text: str) -> float:
    """A Shanghai wall-clock time as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "exports"
    (d / "registrar").mkdir(parents=True)
    return d


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2026-11-30 06:59:30"))


@pytest.fixture
def build(app_config: dict[str, Any], make_app: Any, root: Path,
          clock: Clock) -> Callable[..., Flask]:
    app_config.update(PREDICT_SCHEDULE_ROOT=root, SCHEDULE_CLOCK=clock)

    def make(thread: bool = False, **extra: Any) -> Flask:
        """An app whose scheduler thread is stopped unless ``thread``: the test ticks."""
        app = make_app(config={**app_config, **extra}, runner=FakeRunner(hold=False))
        if not thread:
            app.extensions["schedules"].stop()
        return app
    return make


def create(app: Flask, **body: Any) -> Any:
    payload = {"cron": "0 7 * * *", "year": YEAR, "source_dir": "registrar", **body}
    return app.test_client().post("/api/schedules", json=payload)


def export(root: Path, name: str, content: bytes | None = None) -> Path:
    """The registrar's export landing in the folder (a newer modification time each call)."""
    p = root / "registrar" / name
    p.write_bytes(content if content is not None else tiny_xlsx())
    stamp = time.time() + len(list(p.parent.iterdir()))
    os.utime(p, (stamp, stamp))
    return p


def tick(app: Flask) -> list[dict[str, Any]]:
    return app.extensions["schedules"].tick()


def test_fires_at_its_time_skips_nothing_new_and_starts_a_new_export(
        build: Callable[..., Flask], root: Path, clock: Clock) -> None:
    app = build()
    r = create(app, name="每日 7 点")
    assert r.status_code == 200, r.get_json()
    schedule = r.get_json()["data"]["schedule"]
    assert schedule["timezone"] == "Asia/Shanghai"
    assert schedule["next_run_at"] == "2026-11-30T07:00:00+08:00"
    assert tick(app) == []  # 06:59:30: not yet

    clock.now = at("2026-11-30 07:00:05")
    [run] = tick(app)
    assert run["status"] == "skipped" and run["code"] == "NO_SOURCE_FILE"
    assert tick(app) == []  # the same time never runs twice

    export(root, "old.xlsx")
    newest = export(root, "成绩 2026-12-01.xlsx")
    clock.now = at("2026-12-01 07:00:00")
    [run] = tick(app)
    assert run["status"] == "started" and run["file_name"] == newest.name
    task = app.test_client().get(f"/api/task/status/{run['task_id']}").get_json()["data"]
    assert task["schedule_id"] == schedule["schedule_id"] and task["file_name"] == newest.name

    clock.now = at("2026-12-02 07:00:00")
    [run] = tick(app)
    assert run["status"] == "skipped" and run["code"] == "NOTHING_NEW"
    assert "没有新的导出文件" in run["message"]

    export(root, "成绩 2026-12-03.xlsx")
    clock.now = at("2026-12-03 07:00:01")
    assert [r["status"] for r in tick(app)] == ["started"]

    listed = app.test_client().get("/api/schedules").get_json()["data"]["schedules"]
    assert [r["status"] for r in listed[0]["runs"]] == ["started", "skipped", "started", "skipped"]
    assert listed[0]["next_run_at"] == "2026-12-04T07:00:00+08:00"


def test_the_scheduler_thread_fires_when_the_clock_reaches_the_time(
        build: Callable[..., Flask], root: Path, clock: Clock) -> None:
    app = build(thread=True)
    export(root, "a.xlsx")
    create(app)
    client = app.test_client()
    time.sleep(1.5)  # the thread ticked at least once before 07:00: nothing
    assert client.get("/api/tasks").get_json()["data"]["count"] == 0
    clock.now = at("2026-11-30 07:00:00")
    deadline = time.monotonic() + 10

    def runs() -> list[str]:
        schedule = client.get("/api/schedules").get_json()["data"]["schedules"][0]
        return [r["status"] for r in schedule["runs"]]

    # "claimed" while the task is being started, then the outcome.
    while runs() in ([], ["claimed"]):
        assert time.monotonic() < deadline, "the scheduler thread did not fire"
        time.sleep(0.05)
    assert runs() == ["started"]
    assert client.get("/api/tasks").get_json()["data"]["count"] == 1


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(
        build: Callable[..., Flask], root: Path, clock: Clock) -> None:
    app = build()
    export(root, "a.xlsx")
    sid = create(app).get_json()["data"]["schedule"]["schedule_id"]
    client = app.test_client()
    r = client.post(f"/api/schedules/{sid}/pause")
    assert r.status_code == 200 and r.get_json()["data"]["schedule"]["paused"] is True
    assert r.get_json()["data"]["schedule"]["next_run_at"] is None
    clock.now = at("2026-12-02 07:30:00")  # two 07:00s pass while paused
    assert tick(app) == []
    r = client.post(f"/api/schedules/{sid}/resume")
    assert r.get_json()["data"]["schedule"]["next_run_at"] == "2026-12-03T07:00:00+08:00"
    assert tick(app) == []  # no catching up on the paused days
    assert client.get("/api/schedules").get_json()["data"]["schedules"][0]["runs"] == []


def test_a_run_missed_while_stopped_runs_once_after_restart(
        build: Callable[..., Flask], root: Path, clock: Clock) -> None:
    app = build()
    export(root, "a.xlsx")
    sid = create(app).get_json()["data"]["schedule"]["schedule_id"]
    app.extensions["predict"].shutdown(wait_s=5)

    # Down over two 07:00s; back 20 minutes after the second one (grace: an hour).
    clock.now = at("2026-12-01 07:20:00")
    app = build()
    listed = app.test_client().get("/api/schedules").get_json()["data"]["schedules"]
    assert [s["schedule_id"] for s in listed] == [sid]  # durable
    runs = tick(app)
    assert [(r["status"], r["scheduled_for"]) for r in runs] == [
        ("started", at("2026-12-01 07:00:00"))]
    assert tick(app) == []
    app.extensions["predict"].shutdown(wait_s=5)

    app = build()  # and not again after another restart
    assert tick(app) == []
    runs = app.test_client().get("/api/schedules").get_json()["data"]["schedules"][0]["runs"]
    assert [r["status"] for r in runs] == ["started"]
    assert runs[0]["scheduled_for"] == "2026-12-01T07:00:00+08:00"


def test_a_run_missed_beyond_the_grace_period_is_recorded_not_run(
        build: Callable[..., Flask], root: Path, clock: Clock) -> None:
    app = build(PREDICT_SCHEDULE_GRACE_S=600)
    export(root, "a.xlsx")
    create(app)
    clock.now = at("2026-11-30 09:00:00")
    [run] = tick(app)
    assert run["status"] == "missed"
    assert app.test_client().get("/api/tasks").get_json()["data"]["count"] == 0


def test_the_source_folder_stays_under_the_root(build: Callable[..., Flask], root: Path,
                                               tmp_path: Path) -> None:
    app = build()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    for source in ("../elsewhere", str(outside), "link", "/etc", "registrar/../../elsewhere"):
        assert_error(create(app, source_dir=source), 400, "SOURCE_OUTSIDE_ROOT")
    assert_error(create(app, source_dir="nope"), 400, "SOURCE_NOT_FOUND")
    assert_error(create(app, source_dir=""), 400, "MISSING_SOURCE")
    assert create(app, source_dir=str(root / "registrar")).status_code == 200

    # A workbook linked from outside the root is not read.
    secret = outside / "secret.xlsx"
    secret.write_bytes(tiny_xlsx())
    (root / "registrar" / "z.xlsx").symlink_to(secret)
    app.extensions["schedules"].clock = lambda: at("2026-11-30 07:00:00")
    assert [r["code"] for r in tick(app)] == ["NO_SOURCE_FILE"]


@pytest.mark.parametrize(("body", "code"), [
    ({"cron": "0 7 * *"}, "BAD_CRON"),
    ({"cron": "0 0 7 * * *"}, "BAD_CRON"),
    ({"cron": "61 7 * * *"}, "BAD_CRON"),
    ({"cron": "@daily"}, "BAD_CRON"),
    ({"timezone": "Mars/Base"}, "BAD_TIMEZONE"),
    ({"year": "24"}, "BAD_YEAR"),
    ({"year": 1999}, "UNKNOWN_YEAR"),
])
def test_bad_schedules_are_refused(build: Callable[..., Flask], body: dict[str, Any],
                                   code: str) -> None:
    assert_error(create(build(), **body), 400, code)


def test_no_root_no_schedules_and_the_token_is_required(
        app_config: dict[str, Any], make_app: Any) -> None:
    app = make_app()
    assert_error(create(app), 503, "SCHEDULES_NOT_CONFIGURED")
    # One service per task records (the data dir's lock, or PostgreSQL's advisory lock).
    app.extensions["predict"].shutdown()
    app_config["PREDICT_API_TOKEN"] = "sched-token"
    app = make_app(config=dict(app_config, PREDICT_DATA_DIR=Path(app_config["PREDICT_DATA_DIR"]) / "t"))
    assert_error(create(app), 401, "UNAUTHORIZED")
    client = app.test_client()
    assert_error(client.delete("/api/schedules/12345678-1234-4234-8234-123456789abc"), 401,
                 "UNAUTHORIZED")
    r = client.delete("/api/schedules/12345678-1234-4234-8234-123456789abc",
                      headers={"Authorization": "Bearer sched-token"})
    assert_error(r, 404, "SCHEDULE_NOT_FOUND")


def test_delete(build: Callable[..., Flask]) -> None:
    app = build()
    sid = create(app).get_json()["data"]["schedule"]["schedule_id"]
    client = app.test_client()
    assert client.delete(f"/api/schedules/{sid}").status_code == 200
    assert client.get("/api/schedules").get_json()["data"]["count"] == 0
    assert_error(client.delete(f"/api/schedules/{sid}"), 404, "SCHEDULE_NOT_FOUND")
    assert_error(client.post("/api/schedules/bad/pause"), 400, "INVALID_SCHEDULE_ID")
