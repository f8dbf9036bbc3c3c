"""Hostile input to the database import: request bodies and workbooks.

3. A malformed JSON body on ``POST /api/task/<id>/import`` is a 400
   ``BAD_JSON``, not silently "no body".
4. The importer reads workbooks with python-calamine, which allocates a
   sheet's whole extent (a 1.6 KB file with one cell at ``ZZ60000``: 1.7 GB)
   and panics or aborts on crafted .xls files. The importer checks the extent
   first (``WORKBOOK_TOO_LARGE``) and refuses a reader panic as a corrupt
   workbook; the route parses and imports in a child process under
   ``PREDICT_JOB_MEMORY_MB``, so whatever the checks miss kills only that
   child (``IMPORT_CRASHED``) and the service goes on.

Flask's test client runs the app in this process: ``os.getpid()`` here is the
service's pid, which the import's own process must not be.
"""

from __future__ import annotations

import os
import pickle
import re
import resource
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from flask import Flask
from support.hostile import (
    PANIC_SEEDS,
    mutated_xls,
    plain_xlsx,
    xls_with_dimensions,
    xlsx_with_cell,
)
from support.service import UNKNOWN_TASK_ID, assert_error

from destination_predictor.importer import ImportRefused, import_results, resolve_database_url

YEAR = 2024


def result_workbook(path: Path, n: int = 3) -> Path:
    """A small per-major result workbook as the engine writes it."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Predictions"
    ws.append(["SNH", "major", "grade", "count", "current_pred", "current_prob1", "高等数学"])
    for i in range(n):
        ws.append([f"3322{i:06d}", "物联网工程", 10 + i, 40, 1 + i % 3, 0.25 + i / 100, 70.5])
    wb.save(path)
    return path


def table_names(url: str) -> list[str]:
    eng = sa.create_engine(resolve_database_url(url))
    try:
        with eng.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())
    finally:
        eng.dispose()


def refused(code: str, *args: Any, **kw: Any) -> ImportRefused:
    with pytest.raises(ImportRefused) as exc:
        import_results(*args, **kw)
    assert exc.value.code == code, exc.value.message
    assert re.search(r"[\u4e00-\u9fff]", exc.value.message)
    return exc.value


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the importer's own guards (also what import_results.py runs) --------------------------


@pytest.fixture
def result(tmp_path: Path) -> Path:
    return result_workbook(tmp_path / f"Cohort{YEAR}_Predictions_iot.xlsx")


def test_far_cell_in_grade_workbook_is_refused_before_reading(result: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    zz = tmp_path / "grades.xlsx"
    zz.write_bytes(xlsx_with_cell("ZZ60000"))
    before = max_rss_mb()
    err = refused("WORKBOOK_TOO_LARGE", [result], url, grades_file=zz, grades_year=YEAR)
    assert "60,000" in err.message
    assert max_rss_mb() - before < 500          # calamine would have taken 1.7 GB here
    assert not (tmp_path / "db.sqlite3").exists() or table_names(url) == []


def test_lying_xls_dimensions_are_refused_before_reading(result: Path, tmp_path: Path) -> None:
    """calamine believes the DIMENSIONS record and aborts the process (40 TB)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    dim = tmp_path / "grades.xls"
    dim.write_bytes(xls_with_dimensions(0xFFFFFFF0, 0xFFFF))
    refused("WORKBOOK_TOO_LARGE", [result], url, grades_file=dim, grades_year=YEAR)


@pytest.mark.parametrize("seed", PANIC_SEEDS)
def test_reader_panic_is_a_corrupt_workbook(result: Path, tmp_path: Path, seed: int) -> None:
    """pyo3's PanicException is a BaseException: it used to escape every handler."""
    import python_calamine

    from destination_predictor.engine.excel import is_reader_panic

    bad = tmp_path / "grades.xls"
    bad.write_bytes(mutated_xls(seed))
    with pytest.raises(BaseException) as raw:  # the seed still panics this reader
        python_calamine.CalamineWorkbook.from_path(str(bad)).get_sheet_by_index(0).to_python()
    assert is_reader_panic(raw.value), raw.value
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    err = refused("NOT_A_WORKBOOK", [result], url, grades_file=bad, grades_year=YEAR)
    assert "已损坏" in err.message


def test_result_workbooks_are_checked_too(result: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    refused("WORKBOOK_TOO_LARGE", [result], url, max_cells=20)   # 4 rows x 7 columns
    far = tmp_path / "far" / result.name
    far.parent.mkdir()
    far.write_bytes(xlsx_with_cell("ZZ60000"))       # a result name on a far-cell sheet
    refused("WORKBOOK_TOO_LARGE", [far], url)
    report = import_results([result], url, max_cells=28)
    assert report.total_rows == 3


def test_sheets_are_measured_one_by_one(tmp_path: Path) -> None:
    """``engine.excel.check_extent`` multiplies the longest sheet by the widest
    and assumes 999,999 rows for a narrow sheet: a result workbook with a wide
    ``Predictions`` sheet and a narrow second sheet (what the engine writes)
    came out at 999,999 x 45 cells. The reader allocates one sheet at a time."""
    path = tmp_path / f"Cohort{YEAR}_Predictions_iot.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Predictions"
    ws.append(["SNH", "major", *(f"课程{j}" for j in range(43))])
    ws.append(["3322000001", "物联网工程", *([80.0] * 43)])
    wb.create_sheet("Thresholds").append(["SNH", "Major"])
    wb.save(path)
    report = import_results([path], f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert report.total_rows == 1
    refused("WORKBOOK_TOO_LARGE", [path], f"sqlite:///{tmp_path / 'db.sqlite3'}",
            max_cells=2 * 45 - 1)


def test_import_report_pickles(result: Path, tmp_path: Path) -> None:
    """The route's child process sends the report back through a pipe."""
    grades = tmp_path / "grades.xlsx"
    grades.write_bytes(plain_xlsx())
    report = import_results([result], f"sqlite:///{tmp_path / 'db.sqlite3'}",
                            grades_file=grades, grades_year=YEAR)
    again = pickle.loads(pickle.dumps(report))
    assert again == report and again.to_dict() == report.to_dict()


# --- the route: request body ---------------------------------------------------------------


@pytest.fixture
def db_app(app_config: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest) -> Flask:
    app_config["PREDICT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'route.sqlite3'}"
    return request.getfixturevalue("app")


@pytest.mark.parametrize("body", [
    b'{"grades": tru',            # cut off
    b"{'grades': true}",          # not JSON
    b'\xff\xfe{"grades": true}',  # not UTF-8
    b"[" * 1000 + b"]" * 1000,    # deeper than the parser recurses
    b"[" * 100_000,               # longer than any body the route reads
    b"[true]", b'"grades"', b"true", b"null", b"1",   # JSON, but not an object
], ids=lambda b: repr(b[:20]))
def test_malformed_json_body_is_bad_json(db_app: Flask, body: bytes) -> None:
    resp = db_app.test_client().post(f"/api/task/{UNKNOWN_TASK_ID}/import", data=body,
                                     content_type="application/json")
    assert_error(resp, 400, "BAD_JSON")


@pytest.mark.parametrize(("body", "content_type"), [
    (b"", "application/json"),                # no body at all: default, no grades
    (b'{"grades": false}', "application/json"),
    (b"{}", "application/json; charset=utf-8"),
    (b"grades=1", "application/x-www-form-urlencoded"),   # not JSON: not read as JSON
])
def test_wellformed_or_absent_body_goes_on(db_app: Flask, body: bytes, content_type: str) -> None:
    resp = db_app.test_client().post(f"/api/task/{UNKNOWN_TASK_ID}/import", data=body,
                                     content_type=content_type)
    assert_error(resp, 404, "TASK_NOT_FOUND")


# --- the route: workbooks, in a process of their own ---------------------------------------


def completed_task(app: Flask, upload: bytes, upload_name: str = "upload.xlsx") -> str:
    """A completed task whose result file is a valid workbook and whose upload is ``upload``."""
    from destination_predictor.service.manager import EXTENSION_KEY
    from destination_predictor.service.task import Task, complete, new_task_id

    mgr = app.extensions[EXTENSION_KEY]
    store, settings = mgr.store, mgr.settings
    task = Task(id=new_task_id(), seq=store.next_seq(), year=YEAR, file_name="成绩.xlsx",
                upload_name=f"{new_task_id()}_{upload_name}", file_sha256="0" * 64,
                cache_key="k", created_at=time.time(), status="running")
    store.add(task)
    (settings.uploads_dir / task.upload_name).write_bytes(upload)
    name = f"{task.id}_Cohort{YEAR}_Predictions_iot.xlsx"
    result_workbook(settings.results_dir / name)
    store.update(task.id, lambda t: complete(t, time.time(), [name], None, []))
    return task.id


def import_pids(app: Flask, task_id: str) -> list[int]:
    """``import_pid`` of every import log line of the task (-1 where a line has none)."""
    from destination_predictor.service.manager import EXTENSION_KEY

    log = app.extensions[EXTENSION_KEY].settings.log_path.read_text(encoding="utf-8")
    pids = []
    for line in log.splitlines():
        if f"task_id={task_id}" in line and "event=task.import" in line:
            m = re.search(r"\bimport_pid=(\d+)", line)
            pids.append(int(m.group(1)) if m else -1)
    return pids


def still_serving(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/import/config").get_json()["data"]["enabled"] is True
    task_id = completed_task(app, plain_xlsx())
    resp = client.post(f"/api/task/{task_id}/import", json={"grades": True})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["data"]["grades"]["rows"] == 1
    pids = import_pids(app, task_id)
    assert pids and all(p > 0 and p != os.getpid() for p in pids), pids


def test_route_refuses_far_cell_grades_in_another_process(db_app: Flask) -> None:
    task_id = completed_task(db_app, xlsx_with_cell("ZZ60000"))
    before = max_rss_mb()
    resp = db_app.test_client().post(f"/api/task/{task_id}/import", json={"grades": True})
    assert_error(resp, 422, "WORKBOOK_TOO_LARGE")
    assert max_rss_mb() - before < 500
    pids = import_pids(db_app, task_id)
    assert pids and all(p > 0 and p != os.getpid() for p in pids), pids
    still_serving(db_app)


def test_route_refuses_panicking_xls(db_app: Flask) -> None:
    task_id = completed_task(db_app, mutated_xls(PANIC_SEEDS[0]), "upload.xls")
    resp = db_app.test_client().post(f"/api/task/{task_id}/import", json={"grades": True})
    assert_error(resp, 422, "NOT_A_WORKBOOK")
    still_serving(db_app)


def test_import_that_runs_out_of_memory_dies_alone(app_config: dict[str, Any], tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    """With the extent check out of the way (a huge PREDICT_MAX_CELLS) the reader
    tries to allocate 1.4 GB: under PREDICT_JOB_MEMORY_MB the import's process
    aborts; the service answers IMPORT_CRASHED and goes on."""
    app_config.update(PREDICT_DATABASE_URL=f"sqlite:///{tmp_path / 'route.sqlite3'}",
                      PREDICT_MAX_CELLS=10 ** 12, PREDICT_JOB_MEMORY_MB=1500)
    app = request.getfixturevalue("app")
    task_id = completed_task(app, xlsx_with_cell("ZZ60000"))
    before = max_rss_mb()
    resp = app.test_client().post(f"/api/task/{task_id}/import", json={"grades": True})
    assert_error(resp, 422, "IMPORT_CRASHED")
    assert max_rss_mb() - before < 500
    assert not (tmp_path / "route.sqlite3").exists() or table_names(
        f"sqlite:///{tmp_path / 'route.sqlite3'}") == []
    still_serving(app)
