"""Inputs that must not take anything down, through the HTTP API: strict
parameters (fast, Flask client), and sparse or broken workbooks against a real
gunicorn service in process mode, where the job process and its memory limit live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from support.hostile import PANIC_SEEDS, mutated_xls, xls_with_dimensions, xlsx_with_cell
from support.live_server import LiveServer
from support.paths import MODELS_DIR, PLANS_DIR
from support.service import assert_error, grade_workbook, tiny_xlsx


@pytest.mark.parametrize(("form", "code"), [
    ({"year": "²⁰²⁴"}, "BAD_YEAR"),           # str.isdigit() says yes, int() says no
    ({"year": "①②③④"}, "BAD_YEAR"),
    ({"year": "２０２４"}, "BAD_YEAR"),          # full-width digits
    ({"year": "2024", "config": "[" * 100_000}, "BAD_CONFIG"),   # RecursionError before
    ({"year": "2024", "config": "[" * 900 + "]" * 900}, "BAD_CONFIG"),
])
def test_strict_start_parameters(client: Any, form: dict[str, str], code: str) -> None:
    data = {**form, "file": (__import__("io").BytesIO(tiny_xlsx()), "g.xlsx")}
    assert_error(client.post("/api/task/start", data=data,
                             content_type="multipart/form-data"), 400, code)


@pytest.mark.parametrize("limit", ["²", "①", "٣", "1e2", "-1", "0", "501", ""])
def test_strict_list_limit(client: Any, limit: str) -> None:
    assert_error(client.get(f"/api/tasks?limit={limit}"), 400, "BAD_LIMIT")


def _submit(base: str, name: str, content: bytes, year: str = "2024") -> str:
    r = requests.post(f"{base}/api/task/start", files={"file": (name, content)},
                      data={"year": year}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]["task_id"]


def _finished(base: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = requests.get(f"{base}/api/task/status/{task_id}", timeout=10).json()["data"]
        if data["status"] in ("completed", "failed"):
            return data
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} not finished")


@pytest.mark.slow
def test_sparse_and_broken_workbooks_cost_one_task_each(tmp_path: Path) -> None:
    """Real gunicorn, process mode: each hostile file fails its own task with a
    clear code; the service keeps answering and a normal task still completes."""
    good = grade_workbook(tmp_path / "good.xlsx", 30, seed=5, year=2024).read_bytes()
    cases = [
        ("zz.xlsx", xlsx_with_cell("ZZ60000"), "WORKBOOK_TOO_LARGE"),      # 1.4 GB before
        ("xfd.xlsx", xlsx_with_cell("XFD1048576"), "WORKBOOK_TOO_LARGE"),  # SIGABRT before
        ("col.xlsx", xlsx_with_cell("A" * 12 + "3"), "WORKBOOK_TOO_LARGE"),
        ("dim.xls", xls_with_dimensions(0xFFFFFFF0, 0xFFFF), "WORKBOOK_TOO_LARGE"),
        ("panic.xls", mutated_xls(PANIC_SEEDS[0]), "CORRUPT_WORKBOOK"),    # INTERNAL_ERROR before
    ]
    with LiveServer(tmp_path / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR,
                    log_dir=tmp_path / "logs") as server:
        ids = {code_name: _submit(server.base, code_name, content)
               for code_name, content, _ in cases}
        for name, _, code in cases:
            data = _finished(server.base, ids[name])
            assert (data["status"], data["error_code"]) == ("failed", code), (name, data)
            assert data["error"] and "Traceback" not in data["error"]
        assert requests.get(f"{server.base}/health", timeout=10).status_code == 200
        assert _finished(server.base, _submit(server.base, "good.xlsx", good))["status"] == \
            "completed"


@pytest.mark.slow
def test_job_memory_limit_costs_one_task_never_the_service(tmp_path: Path) -> None:
    """With the extent check out of the way (a huge PREDICT_MAX_CELLS), the reader
    allocates 1.4 GB for a stray far cell: under PREDICT_JOB_MEMORY_MB the job
    process dies alone (OUT_OF_MEMORY); the service and the next task are fine."""
    good = grade_workbook(tmp_path / "good.xlsx", 30, seed=5, year=2024).read_bytes()
    env = {"PREDICT_MAX_CELLS": str(10 ** 15), "PREDICT_JOB_MEMORY_MB": "2500"}
    with LiveServer(tmp_path / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR,
                    log_dir=tmp_path / "logs", env=env) as server:
        data = _finished(server.base, _submit(server.base, "zz.xlsx",
                                              xlsx_with_cell("ZZ60000")))
        assert (data["status"], data["error_code"]) == ("failed", "OUT_OF_MEMORY"), data
        assert requests.get(f"{server.base}/health", timeout=10).status_code == 200
        assert _finished(server.base, _submit(server.base, "good.xlsx", good))["status"] == \
            "completed"
