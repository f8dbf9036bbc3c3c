"""Refusals of the service, and the one table from their codes to HTTP statuses.

Every part of the service (views, the task manager, uploads, auth, the
import route) raises ``ServiceError`` -- or lets the engine's
``PredictionError`` through -- with a machine code and a Chinese message;
none of them chooses an HTTP status. ``responses`` looks the status up here,
so the same case answers the same status on every route (a task that is not
finished is 409 for a download and for an import alike).
"""

from __future__ import annotations

from ..engine.errors import PredictionError

# code -> HTTP status. Grouped by status; a code not listed is a refusal of
# well-formed input that cannot be processed: 422.
HTTP_STATUS: dict[str, int] = {
    # the request itself is wrong
    **dict.fromkeys((
        "BAD_REQUEST", "MISSING_FILE", "MISSING_YEAR", "BAD_YEAR", "UNKNOWN_YEAR",
        "UNKNOWN_MAJOR", "BAD_PRIORITY", "BAD_CONFIG", "UNSUPPORTED_FILE_TYPE",
        "BAD_FILE_CONTENT", "EMPTY_FILE", "SUSPICIOUS_ARCHIVE", "BAD_STATUS", "BAD_LIMIT",
        "INVALID_TASK_ID", "BAD_JSON", "BAD_WHATIF", "BAD_SCORE"), 400),
    **dict.fromkeys(("UNAUTHORIZED", "INVALID_TOKEN"), 401),
    "FORBIDDEN": 403,
    **dict.fromkeys(("NOT_FOUND", "TASK_NOT_FOUND", "FILE_NOT_FOUND", "STUDENT_NOT_FOUND"), 404),
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    # the task's state does not allow it (yet): may succeed later
    **dict.fromkeys(("TASK_NOT_COMPLETED", "TASK_FAILED", "TASK_FINISHED"), 409),
    # education plans (plan_routes, plan_store): a wrong form, an unknown plan or
    # version, a change its versions do not allow
    **dict.fromkeys(("MISSING_MAJOR", "BAD_MAJOR", "BAD_PLAN_CODE", "BAD_VERSION"), 400),
    **dict.fromkeys(("PLAN_NOT_FOUND", "PLAN_VERSION_NOT_FOUND"), 404),
    **dict.fromkeys(("PLAN_CODE_TAKEN", "PLAN_NO_VERSIONS", "PLAN_NO_OLDER_VERSION",
                     "PLANS_BUSY"), 409),
    # completion notifications (webhook_routes): a refused webhook, an unknown one
    "BAD_WEBHOOK": 400,
    "WEBHOOK_NOT_FOUND": 404,
    # the files were there once and have been cleaned up
    # batches (batch_routes) and schedules (schedule_routes)
    **dict.fromkeys(("TOO_MANY_FILES", "INVALID_BATCH_ID", "INVALID_SCHEDULE_ID", "BAD_CRON",
                     "BAD_TIMEZONE", "MISSING_SOURCE", "SOURCE_OUTSIDE_ROOT", "SOURCE_NOT_FOUND"),
                    400),
    **dict.fromkeys(("BATCH_NOT_FOUND", "SCHEDULE_NOT_FOUND"), 404),
    **dict.fromkeys(("BATCH_NOT_FINISHED", "BATCH_NO_RESULTS", "BATCH_FINISHED"), 409),
    "SCHEDULES_NOT_CONFIGURED": 503,
    **dict.fromkeys(("TASK_EXPIRED", "RESULT_GONE", "RESULT_FILE_MISSING", "UPLOAD_MISSING"),
                    410),
    **dict.fromkeys(("FILE_TOO_LARGE", "BODY_TOO_LARGE"), 413),
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "TOO_MANY_REQUESTS": 429,
    **dict.fromkeys(("INTERNAL_ERROR", "DATABASE_WRITE_FAILED", "VERIFY_FAILED"), 500),
    "CHECK_TIMEOUT": 504,
    **dict.fromkeys(("SERVICE_UNAVAILABLE", "QUEUE_FULL", "MODEL_UNAVAILABLE",
                     "IMPORT_NOT_CONFIGURED", "DATABASE_UNREACHABLE", "DISK_FULL",
                     "STORE_UNWRITABLE", "WORKER_DEAD",
                     "STORE_UNAVAILABLE", "QUEUE_UNAVAILABLE", "STORAGE_UNAVAILABLE"), 503),
}
DEFAULT_STATUS = 422


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, DEFAULT_STATUS)


class ServiceError(PredictionError):
    """A refusal by the service: ``code``, Chinese ``message``, optional response headers
    (``Retry-After`` on a full queue, ``WWW-Authenticate`` on a missing token)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message)
        self.headers = dict(headers or {})
