"""``/api/plans``: upload with the check before it is accepted, versions,
rollback, delete; a task after a replacement reads the new plan (not the cache)
and records the plan versions it used."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask.testing import FlaskClient
from support.plans import MAJOR, plan_bytes, required_courses
from support.service import YEAR, assert_error, finished, start, wait_for

DROPPED = "马克思主义基本原理"


def upload(client: FlaskClient, content: bytes, name: str = "plan.xlsx", **form: Any) -> Any:
    data = {"year": str(YEAR), "major": MAJOR, **form, "file": (io.BytesIO(content), name)}
    return client.post("/api/plans", data=data, content_type="multipart/form-data")


def plan_of(client: FlaskClient, year: int = YEAR, major: str = MAJOR) -> dict[str, Any]:
    plans = client.get("/api/plans").json["data"]["plans"]
    return next(p for p in plans if p["year"] == year and p["major"] == major)


def effective_bytes(client: FlaskClient) -> bytes:
    app = client.application
    path = app.extensions["predict"].settings.plans_dir / f"education-plan{YEAR}" / (
        f"{YEAR}级{MAJOR}培养方案.xlsx")
    return path.read_bytes()


def test_list_shows_the_bundled_plans(client: FlaskClient) -> None:
    plan = plan_of(client)
    assert plan["version"] == "bundled" and plan["code"] == "ai"
    assert plan["courses"] == len(set(required_courses(YEAR))) and plan["versions"] == []


@pytest.mark.parametrize(("content", "expected"), [
    (plan_bytes(YEAR, columns=5), "至少要有 9 列"),
    (plan_bytes(YEAR, edit={(DROPPED, 3): "三学分"}), "学分不是数字"),
    (plan_bytes(YEAR, edit={(DROPPED, 0): "天文观测类"}), "天文观测类"),
    (plan_bytes(YEAR, append=[["思想政治理论", "1", DROPPED, 2.5, 40, 40, 0, 3, "必修"]]),
     "必修课程重复"),
], ids=["missing-columns", "credit-not-numeric", "unmapped-category", "duplicate-course"])
def test_a_bad_plan_is_refused_with_a_report_and_the_plan_in_use_stays(
        client: FlaskClient, content: bytes, expected: str) -> None:
    before = effective_bytes(client)
    r = upload(client, content)
    assert_error(r, 422, "PLAN_CHECK_FAILED")
    assert expected in r.json["error"]
    report = r.json["report"]
    assert report["ok"] is False and any(expected in p for p in report["problems"])
    if expected == "天文观测类":
        assert report["unmapped_categories"] == ["天文观测类"]
    if expected == "必修课程重复":
        assert report["duplicates"] == [DROPPED]
    assert effective_bytes(client) == before
    assert plan_of(client)["version"] == "bundled"


def test_not_an_excel_file_is_refused(client: FlaskClient) -> None:
    assert_error(upload(client, b"course,credit\n"), 400, "BAD_FILE_CONTENT")
    assert_error(upload(client, b"x", name="plan.csv"), 400, "UNSUPPORTED_FILE_TYPE")
    assert_error(upload(client, plan_bytes(YEAR), year="20x3"), 400, "BAD_YEAR")
    assert_error(upload(client, plan_bytes(YEAR), major=""), 400, "MISSING_MAJOR")
    assert_error(upload(client, plan_bytes(YEAR), major="../x"), 400, "BAD_MAJOR")
    assert plan_of(client)["version"] == "bundled"


def predictions_header(app: Any, status: dict[str, Any]) -> list[str]:
    """The header of a result, read through the service's storage (a local copy
    of the object when uploads and results are in an object store)."""
    name = next(f for f in status["result_files"] if f.endswith("_ai.xlsx"))
    wb = openpyxl.load_workbook(app.extensions["predict"].result_path(status["id"], name),
                                read_only=True)
    header = [c for c in next(wb["Predictions"].iter_rows(max_row=1, values_only=True))]
    wb.close()
    return header


def test_a_task_after_a_replacement_uses_the_new_plan_not_the_cache(
        client: FlaskClient, grades: Path) -> None:
    content = grades.read_bytes()
    first = wait_for(client, start(client, content, major="ai").json["data"]["task_id"], finished)
    assert first["status"] == "completed", first
    assert first["plan_versions"] == {MAJOR: "bundled"}
    assert DROPPED in predictions_header(client.application, first)

    r = upload(client, plan_bytes(YEAR, drop=DROPPED))
    assert r.status_code == 200, r.json
    assert r.json["data"]["plan"]["version"] == "v1"

    second = wait_for(client, start(client, content, major="ai").json["data"]["task_id"], finished)
    assert second["status"] == "completed" and second["cached"] is False
    assert second["plan_versions"] == {MAJOR: "v1"}
    assert DROPPED not in predictions_header(client.application, second)

    # Back to the bundled plan: the first task's results answer from the cache again.
    assert client.delete(f"/api/plans/{YEAR}/ai").json["data"]["version"] == "bundled"
    third = wait_for(client, start(client, content, major="ai").json["data"]["task_id"], finished)
    assert third["cached"] is True and third["plan_versions"] == {MAJOR: "bundled"}


def test_versions_and_rollback(client: FlaskClient) -> None:
    assert_error(client.post(f"/api/plans/{YEAR}/ai/rollback"), 409, "PLAN_NO_VERSIONS")
    v1 = plan_bytes(YEAR, drop=DROPPED)
    v2 = plan_bytes(YEAR, drop="中国近现代史纲要")
    assert upload(client, v1, name="第一版.xlsx").status_code == 200
    assert_error(client.post(f"/api/plans/{YEAR}/ai/rollback"), 409, "PLAN_NO_OLDER_VERSION")
    assert upload(client, v2).status_code == 200
    plan = plan_of(client)
    assert plan["version"] == "v2" and [v["version"] for v in plan["versions"]] == [1, 2]
    assert effective_bytes(client) == v2

    r = client.post(f"/api/plans/{YEAR}/{MAJOR}/rollback")
    assert r.status_code == 200, r.json
    assert r.json["data"]["plan"]["version"] == "v1" and effective_bytes(client) == v1
    assert plan_of(client)["file_name"] == "第一版.xlsx"
    r = client.post(f"/api/plans/{YEAR}/ai/rollback", data={"version": "2"})
    assert r.json["data"]["plan"]["version"] == "v2" and effective_bytes(client) == v2
    assert_error(client.post(f"/api/plans/{YEAR}/ai/rollback", data={"version": "9"}), 404,
                 "PLAN_VERSION_NOT_FOUND")
    assert_error(client.post(f"/api/plans/{YEAR}/ai/rollback", data={"version": "x"}), 400,
                 "BAD_VERSION")


def test_delete_falls_back_to_bundled_then_hides(client: FlaskClient) -> None:
    bundled = effective_bytes(client)
    assert upload(client, plan_bytes(YEAR, drop=DROPPED)).status_code == 200
    r = client.delete(f"/api/plans/{YEAR}/{MAJOR}")
    assert r.json["data"]["version"] == "bundled" and "自带" in r.json["data"]["message"]
    assert effective_bytes(client) == bundled
    r = client.delete(f"/api/plans/{YEAR}/ai")
    assert r.status_code == 200 and r.json["data"]["version"] is None
    majors = client.get("/api/majors").json["data"]["majors"][str(YEAR)]
    assert MAJOR not in [m["name"] for m in majors]
    assert_error(start(client, b"x", major="ai"), 400, "UNKNOWN_MAJOR")
    assert_error(client.delete(f"/api/plans/{YEAR}/ai"), 404, "PLAN_NOT_FOUND")
    assert_error(client.delete(f"/api/plans/{YEAR}/天文"), 404, "PLAN_NOT_FOUND")
    # A rollback brings the uploaded version back.
    assert client.post(f"/api/plans/{YEAR}/ai/rollback").json["data"]["plan"]["version"] == "v1"


def test_a_new_major_with_a_code(client: FlaskClient) -> None:
    r = upload(client, plan_bytes(YEAR), major="数据科学", code="ds")
    assert r.status_code == 200, r.json
    assert r.json["data"]["plan"]["code"] == "ds"
    majors = client.get("/api/majors").json["data"]["majors"][str(YEAR)]
    assert {"name": "数据科学", "code": "ds"} in majors
    assert_error(upload(client, plan_bytes(YEAR), major="其他", code="ds"), 409, "PLAN_CODE_TAKEN")


def test_plans_survive_a_restart_and_a_new_release_dir(
        app_config: dict[str, Any], make_app: Any, tmp_path: Path) -> None:
    first = make_app()
    c = first.test_client()
    content = plan_bytes(YEAR, drop=DROPPED)
    assert upload(c, content).status_code == 200
    first.extensions["predict"].shutdown(wait_s=30.0)
    # The next deploy: the same data dir, the release's bundled plans elsewhere.
    import shutil

    from support.paths import PLANS_DIR
    release = tmp_path / "release2" / "plans"
    shutil.copytree(PLANS_DIR, release)
    again = make_app({**app_config, "PREDICT_PLANS_DIR": release}).test_client()
    assert plan_of(again)["version"] == "v1"
    assert effective_bytes(again) == content
