"""``POST /api/task/validate``: the check before a run over HTTP -- a report at
once, no task created, nothing kept; and the demo model said on every answer."""

from __future__ import annotations

import io
from typing import Any

import pytest
from support.hostile import xlsx_with_cell
from support.service import assert_error, grade_workbook, listing, tiny_xlsx

YEAR = "2024"


def validate(client: Any, content: bytes, name: str = "g.xlsx", **form: str) -> Any:
    data = {"year": YEAR, **form, "file": (io.BytesIO(content), name)}
    return client.post("/api/task/validate", data=data, content_type="multipart/form-data")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return grade_workbook(tmp_path_factory.mktemp("v") / "g.xlsx", 40, seed=3,
                          year=2024).read_bytes()


def test_a_report_and_nothing_kept(app: Any, client: Any, export: bytes) -> None:
    resp = validate(client, export)
    assert resp.status_code == 200, resp.json
    report = resp.json["data"]
    assert report["ok"] is True and report["students"] == 40
    assert report["summary"].startswith("40 名学生，4 个专业可预测")
    assert report["header"]["mapped"]["student_id"] == "SNH"
    assert {m["major"] for m in report["majors"]} >= {"物联网工程", "电子信息工程"}
    assert all("share" in m for m in report["majors"] if m["has_plan"])
    assert report["best_year"] == 2024 and report["demo_model"] is True
    assert report["file_name"] == "g.xlsx"
    data = app.extensions["predict"].settings.data_dir
    assert listing(data / "uploads") == [] and listing(data / ".staging") == []
    assert client.get("/api/tasks").json["data"]["tasks"] == []


def test_refusals_a_run_would_give_are_in_the_report(client: Any) -> None:
    report = validate(client, tiny_xlsx()).json["data"]  # headers but no grade columns
    assert report["ok"] is False
    assert report["problems"][0]["code"] == "MISSING_COLUMNS"
    assert report["summary"].startswith("无法预测")
    big = validate(client, xlsx_with_cell("ZZ60000")).json["data"]
    assert big["problems"][0]["code"] == "WORKBOOK_TOO_LARGE"


def test_request_errors_are_the_start_routes(client: Any, export: bytes) -> None:
    assert_error(validate(client, export, year="²⁰²⁴"), 400, "BAD_YEAR")
    assert_error(validate(client, export, year="1999"), 400, "UNKNOWN_YEAR")
    assert_error(validate(client, export, major="天文学"), 400, "UNKNOWN_MAJOR")
    assert_error(validate(client, b"not excel", name="g.pdf"), 400, "UNSUPPORTED_FILE_TYPE")
    assert_error(client.post("/api/task/validate", data={"year": YEAR}), 400, "MISSING_FILE")


def test_a_chosen_major_is_checked_alone(client: Any, export: bytes) -> None:
    report = validate(client, export, major="iot").json["data"]
    assert report["major"] == "物联网工程"
    assert [m["major"] for m in report["majors"]] == ["物联网工程"]


def test_demo_model_on_health_and_tasks(client: Any, export: bytes) -> None:
    assert client.get("/health").json["data"]["demo_model"] is True
    r = client.post("/api/task/start", data={"year": YEAR, "file": (io.BytesIO(export), "g.xlsx")},
                    content_type="multipart/form-data")
    task = client.get(f"/api/task/status/{r.json['data']['task_id']}").json["data"]
    assert task["demo_model"] is True and task["model_version"].startswith("demo")


def test_validate_needs_the_token(app_config: dict[str, Any], make_app: Any,
                                  export: bytes) -> None:
    app_config["PREDICT_API_TOKEN"] = "t0k"
    client = make_app().test_client()
    assert_error(validate(client, export), 401, "UNAUTHORIZED")
    ok = client.post("/api/task/validate", headers={"X-API-Key": "t0k"},
                     data={"year": YEAR, "file": (io.BytesIO(export), "g.xlsx")},
                     content_type="multipart/form-data")
    assert ok.status_code == 200
