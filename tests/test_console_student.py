"""The what-if page (/student) in Chromium against a real server: pick a
completed task and a student, move a slider, the numbers change; no script
error and nothing blocked by the CSP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.browser import needs_browser, page
from support.live_server import LiveServer
from support.paths import REPO
from support.service import YEAR, grade_workbook

from destination_predictor.engine.grades import read_grades

pytestmark = needs_browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("student")
    with LiveServer(tmp / "data", model_dir=REPO / "models", plans_dir=REPO / "plans") as srv:
        yield srv


def _completed_task(server: LiveServer, path: Path) -> str:
    with path.open("rb") as fh:
        r = requests.post(f"{server.base}/api/task/start", data={"year": str(YEAR)},
                          files={"file": (path.name, fh)}, timeout=30)
    tid = r.json()["data"]["task_id"]
    end = time.monotonic() + 120
    while time.monotonic() < end:
        status = requests.get(f"{server.base}/api/task/status/{tid}", timeout=10).json()["data"]
        if status["status"] in ("completed", "failed"):
            assert status["status"] == "completed", status
            return tid
        time.sleep(0.2)
    raise AssertionError("task did not finish")


def test_pick_a_student_and_move_a_slider(server: LiveServer, tmp_path: Path) -> None:
    grades = grade_workbook(tmp_path / "grades.xlsx", 12, seed=5)
    tid = _completed_task(server, grades)
    cohort = read_grades(grades)
    snh = next(s for s in cohort.students
               if requests.get(f"{server.base}/api/task/{tid}/student/{s}",
                               timeout=30).json()["data"]["missing"])
    with page() as pg:
        pg.goto(f"{server.base}/student")
        pg.wait_for_selector(f"#task-select option[value='{tid}']", state="attached")
        pg.select_option("#task-select", tid)
        pg.fill("#snh-input", snh)
        pg.click("#pick-button")
        pg.wait_for_selector("body[data-answers='1']")
        assert "保研" in pg.inner_text("#probs") and "原因" in pg.inner_text("body")
        before = pg.inner_text("#prob-1")
        assert pg.locator(".wi-reasons tbody tr").count() == 10
        slider = pg.locator("#uniform-slider")
        slider.fill("100")
        pg.wait_for_selector("body[data-answers='2']")
        high = pg.inner_text("#prob-1")
        slider.fill("0")
        pg.wait_for_selector("body:not([data-answers='1']):not([data-answers='2'])")
        low = pg.inner_text("#prob-1")
        assert high != low, (before, high, low)
        assert "学号 " + snh in pg.inner_text("#student-title")
