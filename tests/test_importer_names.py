"""Names the engine gives result files, as the importer must take them.

1. A major with a plan but no code in ``majors.json`` keeps its (sanitised)
   name as its file code (``engine.majors.code_for``); the importer -- the
   service's route and ``import_results`` alike -- must import that file.
2. With such a code the table name ``Cohort{YEAR}_Predictions_{code}`` can
   pass PostgreSQL's 63-byte identifier limit (a Chinese character is three
   bytes). PostgreSQL cuts it silently on CREATE; the importer must name the
   table as it is stored, so a second import finds it.

Real engine runs on a copy of the bundled plans with two extra majors, a real
private PostgreSQL (``support.pg``) and SQLite files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from support.live_server import LiveServer
from support.paths import DEMO_MODELS_DIR, DEMO_PLANS_DIR, REPO
from support.pg import PgServer, next_database_name

from destination_predictor.importer import ImportRefused, import_results, resolve_database_url

YEAR = 2024
N_STUDENTS = 36
SHORT_MAJOR = "数据科学"                                  # no code anywhere
LONG_MAJOR = "网络空间安全与智能信息处理技术"                 # 15 characters, 45 bytes
LONG_TABLE = f"Cohort{YEAR}_Predictions_{LONG_MAJOR}"       # 68 bytes
LONG_STORED = LONG_TABLE.encode()[:63].decode("utf-8", errors="ignore")  # PostgreSQL's cut
# Named explicitly where a test is about table names, not about which codes are accepted.
ALL_CODES = ("ai", "ee", "iot", "tewm", SHORT_MAJOR, LONG_MAJOR)

pytestmark = pytest.mark.skipif(
    not (DEMO_MODELS_DIR / "catboost_model.cbm").is_file()
    or not (DEMO_PLANS_DIR / f"education-plan{YEAR}").is_dir(),
    reason="demo model/plans not present in models/ and plans/",
)


def plans_with_new_majors(dest: Path, *majors: str) -> Path:
    """The bundled plans plus one plan per new major (a copy of an existing plan)."""
    shutil.copytree(DEMO_PLANS_DIR, dest)
    year_dir = dest / f"education-plan{YEAR}"
    template = year_dir / f"{YEAR}级物联网工程培养方案.xlsx"
    for major in majors:
        shutil.copy(template, year_dir / f"{YEAR}级{major}培养方案.xlsx")
    return dest


@dataclass
class Run:
    plans: Path
    grades: Path
    results: list[Path]

    def file(self, code: str) -> Path:
        return next(p for p in self.results if p.name.endswith(f"_Predictions_{code}.xlsx"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    from destination_predictor.demo.grades import make_grade_workbook
    from destination_predictor.engine import Engine

    root = tmp_path_factory.mktemp("new-majors")
    plans = plans_with_new_majors(root / "plans", SHORT_MAJOR, LONG_MAJOR)
    grades = make_grade_workbook(root / "grades.xlsx", YEAR, N_STUDENTS, plans_dir=plans, seed=5)
    result = Engine(DEMO_MODELS_DIR, plans).run(grades, YEAR, out_dir=root / "results")
    names = [p.name for p in result.files]
    assert f"Cohort{YEAR}_Predictions_{SHORT_MAJOR}.xlsx" in names, names
    assert f"{LONG_TABLE}.xlsx" in names, names
    return Run(plans, grades, sorted(result.files))


def tables(url: str) -> dict[str, int]:
    eng = sa.create_engine(resolve_database_url(url))
    try:
        with eng.connect() as conn:
            out = {}
            for name in sa.inspect(conn).get_table_names():
                t = sa.Table(name, sa.MetaData(), autoload_with=conn)
                out[name] = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            return out
    finally:
        eng.dispose()


# --- 1. majors without a code --------------------------------------------------------------


def test_major_without_code_is_imported_by_its_recorded_name(run: Run, db_url: str) -> None:
    """``import_results`` (what ``import_results.py`` runs) without any plans:
    the file's code is the name the engine wrote in the sheet's ``major`` column."""
    report = import_results(run.results, db_url)
    by_code = {t.code: t for t in report.majors}
    assert SHORT_MAJOR in by_code and LONG_MAJOR in by_code, list(by_code)
    assert by_code[SHORT_MAJOR].major == SHORT_MAJOR
    assert by_code["iot"].major == "物联网工程"
    assert report.total_rows == N_STUDENTS
    assert tables(db_url) == {t.table: t.rows for t in report.majors}


def test_code_of_a_major_that_has_one_is_still_refused(run: Run, tmp_path: Path) -> None:
    """A file named after the sanitised name of a major that has a code (the
    engine would have written ``_iot``) or with a code no sheet backs: refused."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    by_name = tmp_path / "a" / f"Cohort{YEAR}_Predictions_物联网工程.xlsx"
    by_name.parent.mkdir()
    shutil.copy(run.file("iot"), by_name)
    with pytest.raises(ImportRefused) as exc:
        import_results([by_name], url)
    assert exc.value.code == "UNKNOWN_MAJOR_CODE"
    other = tmp_path / "b" / f"Cohort{YEAR}_Predictions_大数据.xlsx"
    other.parent.mkdir()
    shutil.copy(run.file(SHORT_MAJOR), other)
    with pytest.raises(ImportRefused) as exc:
        import_results([other], url)
    assert exc.value.code == "UNKNOWN_MAJOR_CODE" and "大数据" in exc.value.message
    assert not (tmp_path / "db.sqlite3").exists() or tables(url) == {}


def test_code_from_majors_json_is_taken_from_the_names_given(run: Run, tmp_path: Path) -> None:
    """A code the importer cannot derive (``majors.json``) is accepted when the
    caller names it (the route: the task's summary and the plans)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    renamed = tmp_path / f"Cohort{YEAR}_Predictions_ds.xlsx"
    shutil.copy(run.file(SHORT_MAJOR), renamed)
    with pytest.raises(ImportRefused) as exc:
        import_results([renamed], url)
    assert exc.value.code == "UNKNOWN_MAJOR_CODE"
    report = import_results([renamed], url, major_names={"ds": SHORT_MAJOR})
    assert [(t.code, t.major, t.table) for t in report.majors] == [
        ("ds", SHORT_MAJOR, f"Cohort{YEAR}_Predictions_ds")]


def _run_task(client: Any, grades: Path) -> dict[str, Any]:
    with grades.open("rb") as fh:
        resp = client.post("/api/task/start", data={"file": (fh, "成绩.xlsx"), "year": str(YEAR)},
                           content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_json()
    task_id = resp.get_json()["data"]["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = client.get(f"/api/task/status/{task_id}").get_json()["data"]
        if data["status"] in ("completed", "failed"):
            assert data["status"] == "completed", data
            return data
        time.sleep(0.1)
    raise AssertionError("task did not finish")


@pytest.mark.parametrize("with_json", [False, True], ids=["no-majors-json", "majors-json"])
def test_route_imports_every_file_the_engine_wrote(run: Run, tmp_path: Path, with_json: bool,
                                                   app_config: dict[str, Any],
                                                   request: pytest.FixtureRequest) -> None:
    """The service runs a task on plans with new majors and imports all its files."""
    plans = plans_with_new_majors(tmp_path / "plans", SHORT_MAJOR, LONG_MAJOR)
    if with_json:   # a code for one of them; the other keeps its name
        (plans / "majors.json").write_text(json.dumps({SHORT_MAJOR: "ds"}), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'route.sqlite3'}"
    app_config.update(PREDICT_PLANS_DIR=plans, PREDICT_MODEL_DIR=DEMO_MODELS_DIR,
                      PREDICT_DATABASE_URL=url)
    client = request.getfixturevalue("client")
    task = _run_task(client, run.grades)
    short_code = "ds" if with_json else SHORT_MAJOR
    assert any(n.endswith(f"_Predictions_{short_code}.xlsx") for n in task["result_files"])

    resp = client.post(f"/api/task/{task['id']}/import")
    body = resp.get_json()
    assert resp.status_code == 200, body
    majors = {m["code"]: m for m in body["data"]["majors"]}
    assert set(majors) == {"ai", "ee", "iot", "tewm", short_code, LONG_MAJOR}
    assert majors[short_code]["major"] == SHORT_MAJOR
    assert majors[LONG_MAJOR]["major"] == LONG_MAJOR
    assert body["data"]["total_rows"] == N_STUDENTS
    assert tables(url) == {m["table"]: m["rows"] for m in majors.values()}


@pytest.mark.slow
def test_cli_imports_new_majors_from_a_real_service(run: Run, tmp_path: Path) -> None:
    """``import_results.py`` against gunicorn whose plans have a major with a
    ``majors.json`` code (``ds``: only the task's summary tells the CLI) and one
    without a code (its name: the sheet tells the importer)."""
    from destination_predictor.client import ApiClient

    plans = plans_with_new_majors(tmp_path / "plans", SHORT_MAJOR, LONG_MAJOR)
    (plans / "majors.json").write_text(json.dumps({SHORT_MAJOR: "ds"}), encoding="utf-8")
    with LiveServer(tmp_path / "data", model_dir=DEMO_MODELS_DIR, plans_dir=plans) as srv:
        client = ApiClient(srv.base)
        task_id = client.start(run.grades, YEAR)
        assert client.wait(task_id, interval=0.3, timeout=180)["status"] == "completed"
        client.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.run(
            [sys.executable, str(REPO / "import_results.py"), "--base-url", srv.base,
             "--task-id", task_id], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{SHORT_MAJOR}(ds): 导入" in proc.stdout, proc.stdout
    assert f"{LONG_MAJOR}({LONG_MAJOR}): 导入" in proc.stdout, proc.stdout
    got = tables(f"sqlite:///{tmp_path / 'predictions.sqlite3'}")
    assert f"Cohort{YEAR}_Predictions_ds" in got and LONG_TABLE in got
    assert sum(got.values()) == N_STUDENTS


# --- 2. table names past PostgreSQL's 63 bytes ---------------------------------------------


@pytest.mark.slow
def test_postgres_long_table_name_imports_again(run: Run, pg: PgServer) -> None:
    url = pg.create_database(next_database_name("names"))
    long_file = run.file(LONG_MAJOR)
    first = import_results([long_file], url, known_codes=ALL_CODES)
    again = import_results(run.results, url, known_codes=ALL_CODES)  # with the others
    t = first.majors[0]
    assert t.code == LONG_MAJOR and t.created
    assert t.table == LONG_STORED and len(t.table.encode()) <= 63
    assert any(LONG_TABLE in w and LONG_STORED in w for w in first.warnings), first.warnings
    t2 = next(x for x in again.majors if x.code == LONG_MAJOR)
    assert (t2.table, t2.created, t2.replaced, t2.rows) == (LONG_STORED, False, t.rows, t.rows)
    assert tables(url) == {x.table: x.rows for x in again.majors}
    assert tables(url)[LONG_STORED] == t.rows


@pytest.mark.slow
def test_postgres_tables_that_would_share_a_name_are_refused(run: Run, pg: PgServer,
                                                             tmp_path: Path) -> None:
    url = pg.create_database(next_database_name("names"))
    import_results(run.results, url, known_codes=ALL_CODES)
    before = tables(url)
    twin_code = LONG_MAJOR[:-1] + "甲"             # same first 63 bytes of table name
    twin = tmp_path / f"Cohort{YEAR}_Predictions_{twin_code}.xlsx"
    wb = openpyxl.load_workbook(run.file(LONG_MAJOR))
    ws = wb["Predictions"]
    major_col = next(c.column for c in ws[1] if c.value == "major")
    for r in range(2, ws.max_row + 1):
        ws.cell(r, major_col, twin_code)
    wb.save(twin)
    with pytest.raises(ImportRefused) as exc:
        import_results([run.file(LONG_MAJOR), twin], url, known_codes=[*ALL_CODES, twin_code])
    assert exc.value.code == "TABLE_NAME_CLASH", exc.value.message
    assert LONG_STORED in exc.value.message
    assert tables(url) == before
    # SQLite has no such limit: both tables.
    lite = f"sqlite:///{tmp_path / 'lite.sqlite3'}"
    report = import_results([run.file(LONG_MAJOR), twin], lite,
                            known_codes=[*ALL_CODES, twin_code])
    assert sorted(t.table for t in report.majors) == sorted(
        [LONG_TABLE, f"Cohort{YEAR}_Predictions_{twin_code}"])
