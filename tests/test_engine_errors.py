"""Every refusal of run_prediction_direct.py: exit code 2, one Chinese line,
and nothing written to the output directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from support.engine import (
    GRADE_HEADER,
    PARITY_GRADES,
    PROJECT,
    REF_EXACT_MAP,
    REF_MODEL,
    REF_PLANS,
    grade_row,
    needs_reference,
    write_xlsx,
)

from destination_predictor.cli import main

pytestmark = needs_reference
CJK = re.compile(r"[\u4e00-\u9fff]")


def run_cli(capsys, out_dir, scores, *extra: str, model=REF_MODEL, year="2023"):
    code = main(["--scores_file", str(scores), "--year", year, "--model-dir", str(model),
                 "--plans-dir", str(REF_PLANS), "--category-map", str(REF_EXACT_MAP),
                 "--out-dir", str(out_dir), *extra])
    return code, capsys.readouterr()


def assert_refused(code, captured, out_dir, fragment):
    assert code == 2
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("错误")]
    assert len(lines) == 1 and CJK.search(lines[0]), captured.err
    assert fragment in lines[0]
    assert not any(out_dir.iterdir()), list(out_dir.iterdir())


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_missing_file(capsys, out_dir, tmp_path):
    assert_refused(*run_cli(capsys, out_dir, tmp_path / "nope.xlsx"), out_dir, "不存在")


def test_text_file_named_xlsx(capsys, out_dir, tmp_path):
    fake = tmp_path / "grades.xlsx"
    fake.write_text("SNH,Course_Name,Grade\n1,高数,90\n", encoding="utf-8")
    code, captured = run_cli(capsys, out_dir, fake)
    # The engine's message serves the CLI and the service alike: nothing was
    # "uploaded" on the command line, so it names the grade file instead.
    assert_refused(code, captured, out_dir, "成绩文件不是 Excel 工作簿")
    assert "上传" not in captured.err


def test_corrupt_zip(capsys, out_dir, tmp_path):
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(PARITY_GRADES.read_bytes()[:3000])
    assert_refused(*run_cli(capsys, out_dir, bad), out_dir, "损坏")


def test_empty_workbook(capsys, out_dir, tmp_path):
    empty = write_xlsx(tmp_path / "empty.xlsx", {"Sheet1": []})
    assert_refused(*run_cli(capsys, out_dir, empty), out_dir, "空")


def test_header_only(capsys, out_dir, tmp_path):
    wb = write_xlsx(tmp_path / "header.xlsx", {"Sheet1": [GRADE_HEADER]})
    assert_refused(*run_cli(capsys, out_dir, wb), out_dir, "没有学生数据")


def test_no_valid_rows(capsys, out_dir, tmp_path):
    rows = [GRADE_HEADER, grade_row("s1", "物联网工程", "高数", None),
            grade_row("s2", "物联网工程", "体育", 90, attribute="任选课")]
    wb = write_xlsx(tmp_path / "norows.xlsx", {"Sheet1": rows})
    assert_refused(*run_cli(capsys, out_dir, wb), out_dir, "没有任何有效")


def test_no_course_name_column(capsys, out_dir, tmp_path):
    rows = [["SNH", "Current_Major", "Course", "Grade"], ["s1", "物联网工程", "高数", 90]]
    wb = write_xlsx(tmp_path / "nocourse.xlsx", {"Sheet1": rows})
    assert_refused(*run_cli(capsys, out_dir, wb), out_dir, "Course_Name")


def test_year_without_plans(capsys, out_dir):
    code, captured = run_cli(capsys, out_dir, PARITY_GRADES, year="2030")
    assert_refused(code, captured, out_dir, "2030")
    # ... and says which years the plans directory does have.
    years = sorted(int(d.name.removeprefix("education-plan")) for d in REF_PLANS.iterdir()
                   if d.is_dir() and d.name.startswith("education-plan"))
    assert years
    assert "可选年级：" + "、".join(map(str, years)) in captured.err


def test_bad_year(capsys, out_dir):
    assert_refused(*run_cli(capsys, out_dir, PARITY_GRADES, year="二〇二三"), out_dir, "年级")


def test_unknown_major(capsys, out_dir):
    assert_refused(*run_cli(capsys, out_dir, PARITY_GRADES, "--major", "天文学"), out_dir, "天文学")


@pytest.mark.parametrize("config, fragment", [
    ("{not json", "JSON"),
    ('{"min_grade": 95, "max_grade": 90}', "不能大于"),
    ('{"min_grade": -5}', "0 到 100"),
    ('{"max_grade": 101}', "0 到 100"),
    ('{"with_uniform_inverse": 2}', "1 或 0"),
    ("[1, 2]", "JSON 对象"),
])
def test_bad_config(capsys, out_dir, config, fragment):
    assert_refused(*run_cli(capsys, out_dir, PARITY_GRADES, "--config", config), out_dir, fragment)


@pytest.mark.parametrize("missing", ["catboost_model.cbm", "scaler.pkl", "feature_columns.json",
                                     "model_params.json"])
def test_model_dir_missing_a_file(capsys, out_dir, tmp_path, missing):
    model = tmp_path / "model"
    shutil.copytree(REF_MODEL, model)
    (model / missing).unlink()
    code, captured = run_cli(capsys, out_dir, PARITY_GRADES, model=model)
    assert_refused(code, captured, out_dir, missing)


def test_a_real_process_exits_non_zero_with_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run(
        [sys.executable, str(PROJECT / "run_prediction_direct.py"), "--scores_file",
         str(tmp_path / "missing.xlsx"), "--year", "2023", "--model-dir", str(REF_MODEL),
         "--plans-dir", str(REF_PLANS), "--out-dir", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("错误: 成绩文件不存在")
    assert "Traceback" not in run.stderr
    assert not any(out.iterdir())


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x", encoding="utf-8")
    code, captured = run_cli(capsys, blocker / "out", PARITY_GRADES)
    assert code == 2
    assert captured.err.strip().splitlines()[-1].startswith("错误: 无法读写文件")


def test_main_twice_in_one_process_prints_to_the_current_stdout(capsys, tmp_path) -> None:
    """``print_report`` took ``sys.stdout`` when the module was imported: a second
    ``main()`` under another capture wrote to a closed file."""
    from support.service import grade_workbook

    grades = grade_workbook(tmp_path / "g.xlsx", 6, seed=1, year=2024)
    for n in range(2):
        assert main(["--scores_file", str(grades), "--year", "2024",
                     "--out-dir", str(tmp_path / f"o{n}")]) == 0
        assert "已写入" in capsys.readouterr().out
