"""Where uploads and results live (``PREDICT_STORAGE_URL``, service.storage):
the object-store backend through boto3 against a real S3-protocol server
process (moto's server mode, support/s3.py), and the directory backend on a
shared directory outside the data dir."""

from __future__ import annotations

import io
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from support.live_server import free_port
from support.s3 import S3Server
from support.service import assert_error, finished, grade_workbook, start, wait_for

from destination_predictor.service.settings import SettingsError, load_settings
from destination_predictor.service.storage import (
    RESULTS,
    UPLOADS,
    S3Storage,
    StorageUnavailable,
)

pytestmark = pytest.mark.slow


def _storage(s3: S3Server, tmp_path: Path) -> tuple[S3Storage, str]:
    bucket = s3.new_bucket()
    return S3Storage(bucket, "p/", tmp_path / "cache", endpoint_url=s3.endpoint), bucket


def _put_local(storage: S3Storage, area: str, name: str, content: bytes) -> Path:
    path = storage.local_path(area, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_objects_round_trip_through_the_cache(s3_server: S3Server, tmp_path: Path) -> None:
    storage, bucket = _storage(s3_server, tmp_path)
    blob = os.urandom(300_000)
    local = _put_local(storage, UPLOADS, "成绩 2023级_1.xlsx", blob)
    storage.publish(UPLOADS, "成绩 2023级_1.xlsx")
    assert s3_server.keys(bucket) == ["p/uploads/成绩 2023级_1.xlsx"]

    local.unlink()  # another machine: nothing cached
    got = storage.fetch(UPLOADS, "成绩 2023级_1.xlsx")
    assert got.path == local and local.read_bytes() == blob
    head = s3_server.client().head_object(Bucket=bucket, Key="p/uploads/成绩 2023级_1.xlsx")
    assert got.etag == head["ETag"].strip('"')
    assert [p.name for p in local.parent.iterdir()] == [local.name]  # no .part left behind
    local.write_bytes(b"x" * 10)  # a broken copy (another size) is fetched again
    assert storage.fetch(UPLOADS, "成绩 2023级_1.xlsx").path.read_bytes() == blob

    with pytest.raises(FileNotFoundError):
        storage.fetch(RESULTS, "nothing.xlsx")
    with pytest.raises(FileNotFoundError):
        storage.fetch(RESULTS, "../uploads/成绩 2023级_1.xlsx")
    assert not storage.exists(RESULTS, "nothing.xlsx")

    for name in ("t1_a.xlsx", "t1_b.xlsx", "t2_a.xlsx"):
        _put_local(storage, RESULTS, name, name.encode() * 100)
        storage.publish(RESULTS, name)
    storage.copy(RESULTS, "t1_a.xlsx", "t3_a.xlsx")  # the result cache's server-side copy
    assert not storage.local_path(RESULTS, "t3_a.xlsx").exists()
    assert storage.fetch(RESULTS, "t3_a.xlsx").path.read_bytes() == b"t1_a.xlsx" * 100
    with pytest.raises(FileNotFoundError):
        storage.copy(RESULTS, "gone.xlsx", "t4_a.xlsx")
    assert storage.names(RESULTS, "t1_") == {"t1_a.xlsx", "t1_b.xlsx"}
    assert storage.usage(RESULTS) == (4 * 900, 4)

    _put_local(storage, RESULTS, "t1_half.xlsx", b"never published")
    storage.remove_prefix(RESULTS, "t1_")  # the objects and this machine's files
    assert storage.names(RESULTS, "") == {"t2_a.xlsx", "t3_a.xlsx"}
    assert not list(storage.local_dir(RESULTS).glob("t1_*"))


def test_sweep_and_cache_pruning(s3_server: S3Server, tmp_path: Path) -> None:
    storage, bucket = _storage(s3_server, tmp_path)
    for name in ("keep.xlsx", "orphan.xlsx"):
        _put_local(storage, RESULTS, name, b"r")
        storage.publish(RESULTS, name)
    now = time.time()
    assert storage.sweep(RESULTS, {"keep.xlsx"}, now - 3600) == 0  # too young
    assert storage.sweep(RESULTS, {"keep.xlsx"}, now + 60) >= 1
    assert s3_server.keys(bucket) == ["p/results/keep.xlsx"]
    assert not storage.local_path(RESULTS, "orphan.xlsx").exists()

    # This machine's cache: copies unused since the cutoff go, the objects stay.
    old = _put_local(storage, UPLOADS, "old.xlsx", b"u")
    used = _put_local(storage, UPLOADS, "in-use.xlsx", b"u")
    os.utime(old, (now - 7200, now - 7200))
    os.utime(used, (now - 7200, now - 7200))
    assert storage.prune_cache({"in-use.xlsx"}, now - 3600) == 1
    assert not old.exists() and used.exists()
    assert storage.local_path(RESULTS, "keep.xlsx").exists()  # fresh
    assert s3_server.keys(bucket) == ["p/results/keep.xlsx"]


def test_an_unreachable_store_is_storage_unavailable(tmp_path: Path) -> None:
    storage = S3Storage("b", "", tmp_path, endpoint_url=f"http://127.0.0.1:{free_port()}")
    _put_local(storage, UPLOADS, "a.xlsx", b"a")  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        storage.publish(UPLOADS, "a.xlsx")
    assert caught.value.code == "STORAGE_UNAVAILABLE" and "对象存储" in caught.value.message
    with pytest.raises(StorageUnavailable):
        storage.fetch(UPLOADS, "a.xlsx")
    assert storage.problem() is not None
    assert time.monotonic() - started < 30  # refused connections: retried, not hung


@pytest.mark.parametrize("raw", ["ftp://x/y", "s3://", "s3:///prefix", "file://host/x",
                                 "file:relative", "relative/dir", "s3://b/p?x=1"])
def test_the_setting_refuses_what_it_cannot_use(raw: str) -> None:
    with pytest.raises(SettingsError, match="PREDICT_STORAGE_URL"):
        load_settings({"PREDICT_STORAGE_URL": raw}, environ={})


# --- the service on an object store ---------------------------------------------

@pytest.fixture
def s3_app(app_config: dict[str, Any], make_app: Any, s3_server: S3Server) -> Any:
    bucket = s3_server.new_bucket()
    app_config.update(PREDICT_STORAGE_URL=f"s3://{bucket}/files",
                      PREDICT_S3_ENDPOINT_URL=s3_server.endpoint)
    app = make_app()
    app.bucket = bucket
    return app


def _wipe_cache(app: Any) -> None:
    """As if the next request reached another instance: nothing cached here."""
    data = app.extensions["predict"].settings.data_dir
    for area in ("uploads", "results"):
        shutil.rmtree(data / area)
        (data / area).mkdir()


def test_tasks_keep_their_files_in_the_object_store(
        s3_app: Any, s3_server: S3Server, tmp_path: Path) -> None:
    client = s3_app.test_client()
    content = grade_workbook(tmp_path / "g.xlsx", 60, seed=31).read_bytes()
    task_id = start(client, content, name="成绩.xlsx").json["data"]["task_id"]
    done = wait_for(client, task_id, finished)
    assert done["status"] == "completed", done
    keys = s3_server.keys(s3_app.bucket)
    assert [k for k in keys if k.startswith("files/uploads/")] == [
        f"files/uploads/{s3_app.extensions['predict'].store.get(task_id).upload_name}"]
    results = sorted(f"files/results/{n}" for n in done["result_files"])
    assert [k for k in keys if k.startswith("files/results/")] == results

    _wipe_cache(s3_app)
    name = done["result_files"][0]
    whole = client.get(f"/api/task/result/{task_id}/{name}")
    assert whole.status_code == 200
    head = s3_server.client().head_object(Bucket=s3_app.bucket,
                                          Key=f"files/results/{name}")
    assert whole.headers["ETag"] == head["ETag"]  # the same on every instance
    assert openpyxl.load_workbook(io.BytesIO(whole.data)).sheetnames
    part = client.get(f"/api/task/result/{task_id}/{name}",
                      headers={"Range": "bytes=10-109", "If-Range": whole.headers["ETag"]})
    assert part.status_code == 206 and part.data == whole.data[10:110]
    assert client.get(f"/api/task/result/{task_id}/{name}",
                      headers={"If-None-Match": whole.headers["ETag"]}).status_code == 304

    _wipe_cache(s3_app)
    zipped = client.get(f"/api/task/{task_id}/results.zip")
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as zf:
        assert sorted(zf.namelist()) == sorted(
            n.removeprefix(f"{task_id}_") for n in done["result_files"])
        assert zf.read(name.removeprefix(f"{task_id}_")) == whole.data

    _wipe_cache(s3_app)  # the what-if student view reads the upload back
    snh = openpyxl.load_workbook(io.BytesIO(content)).active.cell(2, 1).value
    assert client.get(f"/api/task/{task_id}/student/{snh}").status_code == 200

    # The same work again: completed from the cache by server-side copies.
    twin = start(client, content, name="again.xlsx").json["data"]
    again = wait_for(client, twin["task_id"], finished)
    assert again["status"] == "completed" and again.get("cached_from") == task_id, again
    assert sorted(k for k in s3_server.keys(s3_app.bucket, "files/results/")
                  if twin["task_id"] in k) == sorted(
        f"files/results/{n}" for n in again["result_files"])

    # The monitoring panel counts what the bucket holds (two uploads, both sets).
    disk = client.get("/api/monitor").json["data"]["disk"]
    assert disk["uploads_files"] == 2
    assert disk["results_files"] == len(done["result_files"]) + len(again["result_files"])
    assert disk["results_bytes"] == sum(
        o["Size"] for o in s3_server.client().list_objects_v2(
            Bucket=s3_app.bucket, Prefix="files/results/")["Contents"])

    # Retention: the objects go, the download answers 410.
    manager = s3_app.extensions["predict"]
    assert manager.cleaner.sweep(now=time.time() + manager.settings.retention_s + 60
                                 ).expired_tasks == 2
    assert s3_server.keys(s3_app.bucket) == []
    assert_error(client.get(f"/api/task/result/{task_id}/{name}"), 410, "TASK_EXPIRED")


def test_a_result_missing_from_the_store_is_gone(s3_app: Any, s3_server: S3Server,
                                                 tmp_path: Path) -> None:
    client = s3_app.test_client()
    content = grade_workbook(tmp_path / "g.xlsx", 30, seed=32).read_bytes()
    task_id = start(client, content).json["data"]["task_id"]
    done = wait_for(client, task_id, finished)
    name = done["result_files"][0]
    s3_server.client().delete_object(Bucket=s3_app.bucket,
                                     Key=f"files/results/{name}")
    # The local copy is still cached here, but the store is the truth.
    assert_error(client.get(f"/api/task/result/{task_id}/{name}"), 410, "RESULT_GONE")


def test_an_unreachable_store_refuses_uploads_with_503(
        app_config: dict[str, Any], make_app: Any, grades: Path) -> None:
    app_config.update(PREDICT_STORAGE_URL="s3://nowhere/x",
                      PREDICT_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    app = make_app()
    client = app.test_client()
    resp = start(client, grades.read_bytes())
    assert_error(resp, 503, "STORAGE_UNAVAILABLE")
    assert resp.headers["Retry-After"]
    manager = app.extensions["predict"]
    assert manager.store.counts() == {} or sum(manager.store.counts().values()) == 0
    assert [p for p in manager.settings.uploads_dir.iterdir() if not p.name.startswith(".")] == []
    health = client.get("/health")
    assert health.status_code == 503 and "STORAGE_UNAVAILABLE" in health.get_data(as_text=True)


def test_a_shared_directory_holds_the_files_instead_of_the_data_dir(
        app_config: dict[str, Any], make_app: Any, grades: Path, tmp_path: Path) -> None:
    shared = tmp_path / "nfs" / "predict"
    app_config["PREDICT_STORAGE_URL"] = f"file://{shared}"
    app = make_app()
    client = app.test_client()
    task_id = start(client, grades.read_bytes()).json["data"]["task_id"]
    done = wait_for(client, task_id, finished)
    assert done["status"] == "completed", done
    assert sorted(p.name for p in (shared / "results").iterdir()) == sorted(done["result_files"])
    assert len([p for p in (shared / "uploads").iterdir() if not p.name.startswith(".")]) == 1
    data = Path(app_config["PREDICT_DATA_DIR"])
    assert not (data / "results").exists() or not any((data / "results").iterdir())
    assert client.get(f"/api/task/result/{task_id}/{done['result_files'][0]}").status_code == 200


def test_plan_changes_reach_every_machine_through_the_store(
        s3_server: S3Server, tmp_path: Path) -> None:
    """Two machines' plan stores over one bucket (service.plan_sync): an upload,
    a rollback and a delete made on one are what the other uses."""
    from support.paths import PLANS_DIR
    from support.plans import MAJOR, plan_bytes, required_courses

    from destination_predictor.service.plan_store import PlanStore
    from destination_predictor.service.plan_sync import PlanSync

    bucket = s3_server.new_bucket()

    def machine(name: str) -> PlanStore:
        storage = S3Storage(bucket, "p/", tmp_path / name, endpoint_url=s3_server.endpoint)
        root = tmp_path / name / "plans"
        return PlanStore(root, PLANS_DIR, lambda path, year, major: {"ok": True, "courses": 1},
                         sync=PlanSync(storage, root))

    def in_use(store: PlanStore) -> str:
        store.refresh(force=True)
        return next(p["version"] for p in store.list()
                    if p["year"] == 2023 and p["major"] == MAJOR)

    def effective(store: PlanStore) -> bytes:
        return (store.effective_dir / "education-plan2023" / f"2023级{MAJOR}培养方案.xlsx"
                ).read_bytes()

    a, b = machine("a"), machine("b")
    versions = [plan_bytes(2023, drop=course) for course in required_courses(2023)[:2]]
    assert versions[0] != versions[1]
    for content in versions:
        tmp = tmp_path / "upload.xlsx"
        tmp.write_bytes(content)
        a.upload(tmp, original="plan.xlsx", sha256="0", size=len(content), year=2023,
                 major=MAJOR, code=None)
    assert in_use(b) == "v2" and effective(b) == versions[1]
    b.rollback(2023, MAJOR)
    assert in_use(a) == "v1" and effective(a) == versions[0]
    a.delete(2023, MAJOR)
    assert in_use(b) == "bundled"
    late = machine("c")  # a machine that joins later starts from the shared state
    assert in_use(late) == "bundled" and len(late._known(2023, MAJOR)["versions"]) == 2
