"""Education-plan workbooks for the plan-management tests: a bundled plan,
edited (a course removed, a bad cell), as bytes to upload."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl

from support.paths import PLANS_DIR

MAJOR = "智能科学与技术"


def bundled_plan(year: int, major: str = MAJOR) -> Path:
    return PLANS_DIR / f"education-plan{year}" / f"{year}级{major}培养方案.xlsx"


def plan_bytes(year: int, major: str = MAJOR, *, drop: str | None = None,
               edit: dict[tuple[str, int], object] | None = None, columns: int | None = None,
               append: list[list[object]] | None = None) -> bytes:
    """The bundled plan, minus every row of course ``drop``, with cells changed
    (``edit``: (course, column index) -> value, first row of that course), cut
    to ``columns`` columns, or with rows appended."""
    wb = openpyxl.load_workbook(bundled_plan(year, major))
    ws = wb.active
    for row in range(ws.max_row, 1, -1):
        if drop is not None and ws.cell(row, 3).value == drop:
            ws.delete_rows(row)
    for (course, col), value in (edit or {}).items():
        for row in range(2, ws.max_row + 1):
            if ws.cell(row, 3).value == course:
                ws.cell(row, col + 1).value = value
                break
    for values in append or []:
        ws.append(values)
    if columns is not None:
        ws.delete_cols(columns + 1, ws.max_column)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def required_courses(year: int, major: str = MAJOR) -> list[str]:
    ws = openpyxl.load_workbook(bundled_plan(year, major), read_only=True).active
    return [r[2] for r in ws.iter_rows(min_row=2, values_only=True) if r[8] == "必修"]
