"""The distributed mode measured against the embedded one, on this machine.

Needs a PostgreSQL whose user may create databases (``--tasks-db-url``):
each phase gets a database of its own and a fresh data dir, so the result
cache never answers. Starts its own ``redis-server`` (Debian's package) on a
free port, and the API instances (``async_api_server.py``) and worker
commands each phase needs; all are stopped by pid at the end.

1. Per-task overhead: the same 1,000-student tasks, one at a time, embedded
   (default process execution) vs distributed (one worker command); the time
   is the record's ``finished_at - created_at``.
2. Status latency with two API instances while six jobs run (two worker
   commands of three workers): p50/p99 of ``GET /api/task/status`` from
   four client threads spread over both instances.
3. Throughput: ten 1,000-student tasks, one worker process vs two.
4. The object store: the per-task tasks of 1. again, distributed with
   ``PREDICT_STORAGE_URL=s3://...`` and the worker on a data dir of its own
   (every upload and result goes through the store), against a moto server
   process the script starts (``--s3-endpoint`` for a real store; its bucket
   must exist and AWS credentials come from the environment).

    .venv/bin/python scripts/bench_distributed.py --tasks-db-url postgresql://u:p@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The same port, percentile and health wait as make bench-api (same folder).
from bench_api import free_port, percentile, wait_healthy  # noqa: E402

YEAR = 2023


class Procs:
    """Every process this script starts, stopped by pid (their sessions) at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the child
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()


def wait_workers(base: str, count: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = requests.get(f"{base}/health", timeout=5).json()["data"]
        if len(data.get("workers") or []) >= count:
            return
        time.sleep(0.3)
    raise SystemExit(f"fewer than {count} workers after {timeout:g} s")


def submit(base: str, book: Path) -> str:
    with book.open("rb") as fh:
        r = requests.post(f"{base}/api/task/start", data={"year": str(YEAR)},
                          files={"file": (book.name, fh)}, timeout=120)
    r.raise_for_status()
    return str(r.json()["data"]["task_id"])


def wait_done(base: str, task_id: str, timeout: float = 600) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        data = requests.get(f"{base}/api/task/status/{task_id}", timeout=10).json()["data"]
        if data["status"] in ("completed", "failed"):
            if data["status"] != "completed":
                raise SystemExit(f"task failed: {data}")
            return data
        time.sleep(0.05)
    raise SystemExit(f"task {task_id} not done in {timeout:g} s")


def record_seconds(data: dict[str, Any]) -> float:
    created = datetime.fromisoformat(data["created_at"])
    finished = datetime.fromisoformat(data["finished_at"])
    return (finished - created).total_seconds()


class Phase:
    """One configuration on a fresh data dir and (distributed) a fresh database."""

    def __init__(self, bench: Bench, name: str) -> None:
        self.bench = bench
        self.name = name
        self.data = bench.work / name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
        self.env.update({"PREDICT_DATA_DIR": str(self.data), "PREDICT_API_TOKEN": "",
                         "PREDICT_MAX_PENDING": "100"})

    def distributed(self) -> Phase:
        self.env.update({"PREDICT_QUEUE_URL": self.bench.redis_url,
                         "PREDICT_TASKS_DB_URL": self.bench.new_database(self.name)})
        return self

    def api(self, n: int = 1) -> list[str]:
        bases = []
        for i in range(n):
            port = free_port()
            env = dict(self.env, PREDICT_PORT=str(port))
            self.bench.procs.start([sys.executable, "async_api_server.py", "--host", "127.0.0.1",
                                    "--port", str(port)], env, f"{self.name}-api{i}")
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, 120)
            bases.append(base)
        return bases

    def on_s3(self) -> Phase:
        self.env.update({"PREDICT_STORAGE_URL": f"s3://{self.bench.bucket}/{self.name}",
                         "PREDICT_S3_ENDPOINT_URL": self.bench.s3_endpoint})
        return self

    def workers(self, commands: int, per_command: int, base: str) -> None:
        env = dict(self.env)
        if "PREDICT_STORAGE_URL" in env:  # another machine: only the store in common
            env["PREDICT_DATA_DIR"] = str(self.data.with_name(self.name + "-worker"))
        for i in range(commands):
            self.bench.procs.start([sys.executable, "-m", "destination_predictor.worker",
                                    "--workers", str(per_command)], env,
                                   f"{self.name}-worker{i}")
        wait_workers(base, commands * per_command)


class Bench:
    def __init__(self, work: Path, tasks_db_url: str) -> None:
        self.work = work
        self.admin_url = tasks_db_url
        self.procs = Procs(work)
        self.redis_url = ""
        self.s3_endpoint = ""
        self.bucket = "predict-bench"
        self.external_s3 = False  # --s3-endpoint: a store of the operator's, not moto

    def start_moto(self) -> None:
        """moto's server mode: a local process speaking the S3 protocol."""
        import boto3

        port = free_port()
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                 "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(creds)
        self.procs.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                          str(port)], dict(os.environ), "moto")
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 30
        while True:
            try:
                boto3.session.Session().client("s3", endpoint_url=self.s3_endpoint
                                               ).create_bucket(Bucket=self.bucket)
                return
            except Exception:  # noqa: BLE001 - not listening yet; give up after 30 s
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def start_redis(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        port = free_port()
        self.procs.start([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], dict(os.environ), "redis")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        import redis

        end = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.redis_url).ping()
                return
            except redis.RedisError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def cluster(self, name: str, *, apis: int = 1, commands: int = 1, per_command: int = 1,
                s3: bool = False) -> list[str]:
        """A fresh distributed phase: everything before stopped, a new Redis
        (and moto, for ``s3`` without an external store), API instances and
        worker commands; returns the instances' base URLs."""
        self.procs.stop_all()
        self.start_redis()
        if s3 and not self.external_s3:
            self.start_moto()  # before the phase: it sets the AWS variables the phase copies
        phase = Phase(self, name).distributed()
        if s3:
            phase.on_s3()
        bases = phase.api(apis)
        phase.workers(commands, per_command, bases[0])
        return bases

    def new_database(self, name: str) -> str:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.admin_url)
        db = f"bench_{name}_{os.getpid()}"
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                             password=url.password, dbname=url.database or "postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        return url.set(database=db).render_as_string(hide_password=False)


def sequential(base: str, books: list[Path]) -> list[float]:
    return [record_seconds(wait_done(base, submit(base, b))) for b in books]


def throughput(base: str, books: list[Path]) -> float:
    t0 = time.monotonic()
    ids = [submit(base, b) for b in books]
    for t in ids:
        wait_done(base, t)
    return time.monotonic() - t0


def status_latency(bases: list[str], books: list[Path], threads: int = 4) -> dict[str, float]:
    ids = [submit(bases[i % len(bases)], b) for i, b in enumerate(books)]
    lat: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def poll(k: int) -> None:
        s = requests.Session()
        i = 0
        while not stop.is_set():
            base = bases[(k + i) % len(bases)]
            t0 = time.perf_counter()
            r = s.get(f"{base}/api/task/status/{ids[i % len(ids)]}", timeout=10)
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                with lock:
                    lat.append(dt)
            i += 1
            time.sleep(0.02)

    pollers = [threading.Thread(target=poll, args=(k,), daemon=True) for k in range(threads)]
    for p in pollers:
        p.start()
    for t in ids:
        wait_done(bases[0], t)
    stop.set()
    for p in pollers:
        p.join(15)
    return {"n": len(lat), "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks-db-url", required=True,
                    help="a PostgreSQL URL whose user may create databases")
    ap.add_argument("--students", type=int, default=1000)
    ap.add_argument("--sequential", type=int, default=5, help="tasks for the overhead")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--s3-endpoint", help="a real S3-compatible store instead of moto")
    ap.add_argument("--s3-bucket", default="predict-bench", help="its bucket (must exist)")
    args = ap.parse_args(argv)
    from destination_predictor.demo.grades import make_grade_workbook

    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    print(f"generating 10 workbooks of {args.students} students in {work} ...", flush=True)
    books = [make_grade_workbook(work / f"grades_{i}.xlsx", YEAR, args.students,
                                 plans_dir=ROOT / "plans", seed=500 + i) for i in range(10)]
    bench = Bench(work, args.tasks_db_url)
    out: dict[str, Any] = {"students": args.students, "cpus": os.cpu_count()}
    try:
        bench.start_redis()
        # 1. overhead, one task at a time
        [base] = Phase(bench, "embedded").api()
        embedded = sequential(base, books[:args.sequential])
        [base] = bench.cluster("dist1")
        distributed = sequential(base, books[:args.sequential])
        out["overhead"] = {"embedded_s": [round(x, 3) for x in embedded],
                           "distributed_s": [round(x, 3) for x in distributed],
                           "median_overhead_ms": round(
                               (statistics.median(distributed) - statistics.median(embedded))
                               * 1000, 1)}
        print(json.dumps(out["overhead"]), flush=True)
        # 4. the same on the object store, the worker on a data dir of its own
        if args.s3_endpoint:
            bench.s3_endpoint, bench.bucket = args.s3_endpoint, args.s3_bucket
            bench.external_s3 = True
        [base] = bench.cluster("dists3", s3=True)
        on_s3 = sequential(base, books[:args.sequential])
        out["object_store"] = {
            "endpoint": "moto" if not args.s3_endpoint else args.s3_endpoint,
            "distributed_s3_s": [round(x, 3) for x in on_s3],
            "median_overhead_over_distributed_ms": round(
                (statistics.median(on_s3) - statistics.median(distributed)) * 1000, 1)}
        print(json.dumps(out["object_store"]), flush=True)
        # 3. throughput: one worker process, then two (each phase fresh: the same
        # books again would hit the result cache)
        [base] = bench.cluster("tp1")
        one = throughput(base, books)
        [base] = bench.cluster("tp2", commands=2)
        two = throughput(base, books)
        out["throughput"] = {"tasks": len(books), "one_worker_s": round(one, 1),
                             "two_workers_s": round(two, 1),
                             "speedup": round(one / two, 2)}
        print(json.dumps(out["throughput"]), flush=True)
        # 2. status latency, two API instances, six jobs running (two commands x 3)
        bases = bench.cluster("p99", apis=2, commands=2, per_command=3)
        out["status_two_instances_six_jobs"] = status_latency(bases, books[:6])
        print(json.dumps(out["status_two_instances_six_jobs"]), flush=True)
    finally:
        bench.procs.stop_all()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
