"""The console's "导入数据库" button: import a completed task's results into
the database named by ``PREDICT_DATABASE_URL``.

``POST /api/task/<task_id>/import`` reads the task's result files straight
from the results dir (through the task store, not over HTTP) and hands them
to ``importer.import_results``: one transaction, all or nothing. Optional JSON
body ``{"grades": true}`` (or ``?grades=1``) also imports the task's uploaded
grade workbook into ``academic_results`` for the task's year, in the same
transaction.

The workbooks are parsed -- and the import run -- in a child process of its
own (``forkserver``, under ``PREDICT_JOB_MEMORY_MB`` like a prediction job),
never in the service: the uploaded grade workbook is whatever a user sent,
and the Rust reader can allocate gigabytes for a sheet's extent or abort the
process on a crafted file. The importer checks the extent first
(``PREDICT_MAX_CELLS``); whatever gets past it kills only the child, and the
request is refused with ``IMPORT_CRASHED``. The child's pid is logged
(``import_pid``).

Major codes: the files are named with ``engine.majors.code_for``; the route
accepts the codes of the plans that exist for the task's year
(``engine.majors.catalogue``), ``majors.json`` and the built-in codes, and the
majors the task's summary recorded -- and the importer accepts a code no one
listed when the sheet records the major it is the code of.

Answers (the service's envelope and token check apply):

- 200 ``{"success": true, "data": {"task_id", "majors": [{"major", "code",
  "table", "rows", "replaced", "added_columns", "renamed_columns"}],
  "total_rows", "grades", "warnings", "backend"}}``;
- 400 ``INVALID_TASK_ID``, ``BAD_JSON`` (a JSON body that does not parse or
  is not an object); 404 ``TASK_NOT_FOUND``;
- 409 ``TASK_NOT_COMPLETED`` (pending/running) or ``TASK_FAILED``: the
  request conflicts with the task's state and may succeed later, unlike a
  malformed request (400);
- 410 ``TASK_EXPIRED`` / ``RESULT_FILE_MISSING`` / ``UPLOAD_MISSING``: the files
  were cleaned up;
- 422 when a result file cannot be imported (not a workbook, unknown major
  code, a value its column cannot take, ``WORKBOOK_TOO_LARGE``, ...) and
  ``IMPORT_CRASHED`` when the import's process died;
- 503 ``IMPORT_NOT_CONFIGURED`` without ``PREDICT_DATABASE_URL`` (or with an
  unusable one), 503 ``DATABASE_UNREACHABLE``; 500 ``DATABASE_WRITE_FAILED``
  when the database refused the write (rolled back, nothing changed).

``GET /api/import/config`` says whether the button can work:
``{"enabled": bool, "backend": "postgresql" | "sqlite" | null}``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request

from ..engine.majors import catalogue, major_codes
from ..importer import (
    ImportRefused,
    ImportReport,
    import_results,
    majors_of_summary,
    resolve_database_url,
)
from .errors import ServiceError
from .logging_setup import log_event
from .manager import TaskManager, current_manager
from .responses import ok
from .runner import limit_memory
from .task import Task

bp = Blueprint("db_import", __name__, url_prefix="/api")

_NOT_CONFIGURED = "服务未配置数据库（PREDICT_DATABASE_URL），无法导入"

_CONFIG_CODES = ("BAD_DATABASE_URL", "UNSUPPORTED_DATABASE")

# The only body the route reads is {"grades": ...}; anything longer is not that.
_MAX_BODY_BYTES = 1024
_BAD_JSON = "请求体不是合法的 JSON 对象（应为 {\"grades\": true} 或不带请求体）"
_CRASHED = "导入进程异常退出：文件可能已损坏或范围异常大"
# The import's child process: started from a clean fork server, never forked
# from the threaded service (and its pipe ends reach no other child).
_START_METHOD = "forkserver"


def _backend(url: str | None, data_dir: Path) -> str | None:
    if not url:
        return None
    try:
        return resolve_database_url(url, data_dir).get_backend_name()
    except ImportRefused:
        return None


def _json_body() -> dict[str, Any]:
    """The optional JSON object of the request: ``{}`` without a JSON body,
    400 ``BAD_JSON`` for one that does not parse or is not an object."""
    if not request.is_json:
        return {}
    if (request.content_length or 0) > _MAX_BODY_BYTES:
        raise ServiceError("BAD_JSON", _BAD_JSON)
    raw = request.stream.read(_MAX_BODY_BYTES + 1)
    if len(raw) > _MAX_BODY_BYTES:
        raise ServiceError("BAD_JSON", _BAD_JSON)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ServiceError("BAD_JSON", _BAD_JSON) from None
    if not isinstance(body, dict):
        raise ServiceError("BAD_JSON", _BAD_JSON)
    return body


def _wants_grades(body: dict[str, Any]) -> bool:
    if "grades" in body:
        return body["grades"] is True or str(body["grades"]).lower() in ("1", "true", "yes")
    return request.args.get("grades", "").lower() in ("1", "true", "yes")


def _major_names(task: Task, plans_dir: Path) -> dict[str, str]:
    """code -> major for every file the engine can have written for the task:
    the codes ``code_for`` gives the plans of its year (a major without a code
    keeps its name), ``majors.json`` and the built-in codes, and what the
    task's summary recorded (plans may have changed since the run)."""
    names = {code: name for name, code in major_codes(plans_dir).items()}
    names.update({m["code"]: m["name"] for m in catalogue(plans_dir).get(task.year, [])})
    names.update(majors_of_summary(task.summary))
    return names


@dataclass
class _Outcome:
    """What the import's process answered: a report or a refusal, and its pid;
    neither when it died (``exitcode``) or failed unexpectedly (``crash``)."""

    pid: int | None
    report: ImportReport | None = None
    refusal: tuple[str, str] | None = None
    crash: str | None = None
    exitcode: int | None = None


def _import_child(conn: Any, kwargs: dict[str, Any], memory_mb: int) -> None:
    """Entry point of the import's process: one message, then exit."""
    pid = os.getpid()
    try:
        limit_memory(memory_mb)
        conn.send(("done", import_results(**kwargs), pid))
    except ImportRefused as exc:
        conn.send(("refused", exc.code, exc.message, pid))
    except MemoryError:
        conn.send(("died", pid))
    except Exception:  # noqa: BLE001 - reported to the service, which logs it
        conn.send(("crash", traceback.format_exc(), pid))
    finally:
        conn.close()


def _import_in_child(kwargs: dict[str, Any], memory_mb: int) -> _Outcome:
    """Run ``import_results(**kwargs)`` in a child process under ``memory_mb``."""
    ctx = multiprocessing.get_context(_START_METHOD)
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_import_child, args=(send, kwargs, memory_mb),
                       name="db-import", daemon=True)
    proc.start()
    send.close()   # only the child holds the sending end: its death is EOF here
    try:
        try:
            msg = receive.recv()
        except (EOFError, OSError):
            proc.join(10.0)
            return _Outcome(proc.pid, exitcode=proc.exitcode)
        except Exception:  # noqa: BLE001 - an answer that does not unpickle
            return _Outcome(proc.pid, crash=traceback.format_exc())
    finally:
        receive.close()
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)
    kind = msg[0]
    if kind == "done":
        return _Outcome(msg[2], report=msg[1])
    if kind == "refused":
        return _Outcome(msg[3], refusal=(msg[1], msg[2]))
    if kind == "crash":
        return _Outcome(msg[2], crash=msg[1])
    return _Outcome(msg[-1], exitcode=proc.exitcode)


def _result_paths(mgr: TaskManager, names: tuple[str, ...]) -> list[Path]:
    """Only names recorded on the task, each a plain name in the results (local
    copies when they are stored elsewhere)."""
    for name in names:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ServiceError("BAD_RESULT_FILE", "任务记录的结果文件名无效，无法导入")
    paths: list[Path] = []
    for name in names:
        try:
            paths.append(mgr.stored_result(name).path)
        except ServiceError as exc:
            if exc.code != "RESULT_GONE":
                raise
            raise ServiceError("RESULT_FILE_MISSING", f"结果文件已被清理，无法导入：{name}") from None
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
    body = _json_body()
    task = mgr.completed(task_id, purpose="导入")
    grades = _wants_grades(body)
    files = _result_paths(mgr, task.result_files)
    grades_file = mgr.stored_upload(task, "任务上传的成绩文件已被清理，无法导入成绩") if grades else None
    started = time.monotonic()
    outcome = _import_in_child(dict(
        result_files=files, database_url=url, grades_file=grades_file,
        grades_year=task.year if grades else None,
        major_names=_major_names(task, settings.plans_dir),  # its codes are the accepted ones
        default_dir=settings.data_dir, max_cells=settings.max_cells,
    ), settings.job_memory_mb)
    report = outcome.report
    if report is None:
        if outcome.crash is not None:
            log_event(mgr.log, "task.import_failed", task.id, logging.ERROR,
                      import_pid=outcome.pid, detail=outcome.crash)
            raise ServiceError("INTERNAL_ERROR", "导入时发生内部错误，请联系管理员")
        code, message = outcome.refusal or ("IMPORT_CRASHED", _CRASHED)
        log_event(mgr.log, "task.import_refused", task.id, logging.WARNING, code=code,
                  reason=message, import_pid=outcome.pid, exitcode=outcome.exitcode)
        if code in _CONFIG_CODES:
            raise ServiceError("IMPORT_NOT_CONFIGURED", f"{_NOT_CONFIGURED}：{message}")
        if code == "FILE_NOT_FOUND":  # the grade workbook went away while importing
            raise ServiceError("UPLOAD_MISSING", "任务上传的成绩文件已被清理，无法导入成绩")
        raise ImportRefused(code, message)  # its code decides the status (errors.HTTP_STATUS)
    log_event(mgr.log, "task.imported", task.id, database=report.database,
              tables=",".join(t.table for t in report.majors), rows=report.total_rows,
              grades=report.grades.rows if report.grades else None,
              seconds=round(time.monotonic() - started, 3), import_pid=outcome.pid)
    return ok(_payload(task, report, _backend(url, settings.data_dir)))


@bp.get("/import/config")
def import_config() -> tuple[Response, int]:
    """Lets the console decide whether to show the "导入数据库" button."""
    settings = current_manager().settings
    backend = _backend(settings.database_url, settings.data_dir)
    return ok({"enabled": backend is not None, "backend": backend})
