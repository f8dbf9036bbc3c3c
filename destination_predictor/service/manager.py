"""What the views call: one method per thing a client can ask for.

Holds the pieces built by ``create_app`` (engine, store, executor, cache,
cleaner) and is reached through ``current_manager()``, never through a module
global. Refusals are raised as ``ServiceError`` (code + Chinese message); the
HTTP status comes from ``errors.HTTP_STATUS``, not from here.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from flask import current_app
from redis.exceptions import RedisError

from .. import __version__
from ..engine.options import PredictConfig
from .cache import ResultCache, cache_key
from .cleaner import Cleaner
from .dispatch import QueueUnavailable, RqDispatcher
from .errors import ServiceError
from .executor import NotCancellable, QueueFull, TaskExecutor
from .logging_setup import close_logger, log_event
from .settings import Settings
from .storage import RESULTS, UPLOADS, Storage, StorageUnavailable, StoredFile
from .store import StoreUnwritable, TaskNotFound, TaskStore
from .task import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    WIRE_STATUSES,
    Task,
    TaskState,
    is_valid_task_id,
    new_task_id,
)
from .uploads import UploadRejected, discard_upload, save_upload
from .validate import validate_upload

EXTENSION_KEY = "predict"
# Walking uploads/ and results/ on every refresh of every open console would
# be wasted work; sizes a few seconds old are good enough for a panel.
DISK_USAGE_CACHE_S = 2.0


def current_manager() -> TaskManager:
    """The task manager of the app handling the current request (the one accessor)."""
    return current_app.extensions[EXTENSION_KEY]


class TaskManager:
    def __init__(self, settings: Settings, engine: Any, engine_error: str | None,
                 store: TaskStore, executor: TaskExecutor | RqDispatcher, cache: ResultCache,
                 cleaner: Cleaner, storage: Storage, logger: logging.Logger,
                 clock: Callable[[], float] = time.time,
                 plan_versions: Callable[[int, str | None], dict[str, str]] | None = None,
                 ) -> None:
        self.settings = settings
        self.engine = engine
        self.engine_error = engine_error
        self.store = store
        self.executor = executor
        self.cache = cache
        self.cleaner = cleaner
        self.storage = storage
        self.log = logger
        self.clock = clock
        # {major: version} of the plans a run reads (plan_store); recorded on each task.
        self.plan_versions = plan_versions
        self.started_at = clock()
        self._closed = False
        self._disk_lock = threading.Lock()
        self._disk_usage: tuple[float, dict[str, int]] | None = None
        # Stopped first on shutdown, newest first: components built on top of the
        # task manager (the scheduler, the batch watcher) that must not start work
        # while the pool stops.
        self._on_shutdown: list[Callable[[], None]] = []

    # --- engine facts -------------------------------------------------------

    def _engine(self) -> Any:
        if self.engine is None:
            raise ServiceError("MODEL_UNAVAILABLE", "预测模型未能加载，服务暂时无法预测，请联系管理员")
        return self.engine

    def majors(self) -> dict[int, list[dict[str, str]]]:
        return self._engine().majors_by_year()

    def resolve_major(self, year: int, major: str | None) -> str | None:
        """The plan name for ``major`` (a name or a file code) in ``year``."""
        return self._engine().resolve_major(year, major)

    # --- tasks --------------------------------------------------------------

    def start_task(self, stream: BinaryIO, filename: str, *, year: int, major: str | None,
                   config: dict[str, Any], priority: str, batch_id: str | None = None,
                   schedule_id: str | None = None, task_id: str | None = None) -> Task:
        """Check, store and queue one upload; ``batch_id``/``schedule_id`` record
        which batch or schedule made the task (``service.batches``, ``service.schedules``);
        ``task_id`` is a scheduled run's own id (one task per run, whichever instance starts it)."""
        engine = self._engine()
        major = self.resolve_major(year, major)
        if not self.executor.has_room():
            raise _queue_full()
        if self._disk_low(self._free_bytes()):
            raise _disk_full()
        try:
            saved = save_upload(
                stream, filename, uploads_dir=self.settings.uploads_dir,
                staging_dir=self.settings.staging_dir,
                max_bytes=self.settings.max_upload_bytes,
                max_unzipped_bytes=self.settings.max_unzipped_bytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full() from exc
            raise
        except UploadRejected as exc:
            log_event(self.log, "upload.rejected", None, logging.WARNING, code=exc.code,
                      file=filename)
            raise
        try:  # shared before the task exists: any worker may take it
            self.storage.publish(UPLOADS, saved.stored_name)
        except StorageUnavailable:
            discard_upload(saved)
            raise
        version = engine.model_version
        task = Task(
            id=task_id or new_task_id(), seq=self.store.next_seq(), year=year, major=major,
            file_name=saved.original_name, upload_name=saved.stored_name,
            file_sha256=saved.sha256, config=config, priority=priority,
            cache_key=cache_key(saved.sha256, year, major, config,
                                engine.fingerprint(year, major)),
            created_at=self.clock(), model_version=version, demo_model=engine.is_demo_model,
            plan_versions=self.plan_versions(year, major) if self.plan_versions else {},
            batch_id=batch_id, schedule_id=schedule_id)
        try:
            self.store.add(task)
        except StoreUnwritable:
            discard_upload(saved)
            raise
        log_event(self.log, "task.created", task.id, year=year, major=major, priority=priority,
                  file=saved.original_name, upload=saved.stored_name, bytes=saved.size)
        cached = self.cache.complete_from_cache(task)
        if cached is not None:
            return cached
        try:
            self.executor.submit(task)
        except QueueFull as exc:
            self.store.delete(task.id)
            discard_upload(saved)
            refusal = exc.refusal() if isinstance(exc, QueueUnavailable) else _queue_full()
            log_event(self.log, "task.refused", task.id, logging.WARNING, code=refusal.code)
            raise refusal from None
        return task

    def validate(self, stream: BinaryIO, filename: str, *, year: int, major: str | None,
                 config: dict[str, Any]) -> dict[str, Any]:
        """The check report of an upload (``service.validate``); no task, nothing kept."""
        engine = self._engine()
        major = self.resolve_major(year, major)
        if self._disk_low(self._free_bytes()):
            raise _disk_full()
        return validate_upload(stream, filename, year=year, major=major,
                               config=PredictConfig.parse(config), settings=self.settings,
                               demo_model=engine.is_demo_model)

    def get(self, task_id: str) -> Task:
        if not is_valid_task_id(task_id):
            raise ServiceError("INVALID_TASK_ID", "任务ID格式无效")
        task = self.store.get(task_id)
        if task is None:
            raise ServiceError("TASK_NOT_FOUND", "任务不存在")
        return task

    def status(self, task_id: str) -> dict[str, Any]:
        task = self.get(task_id)
        position = self.executor.queue_position(task.id) if task.status is PENDING else None
        return task.to_public(position)

    def list_tasks(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; ``status`` is a wire status (``failed`` includes cancelled)."""
        states = TaskState.from_wire(status) if status is not None else None
        return [t.to_public() for t in self.store.newest(states, limit)]

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        try:
            task = self.executor.cancel(task.id)
        except NotCancellable:
            raise ServiceError("TASK_FINISHED", "任务已结束，无法取消") from None
        except TaskNotFound:
            raise ServiceError("TASK_NOT_FOUND", "任务不存在") from None
        return task

    def completed(self, task_id: str, *, purpose: str = "下载") -> Task:
        """A task whose results can be used (downloaded, imported): completed and not expired.

        The same refusals for every use: 410 when cleaned up, 409 while the
        task's state does not allow it."""
        task = self.get(task_id)
        if task.expired:
            raise ServiceError("TASK_EXPIRED",
                               f"任务结果已超过保留期限并被清理，无法{purpose}，请重新提交")
        if task.status in (FAILED, CANCELLED):
            raise ServiceError("TASK_FAILED", f"任务执行失败，没有可{purpose}的结果")
        if task.status is not COMPLETED:
            raise ServiceError("TASK_NOT_COMPLETED",
                               f"任务尚未完成（状态 {task.status.wire}），完成后才能{purpose}")
        return task

    def result_path(self, task_id: str, filename: str) -> Path:
        """Only a file recorded on the task (a local copy when stored elsewhere)."""
        return self.result_file(task_id, filename).path

    def result_file(self, task_id: str, filename: str) -> StoredFile:
        """The local copy of one recorded result, with the tag that names its
        content on every instance (None in a directory: the web layer's own)."""
        task = self.completed(task_id)
        if filename not in task.result_files:
            raise ServiceError("FILE_NOT_FOUND", "该任务没有这个结果文件")
        return self.stored_result(filename)

    def stored_upload(self, task: Task, gone: str) -> Path:
        """The task's upload as a local file; ``gone`` is the refusal's message
        when it has been cleaned up."""
        try:
            return self.storage.fetch(UPLOADS, task.upload_name).path
        except FileNotFoundError:
            raise ServiceError("UPLOAD_MISSING", gone) from None

    def stored_result(self, filename: str) -> StoredFile:
        try:
            return self.storage.fetch(RESULTS, filename)
        except FileNotFoundError:
            raise ServiceError("RESULT_GONE", "结果文件已被清理，请重新提交任务") from None

    def results_zip(self, task_id: str) -> tuple[IO[bytes], str]:
        """Every result of a task in one zip (stored, not deflated: xlsx is
        already compressed); the temporary file disappears when closed.

        Members carry the engine's names (``Cohort2024_Predictions_ai.xlsx``),
        not the stored ``{task_id}_`` prefix; the zip's own name keeps the id."""
        task = self.completed(task_id)
        paths = [self.stored_result(name).path for name in task.result_files]
        tmp = tempfile.TemporaryFile(dir=self.settings.staging_dir)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for p in paths:
                    zf.write(p, arcname=p.name.removeprefix(f"{task.id}_"))
            tmp.seek(0)
        except BaseException:
            tmp.close()
            raise
        return tmp, f"{task.id}_results.zip"

    # --- operations ---------------------------------------------------------

    def _free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.settings.files_root).free
        except OSError:
            return None

    def _disk_low(self, free: int | None) -> bool:
        return free is not None and free < self.settings.min_free_mb * 1024 * 1024

    def problems(self, free: int | None = None) -> list[tuple[str, str]]:
        """What keeps the service from doing its work, as (code, Chinese reason); empty when
        healthy. ``/health`` answers 503 with the first; uploads are refused while the disk
        is low. Each check is cheap: a store write is only tried after one failed."""
        found: list[tuple[str, str]] = []
        if self.engine is None:
            found.append(("MODEL_UNAVAILABLE", "预测模型未加载"))
        if isinstance(self.executor, RqDispatcher) and not self.executor.reachable():
            found.append(("QUEUE_UNAVAILABLE", "任务队列（Redis）连不上"))
        dead = self.executor.dead_workers()
        if dead:
            found.append(("WORKER_DEAD", f"{dead} 个执行线程已停止（正在重启）"))
        storage_problem = self.storage.problem()
        if storage_problem is not None:
            found.append(("STORAGE_UNAVAILABLE", "文件存储（对象存储）连不上"))
        if not self.store.writable() or self.executor.unrecorded_failures():
            found.append(("STORE_UNWRITABLE", "任务记录无法写入（数据目录磁盘已满或不可写）"))
        if self._disk_low(self._free_bytes() if free is None else free):
            found.append(("DISK_FULL", f"数据目录可用空间低于 {self.settings.min_free_mb:g} MB"))
        return found

    def health(self) -> dict[str, Any]:
        free = self._free_bytes()
        problems = self.problems(free)
        counts = self.store.counts()
        return {
            "status": "ok" if not problems else "degraded",
            "problems": [{"code": c, "reason": r} for c, r in problems],
            "version": __version__,
            "model_loaded": self.engine is not None,
            "model_version": self.engine.model_version if self.engine is not None else None,
            "demo_model": bool(self.engine is not None and self.engine.is_demo_model),
            "model_error": self.engine_error,
            "running": self.executor.running_count(),
            "pending": self.executor.pending_count(),
            "max_workers": self.settings.max_workers,
            "max_pending": self.settings.max_pending,
            "execution": self.settings.execution,
            "tasks": {s: sum(counts.get(st, 0) for st in TaskState.from_wire(s))
                      for s in WIRE_STATUSES},
            "free_disk_bytes": free,
            "free_disk_mb": round(free / 1024 / 1024, 1) if free is not None else None,
            "uptime_s": round(self.clock() - self.started_at, 1),
            "pid": os.getpid(),
            "worker_restarts": self.executor.worker_restarts,
            **self._cluster(),
        }

    def _cluster(self) -> dict[str, Any]:
        """The distributed mode's workers on every machine (RQ's registry); nothing embedded."""
        if not isinstance(self.executor, RqDispatcher):
            return {"mode": "embedded"}
        try:
            workers: list[dict[str, Any]] | None = self.executor.workers()
        except RedisError:
            workers = None  # the problems list says why
        return {"mode": "distributed", "workers": workers}

    def disk_usage(self) -> dict[str, int]:
        """Task files in uploads/ and results/ and the bytes they take, at most
        ``DISK_USAGE_CACHE_S`` old (``storage.dir_size``; an object store's listing)."""
        with self._disk_lock:
            now = time.monotonic()
            if self._disk_usage is not None and now - self._disk_usage[0] < DISK_USAGE_CACHE_S:
                return self._disk_usage[1]
            up_bytes, up_files = self.storage.usage(UPLOADS)
            res_bytes, res_files = self.storage.usage(RESULTS)
            value = {"uploads_bytes": up_bytes, "uploads_files": up_files,
                     "results_bytes": res_bytes, "results_files": res_files}
            self._disk_usage = (now, value)
            return value

    def on_shutdown(self, stop: Callable[[], None]) -> None:
        """Have ``stop`` called when the service shuts down, before the pool stops."""
        self._on_shutdown.append(stop)

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop threads and children; unfinished tasks are recovered next start."""
        if self._closed:
            return
        self._closed = True
        for stop in reversed(self._on_shutdown):
            stop()
        self.cleaner.stop()
        if self.executor.shutdown(wait_s):
            self.store.close()
        else:
            self.store.release_data_dir()  # a thread still finishing may write to the db
        log_event(self.log, "service.stopped")
        close_logger(self.log)


def _disk_full() -> ServiceError:
    return ServiceError("DISK_FULL", "服务器数据目录空间不足，暂时无法接收新任务，请稍后再试或联系管理员",
                        {"Retry-After": "60"})


def _queue_full() -> ServiceError:
    return ServiceError("QUEUE_FULL", "排队任务已满，请稍后再提交", {"Retry-After": "30"})

