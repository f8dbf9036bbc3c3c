"""``/api/batch``: several workbooks started as one batch (``service.batches``).

- ``POST /api/batch/start``: multipart, several ``files`` (workbooks and/or
  zips of workbooks), ``year`` once for all or once per ``files`` part (a
  zip's year is its workbooks'), optional ``major``/``config``/``priority``
  -> ``{"batch_id", "task_ids"}`` at once;
- ``GET /api/batch/status/<batch_id>``: counts per state, overall progress,
  each task's status; ``GET /api/batches``: the newest batches (the console);
- ``GET /api/batch/result/<batch_id>``: one zip, a folder per source file;
- ``POST /api/batch/<batch_id>/cancel``: cancel every task not yet ended.

The whole request may be up to ``PREDICT_MAX_BATCH_MB``; each file still
has ``PREDICT_MAX_UPLOAD_MB``. The service's envelope and token check apply.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request, send_file

from .batches import BATCHES_KEY, Batches, BatchFile, expand
from .errors import ServiceError
from .manager import current_manager
from .responses import ok
from .routes import _ascii_digits, _parse_start_form, _parse_year

bp = Blueprint("batches", __name__, url_prefix="/api")

MAX_BATCH_LIST = 100


def current_batches() -> Batches:
    return current_app.extensions[BATCHES_KEY]


def _files() -> list[BatchFile]:
    parts = [f for f in request.files.getlist("files") if f.filename]
    if not parts:
        raise ServiceError("MISSING_FILE", "请上传至少一个成绩文件（表单字段 files，.xlsx、.xls 或 .zip）")
    raw_years = [y.strip() for y in request.form.getlist("year")]
    if len(raw_years) > 1 and len(raw_years) != len(parts):
        raise ServiceError("BAD_YEAR", f"year 要么只给一个（所有文件），要么每个文件一个：本次 {len(parts)} 个文件、"
                                       f"{len(raw_years)} 个 year")
    years = [_parse_year(y) for y in raw_years] or [_parse_year(None)]
    if len(years) == 1:
        years = years * len(parts)
    out: list[BatchFile] = []
    for part, year in zip(parts, years, strict=True):
        out.extend(expand(part.filename or "", part.stream, year))
    return out


@bp.post("/batch/start")
def start_batch() -> tuple[Response, int]:
    settings = current_manager().settings
    # The batch's own body limit (the app-wide one fits a single file).
    request.max_content_length = int(settings.max_batch_mb * 1024 * 1024)
    fields = _parse_start_form()
    files = _files()
    batch_id, task_ids = current_batches().create(
        files, major=fields["major"], config=fields["config"], priority=fields["priority"])
    return ok({"batch_id": batch_id, "task_ids": task_ids,
               "message": f"批量预测已启动：{len(task_ids)} 个文件"})


@bp.get("/batch/status/<batch_id>")
def batch_status(batch_id: str) -> tuple[Response, int]:
    return ok(current_batches().status(batch_id))


@bp.get("/batches")
def list_batches() -> tuple[Response, int]:
    raw = request.args.get("limit", "20")
    if not _ascii_digits(raw, 3) or not 1 <= int(raw) <= MAX_BATCH_LIST:
        raise ServiceError("BAD_LIMIT", f"limit 必须是 1 到 {MAX_BATCH_LIST} 之间的整数")
    found = current_batches().list(int(raw))
    return ok({"batches": found, "count": len(found)})


@bp.get("/batch/result/<batch_id>")
def batch_result(batch_id: str) -> Response:
    fh, name = current_batches().results_zip(batch_id)
    return send_file(fh, mimetype="application/zip", as_attachment=True, download_name=name,
                     max_age=0)


@bp.post("/batch/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> tuple[Response, int]:
    return ok(current_batches().cancel(batch_id))
