"""The workbooks an import reads: per-major result workbooks and the
registrar's grade workbook.

Every workbook is read and checked before the database is touched: a missing
file, a file that is not a workbook, a sheet without ``SNH``, an unknown major
code or an empty sheet refuses the import with nothing written.

Result workbooks are recognised by name, ``Cohort{YEAR}_Predictions_{code}.xlsx``
(the ``_All`` summary is skipped), and their ``Predictions`` sheet is read with
the header exactly as written. The grade workbook contributes the registrar
columns of docs/algorithm.md, section 'The grade export'.

Major codes: the engine names a file with ``engine.majors.code_for`` -- a
built-in code, a code from ``majors.json``, or, for a major without one, its
sanitised name. A code the caller does not know is still accepted when the
file's ``major`` column records one major whose engine code it is (a new major
with a plan but no code), so neither the service nor ``import_results.py``
needs the plans to import what the engine wrote.

The reader (python-calamine) allocates a sheet's whole extent and can panic or
abort on a crafted file, so before it sees a workbook the extent is checked
like the engine does (``engine.excel.check_extent``: ``WORKBOOK_TOO_LARGE``),
and a reader panic is refused as a damaged workbook. The service also runs the
whole import in a child process under a memory limit (``import_routes``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import python_calamine

from ..engine.excel import (
    DEFAULT_MAX_CELLS,
    WorkbookTooLarge,
    check_extent,
    is_reader_panic,
    sniff_file,
    too_large_message,
)
from ..engine.majors import MAJOR_CODES, code_for
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
    """A per-major result workbook, recognised by its name; ``known`` when the
    caller knows its code (otherwise the sheet must back it: ``check_code``)."""

    path: Path
    year: int
    code: str
    known: bool = True

    @property
    def table(self) -> str:
        return f"Cohort{self.year}_Predictions_{self.code}"


def _damaged(what: str, path: Path, part: str) -> ImportRefused:
    return ImportRefused("NOT_A_WORKBOOK", f"{what} {path.name} 已损坏，无法{part}")


def _open_workbook(path: Path, what: str, *, allow_xls: bool,
                   max_cells: int) -> python_calamine.CalamineWorkbook:
    try:
        fmt = sniff_file(path)
        if fmt == "xlsx" or (allow_xls and fmt == "xls"):
            check_extent(path, max_cells)   # before the reader allocates the extent
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImportRefused("RESULT_FILE_MISSING" if what == "结果文件" else "FILE_NOT_FOUND",
                            f"{what}不存在：{path.name}") from None
    except OSError as exc:
        raise ImportRefused("FILE_UNREADABLE", f"无法读取{what} {path.name}：{exc.strerror}") from None
    except WorkbookTooLarge as exc:
        raise ImportRefused("WORKBOOK_TOO_LARGE",
                            f"{what} {path.name}：{too_large_message(exc)}") from None
    if not (fmt == "xlsx" or (allow_xls and fmt == "xls")):
        kinds = ".xlsx 或 .xls" if allow_xls else ".xlsx"
        raise ImportRefused("NOT_A_WORKBOOK", f"{what} {path.name} 不是 Excel 工作簿（{kinds}）")
    try:
        return python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise _damaged(what, path, "作为 Excel 工作簿打开") from exc
    except BaseException as exc:  # a Rust panic is a BaseException (engine.excel.is_reader_panic)
        if not is_reader_panic(exc):
            raise
        raise _damaged(what, path, "作为 Excel 工作簿打开") from None


def _sheet_rows(wb: python_calamine.CalamineWorkbook, index: int, path: Path,
                what: str) -> list[list[Any]]:
    try:
        return wb.get_sheet_by_index(index).to_python(skip_empty_area=False)
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise _damaged(what, path, "读取工作表") from exc
    except BaseException as exc:
        if not is_reader_panic(exc):
            raise
        raise _damaged(what, path, "读取工作表") from None


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


def read_predictions(path: str | Path, max_cells: int = DEFAULT_MAX_CELLS) -> Sheet:
    """The ``Predictions`` sheet of a per-major result workbook, header as written."""
    path = Path(path)
    wb = _open_workbook(path, "结果文件", allow_xls=False, max_cells=max_cells)
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


def read_registrar_grades(path: str | Path, max_cells: int = DEFAULT_MAX_CELLS) -> Sheet:
    """The registrar columns of a grade workbook (first non-empty sheet).

    Headers are matched on stripped, case-insensitive text (real exports spell
    ``Course_Attribute `` with a trailing space); other columns are ignored,
    an absent optional column is stored as NULL, rows without a student id
    are left out and counted.
    """
    path = Path(path)
    wb = _open_workbook(path, "成绩文件", allow_xls=True, max_cells=max_cells)
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


def classify_results(paths: Iterable[str | Path], known_codes: Iterable[str] | None = None,
                     *, unknown_ok: bool = False) -> tuple[list[ResultFile], list[str]]:
    """Per-major workbooks by name; the ``_All`` summary and files that are not
    results are returned as skipped names. An unknown major code refuses, or
    with ``unknown_ok`` is returned with ``known=False`` for ``check_code``."""
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
        if code not in codes and not unknown_ok:
            raise _unknown_code(path, code, codes)
        rf = ResultFile(path, year, code, known=code in codes)
        if rf.table in seen:
            raise ImportRefused("DUPLICATE_RESULT",
                                f"{seen[rf.table]} 和 {path.name} 都是 {rf.table} 的结果，无法确定导入哪一个")
        seen[rf.table] = path.name
        found.append(rf)
    return found, skipped


def _unknown_code(path: Path, code: str, codes: Iterable[str], note: str = "") -> ImportRefused:
    return ImportRefused("UNKNOWN_MAJOR_CODE",
                         f"结果文件 {path.name} 的专业代码“{code}”未知"
                         f"（已知：{'、'.join(sorted(codes))}）{note}")


def recorded_major(sheet: Sheet) -> str | None:
    """The one major the engine wrote in the sheet's ``major`` column, if it is one."""
    if "major" not in sheet.columns:
        return None
    i = sheet.columns.index("major")
    names = {str(row[i]).strip() for row in sheet.rows if not _blank(row[i])}
    return names.pop() if len(names) == 1 else None


def check_code(rf: ResultFile, sheet: Sheet, codes: Iterable[str],
               names: dict[str, str]) -> str | None:
    """The major of a result file; for a code the caller does not know, the file
    must be what the engine writes for the major its sheet records: that
    major's code (``code_for`` over the codes in ``names``: code -> name) must
    be the file's. ``UNKNOWN_MAJOR_CODE`` otherwise."""
    if rf.known:
        return names.get(rf.code)
    major = recorded_major(sheet)
    by_name = {**MAJOR_CODES, **{name: code for code, name in names.items()}}
    if major is None or code_for(major, by_name) != rf.code:
        note = (f"；工作表记录的专业“{major}”对应的代码是“{code_for(major, by_name)}”"
                if major else "")
        raise _unknown_code(rf.path, rf.code, codes, note)
    return major


def majors_of_summary(summary: Any) -> dict[str, str]:
    """code -> major name of the majors a task's summary records (``engine.results.summarize``)."""
    majors = summary.get("majors") if isinstance(summary, dict) else None
    out: dict[str, str] = {}
    for entry in majors if isinstance(majors, list) else []:
        if isinstance(entry, dict):
            code, name = entry.get("code"), entry.get("major")
            if isinstance(code, str) and isinstance(name, str) and code and name:
                out[code] = name
    return out
