"""Which Excel format a file is, from its first bytes, whatever its name says.

The one place that knows the two signatures: the grade reader, the upload
check and the importer all ask here, so a renamed ``.xls`` that is really an
``.xlsx`` (common in registrar exports) is read by what it is.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

XLSX_MAGIC = b"PK\x03\x04"                          # a zip container (Office Open XML)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"    # a compound file (BIFF8 .xls)
HEAD_BYTES = len(OLE2_MAGIC)

ExcelFormat = Literal["xlsx", "xls"]


def sniff(head: bytes) -> ExcelFormat | None:
    """'xlsx', 'xls' or None for the first ``HEAD_BYTES`` (or more) of a file."""
    if head.startswith(XLSX_MAGIC):
        return "xlsx"
    if head.startswith(OLE2_MAGIC):
        return "xls"
    return None


def sniff_file(path: str | Path) -> ExcelFormat | None:
    """``sniff`` on a file's first bytes; OSError (missing file, directory) propagates."""
    with Path(path).open("rb") as fh:
        return sniff(fh.read(HEAD_BYTES))


# --- the extent of a sheet, before any reader allocates it ----------------------
#
# The Rust reader (calamine, under fastexcel) builds each sheet as a dense
# rows x columns grid of cells. A 2 KB file with one cell at ZZ60000 makes it
# allocate 1.4 GB; a cell at XFD1048576, or a .xls whose DIMENSIONS record says
# four billion rows, makes it ask for hundreds of GB and abort the process.
# So the extent a reader would allocate is computed here from the file's own
# cell references first, cheaply, and refused beyond a limit.

# Generous for 50,000 students: about 2.3 million grade rows x 13 columns.
DEFAULT_MAX_CELLS = 40_000_000

_XLSX_CHUNK = 1 << 22
_DIMENSION = re.compile(rb'<dimension ref="(?:[A-Z]+\d+:)?([A-Z]+)(\d+)"')
# References the fast path must look at: columns of two or more letters, rows of
# seven or more digits (normal exports have neither: 13 columns, < 1,000,000 rows).
_SUSPECT_REF = re.compile(rb' r="(?=[A-Z]{2,}\d|[A-Z]*\d{7})([A-Z]*)(\d+)"')
_ANY_REF = re.compile(rb' r="([A-Z]*)(\d+)"')
# _BEYOND[n]: a one-letter column reference past column n (n = 0..25).
_BEYOND = [re.compile(rb'<c r="[' + bytes([65 + n]) + rb'-Z]\d') for n in range(26)]
_FAST_MAX_ROW = 999_999


@dataclass(frozen=True)
class Extent:
    """The largest row and column (1-based) any sheet of a workbook reaches."""

    rows: int
    columns: int

    @property
    def cells(self) -> int:
        return self.rows * self.columns


class WorkbookTooLarge(ValueError):
    """The sheet's extent is beyond the limit (``extent`` says how far it reaches)."""

    def __init__(self, extent: Extent, limit: int) -> None:
        super().__init__(f"sheet extent {extent.rows} x {extent.columns} > {limit} cells")
        self.extent = extent
        self.limit = limit


def too_large_message(exc: WorkbookTooLarge) -> str:
    """The refusal in Chinese, with how far the sheet reaches (often one stray far cell)."""
    e = exc.extent
    return (f"工作簿的范围过大：工作表延伸到第 {e.rows:,} 行、第 {e.columns:,} 列"
            f"（约 {e.cells:,} 个单元格，上限 {exc.limit:,}）。"
            "通常是远处残留的零散单元格，请删除多余的行列后重新导出")


def is_reader_panic(exc: BaseException) -> bool:
    """A Rust panic inside the reader (pyo3's ``PanicException``).

    It derives from ``BaseException``, not ``Exception``, so it passes every
    ordinary handler; the readers' callers catch it by this test and refuse the
    file as corrupt instead of losing the thread or the process."""
    return type(exc).__name__ == "PanicException"


def column_number(letters: bytes) -> int:
    """b"A" -> 1, b"Z" -> 26, b"AA" -> 27 (no upper bound: the caller compares)."""
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def column_letters(number: int) -> str:
    """1 -> "A", 26 -> "Z", 27 -> "AA" (the inverse of ``column_number``)."""
    letters = ""
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def check_extent(path: str | Path, max_cells: int = DEFAULT_MAX_CELLS) -> Extent:
    """The extent of the workbook at ``path``; ``WorkbookTooLarge`` beyond ``max_cells``.

    Reads the file once as a stream (nothing the size of the sheet is held).
    Anything that is not a readable workbook is left for the reader to refuse.
    """
    fmt = sniff_file(path)
    if fmt == "xlsx":
        extent = _xlsx_extent(Path(path), max_cells)
    elif fmt == "xls":
        extent = _xls_extent(Path(path))
    else:
        return Extent(0, 0)
    if extent.cells > max_cells:
        raise WorkbookTooLarge(extent, max_cells)
    return extent


def _xlsx_extent(path: Path, max_cells: int) -> Extent:
    """The largest sheet by cells (the reader allocates one sheet at a time)."""
    largest = Extent(0, 0)
    try:
        with zipfile.ZipFile(path) as zf:
            sheets = [n for n in zf.namelist()
                      if n.startswith("xl/worksheets/") and n.endswith(".xml")]
            for name in sheets:
                with zf.open(name) as fh:
                    r, c = _sheet_bound(fh, exact=False)
                if r * c > max_cells:  # the bound is not enough to accept: look closely
                    with zf.open(name) as fh:
                        r, c = _sheet_bound(fh, exact=True)
                if r * c > largest.cells:
                    largest = Extent(r, c)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error):
        return Extent(0, 0)  # not readable as a zip: the reader refuses it as corrupt
    return largest


def _sheet_bound(fh: IO[bytes], *, exact: bool) -> tuple[int, int]:
    """An upper bound of (rows, columns) of one sheet's XML; exact with ``exact``.

    The fast bound is exact in columns and assumes 999,999 rows unless a
    reference says more. It finds the largest single-letter column by asking
    only "is there any column beyond the largest seen so far?" -- a search
    that fails at once in a normal export -- and looks at the rest only where
    a reference has two or more letters or seven or more digits. About 0.2 s
    on top of the decompression for 5,000 students.
    """
    rows = columns = 0
    if not exact:
        rows = _FAST_MAX_ROW
    tail = b""
    first = True
    while True:
        chunk = fh.read(_XLSX_CHUNK)
        if not chunk:
            break
        data = tail + chunk
        cut = data.rfind(b"<")
        data, tail = (data[:cut], data[cut:]) if cut > 0 else (data, b"")
        if first:
            first = False
            m = _DIMENSION.search(data)
            if m:
                rows = max(rows, int(m.group(2)))
                columns = max(columns, column_number(m.group(1)))
        if exact:
            refs = _ANY_REF.findall(data)
        else:
            refs = _SUSPECT_REF.findall(data)
            while columns < 26 and (m := _BEYOND[columns].search(data)):
                columns = max(columns, data[m.end() - 2] - 64)
        for letters, digits in refs:
            rows = max(rows, int(digits))
            if letters:
                columns = max(columns, column_number(letters))
    return rows, columns


# BIFF8 records that carry a cell position: (row u16, first column u16, ...).
_BIFF_CELLS = frozenset({0x0006, 0x00FD, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E, 0x00BD,
                         0x00BE, 0x0406, 0x00D6})
_BIFF_MULTI = frozenset({0x00BD, 0x00BE})   # MULRK, MULBLANK: last column in the final u16
_BIFF_DIMENSIONS = 0x0200                   # rwMic u32, rwMac u32, colMic u16, colMac u16
_BIFF_ROW = 0x0208                          # row u16, colMic u16, colMac u16


def _xls_extent(path: Path) -> Extent:
    """The largest position any DIMENSIONS, ROW or cell record of the workbook names.

    A .xls holds at most 65,536 rows, so this walk over its records is short."""
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            stream = next((s for s in (["Workbook"], ["Book"]) if ole.exists("/".join(s))), None)
            if stream is None:
                return Extent(0, 0)
            data = ole.openstream(stream).read()
    except (OSError, ValueError, IndexError, struct.error):
        return Extent(0, 0)  # the reader refuses a broken container as corrupt
    rows = columns = 0
    view = memoryview(data)
    pos, end = 0, len(data)
    unpack = struct.unpack_from
    while pos + 4 <= end:
        kind, size = unpack("<HH", view, pos)
        body = pos + 4
        pos = body + size
        if pos > end:
            break
        if kind in _BIFF_CELLS and size >= 4:
            row, col = unpack("<HH", view, body)
            if kind in _BIFF_MULTI and size >= 6:
                col = unpack("<H", view, body + size - 2)[0]
            rows, columns = max(rows, row + 1), max(columns, col + 1)
        elif kind == _BIFF_DIMENSIONS and size >= 12:
            _, rw_mac, _, col_mac = unpack("<IIHH", view, body)
            rows, columns = max(rows, rw_mac), max(columns, col_mac)
        elif kind == _BIFF_ROW and size >= 6:
            row, _, col_mac = unpack("<HHH", view, body)
            rows, columns = max(rows, row + 1), max(columns, col_mac)
    return Extent(rows, columns)
