"""``destination_predictor.service.runner``: the child-process runner the
service uses in production (``PREDICT_EXECUTION=process``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.service import data_dir, finished, listing, start, wait_for


def test_time_limit_terminates_a_child_process(app_config: dict[str, Any], make_app: Any,
                                               grades: Path) -> None:
    """The real process runner: a job that cannot finish in time is stopped hard."""
    app_config.update(PREDICT_EXECUTION="process", PREDICT_TASK_TIMEOUT_S=0.5)
    application = make_app()
    c = application.test_client()
    t0 = time.monotonic()
    tid = start(c, grades.read_bytes()).json["data"]["task_id"]
    data = wait_for(c, tid, finished, timeout=30)
    assert data["status"] == "failed" and data["error_code"] == "TIMEOUT", data
    assert time.monotonic() - t0 < 10
    assert listing(data_dir(application) / "results") == []


def _priority_after(nice: int, idle: bool, out: Any) -> None:
    import os

    from destination_predictor.service.runner import lower_priority

    lower_priority(nice, idle)
    out.send((os.sched_getscheduler(0), os.nice(0)))


def test_job_processes_yield_the_cpu_to_the_service() -> None:
    """Job children run in SCHED_IDLE by default (PREDICT_CHILD_IDLE=1) plus the
    nice value; with the class off, only the nice value."""
    import multiprocessing
    import os

    from destination_predictor.service.settings import load_settings

    assert load_settings({}).child_idle is True
    ctx = multiprocessing.get_context("fork")
    seen = {}
    for idle in (True, False):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_priority_after, args=(3, idle, w))
        p.start()
        seen[idle] = r.recv()
        p.join(10)
    base = os.nice(0)
    assert seen[True] == (os.SCHED_IDLE, base + 3)
    assert seen[False] == (os.SCHED_OTHER, base + 3)
