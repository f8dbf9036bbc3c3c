"""The check before a run (``engine.check``, ``run_prediction_direct.py --check``)
and plan coverage: the wrong year or the demo plans with real grades are said
in plain Chinese instead of "completing" silently."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.engine import PARITY_GRADES, needs_reference
from support.paths import MODELS_DIR, PLANS_DIR, REPO
from support.service import grade_workbook

from destination_predictor.engine import Engine
from destination_predictor.engine.categories import load_category_map
from destination_predictor.engine.check import check_workbook


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run_prediction_direct.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_check_reports_the_workbook_and_writes_nothing(tmp_path: Path) -> None:
    grades = grade_workbook(tmp_path / "g.xlsx", 24, seed=9, year=2024)
    out = tmp_path / "out"
    run = cli("--scores_file", str(grades), "--year", "2024", "--check", "--out-dir", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("24 名学生，4 个专业可预测")
    assert "表头（第 1 行）: 学号←“SNH”" in run.stdout
    assert "最吻合的年级: 2024" in run.stdout
    assert not out.exists()


def test_check_gives_the_refusals_a_run_would_give(tmp_path: Path) -> None:
    bad = tmp_path / "x.xlsx"
    bad.write_bytes(b"not a workbook")
    run = cli("--scores_file", str(bad), "--year", "2024", "--check")
    assert run.returncode == 2 and "无法预测" in run.stdout and "Excel" in run.stdout
    report = check_workbook(bad, 2024, plans_dir=PLANS_DIR, categories=load_category_map())
    assert not report.ok and report.problems[0]["code"] == "NOT_EXCEL"
    report = check_workbook(bad, 1999, plans_dir=PLANS_DIR, categories=load_category_map())
    assert report.problems[0]["code"] == "UNKNOWN_YEAR" and "2022" in report.problems[0]["message"]


def test_report_counts_per_major(tmp_path: Path) -> None:
    grades = grade_workbook(tmp_path / "g.xlsx", 24, seed=9, year=2024)
    report = check_workbook(grades, 2024, plans_dir=PLANS_DIR, categories=load_category_map())
    assert report.ok and report.students == 24
    assert report.header is not None and report.header["mapped"]["course"] == "Course_Name"
    assert sum(m["students"] for m in report.majors) == 24
    assert {s["reason"] for s in report.skipped} <= {"empty_id", "empty_course", "empty_grade",
                                                    "free_elective", "invalid_grade"}
    for m in report.majors:
        assert m["has_plan"] and m["share"] > 0.5 and m["best_year"] == 2024
    assert report.to_dict()["summary"] == report.summary


@needs_reference
def test_real_grades_against_the_demo_plans_warn(tmp_path: Path) -> None:
    """Real 2023 grades run against the bundled demo plans matched a fifth of
    their courses and "completed" with no warning."""
    result = Engine(MODELS_DIR, PLANS_DIR).run(PARITY_GRADES, 2023, out_dir=tmp_path)
    low = [w for w in result.warnings if "是否选错了年级" in w]
    assert len(low) == 4, result.warnings
    assert "培养方案目录" in low[0]


@needs_reference
def test_real_grades_against_the_real_plans_do_not_warn(tmp_path: Path) -> None:
    from support.engine import REF_EXACT_MAP, REF_MODEL, REF_PLANS

    result = Engine(REF_MODEL, REF_PLANS, REF_EXACT_MAP).run(PARITY_GRADES, 2023, out_dir=tmp_path)
    assert not [w for w in result.warnings if "是否选错了年级" in w]


def test_the_wrong_year_names_the_right_one(tmp_path: Path) -> None:
    """Plans of two years that share few courses: a 2024 export checked as 2023."""
    plans = tmp_path / "plans"
    (plans / "education-plan2024").mkdir(parents=True)
    shutil.copy(PLANS_DIR / "education-plan2024" / "2024级物联网工程培养方案.xlsx",
                plans / "education-plan2024")
    other = plans / "education-plan2023"
    other.mkdir()
    _plan_with_other_courses(PLANS_DIR / "education-plan2023" / "2023级物联网工程培养方案.xlsx",
                             other / "2023级物联网工程培养方案.xlsx")
    grades = grade_workbook(tmp_path / "g.xlsx", 12, seed=2, year=2024)
    report = check_workbook(grades, 2023, plans_dir=plans, categories=load_category_map(),
                            major="物联网工程")
    assert report.best_year == 2024
    assert any("是否选错了年级" in w and "与 2024 级培养方案最吻合" in w for w in report.warnings)


def _plan_with_other_courses(src: Path, dst: Path) -> None:
    import openpyxl

    wb = openpyxl.load_workbook(src)
    ws = wb.active
    for row in ws.iter_rows(min_row=2):
        if row[2].value:
            row[2].value = f"另一门课{row[0].row}"
    wb.save(dst)


@pytest.mark.parametrize("demo", [True])
def test_the_cli_says_when_the_demo_model_is_used(tmp_path: Path, demo: bool) -> None:
    grades = grade_workbook(tmp_path / "g.xlsx", 8, seed=1, year=2024)
    run = cli("--scores_file", str(grades), "--year", "2024", "--out-dir", str(tmp_path / "o"))
    assert run.returncode == 0, run.stderr
    assert ("演示模型" in run.stderr) is demo
