"""What-if for one student (分数滑动), answered synchronously.

``POST /api/whatif`` takes ``{year, major, grades: {course: score}, assume?,
config?}`` and answers with ``engine.whatif.engine_whatif``: the service's one
loaded ``Engine`` (no model load per request, its predict lock respected).
This module only checks the request's shape and bounds; every number about
grades is the engine's.

``GET /api/task/<task_id>/student/<snh>`` gives a student's grades as a
completed task saw them, ready to post to the what-if. The result workbooks
leave taken courses empty, so the task's upload is read again -- an untrusted
workbook, hence in a child process under the job memory limit, like
``validate.py`` does.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Blueprint, Response, request

from ..engine.errors import PredictionError
from ..engine.options import PredictConfig
from ..engine.whatif import engine_whatif, student_view
from .errors import ServiceError
from .isolation import run_isolated
from .manager import current_manager
from .responses import ok

bp = Blueprint("whatif", __name__, url_prefix="/api")

MAX_BODY_BYTES = 64 * 1024
MAX_NAME_CHARS = 200
MAX_SNH_CHARS = 64
READ_TIMEOUT_S = 120.0


def _engine() -> Any:
    engine = current_manager().engine
    if engine is None:
        raise ServiceError("MODEL_UNAVAILABLE", "预测模型未能加载，服务暂时无法预测，请联系管理员")
    return engine


def _refuse_constant(name: str) -> float:
    raise ValueError(name)


def _body() -> dict[str, Any]:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ServiceError("BODY_TOO_LARGE", f"请求体过大（最多 {MAX_BODY_BYTES // 1024} KB）")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise ServiceError("BODY_TOO_LARGE", f"请求体过大（最多 {MAX_BODY_BYTES // 1024} KB）")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ServiceError("BAD_JSON", "请求体不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("BAD_WHATIF", "请求体必须是 JSON 对象")
    unknown = set(data) - {"year", "major", "grades", "assume", "config"}
    if unknown:
        raise ServiceError("BAD_WHATIF", f"含有未知字段: {', '.join(sorted(unknown))[:200]}")
    return data


def _year(value: Any) -> int:
    if isinstance(value, str) and len(value) == 4 and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
        return value
    if value is None:
        raise ServiceError("MISSING_YEAR", "缺少年级参数 year（例如 2024）")
    raise ServiceError("BAD_YEAR", "年级 year 必须是四位数字，例如 2024")


def _scores(value: Any, field: str) -> dict[str, float]:
    """``{course: score}``: course names are short text, scores finite numbers 0..100."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ServiceError("BAD_WHATIF", f"{field} 必须是 {{课程名: 成绩}} 形式的 JSON 对象")
    out: dict[str, float] = {}
    for course, score in value.items():
        if not course.strip() or len(course) > MAX_NAME_CHARS:
            raise ServiceError("BAD_WHATIF", f"{field} 中的课程名为空或过长（最多 {MAX_NAME_CHARS} 个字符）")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not (
                math.isfinite(score) and 0 <= score <= 100):
            raise ServiceError("BAD_SCORE", f"{field} 中课程“{course[:40]}”的成绩必须是 0 到 100 之间的数字")
        out[course] = float(score)
    return out


@bp.post("/whatif")
def whatif() -> tuple[Response, int]:
    data = _body()
    year = _year(data.get("year"))
    major = data.get("major")
    if not isinstance(major, str) or not major.strip() or len(major) > MAX_NAME_CHARS:
        raise ServiceError("BAD_WHATIF", "请指定专业 major（名称或代码）")
    if "grades" not in data:
        raise ServiceError("BAD_WHATIF", "缺少 grades（{课程名: 成绩}）")
    grades = _scores(data["grades"], "grades")
    assume = _scores(data.get("assume"), "assume")
    try:
        config = PredictConfig.parse(data.get("config"))
    except PredictionError as exc:
        raise ServiceError(exc.code, exc.message) from None
    engine = _engine()
    answer = engine_whatif(engine, year, major.strip(), grades, assume,
                           config.min_grade, config.max_grade)
    answer["demo_model"] = bool(engine.is_demo_model)
    answer["model_version"] = engine.model_version
    return ok(answer)


@bp.get("/task/<task_id>/student/<snh>")
def student(task_id: str, snh: str) -> tuple[Response, int]:
    manager = current_manager()
    task = manager.completed(task_id, purpose="查看")
    engine = _engine()
    snh = snh.strip()
    if not snh or len(snh) > MAX_SNH_CHARS:
        raise ServiceError("STUDENT_NOT_FOUND", "该任务中没有这个学号的学生")
    upload = manager.stored_upload(task, "该任务的成绩文件已被清理，请重新提交任务")
    config = PredictConfig.parse(task.config or None)
    found = _read_isolated(str(upload), snh, task.major is None, config.legacy_columns,
                           manager.settings)
    if found is None:
        raise ServiceError("STUDENT_NOT_FOUND", "该任务中没有这个学号的学生")
    grades, recorded_major = found
    major = task.major or recorded_major
    if not major:
        raise ServiceError("STUDENT_NOT_FOUND", "该学生没有可预测的专业")
    try:
        view = student_view(engine, task.year, major, grades)
    except PredictionError as exc:
        if exc.code in ("UNKNOWN_MAJOR", "UNKNOWN_YEAR"):
            raise ServiceError("STUDENT_NOT_FOUND", "该学生的专业在本任务中未预测") from None
        raise
    return ok({"task_id": task.id, "snh": snh, "config": config.to_dict(), **view})


def _grades_in_child(path: str, snh: str, require_major: bool, legacy: bool,
                     max_cells: int) -> tuple[dict[str, float], str | None] | None:
    from ..engine.grades import read_grades

    cohort = read_grades(path, max_cells=max_cells, require_major=require_major,
                         legacy_columns=legacy)
    if snh not in cohort.majors:
        return None
    rows = cohort.scores[cohort.scores["sid"] == snh]
    grades = {str(c): float(g) for c, g in zip(rows["course"], rows["grade"], strict=True)}
    return grades, cohort.majors[snh]


def _read_isolated(path: str, snh: str, require_major: bool, legacy: bool,
                   settings: Any) -> tuple[dict[str, float], str | None] | None:
    return run_isolated(_grades_in_child, path, snh, require_major, legacy, settings.max_cells,
                        memory_mb=settings.job_memory_mb, what="读取成绩文件",
                        timeout_s=READ_TIMEOUT_S)

