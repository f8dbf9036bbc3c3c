"""The HTTP contract of the prediction service (issue 3); clients depend on
these paths and shapes. Views only parse input and call the ``TaskManager``.

Downloads: one file at ``GET /api/task/result/<task_id>/<filename>``, all files
of a task as one zip at ``GET /api/task/<task_id>/results.zip``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file

from ..engine.errors import PredictionError
from ..engine.options import PredictConfig
from .auth import may_see_details
from .errors import ServiceError
from .manager import current_manager
from .responses import ok
from .task import CANCELLED, PRIORITIES, WIRE_STATUSES

api_bp = Blueprint("api", __name__, url_prefix="/api")
health_bp = Blueprint("health", __name__)

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_LIST_LIMIT = 500
# What /health tells anyone; the rest (pid, disk, counts, paths) needs the token.
PUBLIC_HEALTH_FIELDS = ("status", "version", "model_loaded", "demo_model")


def _form_text(name: str) -> str | None:
    value = request.form.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _ascii_digits(raw: str, max_len: int) -> bool:
    """Only 0-9: ``str.isdigit`` also accepts "²⁰²⁴" and "①②③④", which ``int`` refuses."""
    return 0 < len(raw) <= max_len and raw.isascii() and raw.isdigit()


def _parse_year(raw: str | None) -> int:
    if raw is None:
        raise ServiceError("MISSING_YEAR", "缺少年级参数 year（例如 2024）")
    if len(raw) != 4 or not _ascii_digits(raw, 4):
        raise ServiceError("BAD_YEAR", "年级 year 必须是四位数字，例如 2024")
    return int(raw)


def _parse_start_form() -> dict[str, Any]:
    year = _parse_year(_form_text("year"))
    priority = (_form_text("priority") or "normal").lower()
    if priority not in PRIORITIES:
        raise ServiceError("BAD_PRIORITY", "priority 只能是 high 或 normal")
    try:
        config = PredictConfig.parse(request.form.get("config")).to_dict()
    except PredictionError as exc:
        raise ServiceError(exc.code, exc.message) from None
    return {"year": year, "major": _form_text("major"), "config": config, "priority": priority}


@api_bp.post("/task/start")
def start_task() -> tuple[Response, int]:
    fields = _parse_start_form()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ServiceError("MISSING_FILE", "请上传成绩文件（表单字段 file，.xlsx 或 .xls）")
    task = current_manager().start_task(upload.stream, upload.filename, **fields)
    return ok({"task_id": task.id, "message": "预测任务已启动", "status": task.status.wire})


@api_bp.post("/task/validate")
def validate_task() -> tuple[Response, int]:
    """The check before a run: what the workbook holds and what a run would
    refuse, at once; no task is created and nothing is kept."""
    fields = _parse_start_form()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ServiceError("MISSING_FILE", "请上传成绩文件（表单字段 file，.xlsx 或 .xls）")
    report = current_manager().validate(upload.stream, upload.filename, year=fields["year"],
                                        major=fields["major"], config=fields["config"])
    return ok(report)


@api_bp.get("/task/status/<task_id>")
def task_status(task_id: str) -> tuple[Response, int]:
    return ok(current_manager().status(task_id))


@api_bp.post("/task/<task_id>/cancel")
def cancel_task(task_id: str) -> tuple[Response, int]:
    task = current_manager().cancel(task_id)
    message = "任务已取消" if task.status is CANCELLED else "已请求取消，任务将在当前步骤结束后停止"
    return ok({"task_id": task.id, "status": task.status.wire, "message": message})


@api_bp.get("/task/result/<task_id>/<filename>")
def task_result(task_id: str, filename: str) -> Response:
    stored = current_manager().result_file(task_id, filename)
    # Stored and addressed as {task_id}_Cohort...xlsx (one results/ dir for all
    # tasks); saved on the user's disk under the engine's own name. From an
    # object store, the object's ETag: the same on every instance, so a resumed
    # download (Range + If-Range) may continue on another one.
    return send_file(stored.path, mimetype=XLSX_MIME, as_attachment=True,
                     download_name=stored.path.name.removeprefix(f"{task_id}_"), max_age=0,
                     etag=stored.etag if stored.etag is not None else True)


@api_bp.get("/task/<task_id>/results.zip")
def task_results_zip(task_id: str) -> Response:
    fh, name = current_manager().results_zip(task_id)
    return send_file(fh, mimetype="application/zip", as_attachment=True, download_name=name,
                     max_age=0)


@api_bp.get("/tasks")
def list_tasks() -> tuple[Response, int]:
    status = request.args.get("status") or None
    if status is not None and status not in WIRE_STATUSES:
        raise ServiceError("BAD_STATUS", "status 只能是 pending、running、completed 或 failed")
    raw_limit = request.args.get("limit", "50")
    if not _ascii_digits(raw_limit, 3) or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
        raise ServiceError("BAD_LIMIT", f"limit 必须是 1 到 {MAX_LIST_LIMIT} 之间的整数")
    tasks = current_manager().list_tasks(status, int(raw_limit))
    return ok({"tasks": tasks, "count": len(tasks)})


@api_bp.get("/majors")
def list_majors() -> tuple[Response, int]:
    by_year = current_manager().majors()
    return ok({"years": sorted(by_year), "majors": {str(y): m for y, m in sorted(by_year.items())}})


@health_bp.get("/health")
def health() -> tuple[Response, int]:
    """Open without a token; 503 while the model is not loaded, so a load
    balancer stops sending work to an instance that cannot predict. Without
    the token it says only ok/degraded and the version."""
    manager = current_manager()
    info = manager.health()
    problems = info["problems"]
    if not may_see_details(manager.settings.api_token):
        info = {k: info[k] for k in PUBLIC_HEALTH_FIELDS}
    if problems:
        first = problems[0]
        body = {"success": False, "error": "；".join(p["reason"] for p in problems),
                "code": first["code"], "status": info["status"], "data": info}
        return jsonify(body), 503
    return ok(info, status=info["status"])
