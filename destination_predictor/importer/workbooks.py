"""The workbooks an import reads: per-major result workbooks and the
registrar's grade workbook.

Every workbook is read and checked before the database is touched: a missing
file, a file that is not a workbook, a sheet without ``SNH``, an unknown major
code or an empty sheet refuses the import with nothing written.

Result workbooks are recognised by name, ``Cohort{YEAR}_Predictions_{code}.xlsx``
(the ``_All`` summary is skipped), and their ``Predictions`` sheet is read with
the header exactly as written. The grade workbook contributes the registrar
columns of docs/algorithm.md, section 'The grade export'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import python_calamine

from ..engine.excel import sniff_file
from ..engine.majors import MAJOR_CODES
from .cells import _blank
from .errors import ImportRefused

PREDICTIONS_SHEET = "Predictions"

# The registrar export's columns (docs/algorithm.md, section 'The grade export'), in file order.
REGISTRAR_COLUMNS: tuple[str, ...] = (
    "SNH", "Semester_Offered", "Current_Major", "Course_ID", "Course_Name", "Grade",
    "Course_Type", "Course_Attribute", "Hours", "Credit", "Offering_Unit", "Exam_Type",
    "Assessment_Method",
)
# Header spellings older exports use for the same column (matched like the engine does).
_REGISTRAR_ALIASES: dict[str, tuple[str, ...]] = {
    "Current_Major": ("Major",),
    "Grade": ("成绩",),
}
_REGISTRAR_REQUIRED = ("SNH", "Course_Name")

_RESULT_NAME = re.compile(r"(?:^|_)Cohort(\d{4})_Predictions_(.+)\.xlsx$")
_SUMMARY_CODE = "All"


@dataclass
class Sheet:
    """One sheet as imported: header names and rows (with their workbook row numbers)."""

    source: str                       # file name, for messages
    columns: list[str]
    rows: list[list[Any]]
    row_numbers: list[int]            # 1-based rows in the workbook
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResultFile:
    """A per-major result workbook, recognised by its name."""

    path: Path
    year: int
    code: str

    @property
    def table(self) -> str:
        return f"Cohort{self.year}_Predictions_{self.code}"


def _open_workbook(path: Path, what: str, *, allow_xls: bool) -> python_calamine.CalamineWorkbook:
    try:
        fmt = sniff_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImportRefused("RESULT_FILE_MISSING" if what == "结果文件" else "FILE_NOT_FOUND",
                            f"{what}不存在：{path.name}") from None
    except OSError as exc:
        raise ImportRefused("FILE_UNREADABLE", f"无法读取{what} {path.name}：{exc.strerror}") from None
    if not (fmt == "xlsx" or (allow_xls and fmt == "xls")):
        kinds = ".xlsx 或 .xls" if allow_xls else ".xlsx"
        raise ImportRefused("NOT_A_WORKBOOK", f"{what} {path.name} 不是 Excel 工作簿（{kinds}）")
    try:
        return python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise ImportRefused("NOT_A_WORKBOOK",
                            f"{what} {path.name} 已损坏，无法作为 Excel 工作簿打开") from exc


def _sheet_rows(wb: python_calamine.CalamineWorkbook, index: int, path: Path,
                what: str) -> list[list[Any]]:
    try:
        return wb.get_sheet_by_index(index).to_python(skip_empty_area=False)
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise ImportRefused("NOT_A_WORKBOOK",
                            f"{what} {path.name} 已损坏，无法读取工作表") from exc


def _header_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "" if v is None else str(v)


def _data_rows(raw: list[list[Any]], width: int) -> tuple[list[list[Any]], list[int]]:
    rows: list[list[Any]] = []
    numbers: list[int] = []
    for i, row in enumerate(raw[1:], start=2):
        if all(_blank(v) for v in row):
            continue
        cells = list(row[:width]) + [None] * (width - len(row))
        rows.append(cells)
        numbers.append(i)
    return rows, numbers


def read_predictions(path: str | Path) -> Sheet:
    """The ``Predictions`` sheet of a per-major result workbook, header as written."""
    path = Path(path)
    wb = _open_workbook(path, "结果文件", allow_xls=False)
    if PREDICTIONS_SHEET not in wb.sheet_names:
        raise ImportRefused("NOT_PREDICTIONS",
                            f"结果文件 {path.name} 中没有 {PREDICTIONS_SHEET} 工作表，不是预测结果")
    raw = _sheet_rows(wb, wb.sheet_names.index(PREDICTIONS_SHEET), path, "结果文件")
    if not raw:
        raise ImportRefused("EMPTY_RESULT", f"结果文件 {path.name} 的 {PREDICTIONS_SHEET} 工作表是空的")
    header = [_header_text(v) for v in raw[0]]
    while header and header[-1] == "":
        header.pop()
    for i, name in enumerate(header, start=1):
        if name.strip() == "":
            raise ImportRefused("BAD_HEADER", f"结果文件 {path.name} 第 {i} 列没有列名")
    if "SNH" not in header:
        raise ImportRefused("NOT_PREDICTIONS", f"结果文件 {path.name} 没有 SNH 列，不是预测结果")
    _refuse_duplicates(header, path.name)
    rows, numbers = _data_rows(raw, len(header))
    if not rows:
        raise ImportRefused("EMPTY_RESULT",
                            f"结果文件 {path.name} 没有任何学生的数据，拒绝用空表替换数据库中的数据")
    return Sheet(path.name, header, rows, numbers)


def _refuse_duplicates(names: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ImportRefused("DUPLICATE_COLUMN", f"{source} 中列名“{name}”出现了不止一次")
        seen.add(name)


def read_registrar_grades(path: str | Path) -> Sheet:
    """The registrar columns of a grade workbook (first non-empty sheet).

    Headers are matched on stripped, case-insensitive text (real exports spell
    ``Course_Attribute `` with a trailing space); other columns are ignored,
    an absent optional column is stored as NULL, rows without a student id
    are left out and counted.
    """
    path = Path(path)
    wb = _open_workbook(path, "成绩文件", allow_xls=True)
    raw: list[list[Any]] = []
    for i in range(len(wb.sheet_names)):
        raw = _sheet_rows(wb, i, path, "成绩文件")
        while raw and all(_blank(v) for v in raw[-1]):
            raw.pop()
        if raw:
            break
    if not raw:
        raise ImportRefused("EMPTY_WORKBOOK", f"成绩文件 {path.name} 是空的")
    header = [_header_text(v).strip().casefold() for v in raw[0]]
    positions: dict[str, int | None] = {}
    for name in REGISTRAR_COLUMNS:
        wanted = [name.casefold(), *(a.casefold() for a in _REGISTRAR_ALIASES.get(name, ()))]
        positions[name] = next((header.index(w) for w in wanted if w in header), None)
    missing = [n for n in _REGISTRAR_REQUIRED if positions[n] is None]
    if missing:
        raise ImportRefused("NOT_GRADES",
                            f"成绩文件 {path.name} 缺少必需的列：{'、'.join(missing)}")
    notes = [f"成绩文件没有 {n} 列，该列导入为空" for n in REGISTRAR_COLUMNS
             if positions[n] is None]
    rows: list[list[Any]] = []
    numbers: list[int] = []
    no_id = 0
    for number, row in enumerate(raw[1:], start=2):
        if all(_blank(v) for v in row):
            continue
        cells = [row[p] if p is not None and p < len(row) else None
                 for p in positions.values()]
        if _blank(cells[0]):
            no_id += 1
            continue
        rows.append(cells)
        numbers.append(number)
    if no_id:
        notes.append(f"成绩文件中 {no_id} 行学号为空，未导入")
    if not rows:
        raise ImportRefused("EMPTY_WORKBOOK", f"成绩文件 {path.name} 没有任何成绩行")
    return Sheet(path.name, list(REGISTRAR_COLUMNS), rows, numbers, notes)


def classify_results(paths: Iterable[str | Path],
                     known_codes: Iterable[str] | None = None) -> tuple[list[ResultFile], list[str]]:
    """Per-major workbooks by name; the ``_All`` summary and files that are not
    results are returned as skipped names. An unknown major code refuses."""
    codes = set(known_codes if known_codes is not None else MAJOR_CODES.values())
    found: list[ResultFile] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        m = _RESULT_NAME.search(path.name)
        if m is None or m.group(2) == _SUMMARY_CODE:
            skipped.append(path.name)
            continue
        year, code = int(m.group(1)), m.group(2)
        if code not in codes:
            raise ImportRefused("UNKNOWN_MAJOR_CODE",
                                f"结果文件 {path.name} 的专业代码“{code}”未知"
                                f"（已知：{'、'.join(sorted(codes))}）")
        rf = ResultFile(path, year, code)
        if rf.table in seen:
            raise ImportRefused("DUPLICATE_RESULT",
                                f"{seen[rf.table]} 和 {path.name} 都是 {rf.table} 的结果，无法确定导入哪一个")
        seen[rf.table] = path.name
        found.append(rf)
    return found, skipped
