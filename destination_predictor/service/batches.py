"""Batches: several workbooks (or one zip of them) started as one unit.

Each file becomes an ordinary task (``TaskManager.start_task`` with the
batch's id), so a batch goes through the same bounded pool, the same checks
and the same recovery as single tasks. What a batch adds:

- refusals per file: a file the upload checks refuse (wrong type, broken
  content, zip bomb, ...) still gets a task -- failed at once with the same
  code and Chinese reason -- so the batch shows it and the other files run;
  only refusals of the whole request (year, major, model, too many files, not
  enough room in the queue, a full disk) refuse the batch;
- room up front: a batch larger than the queue's free room is refused whole
  (503 ``QUEUE_FULL``, nothing started) instead of starting some files; a
  single start racing in between can still take the last places, and then
  the files that found no room fail with ``QUEUE_FULL`` on their own task;
- its end, once: when the last task of a sealed batch ends (``store.on_finished``)
  each ``on_batch_finished`` listener gets one plain dict. Durable: a batch
  that ended while the service was down is reported by ``start()``.
  Listeners are called before ``reported_at`` is written, so a crash in
  between reports it again at the next start (at least once; exactly once
  while the service keeps running). Several API instances (the distributed
  mode) check a batch one at a time: the check locks the batch's row
  (``FOR UPDATE``) until ``reported_at`` is written, so the next one sees it;
- sealed once every file has its task; a batch whose creation was cut short
  (the instance storing its files died) is sealed with the tasks it got, by
  the next check of it or the next start of any instance -- but not while
  its creator is alive: the creator holds the batch's lock (``store.alone``,
  a PostgreSQL advisory lock in the distributed mode, dropped by the server
  with a dead process's connection), so another instance starting up does
  not seal a batch whose files are still being stored;
- one zip of every result, a folder per source file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, BinaryIO

from sqlalchemy import Engine, delete, insert, select, update

from .errors import ServiceError
from .jobs_db import batch_tasks, batches
from .logging_setup import log_event
from .manager import TaskManager
from .task import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    Task,
    fail,
    is_valid_task_id,
    new_task_id,
)
from .uploads import ALLOWED_EXTENSIONS, extension_of, safe_original_name

BATCHES_KEY = "batches"

BatchListener = Callable[[dict[str, Any]], None]
Opener = Callable[[], AbstractContextManager[IO[bytes]]]

# How often the batch list forgets batches whose task records are all gone.
PRUNE_INTERVAL_S = 3600.0

# Entries of a zip that are not the user's files (macOS resource forks, Office lock files).
_SKIPPED_PREFIXES = ("__MACOSX/",)


@dataclass
class BatchFile:
    """One file of a batch: its name, a way to open its bytes, its year."""

    name: str
    open: Opener
    year: int
    # A refusal found before the file could be read (a broken zip): fails its task.
    refusal: ServiceError | None = None


class Batches:
    """The batch component (``app.extensions["batches"]``)."""

    def __init__(self, manager: TaskManager, db: Engine, logger: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.manager = manager
        self.db = db
        self.log = logger
        self.clock = clock
        self._listeners: list[BatchListener] = []
        self._lock = threading.Lock()
        self._creating: set[str] = set()  # batches this process is storing the files of
        self._started = False
        self._pruned_at: float | None = None
        manager.store.on_finished(self._task_finished)

    # --- listeners ------------------------------------------------------------

    def on_batch_finished(self, listener: BatchListener) -> None:
        """``listener(report)`` once per batch when its last task ends (see module doc)."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Report batches that ended while nobody listened (before a restart, or
        during recovery); called by ``create_app`` once every listener is wired."""
        self.seal_abandoned()
        with self.db.connect() as conn:
            open_ids = [r.id for r in conn.execute(
                select(batches.c.id).where(batches.c.reported_at.is_(None)))]
        self._started = True
        for batch_id in open_ids:
            self._check(batch_id)
        self.prune()

    def seal_abandoned(self, batch_id: str | None = None) -> int:
        """Seal the batches (or the one given) whose creation was cut short -- the
        service storing their files died -- so they end with the tasks they got;
        a batch whose creator is alive (here, or another instance holding its
        lock) is left to it. Returns how many were sealed."""
        query = select(batches.c.id).where(batches.c.sealed.is_(False))
        if batch_id is not None:
            query = query.where(batches.c.id == batch_id)
        with self.db.connect() as conn:
            unsealed = [r.id for r in conn.execute(query)]
        sealed = 0
        for found in unsealed:
            with self._lock:
                if found in self._creating:
                    continue
            with self.manager.store.alone(_creation_job(found)) as abandoned:
                if not abandoned:
                    continue
                with self.db.begin() as conn:
                    sealed += conn.execute(update(batches).where(
                        batches.c.id == found, batches.c.sealed.is_(False))
                        .values(sealed=True)).rowcount
        if sealed:
            log_event(self.log, "batch.sealed_abandoned", None, logging.WARNING, batches=sealed)
        return sealed

    def prune(self) -> int:
        """Forget reported batches whose every task record is gone (the cleaner
        deletes task records after ``PREDICT_RECORD_RETENTION_DAYS``); returns how many."""
        self._pruned_at = time.monotonic()
        with self.db.connect() as conn:
            ids = [r.id for r in conn.execute(
                select(batches.c.id).where(batches.c.reported_at.is_not(None)))]
        gone = [i for i in ids if all(t is None for _, t in self._members(i))]
        if gone:
            with self.db.begin() as conn:
                conn.execute(delete(batch_tasks).where(batch_tasks.c.batch_id.in_(gone)))
                conn.execute(delete(batches).where(batches.c.id.in_(gone)))
            log_event(self.log, "batch.pruned", None, batches=len(gone))
        return len(gone)

    # --- creating --------------------------------------------------------------

    def create(self, files: list[BatchFile], *, major: str | None, config: dict[str, Any],
               priority: str) -> tuple[str, list[str]]:
        """Start one task per file; returns (batch id, task ids in file order)."""
        settings = self.manager.settings
        if not files:
            raise ServiceError("MISSING_FILE", "请上传至少一个成绩文件（表单字段 files，.xlsx、.xls 或 .zip）")
        if len(files) > settings.max_batch_files:
            raise ServiceError("TOO_MANY_FILES",
                               f"一次批量最多 {settings.max_batch_files} 个文件，本次有 {len(files)} 个")
        resolved = {y: self.manager.resolve_major(y, major) for y in sorted({f.year for f in files})}
        if any(code == "DISK_FULL" for code, _ in self.manager.problems()):
            raise ServiceError("DISK_FULL", "服务器数据目录空间不足，暂时无法接收新任务，请稍后再试或联系管理员",
                               {"Retry-After": "60"})
        room = self.free_room()
        if len(files) > room:
            raise ServiceError(
                "QUEUE_FULL",
                f"排队空位不足：本批 {len(files)} 个文件，当前只能再接收 {room} 个，请稍后再提交或分批提交",
                {"Retry-After": "30"})
        batch_id = str(uuid.uuid4())
        with self._lock:
            self._creating.add(batch_id)
        try:
            with self.manager.store.alone(_creation_job(batch_id)):
                task_ids = self._store_files(batch_id, files, major, resolved, config, priority)
        finally:
            with self._lock:
                self._creating.discard(batch_id)
        self._check(batch_id)
        return batch_id, task_ids

    def _store_files(self, batch_id: str, files: list[BatchFile], major: str | None,
                     resolved: dict[int, str | None], config: dict[str, Any],
                     priority: str) -> list[str]:
        """The batch's row, one task per file, then sealed (while its creation lock is held)."""
        years = {f.year for f in files}
        now = self.clock()
        with self.db.begin() as conn:
            conn.execute(insert(batches).values(
                id=batch_id, created_at=now, year=years.pop() if len(years) == 1 else None,
                major=major, config=json.dumps(config, ensure_ascii=False), priority=priority,
                file_count=len(files), sealed=False, cancel_requested=False))
        log_event(self.log, "batch.created", None, batch_id=batch_id, files=len(files))
        task_ids: list[str] = []
        try:
            for position, f in enumerate(files):
                task = self._start_one(batch_id, f, resolved[f.year], config, priority)
                task_ids.append(task.id)
                with self.db.begin() as conn:
                    conn.execute(insert(batch_tasks).values(
                        batch_id=batch_id, position=position, task_id=task.id,
                        file_name=task.file_name))
        finally:
            with self.db.begin() as conn:
                conn.execute(update(batches).where(batches.c.id == batch_id)
                             .values(sealed=True, file_count=len(task_ids)))
        return task_ids

    def free_room(self) -> int:
        """How many more tasks the pool takes now (running slots free + queue room)."""
        ex = self.manager.executor
        idle = max(ex.max_workers - ex.running_count(), 0)
        return max(ex.max_pending - ex.pending_count() + idle, 0)

    def _start_one(self, batch_id: str, f: BatchFile, major: str | None,
                   config: dict[str, Any], priority: str) -> Task:
        if f.refusal is None:
            try:
                with f.open() as stream:
                    return self.manager.start_task(stream, f.name, year=f.year, major=major,
                                                   config=config, priority=priority,
                                                   batch_id=batch_id)
            except ServiceError as exc:
                refusal = exc
        else:
            refusal = f.refusal
        log_event(self.log, "batch.file_refused", None, logging.WARNING, batch_id=batch_id,
                  file=f.name, code=refusal.code)
        return self._failed_task(batch_id, f, major, config, priority, refusal)

    def _failed_task(self, batch_id: str, f: BatchFile, major: str | None,
                     config: dict[str, Any], priority: str, refusal: ServiceError) -> Task:
        """A task for a file that was refused: no upload, failed at once with the reason."""
        now = self.clock()
        task = Task(id=new_task_id(), seq=self.manager.store.next_seq(), year=f.year,
                    file_name=safe_original_name(f.name), upload_name="", file_sha256="",
                    cache_key="", created_at=now, major=major, config=config,
                    priority=priority, batch_id=batch_id)
        self.manager.store.add(task)
        return self.manager.store.update(
            task.id, lambda t: fail(t, now, refusal.code, refusal.message))

    # --- reading ---------------------------------------------------------------

    def _row(self, batch_id: str) -> Any:
        if not is_valid_task_id(batch_id):
            raise ServiceError("INVALID_BATCH_ID", "批量任务ID格式无效")
        with self.db.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        if row is None:
            raise ServiceError("BATCH_NOT_FOUND", "批量任务不存在")
        return row

    def _members(self, batch_id: str) -> list[tuple[str, Task | None]]:
        """(file name, task or None if its record is gone) in upload order."""
        with self.db.connect() as conn:
            rows = conn.execute(select(batch_tasks).where(batch_tasks.c.batch_id == batch_id)
                                .order_by(batch_tasks.c.position)).all()
        return [(r.file_name, self.manager.store.get(r.task_id)) for r in rows]

    def status(self, batch_id: str) -> dict[str, Any]:
        row = self._row(batch_id)
        if not row.sealed and self._started:  # its creator may have died meanwhile
            self._check(row.id)
            row = self._row(batch_id)
        return self._describe(row)

    def list(self, limit: int) -> list[dict[str, Any]]:
        """Newest first."""
        if self._pruned_at is None or time.monotonic() - self._pruned_at > PRUNE_INTERVAL_S:
            self.prune()
        with self.db.connect() as conn:
            rows = conn.execute(select(batches).order_by(batches.c.created_at.desc())
                                .limit(limit)).all()
        return [self._describe(r) for r in rows]

    def _describe(self, row: Any) -> dict[str, Any]:
        members = self._members(row.id)
        tasks = [t for _, t in members if t is not None]
        counts = _counts(tasks)
        active = any(t.status in ACTIVE for t in tasks) or not row.sealed
        total = len(members)
        progress = round(sum(100 if t.status not in ACTIVE else t.progress for t in tasks)
                         / total) if total else 0
        return {
            "batch_id": row.id,
            "state": "running" if active else (row.state or _outcome(tasks, row.cancel_requested)),
            "total": total,
            "counts": counts,
            "progress": progress,
            "year": row.year,
            "major": row.major,
            "priority": row.priority,
            "cancel_requested": bool(row.cancel_requested),
            "created_at": _iso(row.created_at),
            "finished_at": _iso(row.finished_at),
            "tasks": [dict(t.to_public(self._position(t)), source_file=name)
                      if t is not None else _gone(name) for name, t in members],
        }

    def _position(self, task: Task) -> int | None:
        if task.status.value != "pending":
            return None
        return self.manager.executor.queue_position(task.id)

    # --- cancelling -------------------------------------------------------------

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Cancel every task of the batch that has not ended; ended ones keep their results."""
        row = self._row(batch_id)
        members = self._members(row.id)
        if row.sealed and all(t is None or t.status not in ACTIVE for _, t in members):
            raise ServiceError("BATCH_FINISHED", "批量任务已全部结束，无法取消")
        with self.db.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == row.id)
                         .values(cancel_requested=True))
        cancelled = 0
        for _, task in members:
            if task is None or task.status not in ACTIVE:
                continue
            try:
                self.manager.cancel(task.id)
                cancelled += 1
            except ServiceError as exc:
                if exc.code not in ("TASK_FINISHED", "TASK_NOT_FOUND"):
                    raise
        log_event(self.log, "batch.cancelled", None, batch_id=row.id, tasks=cancelled)
        return {"batch_id": row.id, "cancelled_tasks": cancelled,
                "message": f"已取消 {cancelled} 个未完成的任务（运行中的任务在当前步骤结束后停止）"}

    # --- results -----------------------------------------------------------------

    def results_zip(self, batch_id: str) -> tuple[IO[bytes], str]:
        """Every result in one zip, a folder per source file (named after it); a file
        without results gets ``失败原因.txt`` in its folder instead."""
        row = self._row(batch_id)
        members = self._members(row.id)
        if not row.sealed or any(t is not None and t.status in ACTIVE for _, t in members):
            raise ServiceError("BATCH_NOT_FINISHED", "批量任务尚未全部结束，结束后才能下载全部结果")
        if not any(t is not None and t.status is COMPLETED and not t.expired for _, t in members):
            raise ServiceError("BATCH_NO_RESULTS", "该批量任务没有可下载的结果（全部失败、取消或已清理）")
        tmp = tempfile.TemporaryFile(dir=self.manager.settings.staging_dir)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for folder, (name, task) in zip(_folders([n for n, _ in members]), members,
                                                strict=True):
                    self._add_folder(zf, folder, name, task)
            tmp.seek(0)
        except BaseException:
            tmp.close()
            raise
        return tmp, f"batch_{row.id}_results.zip"

    def _add_folder(self, zf: zipfile.ZipFile, folder: str, name: str, task: Task | None) -> None:
        if task is not None and task.status is COMPLETED and not task.expired:
            try:
                for result in task.result_files:
                    path = self.manager.result_path(task.id, result)
                    zf.write(path, arcname=f"{folder}/{path.name.removeprefix(task.id + '_')}")
                return
            except ServiceError as exc:
                reason = exc.message
        elif task is None:
            reason = "任务记录已被清理"
        elif task.status is COMPLETED:
            reason = "结果文件已超过保留期限并被清理"
        else:
            reason = task.error or "任务未完成"
        zf.writestr(f"{folder}/失败原因.txt", f"{name}\n{reason}\n")

    # --- the end of a batch ------------------------------------------------------

    def _task_finished(self, task: Task) -> None:
        if task.batch_id is not None:
            self._check(task.batch_id)

    def _check(self, batch_id: str) -> None:
        """Report the batch if it is sealed, every task ended and it was not reported.

        One check at a time in this process (``_lock``) and, across instances,
        per batch: its row stays locked (``FOR UPDATE``; SQLite has one service)
        from the reading until ``reported_at`` is written, so a second check
        waits and then finds it reported."""
        if not self._started:
            return
        self.seal_abandoned(batch_id)
        with self._lock, self.db.begin() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)
                               .with_for_update()).first()
            if row is None or not row.sealed or row.reported_at is not None:
                return
            members = self._members(batch_id)
            tasks = [t for _, t in members if t is not None]
            if any(t.status in ACTIVE for t in tasks):
                return
            state = row.state or _outcome(tasks, row.cancel_requested)
            finished = row.finished_at or max((t.finished_at or 0.0 for t in tasks),
                                              default=self.clock())
            report = {
                "batch_id": batch_id, "state": state, "counts": _counts(tasks),
                "tasks": [{"task_id": t.id if t else None, "file": name,
                           "status": _state_name(t), "error": t.error if t else "任务记录已被清理",
                           "summary": t.summary if t else None} for name, t in members],
                "year": row.year, "created_at": _iso(row.created_at), "finished_at": _iso(finished),
            }
            log_event(self.log, "batch.finished", None, batch_id=batch_id, state=state,
                      **{f"n_{k}": v for k, v in report["counts"].items()})
            for listener in list(self._listeners):
                try:
                    listener(report)
                except Exception:  # noqa: BLE001 - one listener must not stop the others
                    self.log.exception("event=batch.listener_failed batch_id=%s", batch_id)
            conn.execute(update(batches).where(batches.c.id == batch_id)
                         .values(state=state, finished_at=finished, reported_at=self.clock()))


def _creation_job(batch_id: str) -> str:
    """The lock a batch's creator holds while it stores the files (``store.alone``)."""
    return f"batch-create:{batch_id}"


# --- reading the request's files -------------------------------------------------

def expand(name: str, stream: BinaryIO, year: int) -> list[BatchFile]:
    """One uploaded part as batch files: a workbook is itself, a ``.zip`` is its
    workbooks (a broken zip is one file refused with its reason). The part's
    bytes are read from ``stream`` (werkzeug spools large parts to disk)."""
    if extension_of(name) != ".zip":
        return [BatchFile(name, _once(stream), year)]
    try:
        zf = zipfile.ZipFile(stream)
        infos = [i for i in zf.infolist() if not i.is_dir() and _wanted(i.filename)]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        refusal = ServiceError("BAD_FILE_CONTENT", "压缩包已损坏，无法读取其中的成绩文件")
        return [BatchFile(name, _nothing(), year, refusal)]
    if not infos:
        refusal = ServiceError("EMPTY_FILE", "压缩包中没有 .xlsx 或 .xls 成绩文件")
        return [BatchFile(name, _nothing(), year, refusal)]
    out = []
    for info in infos:
        member = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
        out.append(BatchFile(member, _member(zf, info), year))
    return out


def _wanted(path: str) -> bool:
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    return (not path.startswith(_SKIPPED_PREFIXES) and not base.startswith((".", "~$"))
            and base != "")


def _once(stream: BinaryIO) -> Opener:
    @contextmanager
    def opener() -> Iterator[IO[bytes]]:
        yield stream
    return opener


def _member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Opener:
    """The member's bytes as read (so ``save_upload`` counts and caps the inflated
    size); an encrypted or unsupported member is refused like a broken file."""
    @contextmanager
    def opener() -> Iterator[IO[bytes]]:
        try:
            fh = zf.open(info)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, OSError) as exc:
            raise ServiceError("BAD_FILE_CONTENT",
                               "压缩包中的该文件无法读取（加密或已损坏）") from exc
        with fh:
            yield fh
    return opener


def _nothing() -> Opener:
    """The opener of a file refused before reading (never called)."""
    @contextmanager
    def opener() -> Iterator[IO[bytes]]:
        raise AssertionError("a refused file is never opened")
        yield  # pragma: no cover
    return opener


def is_workbook_or_zip(name: str) -> bool:
    return extension_of(name) in (*ALLOWED_EXTENSIONS, ".zip")


# --- small helpers ---------------------------------------------------------------

def _state_name(task: Task | None) -> str:
    return "missing" if task is None else task.status.value


def _counts(tasks: list[Task]) -> dict[str, int]:
    """Per state, cancelled apart from failed (the batch's own view)."""
    out = {"pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    for t in tasks:
        out[t.status.value] += 1
    return out


def _outcome(tasks: list[Task], cancel_requested: bool) -> str:
    if cancel_requested or (tasks and all(t.status is CANCELLED for t in tasks)):
        return "cancelled"
    done = sum(1 for t in tasks if t.status is COMPLETED)
    if tasks and done == len(tasks):
        return "completed"
    return "failed" if done == 0 else "partial"


def _folders(names: list[str]) -> list[str]:
    """A folder name per source file: its name without the extension, made unique."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        stem = os.path.splitext(safe_original_name(name))[0] or "file"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        out.append(stem if n == 1 else f"{stem} ({n})")
    return out


def _gone(name: str) -> dict[str, Any]:
    return {"id": None, "status": "missing", "source_file": name, "file_name": name}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")
