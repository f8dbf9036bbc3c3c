"""``/api/schedules``: scheduled runs (``service.schedules``).

- ``GET /api/schedules``: every schedule with its next run and run history;
- ``POST /api/schedules``: JSON (or form) ``cron``, ``year``, ``source_dir``,
  optional ``major``, ``config``, ``timezone``, ``name``;
- ``POST /api/schedules/<id>/pause`` and ``/resume``;
- ``DELETE /api/schedules/<id>`` (its run history goes with it).

The source folder is a server path, so these routes are for administrators:
with ``PREDICT_API_TOKEN`` set they need the token like every ``/api/*``
route, and the folder must be under ``PREDICT_SCHEDULE_ROOT``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from .errors import ServiceError
from .responses import ok
from .schedules import SCHEDULES_KEY, Scheduler

bp = Blueprint("schedules", __name__, url_prefix="/api")


def current_scheduler() -> Scheduler:
    return current_app.extensions[SCHEDULES_KEY]


def _body() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ServiceError("BAD_JSON", "请求体必须是 JSON 对象")
        return body
    return {k: request.form.get(k) for k in request.form}


@bp.get("/schedules")
def list_schedules() -> tuple[Response, int]:
    found = current_scheduler().list()
    return ok({"schedules": found, "count": len(found)})


@bp.post("/schedules")
def create_schedule() -> tuple[Response, int]:
    schedule = current_scheduler().create(_body())
    return ok({"schedule": schedule, "message": f"已创建定时任务“{schedule['name']}”"})


@bp.post("/schedules/<schedule_id>/pause")
def pause_schedule(schedule_id: str) -> tuple[Response, int]:
    schedule = current_scheduler().set_paused(schedule_id, True)
    return ok({"schedule": schedule, "message": "定时任务已暂停"})


@bp.post("/schedules/<schedule_id>/resume")
def resume_schedule(schedule_id: str) -> tuple[Response, int]:
    schedule = current_scheduler().set_paused(schedule_id, False)
    return ok({"schedule": schedule, "message": "定时任务已恢复"})


@bp.delete("/schedules/<schedule_id>")
def delete_schedule(schedule_id: str) -> tuple[Response, int]:
    return ok(current_scheduler().delete(schedule_id))
