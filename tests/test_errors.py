"""``destination_predictor.service.errors``: one table from refusal codes to
HTTP statuses, and it says what README's error table says -- the same case
answers the same status on every route (a download and an import of a task
that is not finished are both 409).
"""

from __future__ import annotations

import re
import time
from typing import Any

from support.paths import REPO
from support.service import assert_error

from destination_predictor.service import task as T
from destination_predictor.service.errors import DEFAULT_STATUS, http_status
from destination_predictor.service.manager import EXTENSION_KEY

SERVICE_SOURCES = REPO / "destination_predictor" / "service"


def readme_error_table() -> dict[str, int]:
    """code -> status from README's table of error codes (rows ``| 409 | `A`, `B` | ... |``)."""
    text = (REPO / "README.md").read_text("utf-8")
    table: dict[str, int] = {}
    for status, codes in re.findall(r"^\| (\d{3}) \| ([^|]+) \|", text, re.M):
        for code in re.findall(r"`([A-Z][A-Z_]+)`", codes):
            assert code not in table, f"{code} listed twice in README"
            table[code] = int(status)
    return table


def raised_codes() -> set[str]:
    """Codes the service raises literally (``ServiceError("CODE", ...)`` and the like)."""
    pattern = re.compile(r"\b(?:ServiceError|UploadRejected)\(\s*\"([A-Z][A-Z_]+)\"")
    return {code for path in SERVICE_SOURCES.glob("*.py")
            for code in pattern.findall(path.read_text("utf-8"))}


def test_every_documented_code_has_its_documented_status() -> None:
    documented = readme_error_table()
    assert len(documented) > 30, "README's error table not found"
    assert {code: http_status(code) for code in documented} == documented


def test_every_code_the_service_raises_is_documented() -> None:
    raised = raised_codes()
    assert {"TASK_NOT_COMPLETED", "TASK_FAILED", "QUEUE_FULL", "FILE_TOO_LARGE"} <= raised
    documented = readme_error_table()
    assert sorted(raised - set(documented)) == []
    assert {c: http_status(c) for c in raised} == {c: documented[c] for c in raised}


def test_framework_errors_use_the_same_table() -> None:
    """404, 405, 413, 500 ... raised by Flask are answered with a code whose
    status in the table is the one Flask chose."""
    from destination_predictor.service.responses import _HTTP_MESSAGES

    assert {code: http_status(code) for code, _ in _HTTP_MESSAGES.values()} == \
        {code: status for status, (code, _) in _HTTP_MESSAGES.items()}


def test_an_unlisted_code_is_422() -> None:
    assert DEFAULT_STATUS == 422
    assert http_status("NO_COURSE_COLUMN") == 422


def test_downloads_and_import_refuse_unfinished_tasks_alike(app_config: dict[str, Any],
                                                            make_app: Any) -> None:
    """Pending or running: 409 TASK_NOT_COMPLETED; failed or cancelled: 409
    TASK_FAILED; expired: 410 TASK_EXPIRED -- for one file, the zip and the import."""
    app_config["PREDICT_DATABASE_URL"] = f"sqlite:///{app_config['PREDICT_DATA_DIR']}/db.sqlite3"
    application = make_app()
    client = application.test_client()
    store = application.extensions[EXTENSION_KEY].store
    now = time.time()

    def add(*steps: Any) -> str:
        task = T.Task(id=T.new_task_id(), seq=store.next_seq(), year=2023, file_name="x.xlsx",
                      upload_name="x.xlsx", file_sha256="0" * 64, cache_key="k", created_at=now)
        store.add(task)
        for step in steps:
            store.update(task.id, step)
        return task.id

    def start(t: T.Task) -> T.Task:
        return T.start(t, now)

    cases = {
        "pending": (add(), 409, "TASK_NOT_COMPLETED"),
        "running": (add(start), 409, "TASK_NOT_COMPLETED"),
        "failed": (add(start, lambda t: T.fail(t, now, "NO_COURSE_COLUMN", "缺少课程列")),
                   409, "TASK_FAILED"),
        "cancelled": (add(lambda t: T.cancel(t, now)), 409, "TASK_FAILED"),
        "expired": (add(start, lambda t: T.complete(t, now, ["x.xlsx"], None, []),
                        lambda t: T.expire(t, now)), 410, "TASK_EXPIRED"),
    }
    answers: dict[str, list[tuple[int, str]]] = {}
    responses: list[tuple[Any, int, str]] = []
    for label, (tid, status, code) in cases.items():
        assert http_status(code) == status
        for r in (client.get(f"/api/task/result/{tid}/{tid}_x.xlsx"),
                  client.get(f"/api/task/{tid}/results.zip"),
                  client.post(f"/api/task/{tid}/import")):
            answers.setdefault(label, []).append((r.status_code, r.json["code"]))
            responses.append((r, status, code))
    assert answers == {label: [(status, code)] * 3 for label, (_, status, code) in cases.items()}
    for r, status, code in responses:
        assert_error(r, status, code)
