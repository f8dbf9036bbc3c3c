"""The distributed mode's queue: tasks become RQ jobs on Redis
(``PREDICT_QUEUE_URL``), run by ``python -m destination_predictor.worker`` on
any machine; the task records (PostgreSQL) stay the truth.

What an API instance holds instead of the embedded pool (``executor``): the
same methods the task manager calls (room, submit, position, cancel, counts),
answered from the shared records and the RQ queues, plus a reconciler thread.

- Priority: two queues, ``predict-high`` and ``predict-normal``; every worker
  takes from them in that order, so a high task waiting anywhere starts first.
- The bound: pending records across the cluster (the database counts them),
  beyond the idle workers, against ``PREDICT_MAX_PENDING``.
- Job ids: ``<task id>_<attempts so far>``, so a job knows which start of its
  task it is (``worker.jobs``) and a late failure report of an earlier one
  changes nothing.
- Redis unreachable: new tasks are refused with ``QUEUE_UNAVAILABLE`` (503);
  nothing accepted is lost, because the reconciler re-dispatches pending
  records that have no job in Redis once it is back.
- Liveness: a running job refreshes ``predict:alive:<task id>`` (TTL
  ``HEARTBEAT_TTL_S``). RQ's own detection of an abandoned job waits for its
  heartbeat TTL (at least 60 s) and the next registry cleanup; the reconciler
  sees a running record without that key (Redis having been up meanwhile) and
  queues the task again (``task.requeue``, bounded by ``MAX_ATTEMPTS``).
  Only one instance reconciles at a time (a Redis lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from rq import Callback, Queue, Worker

from .errors import ServiceError
from .executor import NotCancellable, QueueFull
from .logging_setup import log_event
from .shared_store import SharedTaskStore
from .store import TaskNotFound
from .task import (
    MAX_ATTEMPTS,
    PENDING,
    RUNNING,
    InvalidTransition,
    Task,
    cancel,
    fail,
    request_cancel,
    requeue,
)

HIGH, NORMAL = "predict-high", "predict-normal"
QUEUE_NAMES = (HIGH, NORMAL)
JOB_FUNC = "destination_predictor.worker.jobs.run_task"
JOB_FAILED = "destination_predictor.worker.jobs.job_failed"
ALIVE_KEY = "predict:alive:{}"
HEARTBEAT_S = 2.0
HEARTBEAT_TTL_S = 10
RECONCILE_LOCK = "predict:reconcile"
# A pending record younger than this may still be between its insert and its
# enqueue in the instance that accepted it: not re-dispatched yet.
DISPATCH_GRACE_S = 5.0
# A worker's heartbeat period is WORKER_TTL_S - 15 s when idle (RQ's dequeue
# timeout) and 5 s while a job runs (``worker.__main__``): older means dead.
WORKER_TTL_S = 20
# The hard limit RQ enforces beyond the task's own (checked at the engine's steps).
JOB_TIMEOUT_MARGIN_S = 120


class QueueUnavailable(QueueFull):
    """Redis cannot be reached: the task is refused (the record is removed)."""

    def refusal(self) -> ServiceError:
        return ServiceError("QUEUE_UNAVAILABLE", "任务队列（Redis）暂时无法访问，暂不接收新任务，请稍后再试",
                            {"Retry-After": "10"})


def connect(url: str) -> redis.Redis:
    """Short timeouts: a dead Redis must turn into a quick 503, not a hung request."""
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2,
                                health_check_interval=10)


def job_id(task: Task) -> str:
    return f"{task.id}_{task.attempts}"


def task_of(job: str) -> str:
    return job.rsplit("_", 1)[0]


class RqDispatcher:
    """The executor of an API instance in the distributed mode."""

    def __init__(self, store: SharedTaskStore, redis_url: str, *, max_pending: int,
                 timeout_s: float, logger: logging.Logger, reconcile_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.redis = connect(redis_url)
        self.queues = {name: Queue(name, connection=self.redis) for name in QUEUE_NAMES}
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.log = logger
        self.reconcile_s = reconcile_s
        self.clock = clock
        self.worker_restarts = 0  # the pool's notion; RQ workers restart on their own
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Since when Redis has answered without a break (None: not now).
        self._up_since: float | None = None

    # --- life -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._reconcile_loop, name="predict-reconciler",
                                        daemon=True)
        self._thread.start()

    def shutdown(self, wait_s: float = 10.0) -> bool:
        """Jobs belong to the workers, not to this instance: nothing to abandon."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        self.redis.close()
        return True

    # --- what the manager asks ----------------------------------------------------

    def has_room(self) -> bool:
        try:
            idle = sum(1 for w in self.workers() if w["state"] == "idle")
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)).refusal() from exc
        waiting = self.store.counts().get(PENDING, 0)
        return waiting + 1 - idle <= self.max_pending

    def submit(self, task: Task, *, force: bool = False) -> None:
        """Enqueue the job of a pending task; QueueUnavailable when Redis is down."""
        try:
            self._enqueue(task)
        except redis.RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc

    def _enqueue(self, task: Task) -> None:
        queue = self.queues[HIGH if task.priority == "high" else NORMAL]
        queue.enqueue_call(JOB_FUNC, args=(task.id,), job_id=job_id(task),
                           timeout=int(self.timeout_s) + JOB_TIMEOUT_MARGIN_S,
                           result_ttl=600, failure_ttl=7 * 86400,
                           on_failure=Callback(JOB_FAILED), description=f"task {task.id}")

    def queue_position(self, task_id: str) -> int | None:
        """1 = next to start, across both queues (high first)."""
        try:
            ahead = 0
            for name in QUEUE_NAMES:
                ids = [task_of(j) for j in self.queues[name].get_job_ids()]
                if task_id in ids:
                    return ahead + ids.index(task_id) + 1
                ahead += len(ids)
        except redis.RedisError:
            return None
        return None

    @property
    def max_workers(self) -> int:
        """Jobs the cluster runs at once: the RQ workers alive now (0 while Redis is down)."""
        try:
            return len(self.workers())
        except redis.RedisError:
            return 0

    def pending_count(self) -> int:
        return self.store.counts().get(PENDING, 0)

    def running_count(self) -> int:
        return self.store.counts().get(RUNNING, 0)

    def reachable(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def dead_workers(self) -> int:
        return 0

    def unrecorded_failures(self) -> int:
        return 0

    def cancel(self, task_id: str) -> Task:
        """Pending: cancelled now (its job, when it comes, finds nothing to do).
        Running: asked to stop; the job sees the request within a heartbeat."""
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(task_id)
        if task.status is PENDING:
            try:
                done = self.store.update(task_id, lambda t: cancel(t, self.clock()))
            except InvalidTransition:
                pass  # started meanwhile: ask it to stop instead
            else:
                log_event(self.log, "task.cancelled", task_id, was="pending")
                self._remove_queued(done)
                return done
        try:
            asked = self.store.update(task_id, request_cancel)
        except InvalidTransition:
            raise NotCancellable(task_id) from None
        log_event(self.log, "task.cancel_requested", task_id)
        return asked

    def _remove_queued(self, task: Task) -> None:
        try:
            for queue in self.queues.values():
                queue.remove(job_id(task))
        except redis.RedisError:
            pass  # the job finds the task cancelled and does nothing

    def workers(self) -> list[dict[str, object]]:
        """The live RQ workers serving these queues, on every machine (the
        monitor's list). RQ keeps a killed worker's entry for its TTL plus a
        minute; one whose last heartbeat is older than ``WORKER_TTL_S`` is dead."""
        out = []
        now = time.time()
        for w in Worker.all(queue=self.queues[NORMAL]):
            beat = w.last_heartbeat.timestamp() if w.last_heartbeat else None
            if beat is None or now - beat > WORKER_TTL_S:
                continue
            job = w.get_current_job_id()
            state = w.get_state()
            out.append({"name": w.name, "hostname": w.hostname, "pid": w.pid,
                        "state": str(getattr(state, "value", state)),
                        "task_id": task_of(job) if job else None,
                        "last_heartbeat_s": round(now - beat, 1)})
        return out

    # --- reconciling ----------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.reconcile_s):
            try:
                self.reconcile()
            except redis.RedisError as exc:
                if self._up_since is not None:
                    log_event(self.log, "queue.unavailable", None, logging.WARNING,
                              error=type(exc).__name__)
                self._up_since = None
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                self.log.exception("event=queue.reconcile_failed")

    def reconcile(self) -> dict[str, int]:
        """One round: pending records without a job are dispatched again,
        running ones whose job stopped beating are queued again. What it did."""
        self.redis.ping()
        now = time.monotonic()
        if self._up_since is None:
            self._up_since = now
            log_event(self.log, "queue.available", None)
        done = {"redispatched": 0, "requeued": 0, "failed": 0}
        if not self.redis.set(RECONCILE_LOCK, "1", nx=True, ex=max(5, int(self.reconcile_s * 3))):
            return done  # another instance is at it
        try:
            queued = {task_of(j) for queue in self.queues.values() for j in queue.get_job_ids()}
            wall = self.clock()
            for task in self.store.active():
                beating = self.redis.exists(ALIVE_KEY.format(task.id))
                if task.status is PENDING:
                    # A job taken by a worker beats before it starts the task.
                    if task.id in queued or beating or wall - task.created_at < DISPATCH_GRACE_S:
                        continue
                    self._enqueue(task)
                    done["redispatched"] += 1
                    log_event(self.log, "task.redispatched", task.id)
                    continue
                started = task.started_at or task.created_at
                if beating or wall - started < HEARTBEAT_TTL_S + 2:
                    continue
                if now - self._up_since < HEARTBEAT_TTL_S + 2:
                    continue  # Redis was back only just now: beats may not be there yet
                done[self._revive(task)] += 1
        finally:
            self.redis.delete(RECONCILE_LOCK)
        return done

    def _revive(self, task: Task) -> str:
        """A running task whose job died with its worker."""
        if task.cancel_requested:
            self.store.update(task.id, lambda t: cancel(t, self.clock()))
            log_event(self.log, "task.cancelled", task.id, was="running", reason="worker_lost")
            return "failed"
        if task.attempts >= MAX_ATTEMPTS:
            self.store.update(task.id, lambda t: fail(
                t, self.clock(), "TOO_MANY_ATTEMPTS", "任务多次因服务中断未能完成，已放弃，请检查文件后重新提交"))
            log_event(self.log, "task.failed", task.id, logging.WARNING, code="TOO_MANY_ATTEMPTS",
                      attempts=task.attempts)
            return "failed"
        again = self.store.update(task.id, lambda t: requeue(t) if t.status is RUNNING else t)
        if again.status is PENDING:
            self._enqueue(again)
            log_event(self.log, "task.requeued", task.id, was="running", reason="worker_lost",
                      attempts=again.attempts)
        return "requeued"
