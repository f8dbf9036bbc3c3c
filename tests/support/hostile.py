"""Hostile and broken workbooks, made in a few KB: a stray far cell, a lying
DIMENSIONS record, a byte-mutated .xls that makes the Rust reader panic.

Each is what a registrar export can become by accident (a stray cell) or what
an attacker can send on purpose; the tests check that none of them costs more
than its own task.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile

import xlsxwriter
import xlwt

HEADER = ["SNH", "Current_Major", "Course_Name", "Grade"]
ROW = ["s1", "物联网工程", "高等数学", 90]


def plain_xlsx() -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet()
    ws.write_row(0, 0, HEADER)
    ws.write_row(1, 0, ROW)
    wb.close()
    return buf.getvalue()


def xlsx_with_cell(ref: str, dimension: str | None = None) -> bytes:
    """A two-row grade sheet plus one cell at ``ref`` (e.g. ``ZZ60000``); optionally
    a ``<dimension>`` that claims ``dimension``."""
    src = zipfile.ZipFile(io.BytesIO(plain_xlsx()))
    out = io.BytesIO()
    row = "".join(ch for ch in ref if ch.isdigit())
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                text = text.replace("</sheetData>",
                                    f'<row r="{row}"><c r="{ref}"><v>1</v></c></row></sheetData>')
                if dimension:
                    text = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="{dimension}"/>',
                                  text)
                data = text.encode()
            z.writestr(info, data)
    return out.getvalue()


def plain_xls(rows: int = 2, far_cell: tuple[int, int] | None = None) -> bytes:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("s")
    for j, h in enumerate(HEADER):
        ws.write(0, j, h)
    for i in range(1, rows):
        for j, v in enumerate([f"s{i}", *ROW[1:]]):
            ws.write(i, j, v)
    if far_cell:
        ws.write(far_cell[0], far_cell[1], 1)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def xls_with_dimensions(rows: int, columns: int) -> bytes:
    """A .xls whose DIMENSIONS record (4 bytes changed) claims ``rows`` x ``columns``."""
    data = plain_xls()
    i = data.find(struct.pack("<HH", 0x0200, 14))
    assert i > 0, "no DIMENSIONS record"
    return data[:i + 4] + struct.pack("<IIHHH", 0, rows, 0, columns, 0) + data[i + 18:]


def mutated_xls(seed: int, rows: int = 30, flips: int = 4) -> bytes:
    """``plain_xls`` with ``flips`` random bytes past the header overwritten."""
    rng = random.Random(seed)
    data = bytearray(plain_xls(rows))
    for _ in range(flips):
        data[rng.randrange(512, len(data))] = rng.randrange(256)
    return bytes(data)


# Seeds of ``mutated_xls`` that make calamine 0.36 panic (found by trying seeds 0-600;
# the test checks each still does with the installed reader).
PANIC_SEEDS = (472, 576)
