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
