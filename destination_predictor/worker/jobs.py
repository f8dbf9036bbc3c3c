"""What one RQ job runs: one start of one task, the very steps a pool thread
of the embedded service runs (``TaskExecutor.run_one``), plus the two things
only a separate process needs -- a heartbeat that tells the API instances the
job is alive (``dispatch.ALIVE_KEY``) and the poll that turns a cancel
recorded by any instance into the job's stop signal.

RQ calls a job by its import path, so the worker's pieces (settings, store,
engine) are reached through ``current()``: set once per worker process by
``__main__`` before the first job, never changed afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from ..service.dispatch import ALIVE_KEY, HEARTBEAT_S, HEARTBEAT_TTL_S, connect, task_of
from ..service.executor import RunControl, TaskExecutor
from ..service.logging_setup import log_event
from ..service.plan_store import PlanStore
from ..service.runner import limit_memory, lower_priority
from ..service.settings import Settings
from ..service.shared_store import SharedTaskStore
from ..service.storage import RESULTS, UPLOADS, Storage, StorageUnavailable
from ..service.task import PENDING, RUNNING, InvalidTransition, fail


@dataclass
class WorkerContext:
    settings: Settings
    store: SharedTaskStore
    storage: Storage
    executor: TaskExecutor
    log: logging.Logger
    plans: PlanStore | None = None  # the shared plans' copy here (object store only)


_context: list[WorkerContext] = []


def install(context: WorkerContext) -> None:
    """Called once by the worker process, before it takes any job."""
    if _context:
        raise RuntimeError("worker context already installed")
    _context.append(context)


def current() -> WorkerContext:
    if not _context:
        raise RuntimeError("no worker context: run jobs with python -m destination_predictor.worker")
    return _context[0]


def run_task(task_id: str) -> str:
    """Run start number ``attempts + 1`` of the task (the job id says which);
    anything else -- cancelled meanwhile, already started by a duplicate job --
    is left alone. Returns the task's state afterwards."""
    ctx = current()
    job = get_current_job()
    expected = int(job.id.rsplit("_", 1)[1]) if job is not None else None
    task = ctx.store.get(task_id)
    if task is None or task.status is not PENDING or (
            expected is not None and task.attempts != expected):
        return "skipped"
    if ctx.plans is not None:
        try:  # the plans the API instances changed meanwhile (the job reads them)
            ctx.plans.refresh(force=True)
        except StorageUnavailable as exc:  # the upload's fetch fails the task clearly
            log_event(ctx.log, "plans.refresh_failed", task_id, logging.WARNING,
                      detail=exc.detail)
    limit_memory(ctx.settings.job_memory_mb)
    lower_priority(ctx.settings.child_nice, ctx.settings.child_idle)
    control = RunControl(task_id)
    conn = connect(str(ctx.settings.queue_url))
    stop = threading.Event()
    token = f"{os.getpid()}:{job.id if job is not None else '-'}"
    _beat(ctx, conn, task_id, control, token)  # before the start: seen alive at once
    beat = threading.Thread(target=_beat_loop, args=(ctx, conn, task_id, control, stop, token),
                            name="job-heartbeat", daemon=True)
    beat.start()
    try:
        recorded = ctx.executor.run_one(task_id, control)
    finally:
        stop.set()
        beat.join(HEARTBEAT_S * 3)
        try:
            # Only our own beat: a duplicate job that lost the start to another
            # one must not delete the winner's (it would look dead for a moment).
            conn.eval(_DELETE_IF_OURS, 1, ALIVE_KEY.format(task_id), token)
        except redis.RedisError:
            pass  # expires on its own
        conn.close()
    # An object store's copies on this machine: published or re-fetchable, and no
    # cleaner runs on a worker machine to prune them later.
    ctx.storage.drop_cached(UPLOADS, [task.upload_name])
    ctx.storage.drop_cached(RESULTS, prefix=f"{task_id}_")
    if not recorded:
        raise RuntimeError(f"the end of task {task_id} could not be recorded")
    done = ctx.store.get(task_id)
    return done.status.value if done is not None else "deleted"


_DELETE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _beat(ctx: WorkerContext, conn: redis.Redis, task_id: str, control: RunControl,
          token: str) -> None:
    try:
        conn.set(ALIVE_KEY.format(task_id), token, ex=HEARTBEAT_TTL_S)
    except redis.RedisError as exc:
        ctx.log.warning("event=job.heartbeat_failed task_id=%s error=%s", task_id,
                        type(exc).__name__)
    task = ctx.store.get(task_id)
    if task is not None and task.cancel_requested:
        control.cancel.set()


def _beat_loop(ctx: WorkerContext, conn: redis.Redis, task_id: str, control: RunControl,
               stop: threading.Event, token: str) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            _beat(ctx, conn, task_id, control, token)
        except Exception:  # noqa: BLE001 - a database hiccup must not end the beat
            ctx.log.exception("event=job.heartbeat_error task_id=%s", task_id)


def job_failed(job: Any, connection: Any, exc_type: type[BaseException] | None,
               exc_value: BaseException | None, tb: Any) -> None:
    """RQ's failure callback: the job died in a way the task's own steps could
    not record -- RQ's hard time limit, the job process killed. The task
    fails, if this job is still its latest start. An abandoned job (its whole
    worker died) is left to the API's reconciler, which queues the task again."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return
    ctx = current()
    task_id, attempts = task_of(job.id), int(job.id.rsplit("_", 1)[1])
    task = ctx.store.get(task_id)
    if task is None or task.status is not RUNNING or task.attempts != attempts + 1:
        return
    if exc_type is not None and issubclass(exc_type, JobTimeoutException):
        code = "TIMEOUT"
        message = f"任务超时：运行超过 {ctx.settings.task_timeout_s:g} 秒，已终止"
    else:
        code, message = "INTERNAL_ERROR", "预测进程异常退出，请稍后重试或联系管理员"
    try:
        ctx.store.update(task_id, lambda t: fail(t, ctx.executor.clock(), code, message))
    except InvalidTransition:
        return
    try:
        ctx.storage.remove_prefix(RESULTS, f"{task_id}_")
    except StorageUnavailable as exc:  # orphans the cleaner's sweep removes
        log_event(ctx.log, "storage.remove_failed", task_id, logging.WARNING, detail=exc.detail)
    log_event(ctx.log, "task.failed", task_id, logging.WARNING, code=code,
              detail=type(exc_value).__name__ if exc_value is not None else None)
