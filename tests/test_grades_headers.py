"""The headers registrar exports really use (English and Chinese, any case and
spacing, a title block above), and refusals instead of the deployed code's
silent fallbacks (first column as the id, every student in every major)."""

from __future__ import annotations

from pathlib import Path

import pytest
import xlsxwriter
from support.paths import MODELS_DIR, PLANS_DIR

from destination_predictor.engine import Engine, PredictConfig, PredictionError
from destination_predictor.engine.grades import map_headers, read_grades

COURSES = ("高等数学", "大学英语", "程序设计基础")


def sheet(path: Path, header: list[str], rows: list[list[object]],
          title_rows: list[list[object]] | None = None) -> Path:
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet()
    r = 0
    for t in title_rows or []:
        ws.write_row(r, 0, t)
        r += 1
    ws.write_row(r, 0, header)
    for row in rows:
        r += 1
        ws.write_row(r, 0, row)
    wb.close()
    return path


def students(majors: dict[str, int], order: tuple[str, ...] = ("id", "major", "course", "grade")
             ) -> list[list[object]]:
    rows = []
    for major, n in majors.items():
        for i in range(n):
            for c in COURSES:
                values = {"id": f"{major[:2]}{i}", "major": major, "course": c, "grade": 80}
                rows.append([values[k] for k in order])
    return rows


@pytest.mark.parametrize("header", [
    ["SNH", "Current_Major", "Course_Name", "Grade"],
    ["学号", "专业", "课程名称", "成绩"],
    [" snh ", "current major", "COURSE-NAME", "grade"],
    ["学号", "当前专业", "课程名", "总评成绩"],
    ["学号", "现专业", "课程名称", "最终成绩"],
])
def test_headers_in_either_language(header: list[str]) -> None:
    roles = map_headers(header)
    assert [roles[r] for r in ("student_id", "major", "course", "grade")] == [0, 1, 2, 3]


def test_final_grade_wins_over_a_partial_one() -> None:
    roles = map_headers(["学号", "专业", "课程名称", "平时成绩", "总评成绩", "课程性质"])
    assert (roles["grade"], roles["attribute"]) == (4, 5)


def test_chinese_headers_predict_each_student_in_their_own_major(tmp_path: Path) -> None:
    """``学号, 专业, Course_Name, 成绩`` ran with exit 0 and predicted 4 x 20 rows."""
    path = sheet(tmp_path / "g.xlsx", ["学号", "专业", "Course_Name", "成绩"],
                 students({"物联网工程": 3, "电子信息工程": 2}))
    result = Engine(MODELS_DIR, PLANS_DIR).run(path, 2024, out_dir=tmp_path / "out")
    per_major = {m["major"]: m["students"] for m in result.summary["majors"]}
    assert per_major == {"物联网工程": 3, "电子信息工程": 2}


def test_title_rows_above_the_header(tmp_path: Path) -> None:
    path = sheet(tmp_path / "g.xlsx", ["学号", "专业", "课程名称", "成绩"],
                 students({"物联网工程": 2}),
                 title_rows=[["2024 级学生成绩单"], ["导出时间：2026-11-01"], []])
    cohort = read_grades(path, require_major=True)
    assert cohort.students == ["物联0", "物联1"]
    assert cohort.header is not None and cohort.header.row == 4
    assert any("第 4 行" in w for w in cohort.warnings)


@pytest.mark.parametrize(("header", "order", "missing"), [
    (["专业", "Course_Name", "成绩"], ("major", "course", "grade"), ["学号"]),
    (["学号", "Course_Name", "成绩"], ("id", "course", "grade"), ["专业"]),
    (["学号", "专业", "成绩"], ("id", "major", "grade"), ["课程名"]),
    (["Course_Name", "Grade"], ("course", "grade"), ["学号", "专业"]),
])
def test_missing_columns_are_refused_and_named(tmp_path: Path, header: list[str],
                                               order: tuple[str, ...], missing: list[str]) -> None:
    path = sheet(tmp_path / "g.xlsx", header, students({"物联网工程": 2}, order))
    with pytest.raises(PredictionError) as refused:
        Engine(MODELS_DIR, PLANS_DIR).run(path, 2024, out_dir=tmp_path / "out")
    assert refused.value.code == "MISSING_COLUMNS"
    for name in missing:
        assert name in refused.value.message
    assert "找到的列" in refused.value.message and header[-1] in refused.value.message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_chosen_major_needs_no_major_column(tmp_path: Path) -> None:
    path = sheet(tmp_path / "g.xlsx", ["学号", "课程名称", "成绩"],
                 students({"物联网工程": 2}, ("id", "course", "grade")))
    result = Engine(MODELS_DIR, PLANS_DIR).run(path, 2024, major="iot", out_dir=tmp_path / "o")
    assert result.summary["students"] == 2


def test_the_deployed_fallbacks_stay_reachable(tmp_path: Path) -> None:
    path = sheet(tmp_path / "g.xlsx", ["Course_Name", "Grade"],
                 students({"物联网工程": 2}, ("course", "grade")))
    result = Engine(MODELS_DIR, PLANS_DIR).run(
        path, 2024, config=PredictConfig(legacy_columns=True), out_dir=tmp_path / "out")
    # No id column: the first column (course names) becomes the id; no major
    # column: every "student" in every major -- as the deployed code did.
    assert {m["students"] for m in result.summary["majors"]} == {len(COURSES)}
    assert len(result.summary["majors"]) == 4
    assert PredictConfig.parse('{"legacy_columns": 1}').legacy_columns is True
    assert PredictConfig.parse("{}").to_dict() == {"with_uniform_inverse": 1, "min_grade": 60,
                                                    "max_grade": 90}
