"""The distributed mode with real processes (issue 12): redis-server, the
suite's PostgreSQL, two API instances (``python async_api_server.py``, and gunicorn with two
worker processes) and
two worker commands (``python -m destination_predictor.worker``, one RQ
worker each) on one shared data dir. The tests run in order on one cluster
and each leaves it whole for the next: the contract across instances, cancel
of a running job, ``kill -9`` of a worker mid-job, ``kill -9`` of an API
instance, and Redis stopped for 10 s while tasks wait for workers that are
down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from support.browser import needs_browser, page
from support.cluster import (
    RedisServer,
    WorkerCommand,
    alive,
    api_instance,
    cluster_env,
    describe,
    need_redis,
    rq_workers,
    status,
    upload,
    wait_status,
)
from support.live_server import (
    LiveServer,
    free_port,
    need_nginx,
    reachable_tmp_dir,
    wait_until_listening,
)
from support.pg import PgServer, next_database_name
from support.service import grade_workbook

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    redis: RedisServer
    apis: list[LiveServer]
    workers: list[WorkerCommand]
    data: Path
    small: Path   # 1,000 students: well under a second of work
    big: Path     # 4,000 students: a few seconds, long enough to act on mid-run
    files: Path

    def fresh(self, seed: int, students: int = 300) -> Path:
        """A workbook no task has had yet (the result cache would answer a repeat)."""
        return grade_workbook(self.files / f"成绩 {seed}.xlsx", students, seed=seed)

    def api_logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in self.data.glob("async_api_*.log"))

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.data.glob("worker_*.log"))


def wait_workers(url: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while len(rq_workers(url)) != count:
        assert time.monotonic() < deadline, f"RQ workers: {rq_workers(url)}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    files = tmp_path_factory.mktemp("cluster-files")
    small = grade_workbook(files / "成绩 1000.xlsx", 1000, seed=11)
    big = grade_workbook(files / "成绩 4000.xlsx", 4000, seed=12)
    redis_server = RedisServer(need_redis(), root / "redis").start()
    db = pg.create_database(next_database_name("cluster"))
    env = cluster_env(redis_server.url, db, {"PREDICT_JOBS_DATABASE_URL": db,
                                             "PREDICT_WEBHOOK_DATABASE_URL": db,
                                             "PREDICT_MAX_PENDING": "3"})
    data = root / "data"
    # One instance as the script, one as gunicorn with two worker processes.
    apis = [api_instance(data, env, root / "logs"),
            api_instance(data, env, root / "logs", gunicorn_workers=2)]
    workers = [WorkerCommand(data, env, root / "logs", name=f"worker{i}") for i in range(2)]
    try:
        for api in apis:  # one after the other: each creates missing tables at start
            api.start()
        for w in workers:
            w.start()
        wait_workers(redis_server.url, 2)
        listed = requests.get(f"{apis[1].base}/health", timeout=10).json()["data"]
        assert listed["mode"] == "distributed" and len(listed["workers"]) == 2, listed
        yield Cluster(redis_server, apis, workers, data, small, big, files)
    finally:
        for w in workers:
            w.stop()
        for api in apis:
            api.stop()
        redis_server.stop()


def test_one_instance_accepts_the_other_serves_progress_and_files(cluster: Cluster) -> None:
    a, b = cluster.apis
    resp = upload(a.base, cluster.small)
    assert resp.status_code in (200, 202), resp.text
    task_id = resp.json()["data"]["task_id"]
    seen: list[int] = []
    done = wait_status(b.base, task_id,
                       lambda d: seen.append(d["progress"]) or d["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done
    assert seen == sorted(seen)  # progress never goes back, whichever instance answers
    assert status(a.base, task_id) == done
    name = done["result_files"][0]
    whole = requests.get(f"{a.base}/api/task/result/{task_id}/{name}", timeout=30)
    part = requests.get(f"{b.base}/api/task/result/{task_id}/{name}",
                        headers={"Range": "bytes=0-99"}, timeout=30)
    assert whole.status_code == 200 and part.status_code == 206
    assert part.content == whole.content[:100] and whole.headers["ETag"] == part.headers["ETag"]
    listed = requests.get(f"{b.base}/api/tasks", timeout=10).json()["data"]["tasks"]
    assert task_id in [t["id"] for t in listed]
    assert f"event=task.completed task_id={task_id}" in cluster.worker_logs()


@needs_browser
def test_the_monitoring_panel_lists_the_workers_of_every_machine(cluster: Cluster) -> None:
    b = cluster.apis[1]
    monitor = requests.get(f"{b.base}/api/monitor", timeout=10).json()["data"]["workers"]
    assert monitor["mode"] == "distributed" and monitor["max"] == 2
    assert sorted(n["pid"] for n in monitor["nodes"]) == sorted(
        w["pid"] for w in rq_workers(cluster.redis.url))
    with page() as pg:
        pg.goto(b.base + "/admin/prediction/async")
        pg.wait_for_selector("#monitor-body table.nodes tr.node")
        assert pg.locator("#monitor-body table.nodes tr.node").count() == 2
        assert "执行机器（2 个 worker）" in pg.locator("#monitor-body").inner_text()


def test_a_running_job_is_cancelled_through_the_other_instance(cluster: Cluster) -> None:
    a, b = cluster.apis
    task_id = upload(a.base, cluster.big).json()["data"]["task_id"]
    wait_status(a.base, task_id, lambda d: d["status"] == "running", timeout=60)
    resp = requests.post(f"{b.base}/api/task/{task_id}/cancel", timeout=10)
    assert resp.status_code == 200, resp.text
    end = wait_status(a.base, task_id, lambda d: d["status"] != "running", timeout=60)
    assert (end["status"], end["cancelled"], end["error_code"]) == ("failed", True, "CANCELLED")
    assert not list((cluster.data / "results").glob(f"{task_id}_*"))


RECEIVER = Path(__file__).parent / "support" / "webhook_receiver.py"
SECRET = "cluster-secret-77"


def test_endings_made_in_workers_are_told_once_to_batches_and_webhooks(
        cluster: Cluster) -> None:
    """A task ends in a worker process; the API instances (three processes
    here) hear it through the task_endings outbox: one webhook delivery per
    task, and a batch that reports its end once."""
    a, b = cluster.apis
    proc = subprocess.Popen([sys.executable, str(RECEIVER), SECRET], stdout=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        hook_url = f"http://127.0.0.1:{int(proc.stdout.readline())}/generic/ok"
        made = requests.post(f"{a.base}/api/webhooks", json={"url": hook_url, "secret": SECRET},
                             timeout=10)
        assert made.status_code == 201, made.text
        task_id = upload(b.base, cluster.fresh(301)).json()["data"]["task_id"]
        files = [cluster.fresh(302), cluster.fresh(303)]
        with files[0].open("rb") as f0, files[1].open("rb") as f1:
            started = requests.post(f"{a.base}/api/batch/start", data={"year": "2023"},
                                    files=[("files", (files[0].name, f0)),
                                           ("files", (files[1].name, f1))], timeout=30)
        assert started.status_code in (200, 202), started.text
        batch_id = started.json()["data"]["batch_id"]
        wait_status(a.base, task_id, lambda d: d["status"] == "completed")
        deadline = time.monotonic() + 60
        while True:
            batch = requests.get(f"{b.base}/api/batch/status/{batch_id}", timeout=10).json()["data"]
            if batch["state"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert batch["state"] == "completed", batch

        def events() -> list[tuple[str, str]]:
            got = requests.get(f"http://127.0.0.1:{hook_url.split(':')[2].split('/')[0]}"
                               "/_requests", timeout=5).json()
            out = []
            for r in got:
                body = json.loads(r["body"])
                out.append((body["event"], (body.get("task") or body.get("batch") or {}).get(
                    "id") or body.get("batch", {}).get("batch_id", "")))
            return out

        deadline = time.monotonic() + 30
        while len(events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(3)  # a second delivery of either would arrive now
        got = events()
        assert sorted(e for e, _ in got) == ["batch.completed", "task.completed"], got
        assert ("task.completed", task_id) in got
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_kill9_of_a_worker_mid_job_runs_the_task_once_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.apis
    task_id = upload(a.base, cluster.big).json()["data"]["task_id"]
    wait_status(b.base, task_id, lambda d: d["status"] == "running", timeout=60)
    deadline = time.monotonic() + 10
    owner = None
    while owner is None:
        pids = {w["pid"] for w in rq_workers(cluster.redis.url)
                if (w["job"] or "").startswith(task_id)}
        owner = next((w for w in cluster.workers if pids & set(w.descendants())), None)
        assert owner is not None or time.monotonic() < deadline, rq_workers(cluster.redis.url)
    assert status(b.base, task_id)["status"] == "running"
    below = owner.kill9()
    killed_at = time.monotonic()
    time.sleep(1.0)
    survivors = [describe(p) for p in below if alive(p)]
    assert not survivors  # its RQ worker and the job died with it
    done = wait_status(b.base, task_id, lambda d: d["status"] in ("completed", "failed"),
                       timeout=90)
    took = time.monotonic() - killed_at
    assert done["status"] == "completed", done
    assert took < 60, took  # heartbeat TTL (10 s) + a reconcile round + the run itself
    assert f"event=task.requeued task_id={task_id}" in cluster.api_logs()
    assert cluster.worker_logs().count(f"event=task.completed task_id={task_id}") == 1
    owner.start()
    wait_workers(cluster.redis.url, 2)


def test_kill9_of_an_api_instance_leaves_every_task_to_the_other(cluster: Cluster) -> None:
    a, b = cluster.apis
    accepted_by_a = [upload(a.base, cluster.fresh(seed)).json()["data"]["task_id"]
                     for seed in (101, 102)]
    a.kill9()
    for task_id in accepted_by_a:
        done = wait_status(b.base, task_id, lambda d: d["status"] in ("completed", "failed"))
        assert done["status"] == "completed"
        name = done["result_files"][0]
        assert requests.get(f"{b.base}/api/task/result/{task_id}/{name}",
                            timeout=30).status_code == 200
    a.start()


NGINX_EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "distributed" / "nginx-upstream.conf"


def test_the_nginx_upstream_example_spreads_requests_and_survives_an_instance(
        cluster: Cluster) -> None:
    """deploy/distributed/nginx-upstream.conf, run by real nginx in front of the
    two instances: requests reach both; with one killed, every request is
    still answered (status, download, a new upload)."""
    nginx = need_nginx()
    a, b = cluster.apis
    with reachable_tmp_dir("nginx-upstream-") as prefix:
        port = free_port()
        conf = (NGINX_EXAMPLE.read_text().replace("LISTEN_PORT", f"127.0.0.1:{port}")
                .replace("API_HOST_1:PORT", f"127.0.0.1:{a.port}")
                .replace("API_HOST_2:PORT", f"127.0.0.1:{b.port}"))
        (prefix / "nginx.conf").write_text(conf)
        log = prefix / "error.log"
        proc = subprocess.Popen([nginx, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
                                 "-e", str(log), "-g", "daemon off;"], stdin=subprocess.DEVNULL)
        try:
            wait_until_listening(proc, port, log, "nginx", 10)
            front = f"http://127.0.0.1:{port}"
            pids = {requests.get(f"{front}/health", timeout=10).json()["data"]["pid"]
                    for _ in range(12)}
            a_pid = requests.get(f"{a.base}/health", timeout=10).json()["data"]["pid"]
            assert a_pid in pids and len(pids) >= 2, pids  # both instances answered
            task_id = upload(front, cluster.fresh(401)).json()["data"]["task_id"]
            done = wait_status(front, task_id, lambda d: d["status"] in ("completed", "failed"))
            assert done["status"] == "completed"
            a.kill9()
            answers = [requests.get(f"{front}/api/task/status/{task_id}", timeout=10).status_code
                       for _ in range(10)]
            assert answers == [200] * 10
            name = done["result_files"][0]
            assert requests.get(f"{front}/api/task/result/{task_id}/{name}",
                                timeout=30).status_code == 200
            again = upload(front, cluster.fresh(402))
            assert again.status_code in (200, 202), again.text
        finally:
            proc.terminate()
            proc.wait(10)
            if a.proc is None or a.proc.poll() is not None:
                a.start()


def test_redis_down_for_10s_refuses_new_work_and_loses_nothing(cluster: Cluster) -> None:
    """Workers down (killed), three tasks accepted and waiting (a fourth is
    refused: the bound is the cluster's), then Redis stops for 10 s -- its
    queue is gone with it. New tasks get 503 QUEUE_UNAVAILABLE,
    statuses still answer; once Redis and the workers are back, the waiting
    tasks are dispatched again from their records and run."""
    a, b = cluster.apis
    for w in cluster.workers:
        w.kill9()
    # RQ keeps a killed worker listed for a while; the cluster counts it out
    # once its heartbeat is too old (the monitor lists live workers only).
    deadline = time.monotonic() + 40
    while requests.get(f"{b.base}/health", timeout=10).json()["data"]["workers"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    waiting = [upload(a.base, cluster.fresh(201)).json()["data"]["task_id"],
               upload(b.base, cluster.fresh(202), priority="high").json()["data"]["task_id"],
               upload(a.base, cluster.fresh(205)).json()["data"]["task_id"]]
    for task_id in waiting:
        assert status(a.base, task_id)["status"] == "pending"
    # The bound counts the waiting tasks of every instance (PREDICT_MAX_PENDING=3).
    full = upload(b.base, cluster.fresh(206))
    assert full.status_code == 503 and full.json()["code"] == "QUEUE_FULL"
    assert status(b.base, waiting[1])["queue_position"] == 1  # high first, cluster-wide
    cluster.redis.stop()
    stopped = time.monotonic()
    health = requests.get(f"{a.base}/health", timeout=10)
    assert health.status_code == 503 and health.json()["code"] == "QUEUE_UNAVAILABLE"
    for api in (a, b):
        refused = upload(api.base, cluster.fresh(203))
        assert refused.status_code == 503 and refused.json()["code"] == "QUEUE_UNAVAILABLE"
        assert status(api.base, waiting[0])["status"] == "pending"
    time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
    cluster.redis.start()
    for w in cluster.workers:
        w.start()
    for task_id in waiting:
        done = wait_status(b.base, task_id, lambda d: d["status"] in ("completed", "failed"),
                           timeout=120)
        assert done["status"] == "completed", done
    logs = cluster.api_logs()
    assert all(f"event=task.redispatched task_id={t}" in logs for t in waiting)
    accepted = upload(a.base, cluster.fresh(204))
    assert accepted.status_code in (200, 202), accepted.text
    assert wait_status(b.base, accepted.json()["data"]["task_id"],
                       lambda d: d["status"] in ("completed", "failed"))["status"] == "completed"


def test_gunicorn_refuses_several_workers_without_the_distributed_mode(tmp_path: Path) -> None:
    """Several processes each with its own embedded pool would run 3 x N jobs and
    answer for each other's tasks: refused before anything listens."""
    server = api_instance(tmp_path / "data", {}, tmp_path, gunicorn_workers=2)
    server.start_timeout = 30
    with pytest.raises(AssertionError, match="PREDICT_HTTP_WORKERS > 1 needs the distributed mode"):
        server.start()
