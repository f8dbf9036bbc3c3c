"""Nothing grows without bound: warnings are summarised and capped, identical
uploads are stored once, task records go some time after their files, and
the result cache forgets results whose plans changed."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from support.paths import PLANS_DIR
from support.service import finished, grade_workbook, start, tiny_xlsx, wait_for

from destination_predictor.engine import Engine
from destination_predictor.service.cleaner import STAGING_MAX_AGE_S
from destination_predictor.service.settings import SettingsError, load_settings
from destination_predictor.service.task import (
    MAX_WARNING_CHARS,
    MAX_WARNINGS,
    Task,
    complete,
    new_task_id,
)
from destination_predictor.service.task import (
    start as start_task,
)
from destination_predictor.service.uploads import CONTENT_DIR


def test_many_unknown_majors_make_one_warning(tmp_path: Path) -> None:
    """A 1.9 MB upload with 40,000 distinct majors gave a 7.8 MB status answer."""
    path = tmp_path / "g.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["SNH", "Current_Major", "Course_Name", "Grade"])
    rows = [[f"k{i}", "物联网工程", "高等数学", 80] for i in range(3)]
    rows += [[f"x{i}", f"专业{i:05d}", "高等数学", 70] for i in range(2000)]
    for r, row in enumerate(rows, start=1):
        ws.write_row(r, 0, row)
    wb.close()
    from support.paths import MODELS_DIR

    result = Engine(MODELS_DIR, PLANS_DIR).run(path, 2024, out_dir=tmp_path / "out")
    orphan_lines = [w for w in result.warnings if "没有 2024 级培养方案" in w]
    assert len(orphan_lines) == 1
    assert "2000 名学生" in orphan_lines[0] and "共 2000 个专业" in orphan_lines[0]
    assert len(orphan_lines[0]) < 300


def test_a_task_keeps_a_bounded_list_of_warnings() -> None:
    task = start_task(Task(id=new_task_id(), seq=1, year=2024, file_name="a.xlsx",
                           upload_name="u", file_sha256="0", cache_key="k", created_at=0.0), 1.0)
    warnings = ["长" * 100_000] + [f"w{i}" for i in range(500)]
    done = complete(task, 2.0, [], None, warnings)
    assert len(done.warnings) == MAX_WARNINGS + 1
    assert len(done.warnings[0]) == MAX_WARNING_CHARS + 1
    assert "另有 451 条警告" in done.warnings[-1]


def test_identical_uploads_are_stored_once(app: Any, client: Any) -> None:
    content = tiny_xlsx("same")
    ids = [start(client, content, name=f"成绩{i}.xlsx").json["data"]["task_id"] for i in range(3)]
    for tid in ids:
        wait_for(client, tid, finished)
    settings = app.extensions["predict"].settings
    store = app.extensions["predict"].store
    paths = [settings.uploads_dir / store.get(t).upload_name for t in ids]
    assert len({p.name for p in paths}) == 3, "each task keeps its own name"
    assert len({p.stat().st_ino for p in paths}) == 1, "one copy of the bytes"
    blobs = list((settings.uploads_dir / CONTENT_DIR).iterdir())
    assert len(blobs) == 1 and blobs[0].stat().st_nlink == 4


def test_records_go_some_time_after_their_files(app_config: dict[str, Any],
                                                make_app: Any) -> None:
    app_config.update(PREDICT_RETENTION_HOURS=1, PREDICT_RECORD_RETENTION_DAYS=2)
    app = make_app()
    client = app.test_client()
    tid = start(client, tiny_xlsx("r")).json["data"]["task_id"]
    wait_for(client, tid, finished)
    manager = app.extensions["predict"]
    blob_dir = manager.settings.uploads_dir / CONTENT_DIR
    now = time.time()
    report = manager.cleaner.sweep(now + 1)
    assert list(blob_dir.iterdir()) and report.expired_tasks == 0
    report = manager.cleaner.sweep(now + 2 * 3600)       # files expire: 410, record kept
    assert client.get(f"/api/task/status/{tid}").json["data"]["expired"] is True
    assert report.deleted_records == 0
    assert list(blob_dir.iterdir()) == [], "no task links the content, unused for an hour"
    assert 2 * 3600 > STAGING_MAX_AGE_S
    report = manager.cleaner.sweep(now + 3 * 86400)      # two days after expiry
    assert report.deleted_records == 1
    assert client.get(f"/api/task/status/{tid}").status_code == 404


def test_retention_must_outlast_the_time_limit() -> None:
    with pytest.raises(SettingsError, match="PREDICT_RETENTION_HOURS"):
        load_settings({"PREDICT_RETENTION_HOURS": 0}, environ={})
    with pytest.raises(SettingsError):
        load_settings({"PREDICT_RETENTION_HOURS": 0.5, "PREDICT_TASK_TIMEOUT_S": 3600},
                      environ={})
    assert load_settings({"PREDICT_RETENTION_HOURS": 2}, environ={}).retention_hours == 2


def _drop_course(plan: Path) -> str:
    """Delete the first required row of a plan; returns its course name."""
    wb = openpyxl.load_workbook(plan)
    ws = wb.active
    for row in ws.iter_rows(min_row=2):
        if row[8].value and "必修" in str(row[8].value) and row[2].value:
            name = str(row[2].value)
            ws.delete_rows(row[0].row)
            wb.save(plan)
            return name
    raise AssertionError("no required row")


def test_cache_forgets_results_when_a_plan_changes(tmp_path: Path, app_config: dict[str, Any],
                                                  make_app: Any) -> None:
    plans = tmp_path / "plans"
    shutil.copytree(PLANS_DIR, plans)
    app_config["PREDICT_PLANS_DIR"] = plans
    client = make_app().test_client()
    content = grade_workbook(tmp_path / "g.xlsx", 20, seed=4).read_bytes()
    first = wait_for(client, start(client, content, major="ai").json["data"]["task_id"],
                     finished)
    again = wait_for(client, start(client, content, major="ai").json["data"]["task_id"],
                     finished)
    assert again["cached"] is True, "same upload, same plans: from the cache"
    plan = next((plans / f"education-plan{first['year']}").glob("*智能科学与技术*"))
    dropped = _drop_course(plan)
    after = wait_for(client, start(client, content, major="ai").json["data"]["task_id"],
                     finished)
    assert after["status"] == "completed" and after["cached"] is False
    name = next(f for f in after["result_files"] if f.endswith("_ai.xlsx"))
    resp = client.get(f"/api/task/result/{after['id']}/{name}")
    header = next(openpyxl.load_workbook(io.BytesIO(resp.data), read_only=True)
                  ["Predictions"].iter_rows(max_row=1, values_only=True))
    assert dropped not in header


def test_a_refused_start_keeps_no_content(fake_app: tuple[Any, Any]) -> None:
    """QUEUE_FULL after the upload was stored: its link and its content both go
    (content still used by another task stays)."""
    from support.service import assert_error, contents

    application, runner = fake_app  # 1 worker, 3 may wait
    c = application.test_client()
    ids = [start(c, tiny_xlsx(f"q{i}")).json["data"]["task_id"] for i in range(4)]
    wait_for(c, ids[0], lambda d: d["status"] == "running")
    before = contents(application)
    assert len(before) == 4
    assert_error(start(c, tiny_xlsx("new")), 503, "QUEUE_FULL")
    assert_error(start(c, tiny_xlsx("q1")), 503, "QUEUE_FULL")
    assert contents(application) == before
    runner.release.set()
