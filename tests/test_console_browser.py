"""The web console in a real browser against a real server.

Debian's chromium driven by Playwright talks to gunicorn started with the
project's ``gunicorn.conf.py`` (one worker, pool threads, jobs in child
processes) -- the way operators run it -- so the page is tested with the
real upload, polling, download and token paths, not a test client.

Screenshots of every state land in ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.live_server import LiveServer
from support.paths import REPO

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TOKEN = "console-test-token-7f3a"
# The console's native ES modules: index.html loads main.js, which imports the rest.
CONSOLE_MODULES = ("main.js", "api.js", "dom.js", "format.js", "start.js", "check.js", "tasks.js",
                   "results.js", "monitor.js", "charts.js", "deliveries.js", "batches.js")

needs_browser = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


# --- the server ---------------------------------------------------------------

def _has_files(d: Path) -> bool:
    return d.is_dir() and any(not p.name.startswith(".") for p in d.iterdir())


def _model_and_plans() -> tuple[Path, Path]:
    """The repository's demo model and plans; the real reference ones in
    ../shared/ only while the demo ones have not been generated."""
    models, plans = REPO / "models", REPO / "plans"
    if _has_files(models) and _has_files(plans):
        return models, plans
    ref = REPO.parent / "shared" / "reference"
    if _has_files(ref / "model") and _has_files(ref / "plans"):
        return ref / "model", ref / "plans"
    pytest.skip("no model/plans: neither models/ + plans/ nor ../shared/reference/")


def _server(tmp: Path, *, token: str = "", env: dict[str, str] | None = None) -> LiveServer:
    models, plans = _model_and_plans()
    return LiveServer(tmp / "data", model_dir=models, plans_dir=plans, token=token,
                      env={"PREDICT_HTTP_THREADS": "8", **(env or {})})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One pool slot, so a second task waits as 等待中 and can be cancelled there;
    # a database, so the 导入数据库 button is offered.
    tmp = tmp_path_factory.mktemp("console")
    db = f"sqlite:///{tmp / 'predictions.sqlite3'}"
    with _server(tmp, env={"PREDICT_MAX_WORKERS": "1", "PREDICT_DATABASE_URL": db}) as srv:
        yield srv


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _server(tmp_path_factory.mktemp("console-token"), token=TOKEN) as srv:
        yield srv


# --- the browser --------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watched:
    """A page plus every URL it requested, every script error it raised and
    every error it logged to the console (e.g. a module that failed to load)."""

    page: Any
    requests: list[str]
    errors: list[str]
    console_errors: list[str]


@contextlib.contextmanager
def _open(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                  locale="zh-CN")
    requests: list[str] = []
    errors: list[str] = []
    console_errors: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: d.accept())
    try:
        yield Watched(page, requests, errors, console_errors)
    finally:
        context.close()


@pytest.fixture
def watched(browser: Any, server: LiveServer) -> Iterator[Watched]:
    with _open(browser) as w:
        yield w


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def _assert_only_local(requests: list[str], base: str) -> None:
    foreign = [u for u in requests
               if not (u.startswith(base + "/") or u == base
                       or u.startswith("blob:" + base + "/") or u.startswith("data:"))]
    assert not foreign, f"the page requested other hosts: {foreign}"


def _workbook(server: LiveServer, tmp: Path, year: int, seed: int, name: str) -> Path:
    from destination_predictor.demo.grades import make_grade_workbook

    return make_grade_workbook(tmp / name, year, 30, plans_dir=server.plans_dir, seed=seed)


def _newest_year(plans_dir: Path) -> int:
    from destination_predictor.engine.plans import plan_years

    return max(plan_years(plans_dir))


def _card(page: Any, file_name: str) -> Any:
    return page.locator("article.task", has=page.locator(".task-file", has_text=file_name))


def _no_grade_workbook(path: Path) -> Path:
    """A registrar-like sheet with headers but no grade column: a run fails."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["SNH", "Current_Major", "Course_Name"])
    wb.active.append(["20240001", "物联网工程", "高等数学"])
    wb.save(path)
    return path


def _start(page: Any, path: Path) -> Any:
    """Start a task for ``path`` through the form; its card, found by the task id
    the page reports (the same file twice gives two cards)."""
    message = page.locator("#start-message")
    page.set_input_files("#file-input", str(path))
    page.click("#start-button")
    sync_api.expect(message).to_contain_text("预测任务已启动")
    found = re.search(r"任务编号 ([0-9a-f]{8})", message.inner_text())
    assert found, message.inner_text()
    card = page.locator(f"article.task[data-task-id^='{found.group(1)}']")
    sync_api.expect(card).to_be_visible()
    return card


def _drop(page: Any, path: Path) -> None:
    """Drop ``path`` on the file picker, as a person dragging it there would."""
    page.evaluate("""([name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name));
        document.getElementById("file-drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [path.name, base64.b64encode(path.read_bytes()).decode()])


def _assert_code_is_secondary(box: Any, code: str) -> None:
    """The API's machine code follows the Chinese message, smaller and grey."""
    node = box.locator(".code")
    sync_api.expect(node).to_have_text(f"（代码：{code}）")
    look = node.evaluate("""(n) => {
        const own = getComputedStyle(n), box = getComputedStyle(n.parentNode);
        return {size: parseFloat(own.fontSize), boxSize: parseFloat(box.fontSize),
                color: own.color, boxColor: box.color,
                last: n.parentNode.lastElementChild === n};
    }""")
    assert look["size"] < look["boxSize"] and look["color"] != look["boxColor"], look
    assert look["last"], look


# --- tests --------------------------------------------------------------------

@pytest.mark.slow
@needs_browser
def test_console_full_flow(server: LiveServer, watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    year = _newest_year(server.plans_dir)
    first = _workbook(server, tmp_path, year, 1, "成绩A.xlsx")
    second = _workbook(server, tmp_path, year, 2, "成绩B.xlsx")

    resp = page.goto(server.base + "/admin/prediction/async")
    assert resp is not None and resp.status == 200
    assert "default-src 'none'" in (resp.headers.get("content-security-policy") or "")
    page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
    expect = sync_api.expect
    expect(page.locator("#monitor-body .stat").first).to_be_visible()
    expect(page.locator("#task-list")).to_contain_text("暂无任务")
    # Loaded as native ES modules (all of them, no other script) without a console error.
    scripts = {u.rsplit("/", 1)[-1] for u in watched.requests if u.endswith(".js")}
    assert (scripts == set(CONSOLE_MODULES) and not watched.console_errors
            and page.locator("script[type='module']").count() == 1), (scripts, watched.console_errors)
    shot(page, "01-empty")

    # A wrong type is refused by the page itself.
    page.set_input_files("#file-input", {"name": "成绩.txt", "mimeType": "text/plain",
                                         "buffer": "学号,成绩\n1,90\n".encode()})
    expect(page.locator("#start-message")).to_contain_text("只支持 .xlsx 或 .xls")
    page.click("#start-button")
    expect(page.locator("#start-message")).to_contain_text("只支持 .xlsx 或 .xls")
    shot(page, "02-refused-type")

    # So is a file over the service's size limit (read from the monitor data).
    big = tmp_path / "太大.xlsx"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024 + 1)  # sparse: costs no disk
    page.set_input_files("#file-input", str(big))
    expect(page.locator("#start-message")).to_contain_text("文件过大")
    expect(page.locator("#start-message")).to_contain_text("最大允许 50 MB")

    # A text file renamed .xlsx passes the page's checks; the API refuses it
    # and its Chinese error and code are shown.
    page.select_option("#year-select", str(year))
    page.set_input_files("#file-input", {"name": "改名.xlsx", "mimeType": "application/octet-stream",
                                         "buffer": b"this is not a workbook\n" * 10})
    page.click("#start-button")
    expect(page.locator("#start-message")).to_contain_text("任务未启动：文件内容不是有效的 .xlsx 工作簿")
    # The machine code is kept for the administrator, but secondary: after the
    # message, smaller and grey.
    _assert_code_is_secondary(page.locator("#start-message"), "BAD_FILE_CONTENT")
    shot(page, "03-refused-content")
    expect(page.locator("#task-list")).to_contain_text("暂无任务")

    # Two real tasks; with one pool slot the second waits and is cancelled.
    page.set_input_files("#file-input", str(first))
    page.click("#start-button")
    expect(page.locator("#start-message")).to_contain_text("预测任务已启动")
    page.set_input_files("#file-input", str(second))
    page.select_option("#priority-select", "normal")
    page.click("#start-button")
    expect(_card(page, "成绩B.xlsx")).to_be_visible()
    expect(page.locator("#poll-state")).to_contain_text("每 3 秒自动刷新")
    shot(page, "04-running")
    cards = page.locator("article.task .task-file")
    expect(cards.first).to_have_text("成绩B.xlsx")  # newest first
    _card(page, "成绩B.xlsx").locator("button", has_text="取消任务").click()
    expect(_card(page, "成绩B.xlsx").locator(".badge")).to_have_text("失败", timeout=30_000)
    expect(_card(page, "成绩B.xlsx")).to_contain_text("任务已取消")

    card = _card(page, "成绩A.xlsx")
    expect(card.locator(".badge")).to_have_text("已完成", timeout=90_000)
    expect(card.locator(".progress-pct")).to_have_text("100%")
    expect(card.locator(".task-elapsed")).to_contain_text("用时")
    expect(page.locator("#poll-state")).to_contain_text("已暂停自动刷新")

    # Charts: destinations per major and the two histograms, with bars.
    dest = card.locator("svg[data-chart='destinations']")
    expect(dest).to_be_visible()
    assert dest.locator("rect.bar").count() >= 1
    hists = card.locator("svg[data-chart='histogram']")
    expect(hists).to_have_count(2)
    assert card.locator("svg[data-chart='histogram'] rect.bar").count() >= 1
    expect(page.locator("#monitor-body")).to_contain_text("成绩A.xlsx")
    expect(page.locator("#monitor-body .failures")).to_contain_text("任务已取消")
    shot(page, "05-completed")

    # One major's workbook through the page's link, opened as a workbook.
    link = card.locator("a.dl-file").first
    with page.expect_download() as info:
        link.click()
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.suffix == ".xlsx"
    import openpyxl

    wb = openpyxl.load_workbook(saved, read_only=True)
    try:
        assert "Predictions" in wb.sheetnames
        sheet_rows = wb["Predictions"].max_row - 1
    finally:
        wb.close()
    code = re.search(r"_Predictions_([^.]+)\.xlsx$", saved.name)
    assert code is not None, saved.name
    # And everything as one zip.
    with page.expect_download() as info:
        card.locator("a.dl-zip").click()
    zpath = tmp_path / "all.zip"
    info.value.save_as(zpath)
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        assert any(n.endswith("_All.xlsx") for n in names)
        wb = openpyxl.load_workbook(io.BytesIO(zf.read(names[0])), read_only=True)
        wb.close()

    # A histogram for one major only.
    select = card.locator("select.hist-major")
    select.select_option(index=1)
    expect(card.locator("svg[data-chart='histogram']")).to_have_count(2)

    # Nothing active: no more polling of the task list.
    before = sum(1 for u in watched.requests if "/api/tasks" in u)
    page.wait_for_timeout(7000)
    after = sum(1 for u in watched.requests if "/api/tasks" in u)
    assert after == before, "the page kept polling with nothing pending or running"
    # The monitoring panel refreshes by itself meanwhile.
    assert sum(1 for u in watched.requests if u.endswith("/api/monitor")) >= 3

    # Import into the configured database; the page lists majors and rows.
    card.locator("button", has_text="导入数据库").click()
    result = card.locator(".import-result")
    expect(result).to_contain_text("导入完成", timeout=30_000)
    table = f"Cohort{year}_Predictions_{code.group(1)}"
    expect(result.locator("tr", has_text=table)).to_contain_text(str(sheet_rows))
    with sqlite3.connect(server.data_dir.parent / "predictions.sqlite3") as db:
        assert db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] == sheet_rows
    shot(page, "06-imported")
    assert not watched.errors, watched.errors
    _assert_only_local(watched.requests, server.base)


@pytest.mark.slow
@needs_browser
def test_console_keeps_every_task(server: LiveServer, watched: Watched, tmp_path: Path) -> None:
    """One tab, task after task: every task after the first completed one was
    lost (the list's placeholder lookup matched a paragraph inside a finished
    card). Completed, failed, from the cache, completed again and cancelled
    while waiting for the one pool slot; a reload between."""
    page = watched.page
    expect = sync_api.expect
    year = _newest_year(server.plans_dir)
    grades = _workbook(server, tmp_path, year, 21, "连续-成绩.xlsx")
    second = _workbook(server, tmp_path, year, 22, "连续-第二份.xlsx")
    waiting = _workbook(server, tmp_path, year, 23, "连续-取消.xlsx")
    broken = _no_grade_workbook(tmp_path / "连续-缺成绩列.xlsx")
    page.goto(server.base + "/")
    page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
    page.select_option("#year-select", str(year))

    done = _start(page, grades)
    expect(done.locator(".badge")).to_have_text("已完成", timeout=90_000)
    expect(done.locator("svg[data-chart='destinations']")).to_be_visible()  # opened by itself

    failed = _start(page, broken)  # the second start: this card never appeared
    expect(failed.locator(".badge")).to_have_text("失败", timeout=30_000)
    expect(failed.locator(".message-error")).to_contain_text("缺少必需的列")
    _assert_code_is_secondary(failed.locator(".message-error"), "MISSING_COLUMNS")
    expect(page.locator("#tasks-message")).to_be_hidden()

    page.reload()
    page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
    page.select_option("#year-select", str(year))
    expect(done.locator(".badge")).to_have_text("已完成")
    cached = _start(page, grades)  # the same file again
    expect(cached.locator(".badge")).to_have_text("已完成")
    expect(cached).to_contain_text("复用了缓存结果")

    # Two more: with one pool slot the second waits behind the first (a run
    # takes about a second) and is cancelled there.
    again = _start(page, second)
    cancelled = _start(page, waiting)
    expect(page.locator("#poll-state")).to_contain_text("每 3 秒自动刷新")  # polling resumed
    cancelled.locator("button", has_text="取消任务").click()
    expect(cancelled.locator(".badge")).to_have_text("失败", timeout=30_000)
    expect(cancelled).to_contain_text("任务已取消")
    expect(again.locator(".badge")).to_have_text("已完成", timeout=90_000)
    expect(page.locator("#poll-state")).to_contain_text("已暂停自动刷新")

    # Every card at the end, newest first, each with its status, the model
    # that predicted it and the demo tag.
    cards = ((cancelled, "失败"), (again, "已完成"), (cached, "已完成"), (failed, "失败"),
             (done, "已完成"))
    ids = [card.get_attribute("data-task-id") for card, _ in cards]
    shown = page.locator("article.task").evaluate_all("(cs) => cs.map((c) => c.dataset.taskId)")
    assert shown[:len(ids)] == ids, (shown, ids)
    for card, status in cards:
        expect(card.locator(".badge")).to_have_text(status)
        expect(card.locator(".task-meta")).to_contain_text("模型 demo-")
        expect(card.locator(".tag-demo")).to_have_text("演示模型")
    expect(page.locator("#tasks-message")).to_be_hidden()
    shot(page, "10-every-task")
    assert not watched.errors, watched.errors


@pytest.mark.slow
@needs_browser
def test_console_checks_the_file_before_running(server: LiveServer, watched: Watched,
                                                tmp_path: Path) -> None:
    """Choosing a file (or changing year or major) shows /api/task/validate's
    report above the start button; stale answers are ignored."""
    page = watched.page
    expect = sync_api.expect
    year = _newest_year(server.plans_dir)
    grades = _workbook(server, tmp_path, year, 31, "检查-成绩.xlsx")
    broken = _no_grade_workbook(tmp_path / "检查-缺成绩列.xlsx")
    page.goto(server.base + "/")
    # The bundled demo model: said at the top of the page, permanently.
    expect(page.locator("#demo-banner")).to_contain_text("演示模型")
    expect(page.locator("#demo-banner")).to_contain_text("请勿用于真实决策")
    page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
    page.select_option("#year-select", str(year))
    report = page.locator("#check-report")

    page.set_input_files("#file-input", str(grades))
    expect(report.locator(".check-summary")).to_contain_text("30 名学生，4 个专业可预测")
    expect(report.locator(".check-major")).to_have_count(4)
    expect(report.locator(".check-major").first).to_contain_text(re.compile(r"必修课 \d+/\d+ 门有成绩"))
    expect(report.locator(".check-problems")).to_have_count(0)
    # Above the start button.
    assert report.bounding_box()["y"] < page.locator("#start-button").bounding_box()["y"]
    shot(page, "11-check-ok")

    # A major chosen: checked again, for that major alone.
    page.select_option("#major-select", index=1)
    expect(report.locator(".check-major")).to_have_count(1)
    page.select_option("#major-select", "")
    expect(report.locator(".check-major")).to_have_count(4)
    # Another year: checked again; the courses match the file's own year
    # better, which a run would not refuse, so the page says it.
    page.select_option("#year-select", str(year - 1))
    expect(report.locator(".check-warnings")).to_contain_text(
        f"所选年级为 {year - 1} 级，但文件中的课程与 {year} 级培养方案最吻合")
    page.select_option("#year-select", str(year))
    expect(report.locator(".check-warnings")).to_have_count(0)

    # What a run would refuse is prominent; starting stays possible. (Dropped
    # on the picker this time: the same as choosing it.)
    _drop(page, broken)
    expect(page.locator("#file-name")).to_contain_text(broken.name)
    expect(report.locator(".check-problems")).to_contain_text("缺少必需的列")
    expect(report).to_have_class(re.compile(r"check-bad"))
    expect(page.locator("#start-button")).to_be_enabled()
    shot(page, "12-check-problems")

    # A refused check request: its Chinese error.
    page.set_input_files("#file-input", {"name": "改名.xlsx", "mimeType": "application/octet-stream",
                                         "buffer": b"this is not a workbook\n" * 10})
    expect(report).to_contain_text("文件内容不是有效的 .xlsx 工作簿")
    _assert_code_is_secondary(report.locator(".message-error"), "BAD_FILE_CONTENT")

    # A stale answer (the file changed meanwhile) is ignored: the first check
    # is held back and answered after the second one.
    held: list[Any] = []
    page.route("**/api/task/validate",
               lambda route: held.append(route) if not held else route.continue_())
    page.set_input_files("#file-input", str(broken))
    page.set_input_files("#file-input", str(grades))
    expect(report.locator(".check-summary")).to_contain_text("30 名学生")
    with page.expect_response("**/api/task/validate"):
        held[0].continue_()
    page.wait_for_timeout(300)
    expect(report.locator(".check-summary")).to_contain_text("30 名学生")
    expect(report.locator(".check-problems")).to_have_count(0)
    page.unroute("**/api/task/validate")
    assert not watched.errors, watched.errors


@pytest.mark.slow
@needs_browser
def test_console_asks_for_token_once(token_server: LiveServer, browser: Any,
                                     tmp_path: Path) -> None:
    year = _newest_year(token_server.plans_dir)
    grades = _workbook(token_server, tmp_path, year, 3, "grades.xlsx")
    with _open(browser) as w:
        page = w.page
        expect = sync_api.expect
        page.goto(token_server.base + "/")
        expect(page.locator("#token-overlay")).to_be_visible()
        # Staff are told where the token comes from (README, 部署与运维).
        dialog = page.locator("#token-form")
        for where in ("管理员", "shared/api_token", "PREDICT_API_TOKEN"):
            expect(dialog).to_contain_text(where)
        shot(page, "07-token-prompt")

        page.fill("#token-input", "wrong-token")
        page.click("#token-submit")
        expect(page.locator("#token-error")).to_contain_text("访问令牌无效")
        shot(page, "08-token-wrong")

        page.fill("#token-input", TOKEN)
        page.click("#token-submit")
        expect(page.locator("#token-overlay")).to_be_hidden()
        page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
        expect(page.locator("#monitor-body .stat").first).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('predictApiToken')") == TOKEN

        page.select_option("#year-select", str(year))
        page.set_input_files("#file-input", str(grades))
        page.click("#start-button")
        card = _card(page, "grades.xlsx")
        expect(card.locator(".badge")).to_have_text("已完成", timeout=90_000)
        with page.expect_download() as info:
            card.locator("a.dl-file").first.click()
        saved = tmp_path / "with-token.xlsx"
        info.value.save_as(saved)
        assert saved.read_bytes()[:2] == b"PK"
        shot(page, "09-token-works")

        # No database configured on this server: no import button.
        expect(card.locator(".import")).to_be_hidden()

        # Kept for the browser session: a reload does not ask again.
        page.reload()
        page.wait_for_selector(f"#year-select option[value='{year}']", state="attached")
        expect(page.locator("#task-list")).to_contain_text("grades.xlsx")
        expect(page.locator("#token-overlay")).to_be_hidden()
        assert not w.errors, w.errors
        _assert_only_local(w.requests, token_server.base)



# --- the console's routes without a browser (fast) ------------------------------

def test_pages_are_served_with_a_strict_policy(client: Any) -> None:
    for path in ("/", "/admin/prediction/async"):
        resp = client.get(path)
        assert resp.status_code == 200
        assert resp.mimetype == "text/html"
        assert "异步任务控制台" in resp.get_data(as_text=True)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for asset in (*CONSOLE_MODULES, "console.css"):
        assert client.get(f"/console/static/{asset}").status_code == 200


def test_no_external_reference_in_the_assets() -> None:
    """Belt and braces beside the CSP: no URL of another host in the sources."""
    static = REPO / "destination_predictor" / "service" / "static" / "console"
    for f in static.iterdir():
        # The SVG namespace is an identifier, never fetched.
        text = f.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")
        urls = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", text)
        assert urls == [], (f.name, urls)


def test_monitor_reports_what_the_panel_shows(client: Any, app: Any) -> None:
    resp = client.get("/api/monitor")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["success"] is True
    data = body["data"]
    settings = app.extensions["predict"].settings
    assert data["workers"]["max"] == settings.max_workers
    assert data["workers"]["running"] == 0 and data["workers"]["pending"] == 0
    assert data["model_version"] and data["uptime_s"] >= 0
    assert set(data["disk"]) >= {"uploads_bytes", "results_bytes", "free_bytes"}
    assert data["recent_tasks"] == [] and data["recent_failures"] == []
    assert data["limits"]["max_upload_mb"] == settings.max_upload_mb
    assert data["import_enabled"] is False
    assert data["auth_required"] is False


@pytest.mark.parametrize(("url", "enabled"), [
    ("sqlite:///predictions.sqlite3", True),
    ("mysql://user@host/db", False),
])
def test_monitor_offers_import_only_when_it_can_work(app_config: dict[str, Any], make_app: Any,
                                                    url: str, enabled: bool) -> None:
    app_config["PREDICT_DATABASE_URL"] = url
    data = make_app().test_client().get("/api/monitor").get_json()["data"]
    assert data["import_enabled"] is enabled


def test_monitor_needs_the_token_but_the_page_does_not(app_config: dict[str, Any],
                                                       make_app: Any) -> None:
    app_config["PREDICT_API_TOKEN"] = TOKEN
    c = make_app().test_client()
    refused = c.get("/api/monitor")
    assert refused.status_code == 401
    assert refused.get_json()["success"] is False and refused.get_json()["error"]
    assert c.get("/api/monitor", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/").status_code == 200  # the page itself asks for the token
    assert c.get("/console/static/main.js").status_code == 200
