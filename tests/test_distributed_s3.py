"""The distributed mode on an object store (issue 12), with real processes:
redis-server, the suite's PostgreSQL, a moto server process speaking S3
(support/s3.py), two API instances and one worker command -- each with a data
dir of its own, so nothing reaches another machine except through the store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from support.cluster import (
    RedisServer,
    WorkerCommand,
    api_instance,
    cluster_env,
    need_redis,
    rq_workers,
    upload,
    wait_status,
)
from support.live_server import LiveServer
from support.pg import PgServer, next_database_name
from support.plans import MAJOR, plan_bytes, required_courses
from support.s3 import S3Server
from support.service import grade_workbook

pytestmark = pytest.mark.slow


@dataclass
class S3Cluster:
    s3: S3Server
    bucket: str
    apis: list[LiveServer]
    worker: WorkerCommand
    dirs: dict[str, Path]
    files: Path
    leftovers: dict[str, Path]


def _plant_leftovers(results: Path) -> dict[str, Path]:
    """What jobs killed on the worker's machine left before it started again."""
    results.mkdir(parents=True)
    old, fresh = results / ".staging-old", results / ".staging-fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "Cohort2023_Predictions_All.xlsx").write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))  # older than a task may run
    unknown = results / "12345678-1234-4234-8234-123456789abc_Cohort2023_Predictions_ai.xlsx"
    unknown.write_bytes(b"half")  # a task no record knows
    return {"old": old, "fresh": fresh, "unknown": unknown}


@pytest.fixture(scope="module")
def s3_cluster(pg: PgServer, s3_server: S3Server,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Cluster]:
    root = tmp_path_factory.mktemp("s3-cluster")
    redis_server = RedisServer(need_redis(), root / "redis").start()
    db = pg.create_database(next_database_name("s3cluster"))
    bucket = s3_server.new_bucket()
    env = cluster_env(redis_server.url, db, {
        "PREDICT_STORAGE_URL": f"s3://{bucket}/prod",
        "PREDICT_S3_ENDPOINT_URL": s3_server.endpoint})
    dirs = {name: root / name for name in ("a", "b", "worker")}
    apis = [api_instance(dirs["a"], env, root / "logs"), api_instance(dirs["b"], env, root / "logs")]
    worker = WorkerCommand(dirs["worker"], env, root / "logs")
    leftovers = _plant_leftovers(dirs["worker"] / "results")
    try:
        for api in apis:
            api.start()
        worker.start()
        deadline = time.monotonic() + 90
        while not rq_workers(redis_server.url):
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)
        yield S3Cluster(s3_server, bucket, apis, worker, dirs, root, leftovers)
    finally:
        worker.stop()
        for api in apis:
            api.stop()
        redis_server.stop()


def _local(directory: Path, area: str) -> list[str]:
    d = directory / area
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.exists() else []


def test_a_worker_starts_by_removing_what_killed_jobs_left(s3_cluster: S3Cluster) -> None:
    """Half-written results no live job can own go; a staging folder young
    enough to be another worker command's job in progress stays."""
    left = s3_cluster.leftovers
    assert not left["old"].exists() and not left["unknown"].exists()
    assert left["fresh"].exists()
    assert "event=worker.results_tidied removed=2" in "".join(
        p.read_text() for p in s3_cluster.dirs["worker"].glob("worker_*.log"))


def test_every_machine_reaches_every_file_through_the_store(s3_cluster: S3Cluster) -> None:
    a, b = s3_cluster.apis
    workbook = grade_workbook(s3_cluster.files / "成绩 s3.xlsx", 300, seed=41)
    resp = upload(a.base, workbook)
    assert resp.status_code in (200, 202), resp.text
    task_id = resp.json()["data"]["task_id"]
    done = wait_status(b.base, task_id, lambda d: d["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done

    # The worker read the upload from the store and put the results there, then
    # dropped its copies (no cleaner runs on a worker machine); instance A never
    # held a result, B has none until asked.
    assert _local(s3_cluster.dirs["worker"], "uploads") == []
    assert _local(s3_cluster.dirs["worker"], "results") == []
    assert f"event=task.completed task_id={task_id}" in "".join(
        p.read_text() for p in s3_cluster.dirs["worker"].glob("worker_*.log"))
    assert _local(s3_cluster.dirs["a"], "results") == []
    assert _local(s3_cluster.dirs["b"], "results") == []
    keys = s3_cluster.s3.keys(s3_cluster.bucket, "prod/results/")
    assert keys == sorted(f"prod/results/{n}" for n in done["result_files"])

    name = done["result_files"][0]
    whole = requests.get(f"{b.base}/api/task/result/{task_id}/{name}", timeout=30)
    assert whole.status_code == 200
    # A resumed download continues on the other instance: same ETag, same bytes.
    part = requests.get(f"{a.base}/api/task/result/{task_id}/{name}", timeout=30,
                        headers={"Range": "bytes=100-", "If-Range": whole.headers["ETag"]})
    assert part.status_code == 206 and part.content == whole.content[100:]
    assert part.headers["ETag"] == whole.headers["ETag"]
    stored = s3_cluster.s3.client().get_object(Bucket=s3_cluster.bucket,
                                               Key=f"prod/results/{name}")["Body"].read()
    assert stored == whole.content


def test_the_store_down_refuses_uploads_and_work_resumes_when_back(
        s3_cluster: S3Cluster) -> None:
    a, b = s3_cluster.apis
    s3_cluster.s3.stop()
    try:
        workbook = grade_workbook(s3_cluster.files / "成绩 down.xlsx", 200, seed=42)
        refused = upload(a.base, workbook)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "STORAGE_UNAVAILABLE"
        deadline = time.monotonic() + 15  # the health probe is believed 5 s
        while True:
            health = requests.get(f"{b.base}/health", timeout=30)
            if health.status_code == 503:
                break
            assert time.monotonic() < deadline, health.text
            time.sleep(0.5)
        assert health.json()["code"] == "STORAGE_UNAVAILABLE"
        listed = requests.get(f"{a.base}/api/tasks", timeout=10).json()["data"]["tasks"]
        assert all(t["file_name"] != "成绩 down.xlsx" for t in listed)  # no task left behind
    finally:
        # Back on the same port (moto keeps objects in memory: the bucket is made again).
        s3_cluster.s3.start()
        s3_cluster.s3.client().create_bucket(Bucket=s3_cluster.bucket)
    resp = upload(b.base, workbook)
    assert resp.status_code in (200, 202), resp.text
    done = wait_status(a.base, resp.json()["data"]["task_id"],
                       lambda d: d["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done


def test_a_plan_uploaded_through_one_instance_is_used_everywhere(s3_cluster: S3Cluster) -> None:
    """The managed plans' state goes through the store: instance B lists the
    version A accepted, and the worker computes with it."""
    a, b = s3_cluster.apis
    dropped = required_courses(2023)[0]
    content = plan_bytes(2023, drop=dropped)
    resp = requests.post(f"{a.base}/api/plans", timeout=60,
                         data={"year": "2023", "major": MAJOR},
                         files={"file": ("plan.xlsx", content)})
    assert resp.status_code == 200, resp.text
    listed = requests.get(f"{b.base}/api/plans", timeout=10).json()["data"]["plans"]
    plan = next(p for p in listed if p["year"] == 2023 and p["major"] == MAJOR)
    assert plan["version"] == "v1", plan

    workbook = grade_workbook(s3_cluster.files / "成绩 plan.xlsx", 200, seed=43)
    resp = requests.post(f"{b.base}/api/task/start", timeout=30,
                         data={"year": "2023", "major": MAJOR},
                         files={"file": (workbook.name, workbook.read_bytes())})
    assert resp.status_code in (200, 202), resp.text
    done = wait_status(a.base, resp.json()["data"]["task_id"],
                       lambda d: d["status"] in ("completed", "failed"))
    assert done["status"] == "completed" and done["plan_versions"] == {MAJOR: "v1"}, done
    used = s3_cluster.dirs["worker"] / "plans" / "current" / "education-plan2023" / (
        f"2023级{MAJOR}培养方案.xlsx")
    assert used.read_bytes() == content
