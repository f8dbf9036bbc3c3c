"""Parity with the deployed system on its own sample, through the real CLI."""

from __future__ import annotations

import subprocess
import sys

from support.engine import (
    COMPARE_TOOL,
    PARITY_EXPECTED,
    PARITY_GRADES,
    PROJECT,
    REF_EXACT_MAP,
    REF_MODEL,
    REF_PLANS,
    needs_reference,
)


@needs_reference
def test_reference_sample_matches_cell_for_cell(tmp_path):
    run = subprocess.run(
        [sys.executable, str(PROJECT / "run_prediction_direct.py"),
         "--scores_file", str(PARITY_GRADES), "--year", "2023",
         "--model-dir", str(REF_MODEL), "--plans-dir", str(REF_PLANS),
         "--category-map", str(REF_EXACT_MAP), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "智能科学与技术(ai): 学生 5 人" in run.stdout
    cmp = subprocess.run([sys.executable, str(COMPARE_TOOL), str(PARITY_EXPECTED), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert cmp.returncode == 0, cmp.stdout
    assert "parity: 5/5 workbooks identical, 0 differing cells" in cmp.stdout


@needs_reference
def test_extra_sheets_come_after_the_legacy_ones(tmp_path):
    import openpyxl

    from destination_predictor.engine import Engine

    engine = Engine(REF_MODEL, REF_PLANS, REF_EXACT_MAP)
    result = engine.run(PARITY_GRADES, 2023, major="ai", out_dir=tmp_path)
    assert [p.name for p in result.files] == ["Cohort2023_Predictions_ai.xlsx",
                                              "Cohort2023_Predictions_All.xlsx"]
    wb = openpyxl.load_workbook(result.files[0], read_only=True)
    assert wb.sheetnames == ["Predictions", "UniformThresholds", "MissingCoursesScores",
                             "Reachability"]
    rows = list(wb["Reachability"].iter_rows(values_only=True))
    # Student 3 of the sample: s_min_for_1 is the legacy 90, i.e. not reachable.
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["49612a6df23a2e03ad1f351cf7ed7ad414eb81fc"][2] == "不可达"
    assert by_id["dfe178a105eadbdcd12804ee000d8ac8172c9ad5"][2] == "可达"
