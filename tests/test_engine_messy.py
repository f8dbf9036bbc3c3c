"""Messy inputs the registrar and the plan authors really produce."""

from __future__ import annotations

import math

import openpyxl
import pandas as pd
import pytest
import xlwt
from support.engine import (
    GRADE_HEADER,
    PARITY_GRADES,
    REF_EXACT_MAP,
    REF_MODEL,
    REF_PLANS,
    TINY_MAJOR,
    TINY_YEAR,
    grade_row,
    needs_reference,
    tiny_plans,
    write_xlsx,
)

from destination_predictor.engine import Engine
from destination_predictor.engine.grades import read_grades
from destination_predictor.engine.options import PredictConfig

pytestmark = needs_reference
ALL_COURSES = ["思政A", "英语A", "高数A", "程序设计", "数据结构", "机器学习", "课程设计",
               "体育基础", "毕业设计", "创新实践"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return Engine(REF_MODEL, tiny_plans(root))


def sheet(path, name="Predictions"):
    return pd.read_excel(path, sheet_name=name, engine="openpyxl")


def cohort_rows():
    rows = [GRADE_HEADER]
    rows += [grade_row("A001", TINY_MAJOR, c, 80 + i % 7) for i, c in enumerate(ALL_COURSES[:6])]
    rows += [grade_row("B002", TINY_MAJOR, c, g) for c, g in
             [("思政A", "优"), ("英语A", "良"), ("高数A", "及格"), ("程序设计", "不及格")]]
    return rows


def test_plan_with_date_cells_empty_category_and_note_row(tiny, tmp_path):
    wb = write_xlsx(tmp_path / "g.xlsx", {"Sheet1": cohort_rows()})
    result = tiny.run(wb, TINY_YEAR, out_dir=tmp_path / "out")
    pred = sheet(result.files[0])
    assert pred["count"].tolist() == [11, 11]  # the duplicate 体育基础 row counts twice
    assert list(pred.columns[19:]) == ALL_COURSES
    assert any("（类别为空）" in w for w in result.warnings)  # the category-less 毕业设计 row


def test_xls_input_gives_the_same_predictions(tiny, tmp_path):
    rows = cohort_rows()
    wb = write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows})
    book = xlwt.Workbook()
    ws = book.add_sheet("Sheet1")
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if v is not None:
                ws.write(i, j, v)
    xls = tmp_path / "g.xls"
    book.save(str(xls))
    a = tiny.run(wb, TINY_YEAR, out_dir=tmp_path / "a")
    b = tiny.run(xls, TINY_YEAR, out_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(sheet(a.files[0]), sheet(b.files[0]))
    # Content decides the reader, not the name.
    renamed = tmp_path / "really_xls.xlsx"
    renamed.write_bytes(xls.read_bytes())
    c = tiny.run(renamed, TINY_YEAR, out_dir=tmp_path / "c")
    pd.testing.assert_frame_equal(sheet(a.files[0]), sheet(c.files[0]))


def test_headers_with_spaces_and_case_are_found(tmp_path):
    header = [" snh ", "Current_Major ", " COURSE_NAME", "grade ", "Course_Attribute  "]
    rows = [header, ["A", "物联网工程", "高数", 90, "必修"], ["A", "物联网工程", "体育", 70, "任选课"]]
    cohort = read_grades(write_xlsx(tmp_path / "h.xlsx", {"Sheet1": rows}))
    assert cohort.students == ["A"]
    assert cohort.majors == {"A": "物联网工程"}
    assert cohort.scores["course"].tolist() == ["高数"]
    assert cohort.skipped["free_elective"] == 1


def test_grade_rules_retakes_text_range_blank_and_empty_ids(tmp_path):
    rows = [GRADE_HEADER,
            grade_row("S1", "物联网工程", "高数", 50),
            grade_row("S1", "物联网工程", "英语", "良"),
            grade_row("S1", "物联网工程", "高数", 88),       # retake: the last one counts
            grade_row("S1", "物联网工程", "物理", 105),      # out of range
            grade_row("S1", "物联网工程", "化学", -3),
            grade_row("S1", "物联网工程", "政治", "缺考"),    # not a number
            grade_row("S1", "物联网工程", "体育", None),      # blank
            grade_row("S1", "物联网工程", "美术", "  "),      # blank text
            grade_row(None, "物联网工程", "高数", 70),        # no student id
            grade_row("S2", "电子信息工程", "高数", " 91 "),  # numeric text
            grade_row("S2", "物联网工程", "英语", "不及格"),  # major comes from the first row
            grade_row("S1", "物联网工程", "选修", 99, attribute="公共任选课")]
    cohort = read_grades(write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows}))
    assert cohort.students == ["S1", "S2"]
    assert cohort.majors == {"S1": "物联网工程", "S2": "电子信息工程"}
    got = {(s, c): g for s, c, g in cohort.scores.itertuples(index=False)}
    assert got == {("S1", "高数"): 88.0, ("S1", "英语"): 85.0, ("S2", "高数"): 91.0,
                   ("S2", "英语"): 40.0}
    assert dict(cohort.skipped) == {"invalid_grade": 3, "empty_grade": 2, "empty_id": 1,
                                    "free_elective": 1}
    assert cohort.courses_taken == {"S1": 2, "S2": 2}


def test_first_sheet_empty_reads_the_next(tiny, tmp_path):
    wb = write_xlsx(tmp_path / "g.xlsx", {"说明": [], "成绩": cohort_rows()})
    result = tiny.run(wb, TINY_YEAR, out_dir=tmp_path / "out")
    assert len(sheet(result.files[0])) == 2
    assert any("第一个工作表为空" in w for w in result.warnings)


def test_student_with_every_course_done(tiny, tmp_path):
    rows = [GRADE_HEADER] + [grade_row("ALL", TINY_MAJOR, c, 85) for c in ALL_COURSES]
    result = tiny.run(write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows}), TINY_YEAR,
                      out_dir=tmp_path / "out")
    wb = openpyxl.load_workbook(result.files[0])
    assert wb.sheetnames == ["Predictions", "UniformThresholds", "Reachability"]
    pred = sheet(result.files[0])
    assert math.isnan(pred.at[0, "target1_min_required_score"])
    assert pred[ALL_COURSES].isna().all().all()
    ut = sheet(result.files[0], "UniformThresholds")
    row = ut.iloc[0]
    assert row["s_min_for_1_policy"] == row["s_min_for_2_policy"] == "no_missing_courses"
    assert (row["UnknownCredits"], row["Cost_1"], row["Cost_2"]) == (0, 0, 0)
    assert (row["Ranges_1"], row["missing_courses"], row["target1_scores"]) == ("[]", "[]", "{}")
    assert result.summary["majors"][0]["no_missing_courses"] == 1


def test_major_without_students_is_skipped_not_filled_with_everyone(tmp_path):
    engine = Engine(REF_MODEL, REF_PLANS, REF_EXACT_MAP)
    full = pd.read_excel(PARITY_GRADES, engine="calamine")
    only_iot = full[full["Current_Major"] == "物联网工程"]
    path = tmp_path / "iot.xlsx"
    only_iot.to_excel(path, index=False)
    result = engine.run(path, 2023, out_dir=tmp_path / "out")
    assert [p.name for p in result.files] == ["Cohort2023_Predictions_iot.xlsx",
                                              "Cohort2023_Predictions_All.xlsx"]
    skipped = [w for w in result.warnings if "已跳过该专业" in w]
    assert len(skipped) == 3
    assert len(sheet(result.files[0])) == 5


def test_no_major_column_predicts_everyone_for_the_asked_major(tiny, tmp_path):
    rows = [[r[0], r[4], r[5]] for r in cohort_rows()]
    rows[0] = ["SNH", "Course_Name", "Grade"]
    result = tiny.run(write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows}), TINY_YEAR,
                      major=TINY_MAJOR, out_dir=tmp_path / "out")
    pred = sheet(result.files[0])
    assert pred["SNH"].tolist() == ["A001", "B002"]
    assert set(pred["major"]) == {TINY_MAJOR}


def test_without_inverse_search_only_predictions(tiny, tmp_path):
    wb = write_xlsx(tmp_path / "g.xlsx", {"Sheet1": cohort_rows()})
    result = tiny.run(wb, TINY_YEAR, out_dir=tmp_path / "out",
                      config=PredictConfig(with_uniform_inverse=False))
    assert openpyxl.load_workbook(result.files[0]).sheetnames == ["Predictions"]
    pred = sheet(result.files[0])
    assert pred["target1_min_required_score"].isna().all()
    assert pred[ALL_COURSES].isna().all().all()


def test_major_by_code_and_unknown_students_major_warned(tiny, tmp_path):
    rows = cohort_rows() + [grade_row("C003", "天文学", "高数A", 90)]
    result = tiny.run(write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows}), TINY_YEAR, major="ai",
                      out_dir=tmp_path / "out")
    assert result.files[0].name == f"Cohort{TINY_YEAR}_Predictions_ai.xlsx"
    assert any("天文学" in w for w in result.warnings)


def test_formula_like_text_is_written_as_text(tiny, tmp_path):
    rows = [GRADE_HEADER, grade_row("X", TINY_MAJOR, "思政A", 90)]
    path = write_xlsx(tmp_path / "g.xlsx", {"Sheet1": rows})
    book = openpyxl.load_workbook(path)
    cell = book["Sheet1"]["A2"]
    cell.value, cell.data_type = "=1+1", "s"  # a text cell that looks like a formula
    book.save(path)
    result = tiny.run(path, TINY_YEAR, out_dir=tmp_path / "out")
    ws = openpyxl.load_workbook(result.files[0])["Predictions"]
    assert ws["A2"].value == "=1+1" and ws["A2"].data_type == "s"
