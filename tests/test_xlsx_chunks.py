"""Reading a big sheet in pieces (``engine.xlsx_chunks``) gives exactly the cells
a reading of the whole sheet gives: same headers, same Arrow columns, same
cohort -- on tiny pieces forced here (the real threshold is tens of MB), on
inline strings and shared strings, with empty rows and cells across piece
boundaries; and sheets the pieces cannot represent fall back to the whole read."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
import xlsxwriter
from support.engine import GRADE_HEADER, write_xlsx
from support.paths import REPO

from destination_predictor.demo.grades import make_grade_workbook
from destination_predictor.engine import grades as g
from destination_predictor.engine import xlsx_chunks


def _read(path: Path, *, pieces: bool, monkeypatch: pytest.MonkeyPatch,
          chunk_bytes: int = 4096) -> tuple[g.Sheet, int]:
    """The sheet and how many pieces it was read in (0: read whole)."""
    seen: list[int] = []
    real = xlsx_chunks.SheetChunks._workbook

    def counting(self, head, rows):  # type: ignore[no-untyped-def]
        seen.append(1)
        return real(self, head, rows)

    monkeypatch.setattr(xlsx_chunks.SheetChunks, "_workbook", counting)
    monkeypatch.setattr(xlsx_chunks, "MIN_SHEET_BYTES", 0 if pieces else 1 << 40)
    monkeypatch.setattr(xlsx_chunks, "CHUNK_BYTES", chunk_bytes)
    sheet = g._load_columns(path, None)
    return sheet, len(seen)


def _cohort(path: Path) -> tuple:
    try:
        c = g.read_grades(path, max_cells=None)
    except g.PredictionError as exc:
        return (exc.code,)
    return (c.students, c.majors, list(c.scores.itertuples(index=False, name=None)),
            list(c.skipped.items()), c.warnings)


def assert_same(path: Path, monkeypatch: pytest.MonkeyPatch, *, expect_pieces: bool) -> None:
    whole, n_whole = _read(path, pieces=False, monkeypatch=monkeypatch)
    expected = _cohort(path)
    chunked, n_pieces = _read(path, pieces=True, monkeypatch=monkeypatch)
    assert n_whole == 0
    assert (n_pieces > 2) is expect_pieces, n_pieces
    assert chunked.headers == whole.headers
    assert (chunked.header_row, chunked.sheet_name, chunked.warnings) == (
        whole.header_row, whole.sheet_name, whole.warnings)
    assert len(chunked.columns) == len(whole.columns)
    for a, b in zip(chunked.columns, whole.columns, strict=True):
        assert a.type == b.type and a.equals(b)
    assert _cohort(path) == expected


def test_a_messy_generated_export_reads_the_same_in_pieces(tmp_path, monkeypatch) -> None:
    path = make_grade_workbook(tmp_path / "g.xlsx", 2024, 120, plans_dir=REPO / "plans", seed=4)
    assert_same(path, monkeypatch, expect_pieces=True)


def test_shared_strings_gaps_and_empty_cells_read_the_same(tmp_path, monkeypatch) -> None:
    rnd = random.Random(7)
    rows: list[list[object]] = [GRADE_HEADER]
    for i in range(1500):
        if rnd.random() < 0.05:
            rows.append([None] * len(GRADE_HEADER))  # an empty row (openpyxl writes none)
            continue
        grade: object = rnd.choice([rnd.randint(0, 100), "优", "及格", "", None, "abc", 59.5])
        row = [f"s{rnd.randint(1, 80)}", "2023-1", rnd.choice(["m1", "m2", None]), i,
               f"课程{rnd.randint(1, 40)}", grade, "x", rnd.choice(["必修", "任选课", None]),
               32, 2, "学院", "考试", None]
        if rnd.random() < 0.1:
            row[rnd.randrange(len(row))] = None
        rows.append(row)
    path = tmp_path / "s.xlsx"
    with xlsxwriter.Workbook(str(path)) as wb:  # shared strings (openpyxl writes them inline)
        for name, sheet in (("成绩", rows), ("其他", [["x"]])):
            ws = wb.add_worksheet(name)
            for r, row in enumerate(sheet):
                for c, value in enumerate(row):
                    if value is not None:
                        ws.write(r, c, value)
    with zipfile.ZipFile(path) as zf:
        assert "xl/sharedStrings.xml" in zf.namelist()
    assert_same(path, monkeypatch, expect_pieces=True)


def test_the_reference_sample_reads_the_same_in_pieces(monkeypatch) -> None:
    from support.engine import PARITY_GRADES

    if not PARITY_GRADES.exists():
        pytest.skip("the reference sample is not here")
    assert_same(PARITY_GRADES, monkeypatch, expect_pieces=True)


def test_a_header_below_title_rows_is_read_whole(tmp_path, monkeypatch) -> None:
    rows = [["2024 级成绩导出"], [], GRADE_HEADER]
    rows += [[f"s{i}", "2023-1", "m1", i, f"c{i % 9}", 80, "x", "必修", 32, 2, "u", "e", "m"]
             for i in range(400)]
    path = write_xlsx(tmp_path / "t.xlsx", {"Sheet1": rows})
    assert_same(path, monkeypatch, expect_pieces=False)


def test_a_sheet_not_starting_at_a1_is_read_whole(tmp_path, monkeypatch) -> None:
    rows = [[None, *GRADE_HEADER]]
    rows += [[None, f"s{i}", "2023-1", "m1", i, f"c{i % 9}", 80, "x", "必修", 32, 2, "u", "e", "m"]
             for i in range(400)]
    path = write_xlsx(tmp_path / "b.xlsx", {"Sheet1": rows})
    assert_same(path, monkeypatch, expect_pieces=False)


def test_an_empty_first_sheet_is_read_whole(tmp_path, monkeypatch) -> None:
    rows = [GRADE_HEADER] + [[f"s{i}", "2023-1", "m1", i, f"c{i % 9}", 80, "x", "必修", 32, 2,
                              "u", "e", "m"] for i in range(300)]
    path = write_xlsx(tmp_path / "e.xlsx", {"空": [], "成绩": rows})
    assert_same(path, monkeypatch, expect_pieces=False)
