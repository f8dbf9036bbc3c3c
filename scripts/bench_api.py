"""Status-request latency while large prediction jobs run.

Starts a real gunicorn server (the project's gunicorn.conf.py) on a free
loopback port with a temporary data dir, submits ``--jobs`` large jobs, polls
``GET /api/task/status/<id>`` from several client threads for as long as they
run, and prints latency percentiles and the jobs' durations. Everything is
bounded: ``--max-seconds`` caps the run, and the server is stopped at the end.

    .venv/bin/python scripts/bench_api.py                       # 3 x 2,000 students
    .venv/bin/python scripts/bench_api.py --execution thread    # compare with threads
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from anywhere: the package lives in ROOT
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def make_workbooks(out_dir: Path, n: int, students: int, year: int, plans_dir: Path) -> list[Path]:
    from destination_predictor.demo.grades import make_grade_workbook

    paths = []
    for i in range(n):
        p = out_dir / f"bench_{year}_{students}_{i}.xlsx"
        make_grade_workbook(p, year, students, plans_dir=plans_dir, seed=1000 + i)
        paths.append(p)
    return paths


def start_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
           "-b", f"127.0.0.1:{port}", "async_api_server:app"]
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_healthy(base: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {base} did not become healthy in {timeout:g}s")


def poll(base: str, task_ids: list[str], stop: threading.Event, pause: float,
         latencies: list[float], errors: list[str], lock: threading.Lock) -> None:
    session = requests.Session()
    i = 0
    while not stop.is_set():
        tid = task_ids[i % len(task_ids)]
        i += 1
        t0 = time.perf_counter()
        try:
            r = session.get(f"{base}/api/task/status/{tid}", timeout=10)
            # 404 is the expected answer of the idle phase's made-up id.
            problem = None if r.status_code in (200, 404) else f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            problem = type(exc).__name__
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)
            if problem:
                errors.append(problem)
        if pause:
            time.sleep(pause)


def whatif_body(book: Path, year: int, plans_dir: Path) -> dict[str, Any]:
    """One student of ``book`` as ``POST /api/whatif`` takes it (the first with a plan)."""
    from destination_predictor.engine.grades import read_grades
    from destination_predictor.engine.plans import find_plans

    cohort = read_grades(book)
    plans = find_plans(plans_dir, year)
    sid = next(s for s in cohort.students if cohort.majors[s] in plans)
    rows = cohort.scores[cohort.scores["sid"] == sid]
    return {"year": year, "major": cohort.majors[sid],
            "grades": dict(zip(rows["course"], rows["grade"].astype(float), strict=True))}


def whatif_poll(base: str, body: dict[str, Any], stop: threading.Event, pause: float,
                latencies: list[float], errors: list[str]) -> None:
    """One client moving a slider: what-if requests for one student, one at a time."""
    session = requests.Session()
    score = 0
    while not stop.is_set():
        missing = body.get("_missing") or []
        payload = {k: v for k, v in body.items() if k != "_missing"}
        payload["assume"] = dict.fromkeys(missing, score % 101)
        score += 7
        t0 = time.perf_counter()
        try:
            r = session.post(f"{base}/api/whatif", json=payload, timeout=10)
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}")
            elif "_missing" not in body:
                body["_missing"] = r.json()["data"]["missing"]
        except requests.RequestException as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - t0)
        if pause:
            time.sleep(pause)


def measure(base: str, task_ids: list[str], seconds: float | None, threads: int, pause: float,
            done: Any) -> tuple[list[float], list[str]]:
    """Poll until ``done()`` (or for ``seconds``), from ``threads`` clients."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    workers = [threading.Thread(target=poll, args=(base, task_ids, stop, pause, latencies, errors,
                                                   lock), daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    end = time.monotonic() + (seconds or 0)
    while True:
        time.sleep(0.25)
        if seconds is not None and time.monotonic() >= end:
            break
        if seconds is None and done():
            break
    stop.set()
    for w in workers:
        w.join(15)
    return latencies, errors


def report(name: str, latencies: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    row = {"phase": name, "requests": len(ms), "p50_ms": percentile(ms, 50),
           "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
           "max_ms": max(ms) if ms else float("nan"),
           "mean_ms": statistics.fmean(ms) if ms else float("nan")}
    print(f"{name:>10}: n={row['requests']:6d}  p50={row['p50_ms']:7.1f} ms  "
          f"p95={row['p95_ms']:7.1f} ms  p99={row['p99_ms']:7.1f} ms  max={row['max_ms']:7.1f} ms")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--students", type=int, default=2000)
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--workbook", type=Path, help="use this grades workbook for every job "
                    "(jobs then differ by config so the result cache does not merge them)")
    ap.add_argument("--execution", choices=("process", "thread"), default="process")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--plans-dir", type=Path, default=ROOT / "plans")
    ap.add_argument("--threads", type=int, default=4, help="polling client threads")
    ap.add_argument("--pause", type=float, default=0.02, help="seconds between one client's requests")
    ap.add_argument("--idle-seconds", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    data_dir = work / "data"
    if args.workbook:
        books = [args.workbook] * args.jobs
        configs = [json.dumps({"max_grade": 90 - i}) for i in range(args.jobs)]
    else:
        print(f"generating {args.jobs} workbooks of {args.students} students ...", flush=True)
        books = make_workbooks(work, args.jobs, args.students, args.year, args.plans_dir)
        configs = [None] * args.jobs
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PREDICT_DATA_DIR=str(data_dir), PREDICT_PORT=str(port),
               PREDICT_EXECUTION=args.execution, PREDICT_MODEL_DIR=str(args.model_dir),
               PREDICT_PLANS_DIR=str(args.plans_dir), PREDICT_API_TOKEN="")
    proc = start_server(port, env, work / "gunicorn.log")
    results: dict[str, Any] = {"execution": args.execution, "jobs": args.jobs,
                               "students": args.students, "cpus": os.cpu_count()}
    try:
        wait_healthy(base, 90)
        session = requests.Session()
        idle, _ = measure(base, ["00000000-0000-4000-8000-000000000000"], args.idle_seconds,
                          args.threads, args.pause, lambda: True)
        ids = []
        t_submit = time.monotonic()
        for book, cfg in zip(books, configs, strict=True):
            with open(book, "rb") as fh:
                form = {"year": str(args.year)}
                if cfg:
                    form["config"] = cfg
                r = session.post(f"{base}/api/task/start", data=form,
                                 files={"file": (book.name, fh)}, timeout=120)
            r.raise_for_status()
            ids.append(r.json()["data"]["task_id"])
        deadline = time.monotonic() + args.max_seconds

        def all_done() -> bool:
            if time.monotonic() > deadline:
                return True
            states = [session.get(f"{base}/api/task/status/{t}", timeout=10).json()["data"]["status"]
                      for t in ids]
            return all(s in ("completed", "failed") for s in states)

        body = whatif_body(books[0], args.year, args.plans_dir)
        wi_lat: list[float] = []
        wi_err: list[str] = []
        wi_stop = threading.Event()
        wi = threading.Thread(target=whatif_poll, args=(base, body, wi_stop, args.pause, wi_lat,
                                                        wi_err), daemon=True)
        wi.start()
        busy, errors = measure(base, ids, None, args.threads, args.pause, all_done)
        wi_stop.set()
        wi.join(15)
        wall = time.monotonic() - t_submit
        print(f"server: gunicorn 1 worker x gthread, execution={args.execution}, "
              f"cpus={os.cpu_count()}; clients: {args.threads} threads, pause {args.pause}s")
        results["idle"] = report("idle", idle)
        results["busy"] = report("3 jobs" if args.jobs == 3 else f"{args.jobs} jobs", busy)
        results["whatif_busy"] = report("what-if", wi_lat)
        results["errors"] = len(errors) + len(wi_err)
        jobs = []
        for t in ids:
            d = session.get(f"{base}/api/task/status/{t}", timeout=10).json()["data"]
            jobs.append({"id": t, "status": d["status"], "duration_s": d["duration_s"],
                         "students": (d.get("summary") or {}).get("students"), "error": d["error"]})
            print(f"  job {t[:8]}: {d['status']:9s} {d['duration_s']} s  "
                  f"students={jobs[-1]['students']} {d['error'] or ''}")
        results["jobs_detail"] = jobs
        results["wall_s"] = round(wall, 2)
        print(f"  all jobs finished {wall:.1f} s after the first submit; request errors: {len(errors)}")
    finally:
        stop_server(proc)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
