"""``destination_predictor.service.task``: the task record and its
transitions, as pure functions -- no app, no client, no store."""

from __future__ import annotations

import json

import pytest

from destination_predictor.service import task as T


def test_transitions_refuse_impossible_changes() -> None:
    t = T.Task(id=T.new_task_id(), seq=1, year=2024, file_name="a.xlsx", upload_name="x",
               file_sha256="0", cache_key="k", created_at=0.0)
    with pytest.raises(T.InvalidTransition):
        T.complete(T.fail(t, 1.0, "X", "失败"), 2.0, [], None, [])
    with pytest.raises(T.InvalidTransition):
        T.expire(t, 1.0)
    r = T.start(t, 1.0)
    r = T.report_progress(r, 50, "a")
    assert T.report_progress(r, 10, "b").progress == 50
    assert T.report_progress(r, 100, "c").progress == 99
    assert T.requeue(r).progress == 50
    assert T.Task.from_record(json.loads(json.dumps(r.to_record()))) == r
