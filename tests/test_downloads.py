"""What lands on the user's disk, and what the monitor says the service keeps.

Results are stored as ``results/{task_id}_Cohort{Y}_Predictions_{code}.xlsx``
(one directory for every task) and addressed by that name in the URLs, but a
person saving a download gets ``Cohort{Y}_Predictions_{code}.xlsx`` -- the
name the downstream import and the operators' guide use -- from the
``Content-Disposition`` header and inside ``results.zip``.

The monitor counts each task's upload once: not the data dir's ``.gitkeep``,
not the content store behind the uploads (``uploads/.content``, one file per
distinct content with a hard link per task), and the bytes of hard-linked
files once.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from support.s3 import dir_storage_only
from support.service import data_dir, finished, grade_workbook, listing, start, wait_for
from werkzeug.http import parse_options_header

from destination_predictor.importer.tables import import_results
from destination_predictor.importer.workbooks import classify_results


def _completed(client: FlaskClient, content: bytes, name: str = "grades.xlsx") -> dict[str, Any]:
    r = start(client, content, name=name)
    assert r.status_code == 200, r.json
    data = wait_for(client, r.json["data"]["task_id"], finished)
    assert data["status"] == "completed", data
    return data


def _saved_name(resp: Any) -> str:
    """The file name a browser or ``curl -OJ`` saves the download under."""
    _, params = parse_options_header(resp.headers["Content-Disposition"])
    return params["filename"]


def test_downloads_are_named_without_the_task_id(client: FlaskClient, app: Flask,
                                                  tmp_path: Path) -> None:
    grades = grade_workbook(tmp_path / "grades.xlsx", n_students=24)
    task = _completed(client, grades.read_bytes())
    tid = task["id"]
    stored = task["result_files"]
    # Stored names and the URLs keep the task id (one results/ dir for every task).
    assert stored and all(f.startswith(f"{tid}_Cohort") for f in stored)
    assert sorted(stored) == sorted(app.extensions["predict"].storage.names("results", ""))

    saved = tmp_path / "saved"
    saved.mkdir()
    for name in stored:
        resp = client.get(f"/api/task/result/{tid}/{name}")
        assert resp.status_code == 200
        assert resp.headers["Content-Disposition"].startswith("attachment")
        assert _saved_name(resp) == name.removeprefix(f"{tid}_")
        (saved / _saved_name(resp)).write_bytes(resp.data)
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        f.removeprefix(f"{tid}_") for f in stored)
    assert any(p.name == "Cohort2023_Predictions_All.xlsx" for p in saved.iterdir())

    z = client.get(f"/api/task/{tid}/results.zip")
    assert z.status_code == 200
    assert _saved_name(z) == f"{tid}_results.zip"  # the bundle itself says which task
    with zipfile.ZipFile(io.BytesIO(z.data)) as zf:
        assert zf.namelist() == [f.removeprefix(f"{tid}_") for f in stored]
        for name in stored:
            assert zf.read(name.removeprefix(f"{tid}_")) == (
                data_dir(app) / "results" / name).read_bytes()
        unzipped = tmp_path / "unzipped"
        zf.extractall(unzipped)

    # The importer recognises the saved names as it does the stored ones (the
    # importer CLI downloads under the stored names), and imports them.
    by_stored, _ = classify_results(data_dir(app) / "results" / f for f in stored)
    by_saved, skipped = classify_results(sorted(unzipped.iterdir()))
    assert by_saved and skipped == ["Cohort2023_Predictions_All.xlsx"]
    assert {(r.year, r.code) for r in by_saved} == {(r.year, r.code) for r in by_stored}
    report = import_results(sorted(unzipped.iterdir()), f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert report.total_rows == 24


# --- the monitor's disk figures ----------------------------------------------


def _distinct_bytes(paths: list[Path]) -> int:
    seen: dict[tuple[int, int], int] = {}
    for p in paths:
        st = p.stat()
        seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


@dir_storage_only
def test_monitor_counts_each_upload_once(make_app: Any, app_config: dict[str, Any],
                                         tmp_path: Path) -> None:
    data = Path(app_config["PREDICT_DATA_DIR"])
    for sub in ("uploads", "results"):  # as in the repository, the default data dir
        (data / sub).mkdir(parents=True)
        (data / sub / ".gitkeep").touch()
    app = make_app()
    client = app.test_client()
    content = grade_workbook(tmp_path / "a.xlsx", n_students=10).read_bytes()
    other = grade_workbook(tmp_path / "b.xlsx", n_students=12, seed=2).read_bytes()
    tasks = [_completed(client, content, "a.xlsx"),
             _completed(client, content, "again.xlsx"),  # the same export: stored once
             _completed(client, other, "b.xlsx")]
    assert len({t["id"] for t in tasks}) == 3

    uploads = [data / "uploads" / n for n in listing(data / "uploads")]
    assert len(uploads) == 3  # one per task
    assert len(os.listdir(data / "uploads" / ".content")) == 2
    results = [data / "results" / n for n in listing(data / "results")]

    disk = client.get("/api/monitor").json["data"]["disk"]
    assert disk["uploads_files"] == 3
    assert disk["uploads_bytes"] == len(content) + len(other) == _distinct_bytes(uploads)
    assert disk["results_files"] == len(results)
    assert disk["results_bytes"] == _distinct_bytes(results)


def test_monitor_counts_an_empty_data_dir_as_empty(make_app: Any,
                                                    app_config: dict[str, Any]) -> None:
    data = Path(app_config["PREDICT_DATA_DIR"])
    for sub in ("uploads", "results"):
        (data / sub).mkdir(parents=True)
        (data / sub / ".gitkeep").write_text("kept by git\n")
    client = make_app().test_client()
    disk = client.get("/api/monitor").json["data"]["disk"]
    assert (disk["uploads_files"], disk["uploads_bytes"]) == (0, 0)
    assert (disk["results_files"], disk["results_bytes"]) == (0, 0)
