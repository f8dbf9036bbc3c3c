"""The result workbooks' writer (rustpy-xlsxwriter) against the one it replaced.

A cohort big enough to have every sheet and every kind of cell goes through
the engine (demo model and plans); the same frames are written again with the
old xlsxwriter code, and every cell of every sheet must be of the same kind
(text, number, empty) and the same value. The old writer kept 16 significant
digits (``%.16G``); the new one writes a float's shortest exact digits, so a
number must round to the old cell and read back as exactly the frame's float.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook
from support.paths import DEMO_MODELS_DIR, REPO

from destination_predictor.demo.grades import make_grade_workbook
from destination_predictor.engine import Engine, reports
from destination_predictor.engine.inverse import CEILING
from destination_predictor.engine.reports import MAX_CELL_TEXT, write_workbook

PLANS = REPO / "plans"


def legacy_write_workbook(path: Path, sheets: list[tuple[str, pd.DataFrame]]) -> None:
    """The writer as it was before issue 15 (xlsxwriter, constant memory)."""
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                         "strings_to_urls": False, "strings_to_numbers": False})
    for name, df in sheets:
        ws = wb.add_worksheet(name)
        ws.write_row(0, 0, [str(c) for c in df.columns])
        for i, row in enumerate(df.astype(object).where(df.notna(), None).to_numpy().tolist(),
                                start=1):
            ws.write_row(i, 0, row)
    wb.close()


def legacy_missing_frame(r) -> pd.DataFrame:
    """MissingCoursesScores as one frame, as it was built before it was streamed."""
    sid_col, course_col, t1_col, t2_col = [], [], [], []
    for sid, t, miss in zip(r.sids, r.thresholds, r.missing, strict=True):
        n = len(miss)
        sid_col += [sid] * n
        course_col += miss
        t1_col += [t.s1 if t.s1 < CEILING else math.nan] * n
        t2_col += [t.s2 if t.s2 < CEILING else math.nan] * n
    return pd.DataFrame({"SNH": sid_col, "Course_Name": course_col,
                         "target1_score": t1_col, "target2_score": t2_col})


def cells(path: Path) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in book}
    finally:
        book.close()


def kind(v: object) -> str:
    if v is None:
        return "empty"
    if isinstance(v, str):
        return "text"
    assert isinstance(v, (int, float)) and not isinstance(v, bool), repr(v)
    return "number"


def same_cell(new: object, old: object) -> bool:
    if kind(new) != kind(old):
        return False
    if kind(new) == "number":
        return float(f"{float(new):.16G}") == float(old)  # type: ignore[arg-type]
    return new == old


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The engine's own workbooks and the old writer's, from the same frames."""
    root = tmp_path_factory.mktemp("writer")
    grades = make_grade_workbook(root / "g.xlsx", 2024, 600, plans_dir=PLANS, seed=15)
    captured: list = []
    original = reports.write_reports

    def capture(results, *args, **kwargs):  # the frames the engine wrote
        captured.extend(results)
        return original(results, *args, **kwargs)

    engine = Engine(DEMO_MODELS_DIR, PLANS)
    mp = pytest.MonkeyPatch()
    mp.setattr("destination_predictor.engine.pipeline.write_reports", capture)
    mp.setattr(reports, "MISSING_BATCH", 7)  # many batches, some with no missing course
    try:
        run = engine.run(grades, 2024, out_dir=root / "new")
    finally:
        mp.undo()
    old = root / "old"
    old.mkdir()
    frames = []
    for path, r in zip(run.files, captured, strict=False):
        sheets = [(name, legacy_missing_frame(r) if name == "MissingCoursesScores" else sheet)
                  for name, sheet in reports.major_sheets(r)]
        frames.append((r.major, sheets[0][1]))
        legacy_write_workbook(old / path.name, sheets)
    legacy_write_workbook(old / run.files[-1].name, [("Sheet1", reports.summary_frame(frames))])
    return root / "new", old


def test_every_cell_of_every_sheet_matches_the_old_writer(cohort_run) -> None:
    new_dir, old_dir = cohort_run
    names = sorted(p.name for p in new_dir.glob("*.xlsx"))
    assert names == sorted(p.name for p in old_dir.glob("*.xlsx")) and len(names) >= 2
    seen_kinds: set[str] = set()
    sheets = set()
    compared = 0
    for name in names:
        new, old = cells(new_dir / name), cells(old_dir / name)
        assert list(new) == list(old), name
        for sheet in new:
            sheets.add(sheet)
            assert len(new[sheet]) == len(old[sheet]), (name, sheet)
            for i, (a, b) in enumerate(zip(new[sheet], old[sheet], strict=True)):
                width = max(len(a), len(b))
                a, b = a + (None,) * (width - len(a)), b + (None,) * (width - len(b))
                for j, (x, y) in enumerate(zip(a, b, strict=True)):
                    assert same_cell(x, y), (name, sheet, i, j, x, y)
                    seen_kinds.add(kind(x))
                    compared += 1
    assert sheets == {"Predictions", "UniformThresholds", "MissingCoursesScores",
                      "Reachability", "Sheet1"}
    assert seen_kinds == {"text", "number", "empty"}
    assert compared > 100_000


def test_numbers_are_the_frames_floats_exactly_and_text_is_never_a_formula(tmp_path) -> None:
    values = [0.1 + 0.2, 1 / 3, 2 / 3 * 1e-300, 1e300, -0.0, 90.0, 71.0000000000001]
    texts = ["=1+1", "@SUM(A1)", "+1", "-2", "0012", "http://example.com", "a\tb\nc", "_x0041_",
             "<&>", " 首尾空格 "]
    df = pd.DataFrame({"x": values + [np.nan] * (len(texts) - len(values)), "t": texts,
                       "n": np.arange(len(texts), dtype=np.int64)})
    path = tmp_path / "w.xlsx"
    write_workbook(path, [("S", df)])
    ws = openpyxl.load_workbook(path)["S"]
    rows = list(ws.iter_rows(min_row=2))
    assert [r[0].value for r in rows[:len(values)]] == values
    assert all(r[0].value is None for r in rows[len(values):])
    assert all(r[1].data_type == "s" for r in rows)
    # "_x0041_" is stored escaped ("_x005F_x0041_", as the format asks): Excel,
    # LibreOffice and calamine show the text itself (openpyxl shows the escape;
    # the old writer stored it bare, which Excel shows as "A").
    back = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("S").to_python()
    assert [r[1] for r in back[1:]] == texts
    assert [r[2].value for r in rows] == list(range(len(texts)))
    assert not any(math.isnan(v) for v in values)


def test_repeated_labels_and_overlong_text_are_written_as_the_old_writer_did(tmp_path) -> None:
    # A plan course called "grade" repeats a Predictions column: written as pandas
    # reads a repeated header back ("grade.1"); text beyond Excel's limit is cut to it.
    df = pd.DataFrame([["s1", 3.0, 4.0, "x" * (MAX_CELL_TEXT + 10)]],
                      columns=["SNH", "grade", "grade", "note"])
    path = tmp_path / "d.xlsx"
    write_workbook(path, [("Predictions", df)])
    back = pd.read_excel(path, engine="openpyxl")
    assert list(back.columns) == ["SNH", "grade", "grade.1", "note"]
    assert back.iloc[0].tolist()[:3] == ["s1", 3, 4]
    assert back.iloc[0, 3] == "x" * MAX_CELL_TEXT


def test_a_streamed_sheet_is_cut_to_excels_limit_too(tmp_path) -> None:
    schema = pa.schema([("SNH", pa.string()), ("n", pa.float64())])
    batches = [pa.record_batch([pa.array(["短", "长" * (MAX_CELL_TEXT + 5)]),
                                pa.array([1.0, None])], schema=schema),
               pa.record_batch([pa.array(["=1+1"]), pa.array([2.5])], schema=schema)]
    path = tmp_path / "s.xlsx"
    write_workbook(path, [("S", pa.RecordBatchReader.from_batches(schema, iter(batches)))])
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("S").to_python()
    assert rows == [["SNH", "n"], ["短", 1.0], ["长" * MAX_CELL_TEXT, ""], ["=1+1", 2.5]]
