"""The console's "导入数据库" button: import a completed task's results into
the database named by ``PREDICT_DATABASE_URL``.

``POST /api/task/<task_id>/import`` reads the task's result files straight
from the results dir (through the task store, not over HTTP) and hands them
to ``importer.import_results``: one transaction, all or nothing. Optional JSON
body ``{"grades": true}`` (or ``?grades=1``) also imports the task's uploaded
grade workbook into ``academic_results`` for the task's year, in the same
transaction.

Answers (the service's envelope and token check apply):

- 200 ``{"success": true, "data": {"task_id", "majors": [{"major", "code",
  "table", "rows", "replaced", "added_columns", "renamed_columns"}],
  "total_rows", "grades", "warnings", "backend"}}``;
- 400 ``INVALID_TASK_ID``; 404 ``TASK_NOT_FOUND``;
- 409 ``TASK_NOT_COMPLETED`` (pending/running) or ``TASK_FAILED``: the
  request conflicts with the task's state and may succeed later, unlike a
  malformed request (400);
- 410 ``TASK_EXPIRED`` / ``RESULT_FILE_MISSING`` / ``UPLOAD_MISSING``: the files
  were cleaned up;
- 422 when a result file cannot be imported (not a workbook, unknown major
  code, a value its column cannot take, ...);
- 503 ``IMPORT_NOT_CONFIGURED`` without ``PREDICT_DATABASE_URL`` (or with an
  unusable one), 503 ``DATABASE_UNREACHABLE``; 500 ``DATABASE_WRITE_FAILED``
  when the database refused the write (rolled back, nothing changed).

``GET /api/import/config`` says whether the button can work:
``{"enabled": bool, "backend": "postgresql" | "sqlite" | null}``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request

from ..engine.majors import major_codes
from ..importer import ImportRefused, ImportReport, import_results, resolve_database_url
from .errors import ServiceError
from .logging_setup import log_event
from .manager import current_manager
from .responses import ok
from .task import Task

bp = Blueprint("db_import", __name__, url_prefix="/api")

_NOT_CONFIGURED = "服务未配置数据库（PREDICT_DATABASE_URL），无法导入"

_CONFIG_CODES = ("BAD_DATABASE_URL", "UNSUPPORTED_DATABASE")


def _backend(url: str | None, data_dir: Path) -> str | None:
    if not url:
        return None
    try:
        return resolve_database_url(url, data_dir).get_backend_name()
    except ImportRefused:
        return None


def _wants_grades() -> bool:
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and "grades" in body:
        return body["grades"] is True or str(body["grades"]).lower() in ("1", "true", "yes")
    return request.args.get("grades", "").lower() in ("1", "true", "yes")


def _result_paths(results_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """Only names recorded on the task, and only directly inside the results dir."""
    base = results_dir.resolve()
    paths: list[Path] = []
    for name in names:
        path = (base / name).resolve()
        if path.parent != base:
            raise ServiceError("BAD_RESULT_FILE", "任务记录的结果文件名无效，无法导入")
        paths.append(path)
    return paths


def _payload(task: Task, report: ImportReport, backend: str | None) -> dict[str, Any]:
    majors = [{
        "major": t.major, "code": t.code, "year": t.year, "table": t.table, "rows": t.rows,
        "replaced": t.replaced, "created": t.created, "added_columns": t.added_columns,
        "renamed_columns": t.renamed_columns,
    } for t in report.majors]
    grades = None
    if report.grades is not None:
        grades = {"table": report.grades.table, "year": report.grades.year,
                  "rows": report.grades.rows, "replaced": report.grades.replaced}
    return {"task_id": task.id, "majors": majors, "total_rows": report.total_rows,
            "grades": grades, "warnings": report.warnings, "backend": backend,
            "message": f"已导入 {len(majors)} 个专业，共 {report.total_rows} 行"}


@bp.post("/task/<task_id>/import")
def import_task(task_id: str) -> tuple[Response, int]:
    mgr = current_manager()
    settings = mgr.settings
    url = settings.database_url
    if not url:
        raise ServiceError("IMPORT_NOT_CONFIGURED", _NOT_CONFIGURED)
    task = mgr.completed(task_id, purpose="导入")
    grades = _wants_grades()
    files = _result_paths(settings.results_dir, task.result_files)
    grades_file = settings.uploads_dir / task.upload_name if grades else None
    if grades_file is not None and not grades_file.is_file():
        raise ServiceError("UPLOAD_MISSING", "任务上传的成绩文件已被清理，无法导入成绩")
    codes = major_codes(settings.plans_dir)
    started = time.monotonic()
    try:
        report = import_results(
            files, url, grades_file=grades_file, grades_year=task.year if grades else None,
            known_codes=codes.values(), major_names={c: m for m, c in codes.items()},
            default_dir=settings.data_dir)
    except ImportRefused as exc:
        log_event(mgr.log, "task.import_refused", task.id, logging.WARNING, code=exc.code,
                  reason=exc.message)
        if exc.code in _CONFIG_CODES:
            raise ServiceError("IMPORT_NOT_CONFIGURED", f"{_NOT_CONFIGURED}：{exc.message}") from None
        if exc.code == "FILE_NOT_FOUND":  # the grade workbook went away while importing
            raise ServiceError("UPLOAD_MISSING", "任务上传的成绩文件已被清理，无法导入成绩") from None
        raise  # its code decides the status (errors.HTTP_STATUS), like every refusal
    log_event(mgr.log, "task.imported", task.id, database=report.database,
              tables=",".join(t.table for t in report.majors), rows=report.total_rows,
              grades=report.grades.rows if report.grades else None,
              seconds=round(time.monotonic() - started, 3))
    return ok(_payload(task, report, _backend(url, settings.data_dir)))


@bp.get("/import/config")
def import_config() -> tuple[Response, int]:
    """Lets the console decide whether to show the "导入数据库" button."""
    settings = current_manager().settings
    backend = _backend(settings.database_url, settings.data_dir)
    return ok({"enabled": backend is not None, "backend": backend})
