"""``python -m destination_predictor.worker.probe --pid PID``: whether the
worker command ``PID`` of this machine has its RQ workers registered with
Redis -- the health check of a worker machine (``deploy/host.sh`` runs it
through ``deploy/run-service.sh BASE check-worker PID``, so it sees the very
settings the workers run with).

A worker serves no HTTP, so the API's probe has nothing to ask there; what
the API instances see of a worker is its entry in Redis (what ``/health``
and ``rq info`` list). Healthy means: ``PREDICT_MAX_WORKERS`` workers on the
two queues, each with a fresh heartbeat (``dispatch.WORKER_TTL_S``), on this
host, and each a child of ``PID`` -- not some other deployment's workers on
the same Redis (several deploy paths of one machine, or two machines whose
pids happen to match).

One line either way: ``workers=3/3 host=h1`` on stdout and exit 0, or the
reason in Chinese on stderr and exit 1 (2: settings it cannot use).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
from rq import Queue, Worker

from ..service.dispatch import NORMAL, WORKER_TTL_S, connect
from ..service.settings import SettingsError
from .__main__ import load_worker_settings


def descends_from(pid: int, root: int) -> bool:
    """Whether ``root`` is ``pid`` or one of its ancestors (``/proc``, Linux)."""
    seen = 0
    while pid > 1 and seen < 64:
        if pid == root:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        seen += 1
    return pid == root


def registered(conn: redis.Redis, root: int) -> list[Worker]:
    """The live RQ workers of the queues that run below process ``root`` here."""
    host = socket.gethostname()
    now = time.time()
    found = []
    for w in Worker.all(queue=Queue(NORMAL, connection=conn)):
        beat = w.last_heartbeat.timestamp() if w.last_heartbeat else None
        if beat is None or now - beat > WORKER_TTL_S:
            continue
        if w.hostname == host and w.pid and descends_from(int(w.pid), root):
            found.append(w)
    return found


def where(url: str) -> str:
    """The Redis address without its password (the line is shown to operators)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m destination_predictor.worker.probe",
                                     description="health check of a worker machine")
    parser.add_argument("--pid", type=int, required=True,
                        help="the worker command (python -m destination_predictor.worker)")
    args = parser.parse_args(argv)
    try:
        settings = load_worker_settings()
    except SettingsError as exc:
        print(f"配置无效：{exc}", file=sys.stderr)
        return 2
    url = str(settings.queue_url)
    conn = connect(url)
    try:
        found = registered(conn, args.pid)
    except redis.RedisError as exc:
        print(f"无法连接 Redis {where(url)}：{type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    want = settings.max_workers
    if len(found) < want:
        print(f"进程 {args.pid} 的执行进程只有 {len(found)}/{want} 个已在 Redis {where(url)} 登记"
              "（正在加载模型，或启动失败：见日志）", file=sys.stderr)
        return 1
    print(f"workers={len(found)}/{want} host={socket.gethostname()} redis={where(url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
