"""Which Excel format a file is, from its first bytes, whatever its name says.

The one place that knows the two signatures: the grade reader, the upload
check and the importer all ask here, so a renamed ``.xls`` that is really an
``.xlsx`` (common in registrar exports) is read by what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
