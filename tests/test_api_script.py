"""``test-async-api.py`` end to end: it must pass against the real service
(gunicorn, child-process jobs, token on) and fail -- with a summary, not a
traceback -- against servers that answer with the wrong shapes or wrong
workbooks, since operators trust its exit status after every deploy.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, jsonify, send_file
from support.live_server import LiveServer
from support.paths import REPO
from werkzeug.serving import make_server

pytestmark = pytest.mark.slow

CHECK_SCRIPT = REPO / "test-async-api.py"
TOKEN = "test-token-0123456789abcdef"


def run_check(base_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--base-url", base_url, "--interval", "0.5",
         "--timeout", "180", "--students", "24", *extra],
        capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL)
    print(proc.stdout, proc.stderr, f"rc={proc.returncode}", sep="\n")
    return proc


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("service-data")
    with LiveServer(data, model_dir=REPO / "models", plans_dir=REPO / "plans", token=TOKEN,
                    log_dir=data) as server:
        yield server.base


def test_passes_against_the_real_service(gunicorn_server: str) -> None:
    proc = run_check(gunicorn_server, "--token", TOKEN)
    assert proc.returncode == 0
    assert "全部通过 ALL PASSED" in proc.stdout
    assert "Traceback" not in proc.stderr
    # It polled and printed progress, and checked the refusals and the token.
    assert "% " in proc.stdout
    assert "401 without token" in proc.stdout
    assert "400 wrong type" in proc.stdout


def test_uploads_a_given_file(gunicorn_server: str, tmp_path: Path) -> None:
    from destination_predictor.demo.grades import make_grade_workbook

    grades = make_grade_workbook(tmp_path / "mine.xlsx", 2023, 12, plans_dir=REPO / "plans",
                                 seed=11)
    proc = run_check(gunicorn_server, "--token", TOKEN, "--year", "2023", "--file", str(grades),
                     "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert "生成演示成绩" not in proc.stdout
    assert any(p.name.endswith("_All.xlsx") for p in (tmp_path / "out").iterdir())


# --- on an operator's machine: requests and the standard library only -------------

# requests and what it imports; nothing else of the venv is importable in
# run_with_requests_only (no pandas, numpy, openpyxl, xlsxwriter, CatBoost).
REQUESTS_PACKAGES = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")
HEAVY = ("pandas", "numpy", "openpyxl", "xlsxwriter", "catboost", "sklearn", "flask")


@pytest.fixture(scope="module")
def requests_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only requests and its dependencies (symlinks into the venv)."""
    import importlib

    site = tmp_path_factory.mktemp("requests-only")
    for name in REQUESTS_PACKAGES:
        package = Path(importlib.import_module(name).__file__ or "").parent
        (site / name).symlink_to(package, target_is_directory=True)
    return site


def run_with_requests_only(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python3 test-async-api.py ARGS`` with ``-S`` (no site-packages): the import
    path is the standard library, ``site`` and the checkout -- what an operator's
    machine with only ``pip install requests`` has."""
    code = ("import runpy, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
            "sys.argv = sys.argv[3:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), str(REPO), str(CHECK_SCRIPT), *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, stdin=subprocess.DEVNULL)
    print(proc.stdout, proc.stderr, f"rc={proc.returncode}", sep="\n")
    return proc


def test_the_isolated_interpreter_has_only_requests(requests_only: Path, tmp_path: Path) -> None:
    probe = ("import importlib.util as u, sys; sys.path[:0] = [sys.argv[1]]; "
             "print(' '.join(m for m in sys.argv[2:] if u.find_spec(m)))")
    proc = subprocess.run([sys.executable, "-S", "-c", probe, str(requests_only),
                           *REQUESTS_PACKAGES, *HEAVY], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.stdout.split() == list(REQUESTS_PACKAGES), proc.stderr


def test_passes_with_only_requests_installed(gunicorn_server: str, requests_only: Path,
                                             tmp_path: Path) -> None:
    proc = run_with_requests_only(
        requests_only, "--base-url", gunicorn_server, "--token", TOKEN, "--interval", "0.5",
        "--timeout", "180", "--students", "24", "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0
    assert "全部通过 ALL PASSED" in proc.stdout
    assert "Traceback" not in proc.stderr and "No module named" not in proc.stdout
    # The workbook it made has students of every 2024 major, with the plans' courses.
    assert "生成演示成绩" in proc.stdout and "培养方案课程" in proc.stdout
    saved = [p.name for p in (tmp_path / "out").iterdir()]
    assert len(saved) == 5  # four majors and the summary
    assert sum(n.endswith("_Cohort2024_Predictions_All.xlsx") for n in saved) == 1


def test_passes_without_local_plans(gunicorn_server: str, requests_only: Path,
                                    tmp_path: Path) -> None:
    """Copied alone to a machine without the checkout's plans/, the check still
    runs a real task: majors from the service, courses it does not know."""
    proc = run_with_requests_only(
        requests_only, "--base-url", gunicorn_server, "--token", TOKEN, "--interval", "0.5",
        "--timeout", "180", "--students", "12", "--year", "2023",
        "--plans-dir", str(tmp_path / "no-plans"), cwd=tmp_path)
    assert proc.returncode == 0
    assert "全部通过 ALL PASSED" in proc.stdout
    assert "通用课程名" in proc.stdout


def test_the_checker_imports_no_heavy_package() -> None:
    code = ("import sys, destination_predictor.client.apicheck; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


def test_wrong_token_fails(gunicorn_server: str) -> None:
    proc = run_check(gunicorn_server, "--token", "not-the-token")
    assert proc.returncode != 0
    assert "UNAUTHORIZED" in proc.stdout


# --- servers that break the contract ------------------------------------------------


def _workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def wrong_shapes_app() -> Flask:
    """Answers that look plausible but break the envelope and field types."""
    app = Flask("wrong-shapes")

    @app.get("/health")
    def health() -> Response:
        return jsonify({"healthy": True})  # no status field

    @app.get("/api/majors")
    def majors() -> Response:
        return jsonify({"success": True, "data": ["ai", "iot"]})  # a list, not per year

    @app.post("/api/task/start")
    def start() -> tuple[str, int]:
        return "<html>Bad Request</html>", 400  # refusals are HTML, not JSON

    @app.get("/api/task/status/<task_id>")
    def status(task_id: str) -> tuple[str, int]:
        return "not found", 404

    return app


TASK_ID = "11111111-2222-3333-4444-555555555555"


def wrong_workbooks_app() -> Flask:
    """A correct envelope all the way, but results that are not the contract's workbooks."""
    app = Flask("wrong-workbooks")
    files = [f"{TASK_ID}_Cohort2024_Predictions_ai.xlsx",
             f"{TASK_ID}_Cohort2024_Predictions_All.xlsx"]
    polls = {"n": 0}

    def ok(data: object) -> Response:
        return jsonify({"success": True, "data": data})

    @app.get("/health")
    def health() -> Response:
        return ok({"status": "ok", "model_loaded": True})

    @app.get("/api/majors")
    def majors() -> Response:
        return ok({"years": [2024], "majors": {"2024": [{"name": "智能科学与技术", "code": "ai"}]}})

    @app.post("/api/task/start")
    def start() -> Response:
        return ok({"task_id": TASK_ID, "message": "预测任务已启动"})

    @app.get("/api/task/status/<task_id>")
    def status(task_id: str) -> tuple[Response, int]:
        if task_id != TASK_ID:
            return jsonify({"success": False, "error": "任务不存在", "code": "TASK_NOT_FOUND"}), 404
        polls["n"] += 1
        done = polls["n"] > 2
        # Progress goes back (40 -> 30) before completing: must be noticed.
        return ok({"id": TASK_ID, "status": "completed" if done else "running",
                   "progress": 100 if done else 40 if polls["n"] == 1 else 30,
                   "message": "…", "error": None,
                   "result_files": files if done else []}), 200

    @app.get("/api/task/result/<task_id>/<filename>")
    def result(task_id: str, filename: str) -> Response | tuple[Response, int]:
        if filename not in files:
            return jsonify({"success": False, "error": "没有这个文件", "code": "FILE_NOT_FOUND"}), 404
        if filename.endswith("_All.xlsx"):
            content = _workbook({"Summary": [["SNH", "Major"], ["1", "ai"]]})
        else:
            content = _workbook({"Predictions": [["SNH", "major", "score"], ["1", "ai", 3]]})
        return send_file(io.BytesIO(content), download_name=filename, as_attachment=True)

    return app


@pytest.fixture
def fake_server() -> Iterator[Callable[[Flask], str]]:
    servers = []

    def serve(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()


def test_fails_against_wrong_shapes(fake_server: Callable[[Flask], str]) -> None:
    proc = run_check(fake_server(wrong_shapes_app()))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    for failed in ("健康检查", "专业列表", "启动任务", "缺少文件被拒绝", "未知任务"):
        assert f"[失败 FAIL] {failed}" in proc.stdout
    assert "存在失败 FAILED" in proc.stdout


def test_fails_against_wrong_workbooks(fake_server: Callable[[Flask], str]) -> None:
    proc = run_check(fake_server(wrong_workbooks_app()))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "[通过 PASS] 健康检查" in proc.stdout
    assert "[通过 PASS] 下载全部结果" in proc.stdout
    assert "[失败 FAIL] 进度不回退" in proc.stdout
    assert f"[失败 FAIL] 结果工作簿 {TASK_ID}_Cohort2024_Predictions_ai.xlsx" in proc.stdout
    assert f"[失败 FAIL] 汇总工作簿 {TASK_ID}_Cohort2024_Predictions_All.xlsx" in proc.stdout
