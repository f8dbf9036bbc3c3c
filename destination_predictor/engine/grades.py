"""The registrar's grade export: one row per student per course.

Read once per run (fastexcel: Rust calamine with Arrow output; reads .xlsx and .xls),
then reduced to ``Cohort``: students in first-appearance order, their major,
and a course -> grade table where a retake replaces the earlier grade.
"""

from __future__ import annotations

import math
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import fastexcel
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import xlsx_chunks
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


@dataclass(frozen=True)
class HeaderReport:
    """Where the header was and which column serves each role (for the check report)."""

    row: int
    sheet: str
    found: list[str]
    mapped: dict[str, str | None]


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
    header: HeaderReport | None = None

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


# The headers registrar exports actually use, per role, compared case- and
# space-insensitively; the first alias that equals a header wins.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "student_id": ("snh", "学号"),
    "major": ("current_major", "major", "专业", "当前专业", "现专业"),
    "course": ("course_name", "课程名称", "课程名"),
    "grade": ("grade", "成绩", "总评成绩", "最终成绩"),
    "attribute": ("course_attribute", "课程属性", "课程性质"),
}
# The deployed code also took a header that merely contains one of these.
_LEGACY_CONTAINS: dict[str, tuple[str, ...]] = {
    "student_id": ("snh",),
    "major": ("current_major", "major"),
    "course": ("course_name",),
    "grade": ("grade", "成绩"),
    "attribute": ("course_attribute",),
}
ROLE_NAMES: dict[str, str] = {
    "student_id": "学号（SNH/学号）", "major": "专业（Current_Major/专业）",
    "course": "课程名（Course_Name/课程名称）", "grade": "成绩（Grade/成绩）",
    "attribute": "课程属性（Course_Attribute/课程属性）",
}
# A title block above the header ("2024 级成绩单", a blank row) is looked through.
HEADER_SEARCH_ROWS = 10


def normalise_header(text: object) -> str:
    """``" Current Major"``, ``"current_major"`` and ``"CURRENT-MAJOR"`` are one header."""
    return "".join(ch for ch in str(text).lower() if not (ch.isspace() or ch in "_-"))


def map_headers(headers: Sequence[object]) -> dict[str, int | None]:
    """Each role -> the index of its column (``None``: no such column).

    Equality with an alias first (in alias order), then the deployed code's
    "contains" rule for the English names; a column serves one role only."""
    norm = [normalise_header(h) for h in headers]
    found: dict[str, int | None] = {}
    taken: set[int] = set()
    for role, aliases in HEADER_ALIASES.items():
        keys = [normalise_header(a) for a in aliases]
        found[role] = next((norm.index(k) for k in keys
                            if k in norm and norm.index(k) not in taken), None)
        if found[role] is None:
            found[role] = next((i for key in _LEGACY_CONTAINS[role] for i, h in enumerate(norm)
                                if normalise_header(key) in h and i not in taken), None)
        if found[role] is not None:
            taken.add(found[role])  # type: ignore[arg-type]
    return found


def _want(column: object) -> bool:
    name = normalise_header(getattr(column, "name", ""))
    return getattr(column, "index", 1) == 0 or any(
        normalise_header(a) in name for aliases in HEADER_ALIASES.values() for a in aliases)


@dataclass
class Sheet:
    """The columns the reader kept, with where the header was found."""

    headers: list[str]
    columns: list[pa.Array]            # the cells' text (Arrow strings, null = empty)
    header_row: int                     # 1-based row of the header in the sheet
    sheet_name: str
    warnings: list[str] = field(default_factory=list)


def _header_row(reader: fastexcel.ExcelReader, index: int) -> int | None:
    """0-based row, within the first ``HEADER_SEARCH_ROWS``, of the first row whose
    cells name a course or a grade column and one more known role."""
    top = reader.load_sheet(index, header_row=None, n_rows=HEADER_SEARCH_ROWS,
                            dtypes="string").to_arrow()
    rows = list(zip(*(c.to_pylist() for c in top.columns), strict=True))
    for r, cells in enumerate(rows):
        roles = {k for k, v in map_headers([c or "" for c in cells]).items() if v is not None}
        if roles & {"course", "grade"} and len(roles) >= 2:
            return r
    return None


def _load_columns(path: Path, max_cells: int | None) -> Sheet:
    """The header and text cells of the first non-empty sheet (the registrar puts data first).

    fastexcel parses the sheet in Rust and hands back Arrow strings for just
    the needed columns: the workbook is read once, without a Python object
    per cell of the columns nobody uses. A header that is not in the first row
    (title rows above it) is searched for in the first ``HEADER_SEARCH_ROWS``.
    Before the reader allocates anything, the sheet's extent is checked
    (``excel.check_extent``), and every failure of the reader -- a Rust panic
    included -- is ``CORRUPT_WORKBOOK``.
    """
    fmt = sniff_format(path)
    if fmt == "xlsx":
        try:
            with zipfile.ZipFile(path) as zf:
                if "[Content_Types].xml" not in zf.namelist():
                    raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏或不是 Excel 工作簿")
        except zipfile.BadZipFile as exc:
            raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc
    try:
        if max_cells is not None:  # None: the caller checked it (alongside, in another process)
            check_extent(path, max_cells)
    except WorkbookTooLarge as exc:
        raise PredictionError("WORKBOOK_TOO_LARGE", too_large_message(exc)) from exc
    try:
        if fmt == "xlsx":
            chunked = _read_in_chunks(path)
            if chunked is not None:
                return chunked
        return _first_sheet_with_data(fastexcel.read_excel(path.read_bytes()))
    except PredictionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reader raises several unrelated types
        raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc
    except BaseException as exc:
        if not is_reader_panic(exc):
            raise
        raise PredictionError("CORRUPT_WORKBOOK", "文件已损坏，无法作为 Excel 工作簿打开") from exc


def _read_in_chunks(path: Path) -> Sheet | None:
    """The first sheet read piece by piece (``xlsx_chunks``), when it is big and
    plain: the header in row 1 naming a course and a grade column. None when
    the sheet is small or not plain -- then the whole sheet is read as before,
    title rows, empty first sheets and all."""
    found = xlsx_chunks.sheet_chunks(path)
    if found is None:
        return None
    zf, chunks = found
    headers: list[str] = []
    indices: list[int] = []
    parts: list[list[pa.Array]] = []
    name = ""
    with zf:
        for book in chunks.books():
            reader = fastexcel.read_excel(book)
            if not parts:
                sheet = reader.load_sheet(0, use_columns=_want, dtypes="string")
                table = sheet.to_arrow()
                headers = [str(c) for c in table.column_names]
                roles = map_headers(headers)
                if (not headers or all(h.startswith("__UNNAMED__") for h in headers)
                        or roles["course"] is None or roles["grade"] is None):
                    return None
                indices = [c.index for c in sheet.selected_columns]
                chunks.widest = max(indices)
                name = reader.sheet_names[0]
            else:
                table = reader.load_sheet(0, use_columns=indices, dtypes="string").to_arrow()
            parts.append(list(table.columns))
        if not chunks.fits or not parts:
            return None
    columns = [pa.concat_arrays([p[i] for p in parts]) for i in range(len(headers))]
    return Sheet(headers, columns, 1, name)


def _first_sheet_with_data(reader: fastexcel.ExcelReader) -> Sheet:
    for i, name in enumerate(reader.sheet_names):
        header_row = 0
        table = reader.load_sheet(i, use_columns=_want, dtypes="string").to_arrow()
        headers = [str(c) for c in table.column_names]
        if not headers or all(h.startswith("__UNNAMED__") for h in headers):
            continue
        roles = map_headers(headers)
        if roles["course"] is None or roles["grade"] is None:
            found = _header_row(reader, i)
            if found:
                header_row = found
                table = reader.load_sheet(i, header_row=found, use_columns=_want,
                                          dtypes="string").to_arrow()
                headers = [str(c) for c in table.column_names]
        sheet = Sheet(headers, list(table.columns), header_row + 1, name)
        if i > 0:
            sheet.warnings.append(f"第一个工作表为空，已改为读取工作表“{name}”")
        if header_row:
            sheet.warnings.append(f"表头在第 {header_row + 1} 行，已跳过上方的 {header_row} 行标题")
        return sheet
    raise PredictionError("EMPTY_WORKBOOK", "成绩文件是空的：没有任何数据")


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


def _distinct(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """(per row, an index into the distinct texts; the distinct texts, ``None`` last).

    A grade export repeats few texts (the same ids, courses, grades, majors
    over a million rows): cleaning each distinct text once in Python and
    indexing with numpy gives the per-cell results without a loop per row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    texts: list[str | None] = [*encoded.dictionary.to_pylist(), None]
    at = pc.fill_null(encoded.indices, len(texts) - 1).to_numpy(zero_copy_only=False)
    return at.astype(np.intp, copy=False), texts


def _text_codes(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(per row, an index into the distinct stripped texts; those texts, an object array).

    Texts that differ only in surrounding spaces share one index, as ``_text`` makes them equal."""
    at, texts = _distinct(column)
    codes, uniques = pd.factorize(np.array([_text(v) for v in texts], dtype=object))
    return codes[at], np.asarray(uniques, dtype=object)


def check_columns(headers: Sequence[str], roles: Mapping[str, int | None], *,
                  require_major: bool, legacy_columns: bool) -> None:
    """Refuse (``MISSING_COLUMNS``) a sheet without an id, course or grade column, or
    without a major column when no major was chosen: the deployed code's fallbacks
    (first column as the id, every student in every major) gave silent garbage.
    ``legacy_columns`` keeps those fallbacks for whoever needs them."""
    needed = ["course", "grade"]
    if not legacy_columns:
        needed.insert(0, "student_id")
        if require_major:
            needed.append("major")
    missing = [ROLE_NAMES[r] for r in needed if roles[r] is None]
    if missing:
        shown = "、".join(f"“{h}”" for h in headers if not h.startswith("__UNNAMED__")) or "（无）"
        raise PredictionError("MISSING_COLUMNS",
                              f"成绩文件缺少必需的列：{'、'.join(missing)}。找到的列：{shown}")


def read_grades(path: str | Path, *, max_cells: int | None = DEFAULT_MAX_CELLS,
                require_major: bool = False, legacy_columns: bool = False) -> Cohort:
    """Parse the workbook per docs/algorithm.md §4, counting every skipped row.

    ``max_cells`` bounds the rows x columns a sheet may reach (``WORKBOOK_TOO_LARGE``);
    ``require_major``: every major is predicted, so each student's major must be known;
    ``legacy_columns``: the deployed fallbacks for a missing id or major column."""
    sheet = _load_columns(Path(path), max_cells)
    headers, columns, warnings = sheet.headers, sheet.columns, list(sheet.warnings)
    roles = map_headers(headers)
    check_columns(headers, roles, require_major=require_major, legacy_columns=legacy_columns)
    i_course, i_grade = roles["course"], roles["grade"]
    assert i_course is not None and i_grade is not None
    i_id = roles["student_id"] if roles["student_id"] is not None else 0
    i_major, i_attr = roles["major"], roles["attribute"]
    n_rows = len(columns[0])
    if not n_rows:
        raise PredictionError("NO_STUDENT_ROWS", "成绩文件只有表头，没有学生数据")

    ids, id_texts = _text_codes(columns[i_id])
    courses, course_texts = _text_codes(columns[i_course])
    grade_at, raw_grades = _distinct(columns[i_grade])
    # Each distinct cell text is cleaned once; rows carry an index into the results.
    no_grade = np.array([v is None or not v.strip() for v in raw_grades])[grade_at]
    values = np.array([_grade(v) if v is not None and v.strip() else np.nan
                       for v in raw_grades], dtype=float)[grade_at]  # NaN: empty or invalid
    free = np.zeros(n_rows, dtype=bool)
    if i_attr is not None:
        attrs, attr_texts = _text_codes(columns[i_attr])
        free = np.array(["任选课" in t for t in attr_texts], dtype=bool)[attrs]

    # The deployed order of reasons: a row counts for the first one that applies.
    rest = np.ones(n_rows, dtype=bool)
    reasons: dict[str, np.ndarray] = {}
    for reason, applies in (("empty_id", (id_texts == "")[ids]),
                            ("empty_course", (course_texts == "")[courses]),
                            ("empty_grade", no_grade), ("free_elective", free),
                            ("invalid_grade", np.isnan(values))):
        reasons[reason] = rest & applies
        rest &= ~applies
    # Counted in the order each reason first occurs (the warnings list them so).
    firsts = sorted((int(m.argmax()), r) for r, m in reasons.items() if m.any())
    skipped: Counter = Counter({r: int(reasons[r].sum()) for _, r in firsts})

    keep_idx = np.flatnonzero(rest)
    if not len(keep_idx):
        raise PredictionError("NO_STUDENT_ROWS", "成绩文件中没有任何有效的学生成绩行")
    kept_sid, kept_course = ids[keep_idx], courses[keep_idx]
    # Students in order of their first kept row, which also decides the major.
    codes, first = np.unique(kept_sid, return_index=True)
    order = np.argsort(first, kind="stable")
    students = id_texts[codes[order]].tolist()
    if i_major is not None:
        majors, major_texts = _text_codes(columns[i_major])
        first_major = major_texts[majors[keep_idx[first[order]]]]
        major_of: dict[str, str | None] = {s: (m or None) for s, m in
                                           zip(students, first_major.tolist(), strict=True)}
    else:
        major_of = dict.fromkeys(students)
    # Retakes: the last row for a (student, course) wins; rows keep their order.
    pair = kept_sid.astype(np.int64) * len(course_texts) + kept_course
    _, from_end = np.unique(pair[::-1], return_index=True)
    last = np.sort(len(pair) - 1 - from_end)
    scores = pd.DataFrame({
        "sid": id_texts[kept_sid[last]],
        "course": course_texts[kept_course[last]],
        "grade": values[keep_idx[last]],
    })

    for reason, n in skipped.items():
        warnings.append(f"跳过 {n} 行：{SKIP_REASONS[reason]}")
    return Cohort(
        header=HeaderReport(row=sheet.header_row, sheet=sheet.sheet_name, found=headers,
                            mapped={r: (headers[i] if i is not None else None)
                                    for r, i in roles.items()}),
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
