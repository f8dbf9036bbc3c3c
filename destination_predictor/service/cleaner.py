"""Retention: uploads and results older than ``PREDICT_RETENTION_HOURS`` are
removed and their tasks marked expired (downloads then answer 410).

A finished task's age is counted from when it finished; files that belong to
no task (left by a crash, or by a refused start) are judged by their mtime.
Files of pending or running tasks are never touched, however old.

With several instances, one sweeps the storage at a time (``store.alone``);
each prunes its own cache of an object store (``Storage.prune_cache``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .logging_setup import log_event
from .storage import (
    RESULTS,
    UPLOADS,
    Storage,
    remove_old_entries,
    remove_unlinked_content,
)
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
    def __init__(self, store: BaseTaskStore, *, storage: Storage,
                 staging_dir: Path, retention_s: float, interval_s: float,
                 record_retention_s: float = 30 * 86400.0, cache_age_s: float = 2 * 3600.0,
                 logger: logging.Logger, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.storage = storage
        self.staging_dir = staging_dir
        # An object store's cached copies unused this long go (a task's own are
        # touched when it starts and it runs at most PREDICT_TASK_TIMEOUT_S).
        self.cache_age_s = cache_age_s
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
        the records sweeps (``store.alone``); this machine's cache is pruned either way."""
        now = self.clock() if now is None else now
        with self.store.alone("cleaner") as mine:
            report = self._sweep(now) if mine else SweepReport()
        if self.storage.shared_cache:
            in_use = {t.upload_name for t in self.store.active()}
            pruned = self.storage.prune_cache(in_use, now - self.cache_age_s)
            if pruned:
                log_event(self.log, "cleaner.cache_pruned", removed_files=pruned)
        return report

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
        for area in (UPLOADS, RESULTS):
            report.removed_files += self.storage.sweep(area, keep, cutoff)
        report.removed_files += remove_unlinked_content(
            self.storage.local_dir(UPLOADS) / CONTENT_DIR, now - STAGING_MAX_AGE_S)
        report.removed_files += remove_old_entries(
            self.staging_dir, set(), now - min(STAGING_MAX_AGE_S, self.retention_s))
        if report.expired_tasks or report.removed_files or report.deleted_records:
            log_event(self.log, "cleaner.swept", expired_tasks=report.expired_tasks,
                      removed_files=report.removed_files, deleted_records=report.deleted_records)
        return report

    def _task_results(self, task_id: str) -> set[str]:
        return self.storage.names(RESULTS, f"{task_id}_")

    def _remove_task_files(self, task: Task) -> int:
        removed = self.storage.remove(UPLOADS, [task.upload_name])
        removed += self.storage.remove(RESULTS, task.result_files)
        return removed + self.storage.remove_prefix(RESULTS, f"{task.id}_")
