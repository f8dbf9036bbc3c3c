"""What the views call: one method per thing a client can ask for.

Holds the pieces built by ``create_app`` (engine, store, executor, cache,
cleaner) and is reached through ``current_app.extensions["predict"]``, never
through a module global. Refusals are raised as ``ApiError`` with the status
and Chinese message the HTTP contract prescribes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from .. import __version__
from . import task as T
from .cache import ResultCache, cache_key
from .cleaner import Cleaner
from .executor import NotCancellable, QueueFull, TaskExecutor
from .logging_setup import close_logger, log_event
from .responses import ApiError
from .settings import Settings
from .store import TaskNotFound, TaskStore
from .uploads import UploadRejected, save_upload

EXTENSION_KEY = "predict"


class TaskManager:
    def __init__(self, settings: Settings, engine: Any, engine_error: str | None,
                 store: TaskStore, executor: TaskExecutor, cache: ResultCache,
                 cleaner: Cleaner, logger: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.engine = engine
        self.engine_error = engine_error
        self.store = store
        self.executor = executor
        self.cache = cache
        self.cleaner = cleaner
        self.log = logger
        self.clock = clock
        self.started_at = clock()
        self._closed = False

    # --- engine facts -------------------------------------------------------

    def _engine(self) -> Any:
        if self.engine is None:
            raise ApiError(503, "MODEL_UNAVAILABLE", "预测模型未能加载，服务暂时无法预测，请联系管理员")
        return self.engine

    def majors(self) -> dict[int, list[dict[str, str]]]:
        return self._engine().majors_by_year()

    def resolve_major(self, year: int, major: str | None) -> str | None:
        """The plan name for ``major`` (a name or a file code) in ``year``."""
        by_year = self.majors()
        if year not in by_year:
            known = "、".join(str(y) for y in sorted(by_year)) or "无"
            raise ApiError(400, "UNKNOWN_YEAR", f"没有 {year} 级的培养方案（可选年级：{known}）")
        if major is None:
            return None
        for entry in by_year[year]:
            if major in (entry["name"], entry["code"]):
                return entry["name"]
        names = "、".join(e["name"] for e in by_year[year])
        raise ApiError(400, "UNKNOWN_MAJOR", f"{year} 级没有专业“{major}”的培养方案（可选：{names}）")

    # --- tasks --------------------------------------------------------------

    def start_task(self, stream: BinaryIO, filename: str, *, year: int, major: str | None,
                   config: dict[str, Any], priority: str) -> T.Task:
        engine = self._engine()
        major = self.resolve_major(year, major)
        if not self.executor.has_room():
            raise _queue_full()
        try:
            saved = save_upload(
                stream, filename, uploads_dir=self.settings.uploads_dir,
                staging_dir=self.settings.staging_dir,
                max_bytes=self.settings.max_upload_bytes,
                max_unzipped_bytes=self.settings.max_unzipped_bytes)
        except UploadRejected as exc:
            log_event(self.log, "upload.rejected", None, logging.WARNING, code=exc.code,
                      file=filename)
            raise ApiError(exc.http_status, exc.code, exc.message) from None
        version = engine.model_version
        task = T.Task(
            id=T.new_task_id(), seq=self.store.next_seq(), year=year, major=major,
            file_name=saved.original_name, upload_name=saved.stored_name,
            file_sha256=saved.sha256, config=config, priority=priority,
            cache_key=cache_key(saved.sha256, year, major, config, version),
            created_at=self.clock(), model_version=version)
        self.store.add(task)
        log_event(self.log, "task.created", task.id, year=year, major=major, priority=priority,
                  file=saved.original_name, upload=saved.stored_name, bytes=saved.size)
        source = self.cache.find(task)
        if source is not None:
            files = self.cache.copy_results(source, task.id)
            if files is not None:
                task = self.store.update(task.id, lambda t: T.complete(
                    t, self.clock(), files, source.summary, list(source.warnings),
                    cached_from=source.id, model_version=source.model_version))
                log_event(self.log, "task.completed", task.id, cached_from=source.id,
                          files=len(files), duration_s=0)
                return task
        try:
            self.executor.submit(task)
        except QueueFull:
            self.store.delete(task.id)
            saved.path.unlink(missing_ok=True)
            log_event(self.log, "task.refused", task.id, logging.WARNING, code="QUEUE_FULL")
            raise _queue_full() from None
        return task

    def get(self, task_id: str) -> T.Task:
        if not T.is_valid_task_id(task_id):
            raise ApiError(400, "INVALID_TASK_ID", "任务ID格式无效")
        task = self.store.get(task_id)
        if task is None:
            raise ApiError(404, "TASK_NOT_FOUND", "任务不存在")
        return task

    def status(self, task_id: str) -> dict[str, Any]:
        task = self.get(task_id)
        position = self.executor.queue_position(task.id) if task.status == T.PENDING else None
        return task.to_public(position)

    def list_tasks(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        return [t.to_public() for t in self.store.newest(status, limit)]

    def cancel(self, task_id: str) -> T.Task:
        task = self.get(task_id)
        try:
            task = self.executor.cancel(task.id)
        except NotCancellable:
            raise ApiError(409, "TASK_FINISHED", "任务已结束，无法取消") from None
        except TaskNotFound:
            raise ApiError(404, "TASK_NOT_FOUND", "任务不存在") from None
        return task

    def _downloadable(self, task_id: str) -> T.Task:
        task = self.get(task_id)
        if task.expired:
            raise ApiError(410, "TASK_EXPIRED", "任务结果已超过保留期限并被清理，请重新提交")
        if task.status == T.FAILED:
            raise ApiError(400, "TASK_FAILED", "任务执行失败，没有结果文件")
        if task.status != T.COMPLETED:
            raise ApiError(400, "TASK_NOT_COMPLETED", "任务尚未完成，请稍后再下载")
        return task

    def result_path(self, task_id: str, filename: str) -> Path:
        """Only a file recorded on the task, and only inside the results dir."""
        task = self._downloadable(task_id)
        if filename not in task.result_files:
            raise ApiError(404, "FILE_NOT_FOUND", "该任务没有这个结果文件")
        return self._inside_results(filename)

    def _inside_results(self, filename: str) -> Path:
        base = self.settings.results_dir.resolve()
        path = (base / filename).resolve()
        if path.parent != base:
            raise ApiError(404, "FILE_NOT_FOUND", "该任务没有这个结果文件")
        if not path.is_file():
            raise ApiError(410, "RESULT_GONE", "结果文件已被清理，请重新提交任务")
        return path

    def results_zip(self, task_id: str) -> tuple[IO[bytes], str]:
        """Every result of a task in one zip (stored, not deflated: xlsx is
        already compressed); the temporary file disappears when closed."""
        task = self._downloadable(task_id)
        paths = [self._inside_results(name) for name in task.result_files]
        tmp = tempfile.TemporaryFile(dir=self.settings.staging_dir)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for p in paths:
                    zf.write(p, arcname=p.name)
            tmp.seek(0)
        except BaseException:
            tmp.close()
            raise
        return tmp, f"{task.id}_results.zip"

    # --- operations ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            free = shutil.disk_usage(self.settings.data_dir).free
        except OSError:
            free = None
        counts = self.store.counts()
        return {
            "status": "ok" if self.engine is not None else "degraded",
            "version": __version__,
            "model_loaded": self.engine is not None,
            "model_version": self.engine.model_version if self.engine is not None else None,
            "model_error": self.engine_error,
            "running": self.executor.running_count(),
            "pending": self.executor.pending_count(),
            "max_workers": self.settings.max_workers,
            "max_pending": self.settings.max_pending,
            "execution": self.settings.execution,
            "tasks": {s: counts.get(s, 0) for s in T.STATUSES},
            "free_disk_bytes": free,
            "free_disk_mb": round(free / 1024 / 1024, 1) if free is not None else None,
            "uptime_s": round(self.clock() - self.started_at, 1),
            "pid": os.getpid(),
        }

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Stop threads and children; unfinished tasks are recovered next start."""
        if self._closed:
            return
        self._closed = True
        self.cleaner.stop()
        if self.executor.shutdown(wait_s):
            self.store.close()
        else:
            self.store.release_data_dir()  # a thread still finishing may write to the db
        log_event(self.log, "service.stopped")
        close_logger(self.log)


def _queue_full() -> ApiError:
    return ApiError(503, "QUEUE_FULL", "排队任务已满，请稍后再提交", {"Retry-After": "30"})
