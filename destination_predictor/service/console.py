"""The operators' web console (issue 4) and the monitoring data it shows.

The page is plain HTML/CSS/JS under ``static/console/`` and is served by the
service itself, so it works without the external application the operators'
guide mentions and without any build step. It talks only to this service's
own JSON API; a Content-Security-Policy on the page makes that a rule the
browser enforces, not just a habit of the code.

``GET /api/monitor`` gathers what the 监控面板 needs in one request. It lives
here, not in ``routes.py``, because only the console needs it; it reads the
``TaskManager`` that ``create_app`` hangs off the app and uses the same
envelope (``responses.ok``) and the same token check (``auth``'s app-wide
``before_request`` guards every ``/api/*`` path, this one included).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, send_from_directory

from .import_routes import bp as import_bp
from .manager import TaskManager, current_manager
from .responses import ok
from .task import RUNNING, Task, TaskState

STATIC_DIR = Path(__file__).resolve().parent / "static" / "console"

bp = Blueprint("console", __name__, static_folder=str(STATIC_DIR),
               static_url_path="/console/static")

# Everything the page loads or calls comes from this origin; downloads are
# blob: URLs made from fetched responses; charts are inline SVG.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

RECENT_TASKS = 10
RECENT_FAILURES = 5


def _page(name: str = "index.html") -> Response:
    resp = send_from_directory(STATIC_DIR, name, max_age=0)
    resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@bp.get("/")
def index() -> Response:
    return _page()


@bp.get("/admin/prediction/async")
def legacy_path() -> Response:
    """The path staff already know from the operators' guide."""
    return _page()


@bp.get("/student")
def student_page() -> Response:
    """One student's what-if (分数滑动): ``student.html`` + ``student.js``."""
    return _page("student.html")


@bp.get("/schedules")
def schedules_page() -> Response:
    """Scheduled runs (定时任务): ``schedules.html`` + ``schedules.js`` over ``/api/schedules``."""
    return _page("schedules.html")


@bp.get("/plans")
def plans_page() -> Response:
    """Education plans (培养方案管理): ``plans.html`` + ``plans.js`` over ``/api/plans``."""
    return _page("plans.html")


@bp.get("/api/monitor")
def monitor() -> tuple[Response, int]:
    return ok(monitor_snapshot(current_manager()))


def monitor_snapshot(manager: TaskManager) -> dict[str, Any]:
    """Counts, limits, recent work and disk use, built only from the
    manager's public pieces (health, store, settings)."""
    health = manager.health()
    settings = manager.settings
    recent = manager.store.newest(None, RECENT_TASKS)
    failures = manager.store.newest(TaskState.from_wire("failed"), RECENT_FAILURES)
    disk = dict(manager.disk_usage())
    disk["free_bytes"] = health.get("free_disk_bytes")
    return {
        "status": health.get("status"),
        "model_loaded": health.get("model_loaded"),
        "model_version": health.get("model_version"),
        "demo_model": health.get("demo_model"),
        "model_error": health.get("model_error"),
        "uptime_s": health.get("uptime_s"),
        "started_at": _iso(manager.started_at),
        "workers": {
            # Distributed: the live RQ workers of every machine are the slots.
            "max": (len(health.get("workers") or []) if health.get("mode") == "distributed"
                    else settings.max_workers),
            "running": health.get("running"),
            "pending": health.get("pending"),
            "max_pending": settings.max_pending,
            "execution": settings.execution,
            "mode": health.get("mode", "embedded"),
            "nodes": health.get("workers"),
        },
        "counts": health.get("tasks"),
        "recent_tasks": [_recent(t) for t in recent],
        "recent_failures": [_failure(t) for t in failures],
        "disk": disk,
        "limits": {
            "max_upload_mb": settings.max_upload_mb,
            "task_timeout_s": settings.task_timeout_s,
            "retention_hours": settings.retention_hours,
        },
        "import_enabled": import_enabled(),
        "auth_required": settings.api_token is not None,
    }


def import_enabled() -> bool:
    """The 导入数据库 button is shown only when it can work: the import blueprint
    is registered in this app and ``PREDICT_DATABASE_URL`` names a database the
    importer accepts (same rule as its ``GET /api/import/config``)."""
    settings = current_manager().settings
    if not settings.database_url or import_bp.name not in current_app.blueprints:
        return False
    # Imported only here: the importer pulls in SQLAlchemy, and it is only
    # relevant when its route is registered.
    from ..importer import ImportRefused, resolve_database_url

    try:
        resolve_database_url(settings.database_url, settings.data_dir)
    except ImportRefused:
        return False
    return True


def _recent(task: Task) -> dict[str, Any]:
    wait = None
    if task.started_at is not None:
        wait = round(max(0.0, task.started_at - task.created_at), 3)
    duration = None
    if task.started_at is not None and task.finished_at is not None:
        duration = round(task.finished_at - task.started_at, 3)
    elif task.started_at is not None and task.status is RUNNING:
        duration = round(time.time() - task.started_at, 3)
    return {
        "id": task.id,
        "file_name": task.file_name,
        "year": task.year,
        "major": task.major,
        "status": task.status.wire,
        "progress": task.progress,
        "created_at": _iso(task.created_at),
        "finished_at": _iso(task.finished_at),
        "wait_s": wait,
        "duration_s": duration,
        "cached": task.cached_from is not None,
        "cancelled": task.cancelled,
    }


def _failure(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "file_name": task.file_name,
        "year": task.year,
        "finished_at": _iso(task.finished_at),
        "error": task.error,
        "error_code": task.error_code,
        "cancelled": task.cancelled,
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
