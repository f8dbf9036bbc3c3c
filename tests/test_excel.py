"""``engine.excel``: the format sniffing and the sheet-extent check that runs
before the Rust reader allocates anything (issue: sparse-cell workbooks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import (
    PANIC_SEEDS,
    mutated_xls,
    plain_xls,
    plain_xlsx,
    xls_with_dimensions,
    xlsx_with_cell,
)

from destination_predictor.engine.errors import PredictionError
from destination_predictor.engine.excel import (
    DEFAULT_MAX_CELLS,
    Extent,
    WorkbookTooLarge,
    check_extent,
    column_number,
    sniff,
)
from destination_predictor.engine.grades import read_grades


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_sniff_knows_both_formats_by_content() -> None:
    assert sniff(plain_xlsx()[:8]) == "xlsx"
    assert sniff(plain_xls()[:8]) == "xls"
    assert sniff(b"%PDF-1.7") is None


def test_column_letters() -> None:
    assert [column_number(c) for c in (b"A", b"Z", b"AA", b"ZZ", b"XFD")] == [1, 26, 27, 702,
                                                                             16384]


@pytest.mark.parametrize(("ref", "dimension", "rows", "columns"), [
    ("ZZ60000", None, 60000, 702),                     # 1.4 GB in the reader without the check
    ("XFD1048576", None, 1048576, 16384),              # 549 GB asked, SIGABRT
    ("A" * 12 + "3", None, 3, column_number(b"A" * 12)),
    ("A99999999999999", None, 99999999999999, 4),
    ("D3", "A1:XFD1048576", 1048576, 16384),           # a dimension that lies
])
def test_sparse_xlsx_is_refused_before_reading(tmp_path: Path, ref: str, dimension: str | None,
                                               rows: int, columns: int) -> None:
    path = write(tmp_path, "g.xlsx", xlsx_with_cell(ref, dimension))
    with pytest.raises(WorkbookTooLarge) as caught:
        check_extent(path)
    assert caught.value.extent == Extent(rows, columns)
    with pytest.raises(PredictionError) as refused:
        read_grades(path)
    assert refused.value.code == "WORKBOOK_TOO_LARGE"
    assert "行" in refused.value.message and f"{rows:,}" in refused.value.message


def test_xls_with_a_lying_dimensions_record_is_refused(tmp_path: Path) -> None:
    """Four bytes changed: calamine reserves 4 billion rows and aborts the process."""
    path = write(tmp_path, "g.xls", xls_with_dimensions(0xFFFFFFF0, 0xFFFF))
    with pytest.raises(PredictionError) as refused:
        read_grades(path)
    assert refused.value.code == "WORKBOOK_TOO_LARGE"


def test_far_xls_cell_counts_in_the_extent(tmp_path: Path) -> None:
    path = write(tmp_path, "g.xls", plain_xls(far_cell=(65535, 255)))
    assert check_extent(path) == Extent(65536, 256)
    with pytest.raises(WorkbookTooLarge):
        check_extent(path, max_cells=65536 * 256 - 1)


def test_normal_exports_pass_with_their_real_width(tmp_path: Path) -> None:
    xlsx = write(tmp_path, "g.xlsx", plain_xlsx())
    assert check_extent(xlsx).columns == 4
    assert check_extent(write(tmp_path, "g.xls", plain_xls(5))) == Extent(5, 4)
    assert len(read_grades(xlsx).students) == 1


def test_the_limit_is_exact_near_the_edge(tmp_path: Path) -> None:
    """The fast bound assumes 999,999 rows; a limit it exceeds triggers the exact count."""
    path = write(tmp_path, "g.xlsx", xlsx_with_cell("D40"))
    assert check_extent(path, max_cells=DEFAULT_MAX_CELLS).columns == 4
    assert check_extent(path, max_cells=160) == Extent(40, 4)
    with pytest.raises(WorkbookTooLarge):
        check_extent(path, max_cells=159)


def test_not_a_workbook_is_left_to_the_reader(tmp_path: Path) -> None:
    assert check_extent(write(tmp_path, "x.xlsx", b"PK\x03\x04 broken")) == Extent(0, 0)
    with pytest.raises(PredictionError) as refused:
        read_grades(write(tmp_path, "y.xlsx", b"PK\x03\x04 broken"))
    assert refused.value.code == "CORRUPT_WORKBOOK"


@pytest.mark.parametrize("seed", PANIC_SEEDS)
def test_a_reader_panic_is_a_corrupt_workbook(tmp_path: Path, seed: int) -> None:
    """pyo3's PanicException is a BaseException: it passed every handler and
    killed the pool thread (thread mode) or became INTERNAL_ERROR."""
    import fastexcel

    data = mutated_xls(seed)
    with pytest.raises(BaseException) as raw:  # noqa: PT011 - what the reader itself raises
        fastexcel.read_excel(data).load_sheet(0, dtypes="string").to_arrow()
    assert type(raw.value).__name__ == "PanicException", "the seed no longer panics the reader"
    with pytest.raises(PredictionError) as refused:
        read_grades(write(tmp_path, "g.xls", data))
    assert refused.value.code == "CORRUPT_WORKBOOK"


def test_each_sheet_is_measured_on_its_own(tmp_path: Path) -> None:
    """A wide short sheet and a narrow long one: the reader allocates each alone,
    so the extent is the larger of the two, not their rows x columns combined."""
    import xlsxwriter

    path = tmp_path / "two.xlsx"
    wb = xlsxwriter.Workbook(path)
    wide = wb.add_worksheet("wide")
    wide.write_row(0, 0, [f"c{i}" for i in range(80)])
    narrow = wb.add_worksheet("narrow")
    for r in range(300):
        narrow.write_row(r, 0, ["a", "b"])
    wb.close()
    assert check_extent(path, max_cells=1000) == Extent(300, 2)
