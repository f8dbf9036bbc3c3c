"""``/api/plans``: the education plans the service uses (``service.plan_store``).

- ``GET /api/plans``: every plan (year, major, code, version in use -- ``v{n}``
  or ``bundled`` --, uploaded when, course count, check report, versions);
- ``POST /api/plans``: multipart ``file``, ``year``, ``major``, optional
  ``code``; checked before it is accepted (422 ``PLAN_CHECK_FAILED`` with the
  report, the plan in use untouched);
- ``DELETE /api/plans/<year>/<major>``: stop using it (the bundled plan takes
  over if any, see ``plan_store``);
- ``POST /api/plans/<year>/<major>/rollback``: optional ``version`` (form,
  query or JSON); default the version before the one in use.

``<major>`` is a name or a code. The service's envelope and token check apply.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from .errors import ServiceError, http_status
from .manager import current_manager
from .plan_store import PlanCheckFailed, PlanStore
from .responses import ok
from .uploads import receive

PLANS_KEY = "predict_plans"

plans_bp = Blueprint("plans", __name__, url_prefix="/api")


def current_plans() -> PlanStore:
    return current_app.extensions[PLANS_KEY]


def _year(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        raise ServiceError("MISSING_YEAR", "缺少年级参数 year（例如 2024）")
    raw = raw.strip()
    if len(raw) != 4 or not (raw.isascii() and raw.isdigit()):
        raise ServiceError("BAD_YEAR", "年级 year 必须是四位数字，例如 2024")
    return int(raw)


def _text(name: str) -> str | None:
    value = request.form.get(name)
    value = value.strip() if value is not None else None
    return value or None


@plans_bp.get("/plans")
def list_plans() -> tuple[Response, int]:
    return ok({"plans": current_plans().list()})


@plans_bp.post("/plans")
def upload_plan() -> tuple[Response, int]:
    year = _year(request.form.get("year"))
    major = _text("major")
    if major is None:
        raise ServiceError("MISSING_MAJOR", "缺少专业名称 major（例如 智能科学与技术）")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ServiceError("MISSING_FILE", "请上传培养方案文件（表单字段 file，.xlsx 或 .xls）")
    settings = current_manager().settings
    tmp, original, sha, size = receive(
        upload.stream, upload.filename, staging_dir=settings.staging_dir,
        max_bytes=settings.max_upload_bytes, max_unzipped_bytes=settings.max_unzipped_bytes)
    try:
        plan = current_plans().upload(tmp, original=original, sha256=sha, size=size,
                                      year=year, major=major, code=_text("code"))
    except PlanCheckFailed as exc:
        body = {"success": False, "error": exc.message, "code": exc.code, "report": exc.report}
        return jsonify(body), http_status(exc.code)
    finally:
        tmp.unlink(missing_ok=True)
    return ok({"plan": plan, "message": f"已启用 {year} 级{plan['major']}培养方案 {plan['version']}"})


@plans_bp.delete("/plans/<year>/<major>")
def delete_plan(year: str, major: str) -> tuple[Response, int]:
    store = current_plans()
    y = _year(year)
    return ok(store.delete(y, store.resolve(y, major)))


@plans_bp.post("/plans/<year>/<major>/rollback")
def rollback_plan(year: str, major: str) -> tuple[Response, int]:
    store = current_plans()
    y = _year(year)
    body: dict[str, Any] = request.get_json(silent=True) or {}
    raw = request.values.get("version") or body.get("version")
    version = None
    if raw not in (None, ""):
        text = str(raw).strip().removeprefix("v")
        if not (text.isascii() and text.isdigit() and len(text) <= 6):
            raise ServiceError("BAD_VERSION", "version 必须是版本号，例如 2 或 v2")
        version = int(text)
    plan = store.rollback(y, store.resolve(y, major), version)
    return ok({"plan": plan, "message": f"{y} 级{plan['major']}培养方案已回滚到 {plan['version']}"})
