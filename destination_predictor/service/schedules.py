"""Scheduled runs: a cron expression, a year (major, config) and a folder on
the server where the registrar's export lands; at each time the newest
workbook there is started as an ordinary task (``TaskManager.start_task``
with the schedule's id).

Rules:

- cron: five fields, evaluated by croniter (maintained by pallets-eco since
  2025) in the schedule's time zone (``PREDICT_SCHEDULE_TIMEZONE``, default
  Asia/Shanghai); standard cron meaning (``1-5`` is Monday to Friday);
- source: a folder under ``PREDICT_SCHEDULE_ROOT`` (resolved, symlinks
  included, at creation and again at every run), so the API cannot be used to
  read arbitrary files; the newest ``.xlsx``/``.xls`` in it is used; the
  same content as the last run's (sha256) means no run, recorded as
  ``skipped``;
- durable: schedules and runs are rows (``jobs_db``), ``next_run_at`` included;
  a run missed while the service was down runs once when it comes back if it
  is at most ``PREDICT_SCHEDULE_GRACE_S`` late (several missed times count
  once: the latest), otherwise it is recorded as ``missed``;
- once per time: a run is claimed by inserting its row keyed by
  ``(schedule_id, scheduled_for)`` under a unique constraint; whoever inserts
  it runs it. On PostgreSQL (several API instances share the records, issue
  12) the claim stays uncommitted while the task is started and commits with
  the outcome: another instance's insert of the same run waits for that
  outcome and then finds the run taken; if the claiming process dies first,
  the server rolls its claim back and the waiting (or next) instance runs it.
  The run's task id is derived from ``(schedule_id, scheduled_for)``, so a
  run taken over after its task was started records that task instead of
  starting a second one. On SQLite (one service per data dir) the claim is
  committed at once and a claim left by a crash is closed at the next start;
- a paused schedule does not fire; resuming does not catch up.

The clock is injected (``clock``) and ``tick()`` is public, so tests decide
what time it is; the thread only calls ``tick()`` at every whole ``TICK_S``
of the wall clock. Whole seconds, not a second after the last tick: a run
starts right at its time, and instances on synchronised clocks reach a fire
time together -- the case the claim is for, and the one the distributed test
makes them race in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..engine.errors import PredictionError
from ..engine.options import PredictConfig
from .errors import ServiceError
from .jobs_db import schedule_runs, schedules
from .logging_setup import log_event
from .manager import TaskManager
from .task import is_valid_task_id
from .uploads import ALLOWED_EXTENSIONS, UploadRejected, extension_of

SCHEDULES_KEY = "schedules"
TICK_S = 1.0
RUNS_SHOWN = 20
_HASH_CHUNK = 1024 * 1024
# Task ids of runs (``run_task_id``): any fixed namespace.
_RUN_NAMESPACE = uuid.UUID("5b0f3c2e-2f4e-4d53-9c52-7363686564ff")


class Scheduler:
    """The schedule component (``app.extensions["schedules"]``)."""

    def __init__(self, manager: TaskManager, db: Engine, logger: logging.Logger, *,
                 root: Path | None, default_timezone: str, grace_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.manager = manager
        self.db = db
        self.log = logger
        self.root = root.resolve() if root is not None else None
        self.default_timezone = default_timezone
        self.grace_s = grace_s
        self.clock = clock
        # PostgreSQL: the claim is held (uncommitted) while the run starts its task.
        self.hold_claims = db.dialect.name == "postgresql"
        self._lock = threading.Lock()
        self._shuffle = random.Random().shuffle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life ------------------------------------------------------------------

    def start(self) -> None:
        """Close the runs a crash left claimed, then tick in a thread."""
        self.close_interrupted()
        self._thread = threading.Thread(target=self._loop, name="predict-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def close_interrupted(self) -> int:
        """Runs claimed by a service that stopped before recording the outcome
        (SQLite: claims are committed at once, and the one service of the data dir
        is starting now; PostgreSQL never commits a bare claim). Their task, if the
        run got as far as starting it, is recorded; otherwise the run failed."""
        with self.db.connect() as conn:
            left = conn.execute(select(schedule_runs.c.schedule_id, schedule_runs.c.scheduled_for)
                                .where(schedule_runs.c.status == "claimed")).all()
        for schedule_id, scheduled_for in left:
            task = self.manager.store.get(run_task_id(schedule_id, scheduled_for))
            outcome = ({"status": "started", "task_id": task.id, "file_name": task.file_name,
                        "message": "已启动预测任务（服务随后停止，启动时补记）"} if task is not None else
                       {"status": "failed", "code": "INTERRUPTED",
                        "message": "服务在这次运行开始时停止，未能启动任务"})
            with self.db.begin() as conn:
                conn.execute(update(schedule_runs).where(
                    schedule_runs.c.schedule_id == schedule_id,
                    schedule_runs.c.scheduled_for == scheduled_for,
                    schedule_runs.c.status == "claimed").values(**outcome))
        return len(left)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S - time.time() % TICK_S):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the scheduler must outlive one bad tick
                self.log.exception("event=schedule.tick_failed")

    # --- the API -----------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        root = self._root()
        cron = _cron(body.get("cron"))
        tz = _timezone(body.get("timezone") or self.default_timezone)
        year = _year(body.get("year"))
        major = _text(body.get("major"))
        major = self.manager.resolve_major(year, major)
        try:
            config = PredictConfig.parse(_config_text(body.get("config"))).to_dict()
        except PredictionError as exc:
            raise ServiceError(exc.code, exc.message) from None
        source = self.source_dir(body.get("source_dir"), root)
        name = _text(body.get("name")) or f"{year} 级 {major or '全部专业'}（{source.name}）"
        now = self.clock()
        schedule_id = str(uuid.uuid4())
        with self.db.begin() as conn:
            conn.execute(insert(schedules).values(
                id=schedule_id, name=name[:200], cron=cron, timezone=tz, year=year, major=major,
                config=json.dumps(config, ensure_ascii=False), source_dir=str(source),
                paused=False, created_at=now, next_run_at=_next(cron, tz, now)))
        log_event(self.log, "schedule.created", None, schedule_id=schedule_id, cron=cron,
                  timezone=tz, source=str(source))
        return self.get(schedule_id)

    def list(self) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.created_at)).all()
        return [self._describe(r) for r in rows]

    def get(self, schedule_id: str) -> dict[str, Any]:
        return self._describe(self._row(schedule_id))

    def set_paused(self, schedule_id: str, paused: bool) -> dict[str, Any]:
        """Pause, or resume from now on (times passed while paused are not caught up)."""
        row = self._row(schedule_id)
        values: dict[str, Any] = {"paused": paused}
        if not paused:
            values["next_run_at"] = _next(row.cron, row.timezone, self.clock())
        with self.db.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.id == row.id).values(**values))
        log_event(self.log, "schedule.paused" if paused else "schedule.resumed", None,
                  schedule_id=row.id)
        return self.get(row.id)

    def delete(self, schedule_id: str) -> dict[str, Any]:
        row = self._row(schedule_id)
        with self._lock, self.db.begin() as conn:
            conn.execute(delete(schedule_runs).where(schedule_runs.c.schedule_id == row.id))
            conn.execute(delete(schedules).where(schedules.c.id == row.id))
        log_event(self.log, "schedule.deleted", None, schedule_id=row.id)
        return {"schedule_id": row.id, "message": f"已删除定时任务“{row.name}”"}

    def source_dir(self, raw: Any, root: Path) -> Path:
        """``raw`` (absolute, or relative to the root) as an existing folder inside the root."""
        text = _text(raw)
        if text is None:
            raise ServiceError("MISSING_SOURCE", "缺少来源文件夹 source_dir（教务导出文件所在的服务器文件夹）")
        if "\x00" in text:
            raise ServiceError("SOURCE_OUTSIDE_ROOT", f"来源文件夹必须位于 {root} 之下")
        path = (root / text).resolve()  # an absolute text replaces the root
        if not path.is_relative_to(root):
            raise ServiceError("SOURCE_OUTSIDE_ROOT", f"来源文件夹必须位于 {root} 之下")
        if not path.is_dir():
            raise ServiceError("SOURCE_NOT_FOUND", f"来源文件夹不存在：{path}")
        return path

    def _root(self) -> Path:
        if self.root is None:
            raise ServiceError("SCHEDULES_NOT_CONFIGURED",
                               "未配置定时任务的来源根目录（PREDICT_SCHEDULE_ROOT），无法创建定时任务，请联系管理员")
        return self.root

    def _row(self, schedule_id: str) -> Any:
        if not is_valid_task_id(schedule_id):
            raise ServiceError("INVALID_SCHEDULE_ID", "定时任务ID格式无效")
        with self.db.connect() as conn:
            row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).first()
        if row is None:
            raise ServiceError("SCHEDULE_NOT_FOUND", "定时任务不存在")
        return row

    def _describe(self, row: Any) -> dict[str, Any]:
        with self.db.connect() as conn:
            runs = conn.execute(
                select(schedule_runs).where(schedule_runs.c.schedule_id == row.id)
                .order_by(schedule_runs.c.scheduled_for.desc()).limit(RUNS_SHOWN)).all()
        tz = ZoneInfo(row.timezone)
        return {
            "schedule_id": row.id,
            "name": row.name,
            "cron": row.cron,
            "timezone": row.timezone,
            "year": row.year,
            "major": row.major,
            "config": json.loads(row.config or "{}"),
            "source_dir": row.source_dir,
            "paused": bool(row.paused),
            "created_at": _iso(row.created_at, tz),
            "next_run_at": None if row.paused else _iso(row.next_run_at, tz),
            "last_file": row.last_file,
            "runs": [{
                "scheduled_for": _iso(r.scheduled_for, tz),
                "ran_at": _iso(r.claimed_at, tz),
                "status": r.status,
                "task_id": r.task_id,
                "file_name": r.file_name,
                "code": r.code,
                "message": r.message,
            } for r in runs],
        }

    # --- firing ------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Fire every schedule that is due at ``now`` (default: the clock);
        returns the runs recorded, for tests and logs."""
        now = self.clock() if now is None else now
        fired = []
        with self._lock:
            with self.db.connect() as conn:
                due = list(conn.execute(select(schedules).where(
                    schedules.c.paused.is_(False), schedules.c.next_run_at <= now)))
            # Each instance in its own order: while one holds a run's claim the
            # others start other schedules instead of queueing behind it.
            self._shuffle(due)
            for row in due:
                run = self._fire(row, now)
                if run is not None:
                    fired.append(run)
        return fired

    def _fire(self, row: Any, now: float) -> dict[str, Any] | None:
        tz = ZoneInfo(row.timezone)
        latest = _latest(row.cron, row.timezone, now)
        following = _next(row.cron, row.timezone, now)
        run: dict[str, Any] = {"schedule_id": row.id, "scheduled_for": latest}
        late = now - latest
        status = "claimed" if late <= self.grace_s else "missed"
        outcome: dict[str, Any] | None = None
        try:
            with self.db.begin() as conn:
                conn.execute(insert(schedule_runs).values(
                    schedule_id=row.id, scheduled_for=latest, claimed_at=now, status=status,
                    message=None if status == "claimed" else
                    f"服务停止期间错过了 {_iso(latest, tz)} 的运行（晚了 {late / 60:.0f} 分钟，"
                    f"超过宽限期 {self.grace_s / 60:g} 分钟），未补跑"))
                conn.execute(update(schedules).where(schedules.c.id == row.id)
                             .values(next_run_at=following))
                if status == "claimed" and self.hold_claims:
                    # Committed with its outcome: until then another instance's
                    # insert of this run waits here (see the module doc).
                    outcome = self._record(conn, row.id, latest, *self._run(row, latest))
        except IntegrityError:
            # Claimed already (by another instance, or before a restart): not again.
            with self.db.begin() as conn:
                conn.execute(update(schedules).where(schedules.c.id == row.id)
                             .values(next_run_at=following))
            log_event(self.log, "schedule.claimed_elsewhere", None, logging.DEBUG,
                      schedule_id=row.id, scheduled_for=latest)
            return None
        if status == "missed":
            log_event(self.log, "schedule.missed", None, logging.WARNING, schedule_id=row.id,
                      late_s=round(late))
            return {**run, "status": "missed"}
        if outcome is None:  # SQLite: the claim is committed; run, then record
            result = self._run(row, latest)
            with self.db.begin() as conn:
                outcome = self._record(conn, row.id, latest, *result)
        log_event(self.log, "schedule.run", outcome.get("task_id"), schedule_id=row.id,
                  scheduled_for=latest, status=outcome["status"], code=outcome.get("code"))
        return {**run, **outcome}

    def _record(self, conn: Connection, schedule_id: str, scheduled_for: float,
                outcome: dict[str, Any], used: tuple[str, str] | None) -> dict[str, Any]:
        """The outcome on the run's row, the file used on the schedule's."""
        conn.execute(update(schedule_runs).where(
            schedule_runs.c.schedule_id == schedule_id,
            schedule_runs.c.scheduled_for == scheduled_for).values(**outcome))
        if used is not None:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id)
                         .values(last_sha256=used[0], last_file=used[1]))
        return outcome

    def _run(self, row: Any, scheduled_for: float
             ) -> tuple[dict[str, Any], tuple[str, str] | None]:
        """The outcome of the run and the file it used (recorded by the caller)."""
        try:
            return self._start(row, scheduled_for)
        except Exception:  # noqa: BLE001 - recorded on the run and logged; a held claim rolled back would be retried every tick
            self.log.exception("event=schedule.run_error schedule_id=%s", row.id)
            return {"status": "failed", "code": "INTERNAL_ERROR",
                    "message": "启动任务时发生内部错误，详情见服务日志"}, None

    def _start(self, row: Any, scheduled_for: float
               ) -> tuple[dict[str, Any], tuple[str, str] | None]:
        """Start the newest workbook of the source folder, unless it is the last one
        used; returns the outcome and (sha256, name) of the file now counted as used."""
        task_id = run_task_id(row.id, scheduled_for)
        try:
            started = self.manager.store.get(task_id)
        except ServiceError as exc:
            return {"status": "failed", "code": exc.code, "message": exc.message}, None
        if started is not None:  # by an instance that died before recording it
            return ({"status": "started", "task_id": started.id, "file_name": started.file_name,
                     "message": "已启动预测任务"}, (started.file_sha256, started.file_name))
        try:
            source = self.source_dir(row.source_dir, self._root())
        except ServiceError as exc:
            return {"status": "failed", "code": exc.code, "message": exc.message}, None
        newest = _newest_workbook(source, self.root)
        if newest is None:
            return {"status": "skipped", "code": "NO_SOURCE_FILE",
                    "message": "来源文件夹中没有 .xlsx 或 .xls 成绩文件"}, None
        try:
            sha = _sha256(newest)
        except OSError as exc:
            return {"status": "failed", "code": "SOURCE_UNREADABLE", "file_name": newest.name,
                    "message": f"无法读取来源文件 {newest.name}：{exc.strerror or exc}"}, None
        if sha == row.last_sha256:
            return {"status": "skipped", "code": "NOTHING_NEW", "file_name": newest.name,
                    "message": f"自上次运行以来没有新的导出文件（最新文件 {newest.name} 未变）"}, None
        try:
            with newest.open("rb") as fh:
                task = self.manager.start_task(
                    fh, newest.name, year=row.year, major=row.major,
                    config=json.loads(row.config or "{}"), priority="normal",
                    schedule_id=row.id, task_id=task_id)
        except ServiceError as exc:
            # The same broken file is not retried.
            used = (sha, newest.name) if isinstance(exc, UploadRejected) else None
            return {"status": "failed", "code": exc.code, "message": exc.message,
                    "file_name": newest.name}, used
        except PredictionError as exc:
            return {"status": "failed", "code": exc.code, "message": exc.message,
                    "file_name": newest.name}, None
        return {"status": "started", "task_id": task.id, "file_name": newest.name,
                "message": "已启动预测任务"}, (sha, newest.name)


def run_task_id(schedule_id: str, scheduled_for: float) -> str:
    """The task id of one run: the same for every instance that may start it,
    so a run is one task however often it is taken over."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{schedule_id}@{round(scheduled_for)}"))


# --- helpers -------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _config_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _year(value: Any) -> int:
    text = _text(value)
    if text is None:
        raise ServiceError("MISSING_YEAR", "缺少年级参数 year（例如 2024）")
    if len(text) != 4 or not (text.isascii() and text.isdigit()):
        raise ServiceError("BAD_YEAR", "年级 year 必须是四位数字，例如 2024")
    return int(text)


def _cron(value: Any) -> str:
    text = " ".join((_text(value) or "").split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ServiceError("BAD_CRON", "cron 表达式无效：需要五个字段（分 时 日 月 周），例如 0 7 * * 1-5 表示周一到周五 7:00")
    return text


def _timezone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ServiceError("BAD_TIMEZONE", f"未知的时区：{name}（例如 Asia/Shanghai）") from None
    return name


def _next(cron: str, tz: str, now: float) -> float:
    """The first time strictly after ``now``."""
    start = datetime.fromtimestamp(now, ZoneInfo(tz))
    return float(croniter(cron, start).get_next(float))


def _latest(cron: str, tz: str, now: float) -> float:
    """The last time at or before ``now``."""
    start = datetime.fromtimestamp(now, ZoneInfo(tz))
    it = croniter(cron, start)
    if croniter.match(cron, start) and start.second == 0 and start.microsecond == 0:
        return float(now)
    return float(it.get_prev(float))


def _newest_workbook(folder: Path, root: Path | None) -> Path | None:
    """The most recently modified workbook directly in ``folder``; hidden files,
    Office lock files (``~$``) and links that lead outside the root are ignored."""
    best: tuple[float, str, Path] | None = None
    for p in folder.iterdir():
        if p.name.startswith((".", "~$")) or extension_of(p.name) not in ALLOWED_EXTENSIONS:
            continue
        try:
            real = p.resolve()
            if (root is not None and not real.is_relative_to(root)) or not real.is_file():
                continue
            mtime = real.stat().st_mtime
        except OSError:
            continue
        key = (mtime, p.name, p)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best is not None else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _iso(ts: float | None, tz: ZoneInfo) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
