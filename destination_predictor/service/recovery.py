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
from .store import TaskStore
from .task import MAX_ATTEMPTS, RUNNING, fail, requeue


@dataclass
class RecoveryReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed_staging: int = 0


def recover(store: TaskStore, executor: TaskExecutor, *, uploads_dir: Path, results_dir: Path,
            logger: logging.Logger, clock: Callable[[], float] = time.time) -> RecoveryReport:
    """Run once, before the executor's threads start."""
    report = RecoveryReport()
    # A job killed mid-write leaves its staging folder of half-written
    # workbooks (engine.reports.write_reports); nothing runs yet, so all go.
    for staging in results_dir.glob(".staging-*"):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
            report.removed_staging += 1
    for task in store.active():
        if task.status is RUNNING:
            # Partial output of the interrupted run; the re-run writes it anew.
            for p in results_dir.glob(f"{task.id}_*"):
                p.unlink(missing_ok=True)
        if task.attempts >= MAX_ATTEMPTS:
            store.update(task.id, lambda t: fail(
                t, clock(), "TOO_MANY_ATTEMPTS", "任务多次因服务中断未能完成，已放弃，请检查文件后重新提交"))
            report.failed.append(task.id)
            log_event(logger, "task.failed", task.id, logging.WARNING, code="TOO_MANY_ATTEMPTS",
                      attempts=task.attempts)
            continue
        if not (uploads_dir / task.upload_name).is_file():
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
