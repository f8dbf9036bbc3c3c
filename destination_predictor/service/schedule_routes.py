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


# JSON fields and the types they may have (None: the field may be null or left out).
_TEXT_FIELDS = ("cron", "source_dir", "major", "timezone", "name")


def _body() -> dict[str, Any]:
    """The schedule as JSON (or a form); a field of the wrong JSON type is refused
    here, so that e.g. a number as name is not quietly turned into text."""
    if not request.is_json:
        return {k: request.form.get(k) for k in request.form}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ServiceError("BAD_JSON", "请求体必须是 JSON 对象")
    for name in _TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ServiceError("BAD_JSON", f"字段 {name} 必须是文本")
    year = body.get("year")
    if isinstance(year, bool) or not isinstance(year, int | str | None):
        raise ServiceError("BAD_YEAR", "年级 year 必须是四位数字，例如 2024")
    if not isinstance(body.get("config"), dict | str | None):
        raise ServiceError("BAD_CONFIG", "config 必须是 JSON 对象")
    return body


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
