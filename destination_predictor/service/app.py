"""The application factory: settings, engine, task store, executor, routes,
recovery, cleaner -- in that order, and nothing at import time.

Everything long-lived hangs off the app (``app.extensions["predict"]``), so
two apps in one process (tests) share nothing. In gunicorn the app is built in
the worker process (no ``preload_app``), because the pool threads and the
in-memory task index must live where the requests are served.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from ..engine import PredictionError
from . import (
    auth,
    batch_routes,
    console,
    import_routes,
    openapi,
    responses,
    routes,
    schedule_routes,
    webhook_routes,
    whatif,
)
from .batches import BATCHES_KEY, Batches
from .cache import ResultCache
from .cleaner import Cleaner
from .dispatch import RqDispatcher
from .executor import TaskExecutor
from .jobs_db import open_jobs_db
from .logging_setup import build_logger, log_event
from .manager import EXTENSION_KEY, TaskManager
from .notifier import Notifier
from .notify_store import NotifyStore
from .plan_routes import PLANS_KEY, plans_bp
from .plan_store import PlanStore, isolated_checker
from .plan_sync import PlanSync
from .recovery import RecoveryReport, recover
from .runner import EngineArgs, ProcessRunner, Runner, ThreadRunner
from .schedules import SCHEDULES_KEY, Scheduler
from .settings import SETTING_NAMES, Settings, SettingsError, load_settings
from .shared_store import SharedTaskStore
from .storage import CACHE_MARGIN_S, S3Storage, Storage, open_storage
from .store import BaseTaskStore, TaskStore
from .task_tables import resolve_tasks_url

# Room for the other form fields around the file itself.
_FORM_OVERHEAD_BYTES = 1024 * 1024


def create_app(config: Mapping[str, Any] | None = None, *, runner: Runner | None = None) -> Flask:
    """Build the service. ``config`` overrides ``PREDICT_*`` environment
    settings (same names) and may carry Flask keys such as ``TESTING``;
    ``runner`` replaces the job runner (tests use a controllable fake)."""
    config = dict(config or {})
    settings = load_settings({k: v for k, v in config.items() if k in SETTING_NAMES})
    settings.ensure_dirs()

    app = Flask(__name__)
    app.config.update({k: v for k, v in config.items() if k not in SETTING_NAMES})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + _FORM_OVERHEAD_BYTES
    app.config["PREDICT_MAX_UPLOAD_MB"] = settings.max_upload_mb
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    logger = build_logger(settings.log_path, stderr=not app.config.get("TESTING", False))
    log_event(logger, "service.starting", port=settings.port, data_dir=settings.data_dir,
              execution=settings.execution, workers=settings.max_workers)
    store = open_task_store(settings)
    storage = open_storage(settings)
    # Plans live beside uploads and results (bundled ones are the fallback); from
    # here on settings.plans_dir is the effective dir the plan store maintains.
    plan_store = open_plan_store(settings, storage, store)
    settings = dataclasses.replace(settings, plans_dir=plan_store.effective_dir)
    engine, engine_error = _load_engine(engine_args(settings), logger)

    cache = ResultCache(store, storage, logger)
    executor: TaskExecutor | RqDispatcher
    if settings.queue_url:
        # Distributed: jobs run in ``python -m destination_predictor.worker`` processes.
        assert isinstance(store, SharedTaskStore)
        executor = RqDispatcher(store, settings.queue_url, max_pending=settings.max_pending,
                                timeout_s=settings.task_timeout_s, logger=logger)
    else:
        runner = runner or _make_runner(settings, engine)
        executor = TaskExecutor(
            store, runner, cache, storage=storage, max_workers=settings.max_workers,
            max_pending=settings.max_pending, timeout_s=settings.task_timeout_s, logger=logger,
            model_version=lambda: engine.model_version if engine is not None else None)
    cleaner = Cleaner(
        store, storage=storage, staging_dir=settings.staging_dir,
        retention_s=settings.retention_s,
        record_retention_s=settings.record_retention_days * 86400.0,
        cache_age_s=settings.task_timeout_s + CACHE_MARGIN_S,
        interval_s=settings.clean_interval_s, logger=logger)
    manager = TaskManager(settings, engine, engine_error, store, executor, cache, cleaner,
                          storage, logger, plan_versions=plan_store.versions_in_use)
    app.extensions[EXTENSION_KEY] = manager
    # Completion notifications: endings become durable deliveries (a quick
    # listener), the sender thread POSTs them (service.notifier).
    notifier = Notifier(
        NotifyStore(settings.webhooks_url),
        public_url=settings.public_url, timeout_s=settings.webhook_timeout_s,
        max_attempts=settings.webhook_max_attempts, backoff_s=settings.webhook_backoff_s,
        retention_s=settings.record_retention_days * 86400.0, logger=logger)
    store.on_finished(notifier.task_finished)
    manager.on_shutdown(notifier.stop)
    app.extensions[webhook_routes.NOTIFIER_KEY] = notifier
    app.extensions[PLANS_KEY] = plan_store
    # Batches and schedules: their own tables (jobs_db), tasks through the manager.
    jobs_db = open_jobs_db(settings.jobs_url)
    _warn_about_unused_files(settings, logger)
    batches = Batches(manager, jobs_db, logger)
    scheduler = Scheduler(manager, jobs_db, logger, root=settings.schedule_root,
                          default_timezone=settings.schedule_timezone,
                          grace_s=settings.schedule_grace_s,
                          clock=config.get("SCHEDULE_CLOCK") or time.time)
    manager.on_shutdown(jobs_db.dispose)
    manager.on_shutdown(scheduler.stop)
    app.extensions[BATCHES_KEY] = batches
    app.extensions[SCHEDULES_KEY] = scheduler

    responses.init_app(app, logger)
    auth.init_app(app, settings.api_token)
    app.register_blueprint(routes.api_bp)
    app.register_blueprint(routes.health_bp)
    # --- blueprints of the other parts of the service: one line each --------
    app.register_blueprint(console.bp)  # web console at / and /admin/prediction/async
    app.register_blueprint(import_routes.bp)  # POST /api/task/<id>/import (PREDICT_DATABASE_URL)
    app.register_blueprint(openapi.bp)  # GET /api/openapi.json (the API described, no token)
    app.register_blueprint(plans_bp)  # /api/plans: upload, check, versions, rollback
    app.register_blueprint(whatif.bp)  # POST /api/whatif, GET /api/task/<id>/student/<snh>
    app.register_blueprint(batch_routes.bp)  # /api/batch: several files as one batch
    app.register_blueprint(schedule_routes.bp)  # /api/schedules: cron runs from a folder
    app.register_blueprint(webhook_routes.bp)  # /api/webhooks, /api/webhook-deliveries
    # -------------------------------------------------------------------------

    # Start-up recovery is an explicit step, before any pool thread can run.
    # Distributed: other instances' workers may be running any task; the
    # dispatcher's reconciler re-dispatches what has no live job instead.
    report = RecoveryReport() if isinstance(executor, RqDispatcher) else recover(
        store, executor, storage=storage, logger=logger)
    executor.start()
    cleaner.start()
    scheduler.start()
    notifier.start()
    batches.on_batch_finished(notifier.batch_finished)  # one notification per batch
    store.start()  # the shared store drains task endings made elsewhere (no-op embedded)
    # Last, once every on_batch_finished listener is wired: batches that ended
    # while the service was down (or during recovery) are reported now.
    batches.start()
    if isinstance(runner, ProcessRunner):
        threading.Thread(target=runner.warm_up, name="forkserver-warm-up", daemon=True).start()
    log_event(logger, "service.started", requeued=len(report.requeued),
              recovery_failed=len(report.failed), staging_removed=report.removed_staging,
              model_loaded=engine is not None)
    return app


def _warn_about_unused_files(settings: Settings, logger: Any) -> None:
    """Records an earlier embedded service kept in the data dir are not moved to
    the task records' PostgreSQL (``Settings.shared_records_url``): say so once
    at start, so that an operator missing their schedules or webhooks knows why."""
    for name, url in (("jobs.sqlite3", settings.jobs_url),
                      ("notifications.sqlite3", settings.webhooks_url)):
        path = settings.data_dir / name
        if path.exists() and url == settings.shared_records_url:
            log_event(logger, "records.sqlite_not_used", None, logging.WARNING, file=path,
                      now="PREDICT_TASKS_DB_URL")


def open_task_store(settings: Settings) -> BaseTaskStore:
    """The embedded store (SQLite in the data dir, in-memory index) unless
    ``PREDICT_TASKS_DB_URL`` names PostgreSQL; with the embedded pool that
    store is held exclusively (one service per task database)."""
    if settings.tasks_db_url is None:
        if settings.queue_url:
            raise SettingsError("PREDICT_QUEUE_URL needs PREDICT_TASKS_DB_URL=postgresql://... "
                                "(the records every instance and worker shares)")
        return TaskStore(settings.db_path)
    url = resolve_tasks_url(settings.tasks_db_url)
    if url.get_backend_name() == "sqlite":
        if settings.queue_url:
            raise SettingsError("PREDICT_QUEUE_URL needs a PostgreSQL PREDICT_TASKS_DB_URL")
        return TaskStore(Path(str(url.database)).expanduser().resolve())
    # Several instances share the records in the distributed mode; an embedded
    # service with its own pool must be alone on them.
    return SharedTaskStore(settings.tasks_db_url, exclusive=not settings.queue_url)


def open_plan_store(settings: Settings, storage: Storage, store: BaseTaskStore) -> PlanStore:
    """The managed plans under the files root (the data dir, or the directory
    every machine mounts); with an object store each machine keeps its own and
    the state is shared through the store (``service.plan_sync``). Changes are
    made by one instance at a time (the task records' lock)."""
    root = settings.files_root / "plans"
    return PlanStore(root, settings.plans_dir, isolated_checker(
        settings.category_map, settings.max_cells, settings.job_memory_mb),
        sync=PlanSync(storage, root) if isinstance(storage, S3Storage) else None,
        exclusive=lambda: store.alone("plans"))


def _make_runner(settings: Any, engine: Any) -> Runner:
    if settings.execution == "thread":
        return ThreadRunner(engine)
    return ProcessRunner(engine_args(settings), nice=settings.child_nice,
                         idle=settings.child_idle)


def engine_args(settings: Settings) -> EngineArgs:
    # Writing processes are forked by a job's own process; in thread mode that
    # would fork the whole service (its threads, sockets, locks), so one there.
    writers = settings.write_processes if settings.execution == "process" else 1
    return EngineArgs(str(settings.model_dir), str(settings.plans_dir),
                      str(settings.category_map) if settings.category_map else None,
                      max_cells=settings.max_cells, memory_mb=settings.job_memory_mb,
                      write_processes=writers)


def _load_engine(args: EngineArgs, logger: Any) -> tuple[Any, str | None]:
    """A service without a model still starts, so /health can say why it
    cannot predict; the reason is logged with its stack trace."""
    started = time.monotonic()
    try:
        engine = args.build()
    except PredictionError as exc:
        logger.error("event=engine.load_failed code=%s reason=%s", exc.code, exc.message)
        return None, exc.message
    except Exception as exc:  # noqa: BLE001 - logged with traceback and reported by /health
        logger.exception("event=engine.load_failed error=%s", type(exc).__name__)
        return None, f"模型加载失败：{type(exc).__name__}"
    log_event(logger, "engine.loaded", model_version=engine.model_version,
              seconds=round(time.monotonic() - started, 2))
    return engine, None
