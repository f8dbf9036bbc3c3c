"""The bounded pool: at most ``max_workers`` tasks run at once, the rest wait
in a priority queue (high first, then first come first served), beyond
``max_pending`` waiting tasks new ones are refused; time limit and cancel.

Every state change goes through ``task`` transitions and the store, so the
executor only decides *when* things happen, never what a record looks like.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine.errors import PredictionCancelled, PredictionError
from .cache import ResultCache
from .logging_setup import log_event
from .runner import JobCrashed, JobSpec, Runner, TaskTimedOut
from .storage import RESULTS, UPLOADS, Storage, StorageUnavailable
from .store import StoreUnwritable, TaskNotFound, TaskStore
from .task import (
    PENDING,
    InvalidTransition,
    Task,
    cancel,
    complete,
    fail,
    report_progress,
    request_cancel,
    start,
)

_RANK = {"high": 0, "normal": 1}
# How often the watchdog restarts dead pool threads and retries unwritten failures.
WATCH_INTERVAL_S = 2.0


class QueueFull(Exception):
    """More than ``max_pending`` tasks would be waiting."""


class NotCancellable(Exception):
    """The task already finished."""


@dataclass
class _Running:
    task_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    abandon: threading.Event = field(default_factory=threading.Event)

    def is_set(self) -> bool:
        """The engine stops on a user cancel and on shutdown alike."""
        return self.cancel.is_set() or self.abandon.is_set()


# What a job's caller holds to stop it: ``cancel`` (the user's), ``abandon`` (shutdown).
RunControl = _Running


class TaskExecutor:
    def __init__(self, store: TaskStore, runner: Runner, cache: ResultCache, *,
                 storage: Storage, max_workers: int, max_pending: int,
                 timeout_s: float, logger: logging.Logger, model_version: Callable[[], str | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.runner = runner
        self.cache = cache
        self.storage = storage
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.log = logger
        self.model_version = model_version
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, str]] = []
        self._busy = 0
        self._running: dict[str, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        # Failures that could not be written (store unwritable): retried by the watchdog.
        self._unrecorded: dict[str, tuple[str, str]] = {}
        self._watchdog: threading.Thread | None = None
        # Its own signal: waiting on the pool's condition would swallow a submit's notify().
        self._stop_watch = threading.Event()
        self.worker_restarts = 0

    # --- queue ------------------------------------------------------------

    def start(self) -> None:
        self._threads = [self._spawn(i) for i in range(self.max_workers)]
        self._watchdog = threading.Thread(target=self._watch, name="predict-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def _spawn(self, index: int) -> threading.Thread:
        t = threading.Thread(target=self._work, name=f"predict-worker-{index + 1}", daemon=True)
        t.start()
        return t

    # --- health ---------------------------------------------------------------

    def dead_workers(self) -> int:
        """Pool threads that ended although the executor is not stopping (0 when healthy;
        the watchdog restarts them within ``WATCH_INTERVAL_S``)."""
        with self._cond:
            if self._stopping:
                return 0
            return sum(1 for t in self._threads if not t.is_alive())

    def unrecorded_failures(self) -> int:
        with self._cond:
            return len(self._unrecorded)

    def _watch(self) -> None:
        """Restart dead pool threads; write the failures the store refused earlier."""
        while not self._stop_watch.wait(WATCH_INTERVAL_S):
            with self._cond:
                if self._stopping:
                    return
                for i, t in enumerate(self._threads):
                    if not t.is_alive():
                        self._threads[i] = self._spawn(i)
                        self.worker_restarts += 1
                        log_event(self.log, "executor.worker_restarted", None, logging.ERROR,
                                  worker=t.name)
                pending = dict(self._unrecorded)
            for task_id, (code, message) in pending.items():
                if self._record_failure(task_id, code, message):
                    with self._cond:
                        self._unrecorded.pop(task_id, None)

    def has_room(self) -> bool:
        with self._cond:
            return self._room()

    def _room(self) -> bool:
        idle = self.max_workers - self._busy
        return len(self._heap) + 1 - max(idle, 0) <= self.max_pending

    def submit(self, task: Task, *, force: bool = False) -> None:
        """Queue a pending task; ``force`` (recovery) never refuses a task
        that had already been accepted before a restart."""
        with self._cond:
            if self._stopping:
                raise QueueFull("executor is shutting down")
            if not force and not self._room():
                raise QueueFull()
            heapq.heappush(self._heap, (_RANK.get(task.priority, 1), task.seq, task.id))
            self._cond.notify()

    def queue_position(self, task_id: str) -> int | None:
        """1 = next to start."""
        with self._cond:
            for i, entry in enumerate(sorted(self._heap)):
                if entry[2] == task_id:
                    return i + 1
        return None

    def pending_count(self) -> int:
        with self._cond:
            return len(self._heap)

    def running_count(self) -> int:
        with self._cond:
            return len(self._running)

    def cancel(self, task_id: str) -> Task:
        """A pending task is failed as cancelled at once; a running one is
        asked to stop and becomes failed when the engine reaches its next step."""
        with self._cond:
            queued = [e for e in self._heap if e[2] == task_id]
            if queued:
                self._heap = [e for e in self._heap if e[2] != task_id]
                heapq.heapify(self._heap)
                task = self.store.update(task_id, lambda t: cancel(t, self.clock()))
                log_event(self.log, "task.cancelled", task_id, was="pending")
                return task
            running = self._running.get(task_id)
            if running is not None:
                current = self.store.get(task_id)
                if current is not None and current.status == PENDING:
                    # Taken from the queue but not started yet: it will not start.
                    running.cancel.set()
                    task = self.store.update(task_id, lambda t: cancel(t, self.clock()))
                    log_event(self.log, "task.cancelled", task_id, was="pending")
                    return task
                try:
                    task = self.store.update(task_id, request_cancel)
                except InvalidTransition:
                    raise NotCancellable(task_id) from None  # finished a moment ago
                # Only now: a job stopped by the event before the request was
                # recorded would be cancelled already, and this cancel answer 409.
                running.cancel.set()
                log_event(self.log, "task.cancel_requested", task_id)
                return task
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(task_id)
        if task.status == PENDING:
            # Accepted but not queued yet (between creation and submit): cancel directly.
            try:
                return self.store.update(task_id, lambda t: cancel(t, self.clock()))
            except InvalidTransition:
                raise NotCancellable(task_id) from None
        raise NotCancellable(task_id)

    def shutdown(self, wait_s: float = 10.0) -> bool:
        """Stop taking work and abandon running jobs (children are stopped).

        Abandoned tasks stay ``running`` on disk on purpose: the next start-up
        re-queues them (see ``recovery``). Returns whether every pool thread ended.
        """
        with self._cond:
            self._stopping = True
            for r in self._running.values():
                r.abandon.set()
            self._cond.notify_all()
        self._stop_watch.set()
        end = time.monotonic() + wait_s
        for t in [*self._threads, *([self._watchdog] if self._watchdog else [])]:
            t.join(max(0.0, end - time.monotonic()))
        self.runner.close()
        return not any(t.is_alive() for t in self._threads)

    # --- workers -----------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                _, _, task_id = heapq.heappop(self._heap)
                self._busy += 1
                control = _Running(task_id)
                self._running[task_id] = control
            try:
                self._guarded(task_id, control)
            finally:
                with self._cond:
                    self._running.pop(task_id, None)
                    self._busy -= 1

    def run_one(self, task_id: str, control: RunControl) -> bool:
        """Run one pending task in the calling thread, outside the pool: the
        distributed mode's RQ job (``destination_predictor.worker``) runs the very
        steps a pool thread runs. False when its failure could not be written."""
        self._guarded(task_id, control)
        with self._cond:
            return self._unrecorded.pop(task_id, None) is None

    def _guarded(self, task_id: str, control: _Running) -> None:
        try:
            self._execute(task_id, control)
        except (KeyboardInterrupt, SystemExit):
            # This thread ends (the watchdog starts another); its task must not
            # stay running forever: the watchdog fails it.
            with self._cond:
                self._unrecorded[task_id] = ("INTERNAL_ERROR", "执行线程意外停止，任务中止")
            raise
        except BaseException as exc:  # noqa: BLE001 - the pool must survive any task
            # BaseException too: a Rust panic (pyo3's PanicException) is one.
            self.log.exception("event=executor.error task_id=%s", task_id)
            code, message = "INTERNAL_ERROR", "预测过程中发生内部错误"
            if isinstance(exc, StoreUnwritable):
                code, message = exc.code, exc.message
            if not self._record_failure(task_id, code, message):
                with self._cond:
                    self._unrecorded[task_id] = (code, message)

    def _execute(self, task_id: str, control: _Running) -> None:
        task = self.store.get(task_id)
        if task is None or task.status != PENDING:
            return  # cancelled (or deleted) while waiting
        if self.cache.complete_from_cache(task) is not None:
            return  # identical work finished while this task waited
        try:
            task = self.store.update(task_id, lambda t: start(t, self.clock()))
        except InvalidTransition:
            return  # cancelled between leaving the queue and starting
        log_event(self.log, "task.started", task_id, attempt=task.attempts, year=task.year,
                  major=task.major, priority=task.priority)
        try:  # in an object store: downloaded into this machine's cache first
            upload = self.storage.fetch(UPLOADS, task.upload_name).path
        except FileNotFoundError:
            self._fail(task_id, "UPLOAD_MISSING", "找不到该任务的上传文件（可能已被清理），请重新提交")
            return
        except StorageUnavailable as exc:
            self._fail(task_id, exc.code, "文件存储（对象存储）暂时无法访问，未能读取上传文件，请稍后重新提交",
                       detail=exc.detail)
            return
        spec = JobSpec(
            task_id=task.id, upload_path=str(upload),
            year=task.year, major=task.major, config=dict(task.config),
            out_dir=str(self.storage.local_dir(RESULTS)), file_prefix=f"{task.id}_")
        started = time.monotonic()
        last_message = [task.message]

        def progress(pct: int, message: str) -> None:
            try:
                new = self.store.update(task_id, lambda t: report_progress(t, pct, message))
            except InvalidTransition:
                return  # a late message after the task ended
            if message and message != last_message[0]:
                last_message[0] = message
                log_event(self.log, "task.progress", task_id, progress=new.progress, stage=message)

        try:
            outcome = self.runner.run(spec, progress, control, started + self.timeout_s)
        except PredictionCancelled:
            if control.abandon.is_set() and not control.cancel.is_set():
                log_event(self.log, "task.abandoned", task_id, reason="shutdown")
                return
            self._remove_results(task_id)
            self.store.update(task_id, lambda t: cancel(t, self.clock()))
            log_event(self.log, "task.cancelled", task_id, was="running",
                      duration_s=round(time.monotonic() - started, 3))
            return
        except TaskTimedOut:
            self._remove_results(task_id)
            message = f"任务超时：运行超过 {self.timeout_s:g} 秒，已终止"
            self.store.update(task_id, lambda t: fail(t, self.clock(), "TIMEOUT", message))
            log_event(self.log, "task.failed", task_id, logging.WARNING, code="TIMEOUT",
                      duration_s=round(time.monotonic() - started, 3))
            return
        except PredictionError as exc:
            if control.abandon.is_set():
                return
            code, reason = exc.code, exc.message
            self._remove_results(task_id)
            self.store.update(task_id, lambda t: fail(t, self.clock(), code, reason))
            log_event(self.log, "task.failed", task_id, logging.WARNING, code=code,
                      reason=reason, duration_s=round(time.monotonic() - started, 3))
            return
        except JobCrashed as exc:
            if control.abandon.is_set():
                log_event(self.log, "task.abandoned", task_id, reason="shutdown")
                return
            self._remove_results(task_id)
            log_event(self.log, "task.crashed", task_id, logging.ERROR, detail=str(exc),
                      exitcode=exc.exitcode)
            if exc.out_of_memory:
                code, reason = "OUT_OF_MEMORY", ("预测进程超出内存上限而终止：文件可能已损坏或范围异常大，"
                                                 "请检查文件后重新提交")
            else:
                code, reason = "INTERNAL_ERROR", "预测进程异常退出，请稍后重试或联系管理员"
            self.store.update(task_id, lambda t: fail(t, self.clock(), code, reason))
            return
        try:  # the whole set, before the task says completed (no-op in a directory)
            for name in outcome.files:
                self.storage.publish(RESULTS, name)
        except StorageUnavailable as exc:
            self._remove_results(task_id)
            self._fail(task_id, exc.code, "结果文件未能存入文件存储（对象存储暂时无法访问），请稍后重新提交",
                       detail=exc.detail)
            return
        version = self.model_version()
        self.store.update(task_id, lambda t: complete(
            t, self.clock(), outcome.files, outcome.summary, outcome.warnings,
            model_version=version))
        log_event(self.log, "task.completed", task_id, files=len(outcome.files),
                  students=outcome.summary.get("students"),
                  warnings=len(outcome.warnings),
                  duration_s=round(time.monotonic() - started, 3))

    def _remove_results(self, task_id: str) -> None:
        """A failed or cancelled run leaves no half set of files behind (objects
        an unreachable store keeps are orphans the cleaner's sweep removes)."""
        try:
            self.storage.remove_prefix(RESULTS, f"{task_id}_")
        except StorageUnavailable as exc:
            log_event(self.log, "storage.remove_failed", task_id, logging.WARNING,
                      detail=exc.detail)

    def _fail(self, task_id: str, code: str, message: str, **fields: object) -> None:
        """End a started task that never reached the engine (its input is missing)."""
        self.store.update(task_id, lambda t: fail(t, self.clock(), code, message))
        log_event(self.log, "task.failed", task_id, logging.WARNING, code=code, **fields)

    def _record_failure(self, task_id: str, code: str, message: str) -> bool:
        """Fail the task; False when the store cannot be written now (retry later)."""
        try:
            self.store.update(task_id, lambda t: fail(t, self.clock(), code, message))
        except (InvalidTransition, TaskNotFound):
            pass  # already finished or gone; the error itself is logged by the caller
        except StoreUnwritable:
            return False
        self._remove_results(task_id)
        log_event(self.log, "task.failed", task_id, logging.WARNING, code=code)
        return True
