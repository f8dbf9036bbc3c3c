"""A minimal, fast writer for one-sheet .xlsx files of plain values.

Demo grade workbooks reach 200k rows x 13 columns; xlsxwriter needs well
over ten seconds for that because it goes through Python calls per cell.
This writer builds the sheet XML a column at a time with numpy string
operations and streams it into the zip, which takes a few seconds. It knows
only what an export needs: strings (shared), numbers and blanks, no styles.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_target

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

_CONTENT_TYPES = (
    _XML_HEAD
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    _XML_HEAD + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    _XML_HEAD + f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    f'<Relationship Id="rId3" Type="{_REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
_STYLES = (
    _XML_HEAD + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

_CHUNK_ROWS = 20_000
_NUMBER = int | float | np.integer | np.floating


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number_text(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class _SharedStrings:
    """The workbook's string table; cells refer to strings by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.count = 0

    def codes(self, values: np.ndarray) -> np.ndarray:
        local, uniques = pd.factorize(values)
        ids = np.fromiter((self.index.setdefault(u, len(self.index)) for u in uniques),
                          dtype=np.int64, count=len(uniques))
        self.count += len(values)
        return ids[local]

    def xml(self) -> str:
        parts = [_XML_HEAD, f'<sst xmlns="{_MAIN_NS}" count="{self.count}" uniqueCount="{len(self.index)}">']
        for s in self.index:
            space = ' xml:space="preserve"' if s != s.strip() else ""
            parts.append(f"<si><t{space}>{_escape(s)}</t></si>")
        parts.append("</sst>")
        return "".join(parts)


def _cells(letter: str, rows: np.ndarray, column: np.ndarray, sst: _SharedStrings) -> np.ndarray:
    """The XML of one column's cells (empty string for blanks)."""
    n = len(column)
    out = np.full(n, "", dtype=object)
    ref = f'<c r="{letter}'
    if column.dtype.kind in "fiu":
        values = column.astype(float)
        ok = np.isfinite(values)
        text = np.array([_number_text(v) for v in values[ok].tolist()], dtype=object)
        out[ok] = ref + rows[ok] + '"><v>' + text + "</v></c>"
        return out
    is_str = np.fromiter((isinstance(v, str) for v in column), dtype=bool, count=n)
    if is_str.any():
        codes = sst.codes(column[is_str]).astype(str).astype(object)
        out[is_str] = ref + rows[is_str] + '" t="s"><v>' + codes + "</v></c>"
    is_num = np.fromiter(
        (isinstance(v, _NUMBER) and not isinstance(v, bool) and math.isfinite(v)
         for v in column), dtype=bool, count=n,
    ) & ~is_str
    if is_num.any():
        text = np.array([_number_text(v) for v in column[is_num]], dtype=object)
        out[is_num] = ref + rows[is_num] + '"><v>' + text + "</v></c>"
    return out


def write_xlsx(path: str | Path, header: Sequence[str], columns: Sequence[np.ndarray],
               sheet_name: str = "Sheet1") -> Path:
    """Write a header row and equal-length columns to the first (only) sheet.

    Numeric arrays become numbers (NaN blank); object arrays may mix str,
    numbers and None/NaN (blank).
    """
    if len(header) != len(columns):
        raise ValueError("表头与列数不一致")
    n = len(columns[0]) if columns else 0
    if any(len(c) != n for c in columns):
        raise ValueError("各列长度不一致")
    letters = [_column_letter(i) for i in range(len(columns))]
    sst = _SharedStrings()
    head_codes = sst.codes(np.array(list(header), dtype=object))
    head_xml = '<row r="1">' + "".join(
        f'<c r="{letter}1" t="s"><v>{code}</v></c>' for letter, code in zip(letters, head_codes, strict=True)
    ) + "</row>"
    last = f"{letters[-1]}{n + 1}" if letters else "A1"
    with atomic_target(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
            zf.writestr("_rels/.rels", _ROOT_RELS)
            zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
            zf.writestr(
                "xl/workbook.xml",
                _XML_HEAD + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
                f'<sheet name="{_escape(sheet_name)}" sheetId="1" r:id="rId1"/></sheets></workbook>',
            )
            zf.writestr("xl/styles.xml", _STYLES)
            with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
                sheet.write((
                    _XML_HEAD + f'<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
                    f'<dimension ref="A1:{last}"/><sheetData>' + head_xml
                ).encode())
                for start in range(0, n, _CHUNK_ROWS):
                    stop = min(start + _CHUNK_ROWS, n)
                    rows = np.arange(start + 2, stop + 2).astype(str).astype(object)
                    xml = '<row r="' + rows + '">'
                    for letter, col in zip(letters, columns, strict=True):
                        xml = xml + _cells(letter, rows, np.asarray(col[start:stop]), sst)
                    sheet.write("".join((xml + "</row>").tolist()).encode())
                sheet.write(b"</sheetData></worksheet>")
            # The string table is complete only once every chunk is written.
            zf.writestr("xl/sharedStrings.xml", sst.xml())
    return Path(path)
