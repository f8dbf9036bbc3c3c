"""The plans page (/plans) in Chromium against a real server: the bundled
plans are listed, a bad upload shows its check report and changes nothing, a
good one becomes v1 then v2, rolling back and deleting work from the buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.browser import needs_browser, page
from support.live_server import LiveServer
from support.paths import REPO
from support.plans import MAJOR, plan_bytes
from support.service import YEAR

pytestmark = needs_browser
KEY = f"{YEAR}/{MAJOR}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("plans")
    with LiveServer(tmp / "data", model_dir=REPO / "models", plans_dir=REPO / "plans") as srv:
        yield srv


def _plan(server: LiveServer) -> dict:
    plans = requests.get(f"{server.base}/api/plans", timeout=10).json()["data"]["plans"]
    return next(p for p in plans if p["year"] == YEAR and p["major"] == MAJOR)


def _upload(pg, path: Path) -> None:
    loaded = pg.get_attribute("body", "data-loaded")
    pg.set_input_files("#plan-file", str(path))
    pg.fill("#plan-year", str(YEAR))
    pg.fill("#plan-major", MAJOR)
    pg.click("#plan-upload")
    pg.wait_for_selector("#plan-message.message-success, #plan-message.message-error")
    if "message-success" in (pg.get_attribute("#plan-message", "class") or ""):
        pg.wait_for_selector(f"body:not([data-loaded='{loaded}'])")


def _version(pg) -> str:
    return pg.inner_text(f"tr[data-plan='{KEY}'] .plan-version")


def test_upload_inspect_roll_back_and_delete(server: LiveServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(plan_bytes(YEAR, edit={("马克思主义基本原理", 0): "天文观测类"}))
    good = tmp_path / "good.xlsx"
    good.write_bytes(plan_bytes(YEAR, drop="马克思主义基本原理"))
    with page(accept_dialogs=True, allow=("status of 422",)) as pg:
        pg.goto(f"{server.base}/plans")
        pg.wait_for_selector(f"tr[data-plan='{KEY}']")
        assert _version(pg) == "自带"
        assert pg.locator("#plans-body tr[data-plan]").count() == len(
            requests.get(f"{server.base}/api/plans", timeout=10).json()["data"]["plans"])

        _upload(pg, bad)
        assert "未通过检查" in pg.inner_text("#plan-message")
        assert "PLAN_CHECK_FAILED" in pg.inner_text("#plan-message")
        assert "天文观测类" in pg.inner_text("#report-items")
        assert _plan(server)["version"] == "bundled"  # nothing changed

        _upload(pg, good)
        assert _version(pg) == "v1" and _plan(server)["version"] == "v1"
        _upload(pg, good)
        assert _version(pg) == "v2"

        pg.click(f"button[data-versions='{KEY}']")
        pg.wait_for_selector(f"button[data-rollback='{YEAR}/ai/1']")
        loaded = pg.get_attribute("body", "data-loaded")
        pg.click(f"button[data-rollback='{YEAR}/ai/1']")
        pg.wait_for_selector(f"body:not([data-loaded='{loaded}'])")
        assert "回滚到 v1" in pg.inner_text("#list-message")
        assert _version(pg) == "v1" and _plan(server)["version"] == "v1"

        loaded = pg.get_attribute("body", "data-loaded")
        pg.click(f"button[data-delete='{KEY}']")
        pg.wait_for_selector(f"body:not([data-loaded='{loaded}'])")
        assert "改用自带的培养方案" in pg.inner_text("#list-message")
        assert _version(pg) == "自带" and _plan(server)["version"] == "bundled"
