"""Reading an untrusted workbook in a child process, under the job memory limit.

The check before a run, a plan upload's check and the student view all parse
Excel files a client sent while the service process holds the task queue. A
reader bug or a hostile file then costs that child, never the service: a
child that dies is ``CHECK_CRASHED`` (422), one that takes too long is
``CHECK_TIMEOUT`` (504). Task runs have their own runner (``runner.py``); the
database import its own (it reports refusals and pids back).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .errors import ServiceError
from .runner import FORKSERVER_PRELOAD, limit_memory

T = TypeVar("T")

# A 5,000-student export is read in about 2 s; far beyond that something is wrong.
DEFAULT_TIMEOUT_S = 120.0


def run_isolated(fn: Callable[..., T], *args: Any, memory_mb: int, what: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 alongside: Callable[[], None] | None = None) -> T:
    """``fn(*args)`` in a fresh child (forkserver: the engine's modules are preloaded).

    ``fn`` must be a module-level function and its arguments and result picklable;
    ``what`` names the work in the Chinese refusals ("检查", "读取成绩文件").
    ``alongside`` runs in this thread while the child works; if it raises, the
    child is killed and its exception propagates (the check before a run
    measures the sheet's extent here while the child already reads)."""
    ctx = multiprocessing.get_context("forkserver")
    # Children fork from a server that imported the engine once (a no-op when the
    # job runner started that server already).
    ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=limit_memory,
                             initargs=(memory_mb,)) as pool:
        future = pool.submit(fn, *args)
        try:
            if alongside is not None:
                try:
                    alongside()
                except BaseException:
                    _kill(pool)
                    raise
            return future.result(timeout=timeout_s)
        except BrokenProcessPool:
            raise ServiceError("CHECK_CRASHED",
                               f"{what}进程异常退出：文件可能已损坏或范围异常大") from None
        except TimeoutError:
            _kill(pool)
            raise ServiceError("CHECK_TIMEOUT", f"{what}超时：文件可能异常大") from None


def _kill(pool: ProcessPoolExecutor) -> None:
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
