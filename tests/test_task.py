"""``destination_predictor.service.task``: the task record and its
transitions, as pure functions -- no app, no client, no store.

The wire contract knows four statuses; ``CANCELLED`` is a state of its own
that clients see as ``failed`` with ``cancelled: true``, and records written
before it existed (``{"status": "failed", "cancelled": true}``) load as
``CANCELLED``.
"""

from __future__ import annotations

import json

import pytest

from destination_predictor.service import task as T
from destination_predictor.service.task import TaskState


def new_task(**kw: object) -> T.Task:
    fields: dict[str, object] = dict(
        id=T.new_task_id(), seq=1, year=2024, file_name="a.xlsx", upload_name="x",
        file_sha256="0", cache_key="k", created_at=0.0)
    fields.update(kw)
    return T.Task(**fields)  # type: ignore[arg-type]


def round_trip(task: T.Task) -> T.Task:
    """Through JSON, the way the store keeps a record."""
    return T.Task.from_record(json.loads(json.dumps(task.to_record())))


# --- transitions --------------------------------------------------------------

def test_transitions_refuse_impossible_changes() -> None:
    t = new_task()
    with pytest.raises(T.InvalidTransition):
        T.complete(T.fail(t, 1.0, "X", "失败"), 2.0, [], None, [])
    with pytest.raises(T.InvalidTransition):
        T.expire(t, 1.0)
    with pytest.raises(T.InvalidTransition):
        T.request_cancel(t)  # only a running task is asked to stop
    with pytest.raises(T.InvalidTransition):
        T.report_progress(t, 10, "not started")
    with pytest.raises(T.InvalidTransition):
        T.cancel(T.cancel(t, 1.0), 2.0)
    with pytest.raises(T.InvalidTransition):
        T.start(T.start(t, 1.0), 2.0)


def test_progress_only_moves_forward_and_stays_below_100_until_completed() -> None:
    r = T.report_progress(T.start(new_task(), 1.0), 50, "a")
    assert T.report_progress(r, 10, "b").progress == 50
    assert T.report_progress(r, 100, "c").progress == 99
    assert T.complete(r, 2.0, ["f.xlsx"], None, []).progress == 100


def test_requeue_keeps_progress_and_the_record_survives_json() -> None:
    r = T.report_progress(T.start(new_task(), 1.0), 50, "a")
    assert T.requeue(r).progress == 50
    assert T.requeue(r).status is TaskState.PENDING
    assert T.Task.from_record(json.loads(json.dumps(r.to_record()))) == r


def test_start_counts_attempts() -> None:
    t = T.start(new_task(), 1.0)
    assert (t.status, t.attempts, t.started_at) == (TaskState.RUNNING, 1, 1.0)
    assert T.start(T.requeue(t), 2.0).attempts == 2


def test_complete_from_the_cache_needs_no_start() -> None:
    done = T.complete(new_task(), 5.0, ["f.xlsx"], {"students": 1}, [], cached_from="other")
    assert done.status is TaskState.COMPLETED and done.started_at == 5.0
    assert done.to_public()["cached"] is True and done.to_public()["cached_from"] == "other"


def test_only_finished_tasks_expire() -> None:
    done = T.complete(T.start(new_task(), 1.0), 2.0, ["f.xlsx"], None, [])
    gone = T.expire(done, 3.0)
    assert gone.expired and gone.expired_at == 3.0 and gone.status is TaskState.COMPLETED
    assert T.expire(T.cancel(new_task(), 1.0), 2.0).expired
    with pytest.raises(T.InvalidTransition):
        T.expire(T.start(new_task(), 1.0), 2.0)


def test_task_ids_have_exactly_the_generated_shape() -> None:
    tid = T.new_task_id()
    assert T.is_valid_task_id(tid)
    for bad in ("abc", "..", tid.upper(), tid + "x", f"../{tid}", ""):
        assert not T.is_valid_task_id(bad), bad


# --- the state on the wire ------------------------------------------------------

def test_a_status_given_as_text_is_stored_as_the_state() -> None:
    t = new_task(status="running")
    assert t.status is TaskState.RUNNING
    with pytest.raises(ValueError):
        new_task(status="done")


def test_wire_statuses_are_the_states_except_cancelled() -> None:
    assert [s.wire for s in TaskState] == ["pending", "running", "completed", "failed", "failed"]
    assert T.WIRE_STATUSES == ("pending", "running", "completed", "failed")
    assert TaskState.from_wire("failed") == (TaskState.FAILED, TaskState.CANCELLED)
    for status in ("pending", "running", "completed"):
        assert TaskState.from_wire(status) == (TaskState(status),)


@pytest.mark.parametrize("running", [False, True], ids=["pending", "running"])
def test_a_cancelled_task_is_failed_and_cancelled_on_the_wire(running: bool) -> None:
    t = new_task()
    if running:
        t = T.request_cancel(T.start(t, 1.0))
        assert t.to_public()["cancel_requested"] is True
        assert t.to_public()["status"] == "running"
    c = T.cancel(t, 2.0)
    assert c.status is TaskState.CANCELLED and c.cancelled
    public = c.to_public()
    assert public["status"] == "failed" and public["cancelled"] is True
    assert public["error_code"] == T.CANCELLED_CODE == "CANCELLED"
    assert public["error"] == T.CANCELLED_MESSAGE == "任务已取消"
    assert public["result_files"] == []


def test_a_failed_task_is_not_cancelled_on_the_wire() -> None:
    f = T.fail(T.start(new_task(), 1.0), 2.0, "TIMEOUT", "任务超时")
    public = f.to_public()
    assert (public["status"], public["cancelled"], public["error_code"]) == \
        ("failed", False, "TIMEOUT")


def test_records_keep_cancelled_as_its_own_state() -> None:
    c = T.cancel(new_task(), 1.0)
    assert c.to_record()["status"] == "cancelled"
    assert round_trip(c) == c


def test_an_old_cancelled_record_loads_as_cancelled() -> None:
    """Written before CANCELLED was a state: ``failed`` plus ``cancelled: true``."""
    old = T.fail(new_task(), 1.0, "CANCELLED", "任务已取消").to_record()
    old["cancelled"] = True
    assert old["status"] == "failed"
    loaded = T.Task.from_record(old)
    assert loaded.status is TaskState.CANCELLED and loaded.cancelled
    assert loaded.to_public()["status"] == "failed"
    # Without the flag a failed record stays failed; unknown keys are ignored.
    old["cancelled"] = False
    old["from_a_newer_version"] = 1
    assert T.Task.from_record(old).status is TaskState.FAILED
