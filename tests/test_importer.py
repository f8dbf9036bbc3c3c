"""The database import (issue 6) against real databases: SQLite files and a
private PostgreSQL server (``support.pg``), with result workbooks produced by
the real engine on a generated grade workbook.

What is proved: rows and values equal the workbooks; re-import is
idempotent; a failure anywhere (a bad value in the last row, a constraint the
database enforces after DDL, the connection killed during the insert) leaves
every previous row -- and the schema -- as it was; readers see the old rows
until the commit; every refusal writes nothing; the route and
``import_results.py`` do the same over HTTP.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa
from support.live_server import LiveServer, free_port
from support.paths import DEMO_MODELS_DIR, DEMO_PLANS_DIR, REPO
from support.pg import PASSWORD, PgServer, next_database_name
from support.s3 import dir_storage_only

from destination_predictor.importer import (
    GRADES_TABLE,
    REGISTRAR_COLUMNS,
    ImportRefused,
    import_results,
    resolve_database_url,
    safe_url,
)

YEAR = 2024
N_STUDENTS = 48
CODES = ("ai", "ee", "iot", "tewm")
CJK = re.compile(r"[\u4e00-\u9fff]")

needs_model = pytest.mark.skipif(
    not (DEMO_MODELS_DIR / "catboost_model.cbm").is_file()
    or not (DEMO_PLANS_DIR / f"education-plan{YEAR}").is_dir(),
    reason="demo model/plans not present in models/ and plans/",
)
pytestmark = needs_model


# --- fixtures ------------------------------------------------------------------------------


@dataclass
class Cohort:
    grades: Path                      # the generated grade workbook
    results: list[Path]               # per-major workbooks and the _All summary

    def major_file(self, code: str) -> Path:
        return next(p for p in self.results if p.name.endswith(f"_Predictions_{code}.xlsx"))


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """A real task's output: the engine run once on a generated workbook."""
    from destination_predictor.demo.grades import make_grade_workbook
    from destination_predictor.engine import Engine

    root = tmp_path_factory.mktemp("cohort")
    grades = make_grade_workbook(root / "grades.xlsx", YEAR, N_STUDENTS,
                                 plans_dir=DEMO_PLANS_DIR, seed=11)
    run = Engine(DEMO_MODELS_DIR, DEMO_PLANS_DIR).run(
        grades, YEAR, out_dir=root / "results",
        file_prefix="00000000-0000-4000-8000-000000000000_")
    return Cohort(grades, sorted(run.files))


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(resolve_database_url(url))


def snapshot(url: str) -> dict[str, Any]:
    """Every table: its columns (names and types) and its rows, order-free."""
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            insp = sa.inspect(conn)
            out: dict[str, Any] = {}
            for name in sorted(insp.get_table_names()):
                cols = [(c["name"], str(c["type"])) for c in insp.get_columns(name)]
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                rows = sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)
                out[name] = (cols, rows)
            return out
    finally:
        eng.dispose()


def table_frame(url: str, table: str) -> pd.DataFrame:
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(t)).mappings().all()
            return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
    finally:
        eng.dispose()


def workbook(path: Path) -> pd.DataFrame:
    """Read independently of the importer (openpyxl through pandas)."""
    return pd.read_excel(path, sheet_name="Predictions", engine="openpyxl", dtype={"SNH": str})


def variant(src: Path, dest_dir: Path, edit: Any, name: str | None = None) -> Path:
    """A copy of a result workbook changed by ``edit(worksheet)`` (openpyxl)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.load_workbook(src)
    edit(wb["Predictions"])
    dest = dest_dir / (name or src.name)
    wb.save(dest)
    return dest


def column_index(ws: Any, name: str) -> int:
    return next(c.column for c in ws[1] if c.value == name)


def assert_matches_workbook(url: str, path: Path, renamed: dict[str, str]) -> None:
    """Every cell of the sheet is in the table, row for row (keyed by SNH)."""
    sheet = workbook(path)
    m = re.search(r"Cohort\d{4}_Predictions_\w+?(?=\.xlsx$)", path.name)
    assert m is not None, path.name
    table = table_frame(url, m.group(0))
    assert len(table) == len(sheet)
    by_snh = table.set_index("SNH")
    assert by_snh.index.is_unique
    assert set(by_snh.index) == set(sheet["SNH"])
    for col in sheet.columns:
        if col == "SNH":
            continue
        stored = renamed.get(col, col)
        assert stored in by_snh.columns, col
        for snh, expected in zip(sheet["SNH"], sheet[col], strict=True):
            got = by_snh.at[snh, stored]
            if isinstance(expected, float) and math.isnan(expected):
                assert got is None or (isinstance(got, float) and math.isnan(got)), (col, snh, got)
            elif isinstance(expected, (int, float)):
                assert float(got) == pytest.approx(float(expected), rel=1e-12, abs=1e-12), (col, snh)
            else:
                assert got == expected, (col, snh)


def major_tables(url: str) -> dict[str, int]:
    return {name: len(rows) for name, (_cols, rows) in snapshot(url).items()
            if name.startswith("Cohort")}


# --- import, compare, re-import ---------------------------------------------------------------


def test_import_matches_workbooks_and_is_idempotent(cohort: Cohort, db_url: str) -> None:
    report = import_results(cohort.results, db_url)
    assert [t.code for t in report.majors] == list(CODES)
    assert report.skipped_files == [p.name for p in cohort.results if p.name.endswith("_All.xlsx")]
    assert sum(t.rows for t in report.majors) == N_STUDENTS
    for t in report.majors:
        assert t.created and t.replaced == 0 and t.rows > 0
        assert t.major is not None and CJK.search(t.major)
        assert_matches_workbook(db_url, cohort.major_file(t.code), t.renamed_columns)

    first = snapshot(db_url)
    again = import_results(cohort.results, db_url)
    assert [(t.rows, t.replaced, t.created, t.added_columns) for t in again.majors] == [
        (t.rows, t.rows, False, []) for t in report.majors]
    assert snapshot(db_url) == first


def test_types_of_new_tables(cohort: Cohort, db_url: str) -> None:
    import_results(cohort.results, db_url)
    eng = _engine(db_url)
    try:
        with eng.connect() as conn:
            cols = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("Cohort2024_Predictions_ai")}
    finally:
        eng.dispose()
    assert isinstance(cols["SNH"], sa.Text) and isinstance(cols["major"], sa.Text)
    for name in ("grade", "count", "current_pred"):
        assert isinstance(cols[name], sa.Integer), name
    for name in ("current_prob1", "target1_min_required_score", "线性代数"):
        if name in cols:
            assert isinstance(cols[name], sa.Float), name


def test_grades_replace_only_their_year(cohort: Cohort, db_url: str, tmp_path: Path) -> None:
    from destination_predictor.demo.grades import make_grade_workbook

    other = make_grade_workbook(tmp_path / "g2023.xls", 2023, 6, plans_dir=DEMO_PLANS_DIR,
                                seed=2, fmt="xls")
    r23 = import_results(cohort.results, db_url, grades_file=other, grades_year=2023)
    r24 = import_results(cohort.results, db_url, grades_file=cohort.grades, grades_year=YEAR)
    assert r23.grades is not None and r24.grades is not None
    assert r24.grades.replaced == 0 and r24.grades.rows > 1000
    grades = table_frame(db_url, GRADES_TABLE)
    assert set(grades.columns) == {*REGISTRAR_COLUMNS, "year"}
    assert grades.groupby("year").size().to_dict() == {2023: r23.grades.rows, 2024: r24.grades.rows}

    # Compare with the workbook read independently (rows with an id, in order).
    sheet = pd.read_excel(cohort.grades, dtype=str, engine="openpyxl").rename(columns=lambda c: str(c).strip())
    sheet = sheet[sheet["SNH"].notna() & (sheet["SNH"].str.strip() != "")]
    assert r24.grades.rows == len(sheet)
    mine = grades[grades["year"] == YEAR]
    assert sorted(mine["SNH"]) == sorted(sheet["SNH"])
    assert sorted(mine["Course_Name"].fillna("")) == sorted(sheet["Course_Name"].fillna(""))

    again = import_results(cohort.results, db_url, grades_file=cohort.grades, grades_year=YEAR)
    assert again.grades is not None and again.grades.replaced == r24.grades.rows
    after = table_frame(db_url, GRADES_TABLE)
    assert after.groupby("year").size().to_dict() == {2023: r23.grades.rows, 2024: r24.grades.rows}


# --- schema changes ---------------------------------------------------------------------------------

ODD_NAMES = ("新课程 (实验) & 设计*", "a%b", "x:y", 'q"uote', "C语言")


def test_new_columns_added_in_the_same_transaction(cohort: Cohort, db_url: str,
                                                   tmp_path: Path) -> None:
    import_results(cohort.results, db_url)
    ai = cohort.major_file("ai")

    def add_columns(ws: Any) -> None:
        for j, name in enumerate(ODD_NAMES):
            col = ws.max_column + 1
            ws.cell(1, col, name)
            for r in range(2, ws.max_row + 1):
                ws.cell(r, col, 60.0 + j + r / 100)

    changed = variant(ai, tmp_path / "v", add_columns)
    others = [p for p in cohort.results if p != ai]
    report = import_results([changed, *others], db_url)
    t = next(t for t in report.majors if t.code == "ai")
    assert t.added_columns == list(ODD_NAMES) and not t.created
    assert_matches_workbook(db_url, changed, t.renamed_columns)
    # and back to the original file: the columns stay, the new rows have NULL there
    import_results(cohort.results, db_url)
    frame = table_frame(db_url, "Cohort2024_Predictions_ai")
    assert frame[list(ODD_NAMES)].isna().all().all()


@pytest.mark.slow
def test_postgres_long_names_are_cut_like_postgres_and_clashes_refused(
        cohort: Cohort, pg: PgServer, tmp_path: Path) -> None:
    url = pg.create_database(next_database_name())
    long_name = "毛泽东思想和中国特色社会主义理论体系概论（实践环节））"   # 81 bytes
    ai = cohort.major_file("ai")

    def add(names: tuple[str, ...]) -> Any:
        def edit(ws: Any) -> None:
            for name in names:
                col = ws.max_column + 1
                ws.cell(1, col, name)
                for r in range(2, ws.max_row + 1):
                    ws.cell(r, col, 70.0)
        return edit

    one = variant(ai, tmp_path / "one", add((long_name,)))
    report = import_results([one], url)
    stored = report.majors[0].renamed_columns[long_name]
    assert len(stored.encode()) <= 63 and long_name.startswith(stored)
    assert any(long_name in w for w in report.warnings)
    assert_matches_workbook(url, one, report.majors[0].renamed_columns)

    before = snapshot(url)
    clash = variant(ai, tmp_path / "clash", add((long_name, long_name[:-1] + "X")))
    with pytest.raises(ImportRefused) as exc:
        import_results([clash], url)
    assert exc.value.code == "COLUMN_NAME_CLASH"
    assert snapshot(url) == before


# --- failures leave everything as it was ---------------------------------------------------------


def test_bad_value_in_last_row_changes_nothing(cohort: Cohort, db_url: str, tmp_path: Path) -> None:
    import_results(cohort.results, db_url)
    before = snapshot(db_url)
    tewm = cohort.major_file("tewm")

    last_row: list[int] = []

    def poison(ws: Any) -> None:
        ws.cell(1, ws.max_column + 1, "全新课程")        # would need an ALTER TABLE
        ws.cell(ws.max_row, column_index(ws, "current_prob1"), "abc")
        last_row.append(ws.max_row)

    bad = variant(tewm, tmp_path / "bad", poison)
    files = [bad if p == tewm else p for p in cohort.results]
    with pytest.raises(ImportRefused) as exc:
        import_results(files, db_url)
    assert exc.value.code == "BAD_VALUE"
    assert "current_prob1" in exc.value.message and "abc" in exc.value.message
    assert f"第 {last_row[0]} 行" in exc.value.message
    assert snapshot(db_url) == before


def test_integer_column_refuses_fraction(cohort: Cohort, db_url: str, tmp_path: Path) -> None:
    import_results(cohort.results, db_url)
    before = snapshot(db_url)
    bad = variant(cohort.major_file("ee"), tmp_path / "frac",
                  lambda ws: ws.cell(ws.max_row, column_index(ws, "current_pred"), 2.5))
    with pytest.raises(ImportRefused) as exc:
        import_results([bad], db_url)
    assert exc.value.code == "BAD_VALUE" and "current_pred" in exc.value.message
    assert snapshot(db_url) == before


def test_database_refusal_after_ddl_rolls_back_everything(cohort: Cohort, db_url: str,
                                                          tmp_path: Path) -> None:
    """A unique index makes the database itself reject the last row -- after
    the ALTER TABLE and the DELETE of this import and after other majors were
    already replaced: all of it must roll back, the added column included."""
    import_results(cohort.results, db_url)
    eng = _engine(db_url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text('CREATE UNIQUE INDEX uq_ai_snh ON "Cohort2024_Predictions_ai" ("SNH")'))
    finally:
        eng.dispose()
    before = snapshot(db_url)
    ai = cohort.major_file("ai")

    def duplicate_last(ws: Any) -> None:
        ws.cell(1, ws.max_column + 1, "回滚测试课程")
        ws.cell(ws.max_row, 1, ws.cell(2, 1).value)

    bad = variant(ai, tmp_path / "dup", duplicate_last)
    files = [p for p in cohort.results if p != ai] + [bad]   # ai is replaced last
    with pytest.raises(ImportRefused) as exc:
        import_results(files, db_url)
    assert exc.value.code == "DATABASE_WRITE_FAILED"
    assert "回滚" in exc.value.message
    assert snapshot(db_url) == before


GATE_KEY = 4242


def _gate_row(url: str, table: str, snh: str) -> None:
    """Make the INSERT of one row wait for advisory lock ``GATE_KEY``, which the
    test holds: the import stops mid-insert exactly as long as the test wants."""
    assert re.fullmatch(r"[0-9a-zA-Z_-]+", snh)
    eng = _engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(
                "CREATE FUNCTION gate_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.\"SNH\" = '{snh}' THEN PERFORM pg_advisory_xact_lock({GATE_KEY}); END IF; "
                "RETURN NEW; END $$"))
            conn.execute(sa.text(f'CREATE TRIGGER gate BEFORE INSERT ON "{table}" '
                                 "FOR EACH ROW EXECUTE FUNCTION gate_row()"))
    finally:
        eng.dispose()


@contextmanager
def _gate_closed(url: str) -> Iterator[None]:
    """Hold the gate's lock in a session of our own; leaving opens the gate."""
    eng = _engine(url)
    try:
        with eng.connect() as conn:
            conn.execute(sa.text(f"SELECT pg_advisory_lock({GATE_KEY})"))
            conn.commit()
            yield
            conn.execute(sa.text(f"SELECT pg_advisory_unlock({GATE_KEY})"))
            conn.commit()
    finally:
        eng.dispose()


def _importer_at_gate(url: str, timeout: float = 60) -> int:
    """The pid of the importer's backend once it waits at the gated row."""
    eng = _engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with eng.connect() as conn:
                pid = conn.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = "
                    "'destination_predictor_import' AND wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory'")).scalar()
            if pid:
                return int(pid)
            time.sleep(0.05)
    finally:
        eng.dispose()
    raise AssertionError("the import never reached the gated row")


def _import_in_thread(files: list[Path], url: str) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["report"] = import_results(files, url)
        except ImportRefused as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.slow
def test_postgres_readers_see_old_rows_until_commit(cohort: Cohort, pg: PgServer,
                                                    tmp_path: Path) -> None:
    url = pg.create_database(next_database_name())
    ai = cohort.major_file("ai")

    def keep_first_rows(ws: Any) -> None:
        ws.delete_rows(4, ws.max_row)

    import_results([variant(ai, tmp_path / "small", keep_first_rows)], url)
    old = snapshot(url)
    assert len(old["Cohort2024_Predictions_ai"][1]) == 2
    last_snh = str(workbook(ai)["SNH"].iloc[-1])
    _gate_row(url, "Cohort2024_Predictions_ai", last_snh)

    with _gate_closed(url):
        thread, out = _import_in_thread([ai], url)
        _importer_at_gate(url)
        assert snapshot(url) == old        # mid-import: DELETE done, most rows inserted
    thread.join(60)
    assert "report" in out, out
    new = snapshot(url)["Cohort2024_Predictions_ai"][1]
    assert len(new) == len(workbook(ai))


@pytest.mark.slow
def test_postgres_connection_killed_mid_insert_keeps_old_rows(cohort: Cohort, pg: PgServer) -> None:
    url = pg.create_database(next_database_name())
    import_results(cohort.results, url)
    ai = cohort.major_file("ai")
    last_snh = str(workbook(ai)["SNH"].iloc[-1])
    _gate_row(url, "Cohort2024_Predictions_ai", last_snh)
    before = snapshot(url)

    # ai goes last, so the other majors were already replaced in this transaction.
    with _gate_closed(url):
        thread, out = _import_in_thread([p for p in cohort.results if p != ai] + [ai], url)
        pid = _importer_at_gate(url)
        eng = _engine(url)
        try:
            with eng.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        finally:
            eng.dispose()
        thread.join(30)
    assert not thread.is_alive()
    err = out.get("error")
    assert isinstance(err, ImportRefused) and err.code == "DATABASE_WRITE_FAILED", out
    assert PASSWORD not in err.message
    assert snapshot(url) == before


# --- refusals write nothing ------------------------------------------------------------------------


def _refused(files: list[Path], url: str, code: str, **kw: Any) -> ImportRefused:
    with pytest.raises(ImportRefused) as exc:
        import_results(files, url, **kw)
    assert exc.value.code == code, exc.value
    assert CJK.search(exc.value.message) and "\n" not in exc.value.message
    return exc.value


def test_refusals_write_nothing(cohort: Cohort, db_url: str, tmp_path: Path) -> None:
    good = list(cohort.results)
    # On an empty database: not even a table appears.
    missing = tmp_path / "x_Cohort2024_Predictions_ee.xlsx"
    _refused([cohort.major_file("ai"), missing], db_url, "RESULT_FILE_MISSING")
    assert snapshot(db_url) == {}

    import_results(good, db_url)
    before = snapshot(db_url)

    text = tmp_path / "t" / cohort.major_file("iot").name
    text.parent.mkdir()
    text.write_text("SNH,major\n1,x\n", encoding="utf-8")
    _refused([p for p in good if "_iot" not in p.name] + [text], db_url, "NOT_A_WORKBOOK")

    broken = tmp_path / "b" / cohort.major_file("iot").name
    broken.parent.mkdir()
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 200)
    _refused([broken], db_url, "NOT_A_WORKBOOK")

    unknown = tmp_path / "u" / "Cohort2024_Predictions_xyz.xlsx"
    unknown.parent.mkdir()
    shutil.copy(cohort.major_file("ai"), unknown)
    err = _refused([*good, unknown], db_url, "UNKNOWN_MAJOR_CODE")
    assert "xyz" in err.message

    other_sheet = tmp_path / "o" / cohort.major_file("ee").name
    other_sheet.parent.mkdir()
    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.active.append(["SNH", "x"])
    wb.active.append(["1", 2])
    wb.save(other_sheet)
    _refused([other_sheet], db_url, "NOT_PREDICTIONS")

    _refused([variant(cohort.major_file("ai"), tmp_path / "e",
                      lambda ws: ws.delete_rows(2, ws.max_row))], db_url, "EMPTY_RESULT")
    _refused([cohort.major_file("ai")], db_url, "BAD_ARGUMENTS", grades_file=cohort.grades)
    _refused([cohort.major_file("ai")], db_url, "NOT_A_WORKBOOK", grades_file=text,
             grades_year=YEAR)
    _refused([p for p in good if p.name.endswith("_All.xlsx")], db_url, "NO_RESULTS")
    assert snapshot(db_url) == before


def test_unreachable_databases(cohort: Cohort, tmp_path: Path) -> None:
    closed_port = free_port()
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:{closed_port}/nowhere"
    err = _refused(cohort.results, url, "DATABASE_UNREACHABLE")
    assert PASSWORD not in err.message and "***" in err.message
    _refused(cohort.results, f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}",
             "DATABASE_UNREACHABLE")
    assert not (tmp_path / "no").exists()
    _refused(cohort.results, "mysql://u:p@h/db", "UNSUPPORTED_DATABASE")
    _refused(cohort.results, "sqlite://", "BAD_DATABASE_URL")
    assert PASSWORD not in safe_url(url)


@pytest.mark.slow
def test_postgres_wrong_password_is_unreachable_without_echo(cohort: Cohort, pg: PgServer) -> None:
    url = pg.url().replace(PASSWORD, "wrong-" + PASSWORD[::-1])
    err = _refused(cohort.results, url, "DATABASE_UNREACHABLE")
    assert PASSWORD[::-1] not in err.message


def test_default_database_is_a_local_sqlite_file(cohort: Cohort, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = import_results(cohort.results)
    assert (tmp_path / "predictions.sqlite3").is_file()
    assert report.database.endswith("predictions.sqlite3")
    assert major_tables(f"sqlite:///{tmp_path / 'predictions.sqlite3'}") == {
        t.table: t.rows for t in report.majors}


# --- the service route (Flask test client, real engine in pool threads) ---------------------------


def _run_task(client: Any, grades: Path, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with grades.open("rb") as fh:
        resp = client.post("/api/task/start", data={"file": (fh, "成绩.xlsx"), "year": str(YEAR)},
                           headers=headers or {}, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_json()
    task_id = resp.get_json()["data"]["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = client.get(f"/api/task/status/{task_id}", headers=headers or {}).get_json()["data"]
        if data["status"] in ("completed", "failed"):
            assert data["status"] == "completed", data
            return data
        time.sleep(0.1)
    raise AssertionError("task did not finish")


def _error(resp: Any, status: int, code: str) -> None:
    body = resp.get_json()
    assert resp.status_code == status, body
    assert body["success"] is False and body["code"] == code and CJK.search(body["error"]), body


@dir_storage_only
def test_route_imports_a_completed_task(cohort: Cohort, db_url: str, app_config: dict[str, Any],
                                        request: pytest.FixtureRequest) -> None:
    app_config["PREDICT_DATABASE_URL"] = db_url
    client = request.getfixturevalue("client")
    assert client.get("/api/import/config").get_json()["data"]["enabled"] is True
    task = _run_task(client, cohort.grades)

    resp = client.post(f"/api/task/{task['id']}/import", json={"grades": True})
    body = resp.get_json()
    assert resp.status_code == 200, body
    data = body["data"]
    assert sorted(m["code"] for m in data["majors"]) == list(CODES)
    assert data["total_rows"] == N_STUDENTS
    assert data["grades"]["year"] == YEAR and data["grades"]["rows"] > 1000
    tables = major_tables(db_url)
    assert tables == {m["table"]: m["rows"] for m in data["majors"]}
    # The task's own result files (same engine, same input) equal the cohort's.
    results_dir = Path(app_config["PREDICT_DATA_DIR"]) / "results"
    for m in data["majors"]:
        name = next(n for n in task["result_files"] if n.endswith(f"_{m['code']}.xlsx"))
        assert_matches_workbook(db_url, results_dir / name, m["renamed_columns"])
    # again: idempotent
    before = snapshot(db_url)
    again = client.post(f"/api/task/{task['id']}/import", json={"grades": True}).get_json()["data"]
    assert [m["replaced"] for m in again["majors"]] == [m["rows"] for m in data["majors"]]
    assert snapshot(db_url) == before

    # a result file cleaned up under the task: 410, nothing changed
    (results_dir / task["result_files"][0]).unlink()
    _error(client.post(f"/api/task/{task['id']}/import"), 410, "RESULT_FILE_MISSING")
    assert snapshot(db_url) == before


@dir_storage_only
def test_route_refusals(cohort: Cohort, tmp_path: Path, app_config: dict[str, Any],
                        request: pytest.FixtureRequest) -> None:
    from destination_predictor.service.manager import EXTENSION_KEY
    from destination_predictor.service.task import Task, complete, fail, new_task_id

    url = f"sqlite:///{tmp_path / 'route.sqlite3'}"
    app_config["PREDICT_DATABASE_URL"] = url
    app = request.getfixturevalue("app")
    client = app.test_client()
    store = app.extensions[EXTENSION_KEY].store

    def add_task(**kw: Any) -> Task:
        task = Task(id=new_task_id(), seq=store.next_seq(), year=YEAR, file_name="x.xlsx",
                    upload_name="missing.xlsx", file_sha256="0" * 64, cache_key="k",
                    created_at=time.time(), **kw)
        store.add(task)
        return task

    pending = add_task()
    _error(client.post(f"/api/task/{pending.id}/import"), 409, "TASK_NOT_COMPLETED")
    failed = add_task(status="running")
    store.update(failed.id, lambda t: fail(t, time.time(), "X", "坏了"))
    _error(client.post(f"/api/task/{failed.id}/import"), 409, "TASK_FAILED")
    _error(client.post(f"/api/task/{new_task_id()}/import"), 404, "TASK_NOT_FOUND")
    _error(client.post("/api/task/not-a-task-id/import"), 400, "INVALID_TASK_ID")
    _error(client.get(f"/api/task/{pending.id}/import"), 405, "METHOD_NOT_ALLOWED")

    # completed, but its result file is not a workbook / has an unknown code
    results = Path(app_config["PREDICT_DATA_DIR"]) / "results"
    done = add_task(status="running")
    bogus = f"{done.id}_Cohort2024_Predictions_ai.xlsx"
    (results / bogus).write_text("not a workbook")
    store.update(done.id, lambda t: complete(t, time.time(), [bogus], None, []))
    _error(client.post(f"/api/task/{done.id}/import"), 422, "NOT_A_WORKBOOK")
    _error(client.post(f"/api/task/{done.id}/import", json={"grades": True}), 410, "UPLOAD_MISSING")
    assert not Path(tmp_path / "route.sqlite3").exists() or snapshot(url) == {}


def test_route_not_configured_and_token(cohort: Cohort, app_config: dict[str, Any],
                                        request: pytest.FixtureRequest) -> None:
    app_config["PREDICT_API_TOKEN"] = "tok-123"
    app_config["PREDICT_DATABASE_URL"] = ""          # whatever the environment says
    client = request.getfixturevalue("client")
    auth = {"Authorization": "Bearer tok-123"}
    _error(client.post("/api/task/00000000-0000-4000-8000-000000000000/import"), 401, "UNAUTHORIZED")
    _error(client.get("/api/import/config"), 401, "UNAUTHORIZED")
    assert client.get("/api/import/config", headers=auth).get_json()["data"] == {
        "enabled": False, "backend": None}
    task = _run_task(client, cohort.grades, auth)
    _error(client.post(f"/api/task/{task['id']}/import", headers=auth), 503, "IMPORT_NOT_CONFIGURED")


@pytest.mark.slow
def test_route_unreachable_database(cohort: Cohort, app_config: dict[str, Any],
                                    request: pytest.FixtureRequest) -> None:
    port = free_port()
    app_config["PREDICT_DATABASE_URL"] = f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/db"
    app = request.getfixturevalue("app")
    client = app.test_client()
    assert client.get("/api/import/config").get_json()["data"]["backend"] == "postgresql"
    task = _run_task(client, cohort.grades)
    resp = client.post(f"/api/task/{task['id']}/import")
    _error(resp, 503, "DATABASE_UNREACHABLE")
    assert PASSWORD not in resp.get_data(as_text=True)
    from destination_predictor.service.manager import EXTENSION_KEY

    log = app.extensions[EXTENSION_KEY].settings.log_path
    assert "task.import_refused" in log.read_text(encoding="utf-8")
    assert PASSWORD not in log.read_text(encoding="utf-8")


# --- import_results.py against a real gunicorn ------------------------------------------------------

TOKEN = "e2e-token-9"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory,
            pg: PgServer) -> Iterator[tuple[LiveServer, str]]:
    """gunicorn with the project's config, a token and PostgreSQL configured."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    db = pg.create_database("service_db")
    with LiveServer(tmp / "data", model_dir=DEMO_MODELS_DIR, plans_dir=DEMO_PLANS_DIR, token=TOKEN,
                    env={"PREDICT_DATABASE_URL": db}) as srv:
        yield srv, db


def _cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(REPO / "import_results.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("错误") and CJK.search(lines[0]), proc.stderr
    return lines[0]


@pytest.mark.slow
def test_cli_and_route_end_to_end(cohort: Cohort, service: tuple[LiveServer, str], pg: PgServer,
                                  tmp_path: Path) -> None:
    from destination_predictor.client import ApiClient, ApiError

    srv, service_db = service
    client = ApiClient(srv.base, TOKEN)
    task_id = client.start(cohort.grades, YEAR)
    status = client.wait(task_id, interval=0.3, timeout=180)
    assert status["status"] == "completed", status
    base = ["--base-url", srv.base, "--task-id", task_id]

    # 1. default database: predictions.sqlite3 in the current directory
    proc = _cli(*base, "--token", TOKEN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lite = f"sqlite:///{tmp_path / 'predictions.sqlite3'}"
    tables = major_tables(lite)
    assert sum(tables.values()) == N_STUDENTS and len(tables) == len(CODES)
    for code in CODES:
        table = f"Cohort{YEAR}_Predictions_{code}"
        assert re.search(rf"\({code}\): 导入 {tables[table]} 行 -> 表 {table}", proc.stdout), proc.stdout
        assert_matches_workbook(lite, cohort.major_file(code), {})

    # 2. PostgreSQL with a password, token from the environment, grades too
    db = pg.create_database("cli_db")
    proc = _cli(*base, "--database-url", db, "--grades", str(cohort.grades), "--year", str(YEAR),
                cwd=tmp_path, env_extra={"PREDICT_API_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr and "***" in proc.stdout
    assert major_tables(db) == tables
    assert "成绩: 导入" in proc.stdout
    before = snapshot(db)

    # 3. refusals: one line, exit 2, database unchanged
    closed = free_port()
    line = _one_error_line(_cli(*base, "--token", TOKEN, "--database-url",
                                f"postgresql://x:{PASSWORD}@127.0.0.1:{closed}/db", cwd=tmp_path))
    assert PASSWORD not in line and "无法连接数据库" in line
    _one_error_line(_cli(*base, "--token", "wrong", "--database-url", db, cwd=tmp_path))
    _one_error_line(_cli("--base-url", srv.base, "--task-id", "00000000-0000-4000-8000-00000000abcd",
                         "--token", TOKEN, "--database-url", db, cwd=tmp_path))
    _one_error_line(_cli(*base, "--token", TOKEN, "--database-url", db, "--grades",
                         str(cohort.grades), cwd=tmp_path))
    _one_error_line(_cli(*base, "--token", TOKEN, "--database-url", db, "--base-url",
                         f"http://127.0.0.1:{closed}", cwd=tmp_path))

    # a task that failed (no Course_Name column): refused by the CLI and by the route
    bad = tmp_path / "bad.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["SNH", "Grade"])
    wb.active.append(["s1", 90])
    wb.save(bad)
    failed_id = client.start(bad, YEAR)
    assert client.wait(failed_id, interval=0.3, timeout=60)["status"] == "failed"
    line = _one_error_line(_cli("--base-url", srv.base, "--task-id", failed_id, "--token", TOKEN,
                                "--database-url", db, cwd=tmp_path))
    assert "失败" in line
    with pytest.raises(ApiError) as exc:
        client.import_task(failed_id)
    assert exc.value.status == 409 and exc.value.code == "TASK_FAILED"
    assert snapshot(db) == before

    # 4. the service's own import into its PostgreSQL database, through the client
    data = client.import_task(task_id)
    assert {m["table"]: m["rows"] for m in data["majors"]} == tables
    assert data["backend"] == "postgresql"
    assert major_tables(service_db) == tables
    log_text = srv.data_dir / f"async_api_{srv.port}.log"
    assert "task.imported" in log_text.read_text(encoding="utf-8")
    assert PASSWORD not in log_text.read_text(encoding="utf-8")
    client.close()
