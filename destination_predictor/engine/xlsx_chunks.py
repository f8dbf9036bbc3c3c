"""A big .xlsx sheet cut into small workbooks of whole rows, read one at a time.

Why: calamine (the Rust reader inside fastexcel) builds the whole sheet as a
dense grid with one owned value per cell before a single column is handed
back -- about 1.2 GB for a 20,000-student export (0.9 million rows x 13
columns), whatever columns are asked for. Reading the same rows as several
workbooks of about ``CHUNK_BYTES`` of sheet XML each keeps one chunk's grid in
memory at a time; the Arrow columns kept are a small part of it.

How: the sheet's XML is decompressed as a stream and cut after a ``</row>``;
each piece becomes a stored (uncompressed) workbook with the original's other
parts (shared strings, styles, workbook) and a minimal sheet: the original
``<worksheet>`` tag, no ``<dimension>`` (a reader may size its grid by it),
and -- from the second piece on -- one synthetic row at the number of the
previous piece's last row, with a cell in column A and one in the widest column
kept. That row is the piece's header row, so the piece's data rows start
right after the previous piece's last row and its columns start at A: the
cells read are the cells a reading of the whole sheet gives, in the same
rows, empty rows between two pieces included.

When a sheet does not fit these assumptions -- rows without ``r`` numbers, a
first cell that is not A1, namespace prefixes, a piece that would end on a
row without values -- ``sheet_chunks`` says so by returning None, and the
caller reads the whole sheet as before.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .excel import column_letters

# Sheets smaller than this (about 2,000 students of a typical export) are read whole.
MIN_SHEET_BYTES = 64 << 20
# XML per piece: about 20,000 rows; larger pieces were no faster here (16 MB: 5.0-5.4 s for
# 20,000 students, 32 MB: 6.9-7.8 s, the whole sheet: 5.1 s at 1.3 GB).
CHUNK_BYTES = 16 << 20
_READ_BYTES = 4 << 20
_HEAD_LIMIT = 1 << 20

_SHEET_REF = re.compile(rb'<sheet\b[^>]*?\br:id="([^"]+)"')
_REL = re.compile(rb"<Relationship\b[^>]*>")
_ATTR = re.compile(rb'\b(Id|Target)="([^"]*)"')
_WORKSHEET_TAG = re.compile(rb"<worksheet\b[^>]*>")
_ROW_NUMBER = re.compile(rb'<row\b[^>]*?\sr="(\d+)"')
_FIRST_CELL = re.compile(rb'<c\b[^>]*?\sr="([A-Z]+\d+)"')
_XML_DECL = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_TAIL = b"</sheetData></worksheet>"


def first_sheet_part(zf: zipfile.ZipFile) -> str | None:
    """The zip member of the workbook's first sheet (the one fastexcel calls 0)."""
    try:
        workbook = zf.read("xl/workbook.xml")
        rels = zf.read("xl/_rels/workbook.xml.rels")
    except KeyError:
        return None
    m = _SHEET_REF.search(workbook)
    if m is None:
        return None
    for rel in _REL.findall(rels):
        attrs = dict(_ATTR.findall(rel))
        if attrs.get(b"Id") == m.group(1):
            target = attrs.get(b"Target", b"").decode("utf-8", "replace")
            name = target.lstrip("/") if target.startswith("/") else "xl/" + target
            return name if name in zf.NameToInfo else None
    return None


class SheetChunks:
    """The pieces of one sheet; ``widest`` (0-based column) is set by the reader
    after the first piece, so the later pieces' synthetic rows reach it."""

    def __init__(self, zf: zipfile.ZipFile, part: str, chunk_bytes: int) -> None:
        self._zf = zf
        self._part = part
        self._chunk_bytes = chunk_bytes
        self._others = {n: zf.read(n) for n in zf.namelist()
                        if n != part and not n.startswith("xl/worksheets/")}
        self.widest = 0
        self.fits = True  # False once a piece could not be cut as the module doc says

    def _workbook(self, head: bytes, rows: memoryview | bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for name, data in self._others.items():
                z.writestr(name, data)
            with z.open(self._part, "w", force_zip64=True) as w:
                w.write(head)
                w.write(rows)
                w.write(_TAIL)
        return out.getvalue()

    def _synthetic(self, row: int) -> bytes:
        cells = [b'<c r="A%d" t="inlineStr"><is><t>_</t></is></c>' % row]
        if self.widest > 0:
            ref = column_letters(self.widest + 1).encode("ascii")
            cells.append(b'<c r="%s%d" t="inlineStr"><is><t>_</t></is></c>' % (ref, row))
        return b'<row r="%d">' % row + b"".join(cells) + b"</row>"

    def books(self) -> Iterator[bytes]:
        """Each piece as an .xlsx in memory; stops early with ``fits`` False."""
        with self._zf.open(self._part) as fh:
            yield from self._books(fh)

    def _books(self, fh: IO[bytes]) -> Iterator[bytes]:
        step = min(_READ_BYTES, self._chunk_bytes)
        buf = b""
        while b"<sheetData>" not in buf:
            more = fh.read(step)
            if not more or len(buf) > _HEAD_LIMIT:
                self.fits = False
                return
            buf += more
        start = buf.index(b"<sheetData>")
        tag = _WORKSHEET_TAG.search(buf, 0, start)
        if tag is None:
            self.fits = False
            return
        head = _XML_DECL + tag.group(0) + b"<sheetData>"
        buf = buf[start + len(b"<sheetData>"):]
        first = True
        last_row: int | None = None
        done = False
        while not done:
            pieces, size = [buf], len(buf)
            while size < self._chunk_bytes:
                more = fh.read(step)
                if not more:
                    done = True
                    break
                pieces.append(more)
                size += len(more)
            buf = b"".join(pieces)
            if first and not _starts_at_a1(buf):
                self.fits = False
                return
            if done:
                end = buf.rfind(b"</sheetData>")
                if end < 0:
                    self.fits = False
                    return
                cut, number = end, None
            else:
                found = _cut(buf)
                if found is None:
                    self.fits = False
                    return
                cut, number = found
            synthetic = b"" if last_row is None else self._synthetic(last_row)
            view = memoryview(buf)[:cut]
            yield self._workbook(head + synthetic, view)
            view.release()
            first = False
            buf = buf[cut:]
            last_row = number


def _starts_at_a1(buf: bytes) -> bool:
    row = _ROW_NUMBER.search(buf)
    cell = _FIRST_CELL.search(buf)
    return (row is not None and row.group(1) == b"1" and cell is not None
            and cell.group(1) == b"A1" and cell.start() > row.start())


def _cut(buf: bytes, tries: int = 1000) -> tuple[int, int] | None:
    """(offset after a ``</row>``, that row's number) for the last row that has an
    ``r`` number and a value; None if none is found near the end."""
    end = len(buf)
    for _ in range(tries):
        close = buf.rfind(b"</row>", 0, end)
        if close < 0:
            return None
        open_ = buf.rfind(b"<row", 0, close)
        if open_ < 0:
            return None
        m = _ROW_NUMBER.match(buf, open_)
        row = buf[open_:close]
        if m is not None and (b"</v>" in row or b"</t>" in row):
            return close + len(b"</row>"), int(m.group(1))
        end = open_
    return None


def sheet_chunks(path: Path, *, min_bytes: int | None = None,
                 chunk_bytes: int | None = None) -> tuple[zipfile.ZipFile, SheetChunks] | None:
    """The first sheet of ``path`` in pieces, when it is big enough to pay
    (defaults: ``MIN_SHEET_BYTES``, ``CHUNK_BYTES``, read at call time so tests
    can force many small pieces); the caller closes the zip. None: read the
    whole sheet."""
    min_bytes = MIN_SHEET_BYTES if min_bytes is None else min_bytes
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None
    part = first_sheet_part(zf)
    if part is None or zf.getinfo(part).file_size < min_bytes:
        zf.close()
        return None
    return zf, SheetChunks(zf, part, chunk_bytes)
