"""Retention: uploads and results older than ``PREDICT_RETENTION_HOURS`` are
removed and their tasks marked expired (downloads then answer 410).

A finished task's age is counted from when it finished; files that belong to
no task (left by a crash, or by a refused start) are judged by their mtime.
Files of pending or running tasks are never touched, however old.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .logging_setup import log_event
from .store import BaseTaskStore
from .task import Task, expire
from .uploads import CONTENT_DIR

# Half-written uploads in the staging dir are abandoned after this long.
STAGING_MAX_AGE_S = 3600.0


@dataclass
class SweepReport:
    expired_tasks: int = 0
    removed_files: int = 0
    deleted_records: int = 0


class Cleaner:
    def __init__(self, store: BaseTaskStore, *, uploads_dir: Path, results_dir: Path,
                 staging_dir: Path, retention_s: float, interval_s: float,
                 record_retention_s: float = 30 * 86400.0,
                 logger: logging.Logger, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.uploads_dir = uploads_dir
        self.results_dir = results_dir
        self.staging_dir = staging_dir
        self.retention_s = retention_s
        self.record_retention_s = record_retention_s  # after expiry, then the record goes
        self.interval_s = interval_s
        self.log = logger
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="predict-cleaner", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - keep sweeping next time; the error is logged
                self.log.exception("event=cleaner.error")

    def sweep(self, now: float | None = None) -> SweepReport:
        """One pass; skipped (an empty report) while another instance sharing
        the records sweeps (``store.alone``)."""
        with self.store.alone("cleaner") as mine:
            if not mine:
                return SweepReport()
            return self._sweep(self.clock() if now is None else now)

    def _sweep(self, now: float) -> SweepReport:
        cutoff = now - self.retention_s
        report = SweepReport()
        keep: set[str] = set()
        record_cutoff = now - self.record_retention_s
        for task in self.store.all():
            if task.is_active:
                keep.add(task.upload_name)
                keep.update(self._task_results(task.id))
                continue
            if task.expired:
                if task.expired_at is not None and task.expired_at < record_cutoff:
                    self.store.delete(task.id)  # 100,000 records took 25 s to load at start
                    report.deleted_records += 1
                continue
            if task.finished_at is not None and task.finished_at < cutoff:
                report.removed_files += self._remove_task_files(task)
                self.store.update(task.id, lambda t: expire(t, now))
                report.expired_tasks += 1
                log_event(self.log, "task.expired", task.id)
            else:
                keep.add(task.upload_name)
                keep.update(task.result_files)
        keep.add(CONTENT_DIR)
        for directory in (self.uploads_dir, self.results_dir):
            report.removed_files += self._remove_orphans(directory, keep, cutoff)
        report.removed_files += self._remove_unlinked_content(now - STAGING_MAX_AGE_S)
        report.removed_files += self._remove_orphans(
            self.staging_dir, set(), now - min(STAGING_MAX_AGE_S, self.retention_s))
        if report.expired_tasks or report.removed_files or report.deleted_records:
            log_event(self.log, "cleaner.swept", expired_tasks=report.expired_tasks,
                      removed_files=report.removed_files, deleted_records=report.deleted_records)
        return report

    def _remove_unlinked_content(self, cutoff: float) -> int:
        """Stored contents no task's upload links to any more (link count 1), left
        alone for an hour after their last use so a new upload can still link them."""
        removed = 0
        content = self.uploads_dir / CONTENT_DIR
        if not content.is_dir():
            return 0
        for blob in content.iterdir():
            try:
                st = blob.lstat()
            except FileNotFoundError:
                continue
            if st.st_nlink <= 1 and st.st_mtime < cutoff:
                blob.unlink(missing_ok=True)
                removed += 1
        return removed

    def _task_results(self, task_id: str) -> set[str]:
        return {p.name for p in self.results_dir.glob(f"{task_id}_*")}

    def _remove_task_files(self, task: Task) -> int:
        removed = 0
        targets = [self.uploads_dir / task.upload_name]
        targets += [self.results_dir / name for name in task.result_files]
        targets += list(self.results_dir.glob(f"{task.id}_*"))
        for p in dict.fromkeys(targets):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def _remove_orphans(self, directory: Path, keep: set[str], cutoff: float) -> int:
        removed = 0
        if not directory.is_dir():
            return 0
        for p in directory.iterdir():
            if p.name in keep or p.name == ".gitkeep":
                continue
            try:
                mtime = p.lstat().st_mtime
            except FileNotFoundError:
                continue
            if mtime >= cutoff:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
        return removed
