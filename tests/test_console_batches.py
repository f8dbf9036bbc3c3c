"""Batches and schedules in the console, in Chromium against gunicorn (jobs in
child processes): choosing three files (one broken) makes one batch card that
ends 部分完成, expands to its three tasks with the broken one's reason, and
downloads one zip with a folder per file; the /schedules page creates,
refuses, pauses and deletes a schedule."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.browser import needs_browser, page
from support.live_server import LiveServer
from support.paths import REPO
from support.service import YEAR, grade_workbook

pytestmark = needs_browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("console-batches")
    (tmp / "exports" / "registrar").mkdir(parents=True)
    with LiveServer(tmp / "data", model_dir=REPO / "models", plans_dir=REPO / "plans",
                    env={"PREDICT_SCHEDULE_ROOT": str(tmp / "exports")}) as srv:
        yield srv


def _shot(pg: object, name: str) -> None:
    """For a person to look at: test-artifacts/console-{name}.png."""
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    pg.screenshot(path=str(REPO / "test-artifacts" / f"console-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_several_files_make_one_batch_card(server: LiveServer, tmp_path: Path) -> None:
    one = grade_workbook(tmp_path / "一班.xlsx", 12, seed=1)
    two = grade_workbook(tmp_path / "二班.xlsx", 12, seed=2)
    broken = tmp_path / "坏文件.xlsx"
    broken.write_bytes(b"not a workbook at all")
    with page(accept_dialogs=True) as pg:
        pg.goto(server.base + "/")
        pg.wait_for_selector(f"#year-select option[value='{YEAR}']", state="attached")
        pg.select_option("#year-select", str(YEAR))
        pg.set_input_files("#file-input", [str(one), str(broken), str(two)])
        assert "批量：3 个文件" in pg.inner_text("#file-name")
        pg.click("#start-button")
        pg.wait_for_selector("#start-message.message-success")
        assert "批量" in pg.inner_text("#start-message")
        card = "article.batch[data-state='partial']"
        pg.wait_for_selector(card, timeout=120_000)
        assert "3 个文件" in pg.inner_text(card)
        assert "完成 2" in pg.inner_text(f"{card} .batch-counts")
        assert pg.locator("#task-cards article").count() == 0  # not one card per task
        pg.click(f"{card} summary")
        rows = pg.locator(f"{card} .batch-table tbody tr")
        assert rows.count() == 3
        _shot(pg, "batch")
        failed = pg.locator(f"{card} tr[data-status='failed']")
        assert "坏文件.xlsx" in failed.inner_text() and "xlsx" in failed.locator(".batch-error").inner_text()
        with pg.expect_download() as dl:
            pg.click(f"{card} .batch-zip")
        names = zipfile.ZipFile(io.BytesIO(Path(dl.value.path()).read_bytes())).namelist()
        assert {n.split("/")[0] for n in names} == {"一班", "坏文件", "二班"}


def test_the_schedules_page(server: LiveServer) -> None:
    with page(accept_dialogs=True, allow=("400",)) as pg:
        pg.goto(server.base + "/schedules")
        pg.wait_for_selector(f"#schedule-year option[value='{YEAR}']", state="attached")
        pg.select_option("#schedule-year", str(YEAR))
        pg.fill("#schedule-source", "../elsewhere")
        pg.click("#schedule-create")
        pg.wait_for_selector("#schedule-message.message-error")
        assert "必须位于" in pg.inner_text("#schedule-message")

        pg.fill("#schedule-name", "每日预测")
        pg.fill("#schedule-source", "registrar")
        pg.click("#schedule-create")
        pg.wait_for_selector("#schedule-message.message-success")
        row = pg.locator("tr[data-schedule-id]")
        row.wait_for()
        assert "每日预测" in row.inner_text() and "0 7 * * 1-5" in row.inner_text()
        assert pg.inner_text("tr[data-schedule-id] .next-run").startswith("20")
        schedule = requests.get(f"{server.base}/api/schedules", timeout=10).json()["data"]
        sid = schedule["schedules"][0]["schedule_id"]

        pg.click(f"button[data-toggle='{sid}']")
        pg.wait_for_selector("tr[data-schedule-id] .schedule-state:text('已暂停')")
        pg.click(f"button[data-history='{sid}']")
        pg.wait_for_selector("text=还没有运行记录")
        _shot(pg, "schedules")
        pg.click(f"button[data-delete='{sid}']")
        pg.wait_for_selector("text=还没有定时任务")
    assert requests.get(f"{server.base}/api/schedules", timeout=10).json()["data"]["count"] == 0
