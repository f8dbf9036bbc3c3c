"""``python -m destination_predictor.worker``: the RQ workers of one machine.

``PREDICT_MAX_WORKERS`` workers (default 3, the embedded pool's size, so a
machine's share of the load stays the same unit) under RQ's ``WorkerPool``,
which starts them and starts a new one when one dies. Each worker process
loads the model once (``PredictWorker.__init__``); RQ forks a work horse per
job from it, so the loaded model is shared copy-on-write and a job that
crashes or is killed takes only its horse down. A worker dies with the
process that started it (Linux's ``PR_SET_PDEATHSIG``), and a horse with its
worker: ``kill -9`` of this command leaves no job running unseen, and the API
instances' reconciler queues the job's task again (``service.dispatch``).

Needs ``PREDICT_QUEUE_URL`` (Redis) and ``PREDICT_TASKS_DB_URL`` (PostgreSQL),
and the data dir (or ``PREDICT_DATA_DIR``) the API instances use.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from rq import Worker
from rq.worker_pool import WorkerPool

from ..engine.errors import PredictionError
from ..service.app import engine_args
from ..service.cache import ResultCache
from ..service.dispatch import QUEUE_NAMES, WORKER_TTL_S, connect
from ..service.executor import TaskExecutor
from ..service.logging_setup import build_logger, close_logger, log_event
from ..service.plan_store import PlanStore, isolated_checker
from ..service.plan_sync import PlanSync
from ..service.recovery import tidy_worker_results
from ..service.runner import ThreadRunner
from ..service.settings import Settings, SettingsError, load_settings
from ..service.shared_store import SharedTaskStore
from ..service.storage import S3Storage, Storage, open_storage
from .jobs import WorkerContext, current, install

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Be killed when the process that started this one dies, even by ``kill -9``."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: a dead parent's workers go on until stopped
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def load_worker_settings() -> Settings:
    """This machine's settings, refused (SettingsError) when workers cannot run
    with them: the worker command and its health probe read them alike."""
    settings = load_settings({})
    if not settings.queue_url:
        raise SettingsError("PREDICT_QUEUE_URL is not set (redis://host:6379/0)")
    if not settings.tasks_db_url or not settings.tasks_db_url.startswith(("postgresql", "postgres")):
        raise SettingsError(
            "PREDICT_TASKS_DB_URL must name the PostgreSQL database the API instances use")
    return settings


def effective(settings: Settings, storage: Storage) -> tuple[Settings, PlanStore | None]:
    """The plans the API instances maintain: with an object store, this
    machine's copy of the shared state (refreshed before each job); otherwise
    the files root they share, when there."""
    if isinstance(storage, S3Storage):
        root = settings.files_root / "plans"
        plans = PlanStore(root, settings.plans_dir, isolated_checker(
            settings.category_map, settings.max_cells, settings.job_memory_mb),
            sync=PlanSync(storage, root))
        return dataclasses.replace(settings, plans_dir=plans.effective_dir), plans
    current_plans = settings.files_root / "plans" / "current"
    if current_plans.exists():
        return dataclasses.replace(settings, plans_dir=current_plans), None
    return settings, None


def build_context(settings: Settings) -> WorkerContext:
    """Model, shared store and the executor whose ``run_one`` a job calls."""
    storage = open_storage(settings)
    settings, plans = effective(settings, storage)
    log = build_logger(settings.data_dir / f"worker_{socket.gethostname()}.log")
    problem = storage.problem()  # also builds the client's session once, before the forks
    if problem is not None:
        log_event(log, "worker.storage_unavailable", None, logging.WARNING, detail=problem)
    engine = engine_args(settings).build()
    log_event(log, "worker.model_loaded", None, model_version=engine.model_version, pid=os.getpid())
    store = SharedTaskStore(str(settings.tasks_db_url))
    cache = ResultCache(store, storage, log)
    executor = TaskExecutor(
        store, ThreadRunner(engine), cache, storage=storage, max_workers=1, max_pending=0,
        timeout_s=settings.task_timeout_s, logger=log,
        model_version=lambda: engine.model_version)
    return WorkerContext(settings, store, storage, executor, log, plans)


def tidy_worker_results_dir(settings: Settings) -> None:
    """Before any job: the half-written results of jobs killed on this machine
    (``service.recovery.tidy_worker_results``)."""
    log = build_logger(settings.data_dir / f"worker_{socket.gethostname()}.log")
    store = SharedTaskStore(str(settings.tasks_db_url))
    try:
        removed = tidy_worker_results(settings.results_dir, store,
                                      stale_after_s=settings.task_timeout_s + 60, now=time.time())
    finally:
        store.close()
    log_event(log, "worker.results_tidied", None, removed=removed)
    close_logger(log)  # each worker process opens its own


class PredictWorker(Worker):
    """RQ's forking worker with the model loaded once, before any job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Registries cleaned and the horse watched often: abandoned jobs are
        # noticed sooner (the API's reconciler does not wait for it anyway).
        kwargs.setdefault("job_monitoring_interval", 5)
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("maintenance_interval", 30)
        super().__init__(*args, **kwargs)
        _die_with_parent()
        install(build_context(load_settings({})))

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """No RQ scheduler process (``WorkerPool`` asks for one): nothing here
        is scheduled for later, and a process outside the die-with-parent
        chain would outlive a killed worker."""
        kwargs["with_scheduler"] = False
        return bool(super().work(*args, **kwargs))

    def perform_job(self, job: Any, queue: Any) -> bool:
        """In the work horse: die with the worker, and no database connection
        shared with it across the fork."""
        _die_with_parent()
        current().store.after_fork()
        current().storage.after_fork()
        return super().perform_job(job, queue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m destination_predictor.worker",
                                     description="RQ workers of the distributed mode")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes on this machine (default PREDICT_MAX_WORKERS)")
    args = parser.parse_args(argv)
    try:
        settings = load_worker_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings.ensure_dirs()
    try:  # refused here, once, rather than by every worker the pool would restart
        engine_args(effective(settings, open_storage(settings))[0]).build()
    except PredictionError as exc:
        print(f"error: the model cannot be loaded: {exc.message}", file=sys.stderr)
        return 2
    tidy_worker_results_dir(settings)
    workers = args.workers or settings.max_workers
    pool = WorkerPool(list(QUEUE_NAMES), connection=connect(str(settings.queue_url)),
                      num_workers=workers, worker_class=PredictWorker)
    pool.start(logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
