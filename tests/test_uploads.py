"""``destination_predictor.service.uploads``: what an upload must be to be
kept -- extension and content agree, not empty, not too large, not a zip bomb
-- and the safe, unique name it is stored under. A refused upload leaves
nothing behind and creates no task.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from support.service import (
    assert_error,
    data_dir,
    finished,
    grade_workbook,
    listing,
    start,
    tiny_xlsx,
    wait_for,
    zip_bytes,
)

from destination_predictor.service.uploads import UploadRejected, safe_original_name, save_upload

# --- refused uploads: nothing written ---------------------------------------------------


@pytest.mark.parametrize(("content", "name", "code"), [
    (b"SNH,Grade\n1,90\n", "grades.csv", "UNSUPPORTED_FILE_TYPE"),
    (b"#!/bin/sh\nrm -rf /\n", "grades.sh", "UNSUPPORTED_FILE_TYPE"),
    (b"not a workbook at all", "grades.xlsx", "BAD_FILE_CONTENT"),
    (b"", "grades.xlsx", "EMPTY_FILE"),
    (zip_bytes({"a.txt": b"hello"}), "grades.xlsx", "BAD_FILE_CONTENT"),
    (tiny_xlsx(), "grades.xls", "BAD_FILE_CONTENT"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "grades.xlsx", "BAD_FILE_CONTENT"),
    (tiny_xlsx()[:200], "grades.xlsx", "BAD_FILE_CONTENT"),
    (zip_bytes({"[Content_Types].xml": b"<x/>", "xl/bomb.xml": b"\0" * (64 * 1024 * 1024)}),
     "grades.xlsx", "SUSPICIOUS_ARCHIVE"),
])
def test_bad_uploads_are_refused_and_nothing_is_kept(app: Flask, client: FlaskClient,
                                                     content: bytes, name: str, code: str) -> None:
    assert_error(start(client, content, name=name), 400, code)
    for sub in ("uploads", "results", ".staging"):
        assert listing(data_dir(app) / sub) == [], sub
    assert client.get("/api/tasks").json["data"]["tasks"] == []


def test_total_unzipped_size_is_bounded(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_MAX_UNZIPPED_MB"] = 1
    application = make_app()
    # Low ratio per member (random-ish text), but 2 MB in total.
    text = "".join(f"<c r='A{i}'><v>{i * 7919 % 100003}</v></c>" for i in range(80_000))
    body = zip_bytes({"[Content_Types].xml": b"<x/>", "xl/s.xml": text.encode()})
    c = application.test_client()
    assert_error(start(c, body), 400, "SUSPICIOUS_ARCHIVE")
    assert listing(data_dir(application) / "uploads") == []


def test_oversize_upload_is_413_json(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_MAX_UPLOAD_MB"] = 0.05
    application = make_app()
    c = application.test_client()
    # Within the request allowance, over the file limit: refused while streaming.
    assert_error(start(c, b"PK" + b"\0" * 60_000), 413, "FILE_TOO_LARGE")
    # Over the whole request limit: refused by the framework, still JSON.
    assert_error(start(c, b"PK" + b"\0" * 1_200_000), 413, "FILE_TOO_LARGE")
    for sub in ("uploads", ".staging"):
        assert listing(data_dir(application) / sub) == []


# --- accepted uploads ---------------------------------------------------------------------

def test_xls_upload_runs(client: FlaskClient, tmp_path: Path) -> None:
    path = grade_workbook(tmp_path / "成绩.xls", 20, seed=3, fmt="xls")
    r = start(client, path.read_bytes(), name=path.name)
    assert r.status_code == 200, r.json
    data = wait_for(client, r.json["data"]["task_id"], finished)
    assert data["status"] == "completed", data
    assert data["summary"]["students"] == 20


def test_save_upload_stores_a_checked_copy_under_a_unique_name(tmp_path: Path) -> None:
    content = tiny_xlsx("same")
    kw: dict[str, Any] = dict(uploads_dir=tmp_path / "uploads", staging_dir=tmp_path / ".staging",
                              max_bytes=1024 * 1024, max_unzipped_bytes=1024 * 1024,
                              now=datetime(2024, 9, 1, 8, 30, 0))
    first = save_upload(io.BytesIO(content), "../成绩.xlsx", **kw)
    second = save_upload(io.BytesIO(content), "成绩.xlsx", **kw)
    assert (first.stored_name, second.stored_name) == ("20240901083000_成绩.xlsx",
                                                       "20240901083000_1_成绩.xlsx")
    assert first.original_name == "成绩.xlsx" and first.size == len(content)
    assert first.sha256 == second.sha256 == hashlib.sha256(content).hexdigest()
    assert first.path.read_bytes() == content
    assert listing(tmp_path / ".staging") == []
    with pytest.raises(UploadRejected) as refused:
        save_upload(io.BytesIO(content), "成绩.xlsx", **{**kw, "max_bytes": 100})
    assert refused.value.code == "FILE_TOO_LARGE"
    assert listing(tmp_path / ".staging") == [] and len(listing(tmp_path / "uploads")) == 2


# --- names -----------------------------------------------------------------------------------

def test_client_names_are_reduced_to_safe_file_names() -> None:
    assert safe_original_name("../../etc/passwd.xlsx") == "passwd.xlsx"
    assert safe_original_name("C:\\成绩\\2024级 成绩表.XLSX") == "2024级 成绩表.xlsx"
    assert safe_original_name("a\x00b\n|c?.xlsx") == "ab_c_.xlsx"
    assert safe_original_name(".xlsx") == "upload.xlsx"
    assert len(safe_original_name("长" * 400 + ".xlsx").encode()) <= 210


def test_stored_upload_names_are_safe_and_unique(app: Flask, client: FlaskClient) -> None:
    # Same second, same name: distinct stored files.
    ids = [start(client, tiny_xlsx(), name="../../成绩.xlsx").json["data"]["task_id"]
           for _ in range(3)]
    stored = listing(data_dir(app) / "uploads")
    assert len(set(stored)) == 3 and all(s.endswith("成绩.xlsx") and "/" not in s for s in stored)
    for tid in ids:
        wait_for(client, tid, finished)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from([".xlsx", ".xls", ".XLSX", ""]))
def test_any_client_name_becomes_one_plain_file_name(name: str, ext: str) -> None:
    safe = safe_original_name(name + ext)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in (".", "..") and not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 255
    assert all(unicodedata.category(ch)[0] != "C" for ch in safe)
    if ext:
        assert safe.endswith(ext.lower())
