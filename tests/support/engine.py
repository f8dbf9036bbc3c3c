"""Helpers for the engine tests: reference data paths and tiny workbook
writers (openpyxl keeps header text exactly, trailing spaces too)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import openpyxl
import pytest

from support.paths import REPO

PROJECT = REPO
SHARED = PROJECT.parent / "shared"
REF = SHARED / "reference"
REF_MODEL = REF / "model"
REF_PLANS = REF / "plans"
REF_EXACT_MAP = REF / "category_map_exact.json"
PARITY_GRADES = REF / "parity" / "grades_2023.xlsx"
PARITY_EXPECTED = REF / "parity" / "expected"
COMPARE_TOOL = SHARED / "tools" / "compare_outputs.py"

# Outside CI a checkout without ../shared skips these; in CI they must run.
needs_reference = pytest.mark.skipif(
    not REF_MODEL.is_dir() and not os.environ.get("CI"),
    reason="../shared/reference (the deployed model) is not present",
)

GRADE_HEADER = ["SNH", "Semester_Offered", "Current_Major", "Course_ID", "Course_Name", "Grade",
                "Course_Type", "Course_Attribute ", "Hours", "Credit", "Offering_Unit",
                "Exam_Type", "Assessment_Method "]
PLAN_HEADER = ["category", "course_id", "course_name", "credit", "total_hours", "theory_hours",
               "practice_hours", "semester", "required", "exam_type", "remarks", "major"]


def write_xlsx(path: Path, sheets: dict[str, Sequence[Sequence[object]]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(list(r))
    wb.save(path)
    return path


def grade_row(sid: str, major: str | None, course: str, grade: object,
              attribute: str = "必修") -> list[object]:
    return [sid, "2023-1", major, 1000, course, grade, "x", attribute, 32, 2, "学院", "考试", "闭卷"]


# A small plan with the messy cells real plans have: a date in a semester
# cell, a required row without category, a note row, a course listed twice.
TINY_PLAN_ROWS: list[list[object]] = [
    PLAN_HEADER,
    ["思想政治理论", 1, "思政A", 3, 48, 48, 0, 1, "必修", "考试", None, "测试专业"],
    ["英语", 2, "英语A", 2, 32, 32, 0, 1, "必修", "考试", None, "测试专业"],
    ["数学与自然科学", 3, "高数A", 5, 80, 80, 0, dt.datetime(2025, 1, 8), "必修", "考试", None, "测试专业"],
    ["学科基础", 4, "程序设计", 4, 64, 56, 8, 2, "必修", "考试", None, "测试专业"],
    ["专业基础", 5, "数据结构", 4, 64, 48, 16, 3, "必修", "考试", None, "测试专业"],
    ["专业课", 6, "机器学习", 3, 48, 40, 8, 5, "必修", "考试", None, "测试专业"],
    ["专业课", 7, "选修课X", 2, 32, 32, 0, 5, "选修", "考查", None, "测试专业"],
    ["实践教学", 8, "课程设计", 2, 48, 0, 48, 4, "必修", "考查", None, "测试专业"],
    ["体育", 9, "体育基础", 1, 32, 8, 24, 1, "必修", "考查", None, "测试专业"],
    ["体育", 9, "体育基础", 1, 32, 8, 24, 2, "必修", "考查", None, "测试专业"],
    [None, 10, "毕业设计", 8, 540, 0, 540, 8, "必修", "考查", None, "测试专业"],
    ["实践教学", None, "（实践环节）", None, None, None, None, None, None, None, None, "测试专业"],
    ["学院特色创新必修5学分", 11, "创新实践", 2, 48, 8, 40, 5, "必修", "考查", None, "测试专业"],
]
TINY_YEAR = 2031
TINY_MAJOR = "智能科学与技术"


def tiny_plans(root: Path) -> Path:
    d = root / "plans" / f"education-plan{TINY_YEAR}"
    d.mkdir(parents=True)
    write_xlsx(d / f"{TINY_YEAR}级{TINY_MAJOR}培养方案.xlsx", {"Sheet1": TINY_PLAN_ROWS})
    return root / "plans"
