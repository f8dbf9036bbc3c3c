"""``read_grades`` reduces the rows with numpy over distinct texts; the row-by-row
loop it replaced (kept here as the reference) must give the same cohort: the
same students in the same order, majors, kept scores in order, skipped counts
and warnings in order -- on messy generated exports and on random rows."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import GRADE_HEADER, write_xlsx
from support.paths import REPO

from destination_predictor.demo.grades import make_grade_workbook
from destination_predictor.engine import grades as g


def reference(path: Path) -> tuple:
    """The loop as it was before issue 15, over the same cells the reader keeps."""
    sheet = g._load_columns(path, None)
    headers = sheet.headers
    columns = [c.to_pylist() for c in sheet.columns]
    roles = g.map_headers(headers)
    i_course, i_grade = roles["course"], roles["grade"]
    i_id = roles["student_id"] if roles["student_id"] is not None else 0
    i_major, i_attr = roles["major"], roles["attribute"]
    ids = [g._text(v) for v in columns[i_id]]
    courses = [g._text(v) for v in columns[i_course]]
    raw_grades = columns[i_grade]
    attrs = [g._text(v) for v in columns[i_attr]] if i_attr is not None else None
    majors = [g._text(v) for v in columns[i_major]] if i_major is not None else None
    skipped: Counter = Counter()
    keep_idx, grades = [], []
    for k in range(len(columns[0])):
        if not ids[k]:
            skipped["empty_id"] += 1
            continue
        if not courses[k]:
            skipped["empty_course"] += 1
            continue
        g_raw = raw_grades[k]
        if g_raw is None or not g_raw.strip():
            skipped["empty_grade"] += 1
            continue
        if attrs is not None and "任选课" in attrs[k]:
            skipped["free_elective"] += 1
            continue
        grade = g._grade(g_raw)
        if grade is None:
            skipped["invalid_grade"] += 1
            continue
        keep_idx.append(k)
        grades.append(grade)
    if not keep_idx:
        return ("NO_STUDENT_ROWS", list(skipped.items()))
    major_of: dict = {}
    for k in keep_idx:
        if ids[k] not in major_of:
            major_of[ids[k]] = (majors[k] or None) if majors is not None else None
    last: dict = {}
    for pos, k in enumerate(keep_idx):
        last.pop((ids[k], courses[k]), None)
        last[(ids[k], courses[k])] = grades[pos]
    order = sorted(last, key=lambda key: max(p for p, k in enumerate(keep_idx)
                                            if (ids[k], courses[k]) == key))
    scores = [(sid, course, last[(sid, course)]) for sid, course in order]
    return (list(major_of), major_of, scores, list(skipped.items()))


def actual(path: Path) -> tuple:
    try:
        c = g.read_grades(path, max_cells=None)
    except g.PredictionError as exc:
        assert exc.code == "NO_STUDENT_ROWS"
        return ("NO_STUDENT_ROWS", None)
    scores = list(c.scores.itertuples(index=False, name=None))
    assert str(c.scores["sid"].dtype) == "str" and c.scores["grade"].dtype == float
    return (c.students, c.majors, scores, list(c.skipped.items()))


def same(a: tuple, b: tuple) -> bool:
    if a[0] == "NO_STUDENT_ROWS" or b[0] == "NO_STUDENT_ROWS":
        return a[0] == b[0]
    return a == b


def test_messy_generated_export_reduces_as_the_loop_did(tmp_path) -> None:
    path = make_grade_workbook(tmp_path / "g.xlsx", 2024, 150, plans_dir=REPO / "plans", seed=3)
    expected, got = reference(path), actual(path)
    assert got == expected
    assert len(got[3]) >= 2  # the messy export skips rows for several reasons


TEXT = st.sampled_from(["a", " a", "a ", "\u3000a", "\xa0a", "\x85a", "b", "", "  ", None, "=1+1"])
GRADE = st.sampled_from(["90", " 85 ", "优", "及格 ", "abc", "", "  ", "101", "-1", "nan",
                         "inf", "1_0", "９０", "1e1", None, "59.5", "100", "0"])
ATTR = st.sampled_from(["必修", "任选课", " 任选课 ", "限选", None, ""])
ROW = st.tuples(TEXT, st.sampled_from(["m1", " m1", "m2", "", None]), TEXT, GRADE, ATTR)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=60))
def test_random_rows_reduce_as_the_loop_did(tmp_path_factory, rows) -> None:
    path = tmp_path_factory.mktemp("r") / "r.xlsx"
    sheet = [GRADE_HEADER]
    for sid, major, course, grade, attr in rows:
        sheet.append([sid, "2023-1", major, 1, course, grade, "x", attr, 32, 2, "u", "e", "m"])
    write_xlsx(path, {"Sheet1": sheet})
    got, expected = actual(path), reference(path)
    assert same(got, expected), (got, expected)
    if got[0] != "NO_STUDENT_ROWS":
        assert all(not math.isnan(s[2]) for s in got[2])


@pytest.mark.parametrize("column", ["Current_Major", "Course_Attribute "])
def test_without_optional_columns(tmp_path, column) -> None:
    header = [h for h in GRADE_HEADER if h != column]
    rows = [header]
    for sid, course, grade in [("s1", "c1", "90"), ("s2", "c1", "80"), ("s1", "c1", "70")]:
        row = dict(zip(GRADE_HEADER, [sid, "t", "m1", 1, course, grade, "x", "必修", 1, 1, "u", "e",
                                      "m"], strict=True))
        rows.append([row[h] for h in header])
    path = write_xlsx(tmp_path / "o.xlsx", {"Sheet1": rows})
    assert actual(path) == reference(path)
