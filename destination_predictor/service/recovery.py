"""Start-up recovery: no task stays ``pending`` or ``running`` forever.

A task found ``running`` at start-up was being run by a process that died
(``kill -9``, OOM, power loss); one found ``pending`` was waiting in a queue
that only lived in memory. Both are queued again, in their original priority
and arrival order, from their saved upload. A task whose upload is gone, or
that already brought the service down ``MAX_ATTEMPTS`` times, fails with a
clear reason instead.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .executor import TaskExecutor
from .logging_setup import log_event
from .storage import RESULTS, UPLOADS, Storage
from .store import BaseTaskStore, TaskStore
from .task import COMPLETED, MAX_ATTEMPTS, RUNNING, fail, is_valid_task_id, requeue


@dataclass
class RecoveryReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed_staging: int = 0


def remove_staging(results_dir: Path) -> int:
    """The staging folders of half-written workbooks (engine.reports.write_reports)
    that jobs killed mid-write left in ``results_dir``; only while no job of this
    machine runs. Returns how many went."""
    removed = 0
    for staging in results_dir.glob(".staging-*"):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
            removed += 1
    return removed


def tidy_worker_results(results_dir: Path, store: BaseTaskStore, *, stale_after_s: float,
                        now: float) -> int:
    """A worker machine's start-up (distributed mode): what jobs killed here
    left in its results dir. Other worker commands, here or on machines sharing
    the dir, may be running jobs, so only what no live job can still own goes:
    staging folders older than a task may run, and ``{task_id}_*`` files of tasks
    that are not running or waiting -- a failed, cancelled or forgotten run's
    half set -- or that a completed task does not list. Returns how many went."""
    removed = 0
    for entry in results_dir.iterdir() if results_dir.is_dir() else ():
        try:
            old = entry.lstat().st_mtime < now - stale_after_s
        except FileNotFoundError:
            continue
        if entry.name.startswith(".staging-"):
            if old and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            continue
        task_id, sep, _ = entry.name.partition("_")
        if not sep or not is_valid_task_id(task_id) or not entry.is_file():
            continue
        task = store.get(task_id)
        if task is not None and (task.is_active or (
                task.status is COMPLETED and not task.expired and entry.name in task.result_files)):
            continue
        entry.unlink(missing_ok=True)
        removed += 1
    return removed


def recover(store: TaskStore, executor: TaskExecutor, *, storage: Storage,
            logger: logging.Logger, clock: Callable[[], float] = time.time) -> RecoveryReport:
    """Run once, before the executor's threads start."""
    report = RecoveryReport()
    report.removed_staging = remove_staging(storage.local_dir(RESULTS))
    for task in store.active():
        if task.status is RUNNING:
            # Partial output of the interrupted run; the re-run writes it anew.
            storage.remove_prefix(RESULTS, f"{task.id}_")
        if task.attempts >= MAX_ATTEMPTS:
            store.update(task.id, lambda t: fail(
                t, clock(), "TOO_MANY_ATTEMPTS", "任务多次因服务中断未能完成，已放弃，请检查文件后重新提交"))
            report.failed.append(task.id)
            log_event(logger, "task.failed", task.id, logging.WARNING, code="TOO_MANY_ATTEMPTS",
                      attempts=task.attempts)
            continue
        if not storage.exists(UPLOADS, task.upload_name):
            store.update(task.id, lambda t: fail(
                t, clock(), "UPLOAD_MISSING", "服务重启后找不到该任务的上传文件，请重新提交"))
            report.failed.append(task.id)
            log_event(logger, "task.failed", task.id, logging.WARNING, code="UPLOAD_MISSING")
            continue
        was = task.status
        task = store.update(task.id, requeue)
        executor.submit(task, force=True)
        report.requeued.append(task.id)
        log_event(logger, "task.requeued", task.id, was=was, attempts=task.attempts)
    return report
