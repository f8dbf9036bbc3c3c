"""The registrar's grade export: one row per student per course.

Read once per run (fastexcel: Rust calamine with Arrow output; reads .xlsx and .xls),
then reduced to ``Cohort``: students in first-appearance order, their major,
and a course -> grade table where a retake replaces the earlier grade.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import fastexcel
import numpy as np
import pandas as pd

from .errors import PredictionError
from .excel import (
    DEFAULT_MAX_CELLS,
    ExcelFormat,
    WorkbookTooLarge,
    check_extent,
    is_reader_panic,
    sniff_file,
    too_large_message,
)

TEXT_GRADES: dict[str, float] = {"优": 95.0, "良": 85.0, "中": 75.0, "及格": 65.0, "不及格": 40.0}

# Why a row was dropped, as reported to the operator.
SKIP_REASONS: dict[str, str] = {
    "empty_id": "学号为空",
    "empty_course": "课程名为空",
    "empty_grade": "成绩为空",
    "free_elective": "任选课不计入",
    "invalid_grade": "成绩不是 0-100 的数字",
}


@dataclass
class Cohort:
    """What the grade workbook says, reduced to what the engine needs.

    ``scores`` has one row per (student, course) with the last grade kept;
    ``students`` is ordered by each student's first kept row.
    """

    students: list[str]
    majors: dict[str, str | None]
    scores: pd.DataFrame  # columns: sid, course, grade (float)
    has_major_column: bool
    skipped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def courses_taken(self) -> dict[str, int]:
        """Distinct courses with a grade, per student (the ``grade`` column).

        Cached: every major of a run reads it, the scores never change."""
        return self.scores.groupby("sid", sort=False)["course"].size().to_dict()

    def students_of(self, major: str) -> list[str]:
        """The students recorded in ``major``, in cohort order; everyone when the
        export has no major column (the deployed behaviour)."""
        if not self.has_major_column:
            return list(self.students)
        return [s for s in self.students if self.majors[s] == major]


def sniff_format(path: Path) -> ExcelFormat:
    """'xlsx' or 'xls' from the first bytes, whatever the file name says."""
    try:
        fmt = sniff_file(path)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise PredictionError("FILE_NOT_FOUND", f"成绩文件不存在: {path.name}") from exc
    if fmt is None:
        raise PredictionError("NOT_EXCEL", "成绩文件不是 Excel 工作簿（.xlsx 或 .xls）")
    return fmt


# Lower-cased header fragments of every column the reader may need; the
# sheet is parsed once, keeping only columns whose header contains one.
_WANTED = ("snh", "course_name", "current_major", "major", "grade", "成绩", "course_attribute")


def _want(column: object) -> bool:
    name = str(getattr(column, "name", "")).strip().lower()
    return getattr(column, "index", 1) == 0 or any(k in name for k in _WANTED)


def _load_columns(path: Path, max_cells: int) -> tuple[list[str], list[list[str | None]],
                                                       list[str]]:
    """Headers and text cells of the first non-empty sheet (the registrar puts data first).

    fastexcel parses the sheet in Rust and hands back Arrow strings for just
    the needed columns: the workbook is read once, without a Python object
    per cell of the columns nobody uses. Before it allocates anything, the
    sheet's extent is checked (``excel.check_extent``), and every failure of
    the reader -- a Rust panic included -- is ``CORRUPT_WORKBOOK``.
    """
    fmt = sniff_format(path)
    data = path.read_bytes()
    if fmt == "xlsx":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "[Content_Types].xml" not in zf.namelist():
                    raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏或不是 Excel 工作簿")
        except zipfile.BadZipFile as exc:
            raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc
    try:
        check_extent(path, max_cells)
    except WorkbookTooLarge as exc:
        raise PredictionError("WORKBOOK_TOO_LARGE", too_large_message(exc)) from exc
    warnings: list[str] = []
    try:
        reader = fastexcel.read_excel(data)
        for i, name in enumerate(reader.sheet_names):
            table = reader.load_sheet(i, use_columns=_want, dtypes="string").to_arrow()
            headers = [str(c) for c in table.column_names]
            if not headers or all(h.startswith("__UNNAMED__") for h in headers):
                continue
            if i > 0:
                warnings.append(f"第一个工作表为空，已改为读取工作表“{name}”")
            return headers, [c.to_pylist() for c in table.columns], warnings
    except PredictionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reader raises several unrelated types
        raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc
    except BaseException as exc:
        if not is_reader_panic(exc):
            raise
        raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc
    raise PredictionError("EMPTY_WORKBOOK", "成绩文件是空的：没有任何数据")


def find_column(headers: list[str], *keys: str) -> int | None:
    """Case-insensitive on stripped text: equality for every key, then containment."""
    norm = [str(h).strip().lower() for h in headers]
    for key in keys:
        k = key.lower()
        if k in norm:
            return norm.index(k)
    for key in keys:
        k = key.lower()
        for i, h in enumerate(norm):
            if k in h:
                return i
    return None


def _text(v: str | None) -> str:
    """Stripped cell text (numeric cells arrive as text, ids without '.0')."""
    return v.strip() if v is not None else ""


def _grade(v: str) -> float | None:
    s = v.strip()
    if s in TEXT_GRADES:
        return TEXT_GRADES[s]
    try:
        g = float(s)
    except ValueError:
        return None
    return g if math.isfinite(g) and 0.0 <= g <= 100.0 else None


def read_grades(path: str | Path, *, max_cells: int = DEFAULT_MAX_CELLS) -> Cohort:
    """Parse the workbook per docs/algorithm.md §4, counting every skipped row.

    ``max_cells`` bounds the rows x columns a sheet may reach (``WORKBOOK_TOO_LARGE``)."""
    p = Path(path)
    headers, columns, warnings = _load_columns(p, max_cells)
    i_course = find_column(headers, "Course_Name")
    if i_course is None:
        raise PredictionError("NO_COURSE_COLUMN", "成绩文件缺少 Course_Name（课程名）列")
    i_id = find_column(headers, "SNH")
    if i_id is None:
        i_id = 0
    i_major = find_column(headers, "Current_Major", "Major")
    i_grade = find_column(headers, "Grade", "成绩")
    if i_grade is None:
        raise PredictionError("NO_GRADE_COLUMN", "成绩文件缺少 Grade（成绩）列")
    i_attr = find_column(headers, "Course_Attribute")
    n_rows = len(columns[0])
    if not n_rows:
        raise PredictionError("NO_STUDENT_ROWS", "成绩文件只有表头，没有学生数据")

    ids = [_text(v) for v in columns[i_id]]
    courses = [_text(v) for v in columns[i_course]]
    raw_grades = columns[i_grade]
    attrs = [_text(v) for v in columns[i_attr]] if i_attr is not None else None
    majors = [_text(v) for v in columns[i_major]] if i_major is not None else None

    skipped: Counter = Counter()
    keep_idx: list[int] = []
    grades: list[float] = []
    for k in range(n_rows):
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
        g = _grade(g_raw)
        if g is None:
            skipped["invalid_grade"] += 1
            continue
        keep_idx.append(k)
        grades.append(g)

    if not keep_idx:
        raise PredictionError("NO_STUDENT_ROWS", "成绩文件中没有任何有效的学生成绩行")
    kept_ids = [ids[k] for k in keep_idx]
    kept = pd.DataFrame({
        "sid": kept_ids,
        "course": [courses[k] for k in keep_idx],
        "grade": np.asarray(grades, dtype=float),
    })
    major_of: dict[str, str | None] = {}
    for pos, sid in enumerate(kept_ids):  # first kept row decides the major
        if sid not in major_of:
            major_of[sid] = (majors[keep_idx[pos]] or None) if majors is not None else None
    students = list(major_of)
    # Retakes: the last row for a (student, course) wins.
    scores = kept.drop_duplicates(["sid", "course"], keep="last").reset_index(drop=True)

    for reason, n in skipped.items():
        warnings.append(f"跳过 {n} 行：{SKIP_REASONS[reason]}")
    return Cohort(
        students=students,
        majors=major_of,
        scores=scores,
        has_major_column=i_major is not None,
        skipped=skipped,
        warnings=warnings,
    )


def grade_matrix(cohort: Cohort, sids: Sequence[str], courses: Sequence[str]) -> np.ndarray:
    """The grades of ``sids`` in ``courses`` -> ``(n_students, n_courses)`` float.

    NaN means "no grade" (not taken, or not in the export); a row follows
    ``sids``, a column follows ``courses``. Built by one scatter over the
    cohort's score table instead of a lookup per cell.
    """
    grades = np.full((len(sids), len(courses)), np.nan)
    row_of = {s: i for i, s in enumerate(sids)}
    col_of = {c: j for j, c in enumerate(courses)}
    sc = cohort.scores
    ri = sc["sid"].map(row_of)
    ci = sc["course"].map(col_of)
    ok = ri.notna() & ci.notna()
    grades[ri[ok].to_numpy(dtype=np.intp), ci[ok].to_numpy(dtype=np.intp)] = sc["grade"][ok]
    return grades
