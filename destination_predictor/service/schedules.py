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
  it runs it. One service per data dir is enforced today (``store``), and the
  same claim is what lets several instances share one database later;
- a paused schedule does not fire; resuming does not catch up.

The clock is injected (``clock``) and ``tick()`` is public, so tests decide
what time it is; the thread only calls ``tick()`` every ``TICK_S``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import Engine, delete, insert, select, update
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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life ------------------------------------------------------------------

    def start(self) -> None:
        """Close the runs a crash left claimed, then tick in a thread."""
        with self.db.begin() as conn:
            conn.execute(update(schedule_runs).where(schedule_runs.c.status == "claimed").values(
                status="failed", code="INTERRUPTED", message="服务在这次运行开始时停止，未能启动任务"))
        self._thread = threading.Thread(target=self._loop, name="predict-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
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
                due = conn.execute(select(schedules).where(
                    schedules.c.paused.is_(False), schedules.c.next_run_at <= now)).all()
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
        try:
            with self.db.begin() as conn:
                conn.execute(insert(schedule_runs).values(
                    schedule_id=row.id, scheduled_for=latest, claimed_at=now, status=status,
                    message=None if status == "claimed" else
                    f"服务停止期间错过了 {_iso(latest, tz)} 的运行（晚了 {late / 60:.0f} 分钟，"
                    f"超过宽限期 {self.grace_s / 60:g} 分钟），未补跑"))
                conn.execute(update(schedules).where(schedules.c.id == row.id)
                             .values(next_run_at=following))
        except IntegrityError:
            # Claimed already (by another instance, or before a restart): not again.
            with self.db.begin() as conn:
                conn.execute(update(schedules).where(schedules.c.id == row.id)
                             .values(next_run_at=following))
            return None
        if status == "missed":
            log_event(self.log, "schedule.missed", None, logging.WARNING, schedule_id=row.id,
                      late_s=round(late))
            return {**run, "status": "missed"}
        outcome = self._run(row)
        with self.db.begin() as conn:
            conn.execute(update(schedule_runs).where(
                schedule_runs.c.schedule_id == row.id,
                schedule_runs.c.scheduled_for == latest).values(**outcome))
        log_event(self.log, "schedule.run", outcome.get("task_id"), schedule_id=row.id,
                  status=outcome["status"], code=outcome.get("code"))
        return {**run, **outcome}

    def _run(self, row: Any) -> dict[str, Any]:
        """Start the newest workbook of the source folder, unless it is the last one used."""
        try:
            source = self.source_dir(row.source_dir, self._root())
        except ServiceError as exc:
            return {"status": "failed", "code": exc.code, "message": exc.message}
        newest = _newest_workbook(source, self.root)
        if newest is None:
            return {"status": "skipped", "code": "NO_SOURCE_FILE",
                    "message": "来源文件夹中没有 .xlsx 或 .xls 成绩文件"}
        try:
            sha = _sha256(newest)
        except OSError as exc:
            return {"status": "failed", "code": "SOURCE_UNREADABLE", "file_name": newest.name,
                    "message": f"无法读取来源文件 {newest.name}：{exc.strerror or exc}"}
        if sha == row.last_sha256:
            return {"status": "skipped", "code": "NOTHING_NEW", "file_name": newest.name,
                    "message": f"自上次运行以来没有新的导出文件（最新文件 {newest.name} 未变）"}
        try:
            with newest.open("rb") as fh:
                task = self.manager.start_task(
                    fh, newest.name, year=row.year, major=row.major,
                    config=json.loads(row.config or "{}"), priority="normal",
                    schedule_id=row.id)
        except ServiceError as exc:
            if isinstance(exc, UploadRejected):
                self._used(row.id, sha, newest.name)  # the same broken file is not retried
            return {"status": "failed", "code": exc.code, "message": exc.message,
                    "file_name": newest.name}
        except PredictionError as exc:
            return {"status": "failed", "code": exc.code, "message": exc.message,
                    "file_name": newest.name}
        self._used(row.id, sha, newest.name)
        return {"status": "started", "task_id": task.id, "file_name": newest.name,
                "message": "已启动预测任务"}

    def _used(self, schedule_id: str, sha: str, name: str) -> None:
        with self.db.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id)
                         .values(last_sha256=sha, last_file=name))


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
