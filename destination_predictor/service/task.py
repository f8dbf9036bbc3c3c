"""A prediction task and every change of its state, in one place.

The states and the transitions between them (each arrow is one function
below; any other change raises ``InvalidTransition``)::

                  start                 complete
    PENDING ─────────────────► RUNNING ───────────► COMPLETED
      │  ▲                       │  │
      │  └──────── requeue ──────┘  │ fail                 (expire: files gone,
      │        (service restarted)  ▼                       the record stays;
      ├──── fail ──────────────► FAILED                     COMPLETED, FAILED
      │   (recovery gives up)       ▲                       and CANCELLED)
      ├──── complete ───────► COMPLETED  (an identical task's results, from the cache)
      │                             │
      └──── cancel ─────────► CANCELLED ◄── cancel ── RUNNING
                                          (after request_cancel, when the engine stops)

On the wire the contract knows four statuses: ``pending``, ``running``,
``completed``, ``failed``. ``CANCELLED`` is a real state here but is shown as
``failed`` with ``cancelled: true``, error code ``CANCELLED`` and the error
"任务已取消", so existing clients keep working. An expired task keeps its
final state with ``expired: true``; its files are gone and downloads answer 410.

Tasks are immutable: each transition returns a new record, so a reader that
got a task from the store never sees it change half-way.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def wire(self) -> str:
        """The status clients see: a cancelled task is ``failed`` (with ``cancelled: true``)."""
        return "failed" if self is TaskState.CANCELLED else self.value

    @classmethod
    def from_wire(cls, status: str) -> tuple[TaskState, ...]:
        """The states a client's ``status`` filter means (``failed`` includes cancelled)."""
        if status == "failed":
            return (cls.FAILED, cls.CANCELLED)
        return (cls(status),)


PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = TaskState
# The statuses of the HTTP contract, in its order.
WIRE_STATUSES = ("pending", "running", "completed", "failed")
ACTIVE = (PENDING, RUNNING)
FINISHED = (COMPLETED, FAILED, CANCELLED)

PRIORITIES = ("high", "normal")

CANCELLED_CODE = "CANCELLED"
CANCELLED_MESSAGE = "任务已取消"

# A task that keeps killing the service (e.g. out of memory) is not retried forever.
MAX_ATTEMPTS = 3
MAX_WARNINGS = 50
MAX_WARNING_CHARS = 500

_TASK_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class InvalidTransition(RuntimeError):
    """A state change that the task's current status does not allow (a bug)."""


def new_task_id() -> str:
    return str(uuid.uuid4())


def is_valid_task_id(value: str) -> bool:
    """Task ids end up in file names, so only the exact generated shape is accepted."""
    return bool(_TASK_ID_RE.fullmatch(value))


@dataclass(frozen=True)
class Task:
    id: str
    seq: int
    year: int
    file_name: str                    # the client's original name, for display only
    upload_name: str                  # the safe stored name under uploads/
    file_sha256: str
    cache_key: str
    created_at: float
    major: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    priority: str = "normal"
    status: TaskState = PENDING
    progress: int = 0
    message: str = "等待执行"
    result_files: tuple[str, ...] = ()
    error: str | None = None
    error_code: str | None = None
    warnings: tuple[str, ...] = ()
    summary: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    expired: bool = False
    expired_at: float | None = None
    cached_from: str | None = None
    model_version: str | None = None
    demo_model: bool = False  # predicted by the bundled demo model: never real predictions
    # {major: "v3" | "bundled"}: the plan versions the run reads (service.plan_store)
    plan_versions: dict[str, str] = field(default_factory=dict)
    # The batch (service.batches) or schedule (service.schedules) that made this
    # task; None for a task started on its own. Records written before these
    # fields existed load with None.
    batch_id: str | None = None
    schedule_id: str | None = None

    def __post_init__(self) -> None:
        # A state given as text ("running") is checked and stored as the enum.
        object.__setattr__(self, "status", TaskState(self.status))

    # --- persistence -------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["result_files"] = list(self.result_files)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Task:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in record.items() if k in known}
        data["status"] = TaskState(record["status"])
        if record.get("cancelled") and data["status"] is FAILED:
            data["status"] = CANCELLED  # written before CANCELLED was a state of its own
        data["result_files"] = tuple(data.get("result_files") or ())
        data["warnings"] = tuple(data.get("warnings") or ())
        return cls(**data)

    @property
    def cancelled(self) -> bool:
        return self.status is CANCELLED

    # --- what clients see ---------------------------------------------------

    def to_public(self, queue_position: int | None = None) -> dict[str, Any]:
        """The status payload; field names are part of the HTTP contract."""
        duration = None
        if self.started_at is not None and self.finished_at is not None:
            duration = round(self.finished_at - self.started_at, 3)
        return {
            "id": self.id,
            "status": self.status.wire,
            "progress": self.progress,
            "message": self.message,
            "result_files": list(self.result_files),
            "error": self.error,
            "error_code": self.error_code,
            "year": self.year,
            "major": self.major,
            "file_name": self.file_name,
            "priority": self.priority,
            "config": self.config,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": duration,
            "queue_position": queue_position,
            "warnings": list(self.warnings),
            "summary": self.summary,
            "cancel_requested": self.cancel_requested,
            "cancelled": self.cancelled,
            "expired": self.expired,
            "cached": self.cached_from is not None,
            "cached_from": self.cached_from,
            "model_version": self.model_version,
            "demo_model": self.demo_model,
            "plan_versions": dict(self.plan_versions),
            "batch_id": self.batch_id,
            "schedule_id": self.schedule_id,
        }

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _require(task: Task, allowed: tuple[TaskState, ...], action: str) -> None:
    if task.status not in allowed:
        raise InvalidTransition(f"cannot {action} task {task.id} in status {task.status}")


# --- transitions --------------------------------------------------------------

def start(task: Task, now: float) -> Task:
    """pending -> running; counts the attempt so crash loops can be stopped."""
    _require(task, (PENDING,), "start")
    return dataclasses.replace(
        task, status=RUNNING, started_at=now, finished_at=None,
        attempts=task.attempts + 1, message="任务开始执行",
    )


def report_progress(task: Task, percent: int, message: str) -> Task:
    """Progress only moves forward and stays below 100 until the task completes,
    so a client never sees a bar go back (also after a re-run on recovery)."""
    _require(task, (RUNNING,), "report progress of")
    pct = max(task.progress, min(99, max(0, int(percent))))
    msg = message if message else task.message
    if task.cancel_requested:
        msg = "正在取消…"
    if pct == task.progress and msg == task.message:
        return task
    return dataclasses.replace(task, progress=pct, message=msg)


def bounded_warnings(warnings: list[str]) -> tuple[str, ...]:
    """At most ``MAX_WARNINGS`` lines of at most ``MAX_WARNING_CHARS`` each: the status
    answer a console polls every 3 s stays small whatever the upload contains."""
    kept = [w if len(w) <= MAX_WARNING_CHARS else w[:MAX_WARNING_CHARS] + "…"
            for w in warnings[:MAX_WARNINGS]]
    if len(warnings) > MAX_WARNINGS:
        kept.append(f"……另有 {len(warnings) - MAX_WARNINGS} 条警告未显示")
    return tuple(kept)


def complete(task: Task, now: float, files: list[str], summary: dict[str, Any] | None,
             warnings: list[str], *, cached_from: str | None = None,
             model_version: str | None = None) -> Task:
    _require(task, ACTIVE, "complete")
    return dataclasses.replace(
        task, status=COMPLETED, progress=100,
        message="预测完成（结果来自缓存）" if cached_from else "预测完成",
        result_files=tuple(files), summary=summary, warnings=bounded_warnings(warnings),
        started_at=task.started_at if task.started_at is not None else now,
        finished_at=now, error=None, error_code=None, cached_from=cached_from,
        model_version=model_version or task.model_version,
    )


def fail(task: Task, now: float, code: str, message: str) -> Task:
    _require(task, ACTIVE, "fail")
    return dataclasses.replace(
        task, status=FAILED, finished_at=now, error=message, error_code=code,
        message="预测失败", result_files=(),
    )


def request_cancel(task: Task) -> Task:
    """A running task is asked to stop; it becomes failed when the engine stops."""
    _require(task, (RUNNING,), "request cancel of")
    return dataclasses.replace(task, cancel_requested=True, message="正在取消…")


def cancel(task: Task, now: float) -> Task:
    _require(task, ACTIVE, "cancel")
    return dataclasses.replace(
        task, status=CANCELLED, finished_at=now, error=CANCELLED_MESSAGE,
        error_code=CANCELLED_CODE, message=CANCELLED_MESSAGE,
        cancel_requested=True, result_files=(),
    )


def requeue(task: Task) -> Task:
    """running (or pending) -> pending after the process running it died; progress is kept
    (it never goes back) and the task runs again from its saved upload."""
    _require(task, ACTIVE, "requeue")
    return dataclasses.replace(task, status=PENDING, message="服务重启后重新排队")


def expire(task: Task, now: float) -> Task:
    """Files are gone; the record stays so clients get 410 instead of 404."""
    _require(task, FINISHED, "expire")
    return dataclasses.replace(task, expired=True, expired_at=now)
