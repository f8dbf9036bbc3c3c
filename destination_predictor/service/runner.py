"""Running one task's engine call: in the pool thread itself, or in a child
process that the pool thread starts and watches.

Why a child process (the default): the engine's workbook reading and writing
hold the interpreter lock, so three jobs in threads make status requests wait
(see the latency numbers in the README). A child also makes the time limit and
cancel hard: the parent can terminate it, which no thread allows.

The child builds its own ``Engine`` (about a second), reports progress over a
pipe and watches a control pipe from the parent; when the parent disappears
(``kill -9``) the control pipe reaches EOF and the child exits at once, so no
orphan keeps writing a task's files while a restarted service re-runs it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..engine.errors import PredictionCancelled, PredictionError
from ..engine.excel import DEFAULT_MAX_CELLS
from ..engine.options import PredictConfig

ProgressFn = Callable[[int, str], None]

# Imported once by the fork server. sklearn is what unpickling the model's
# scaler pulls in (about 1 s per child otherwise); a module that is missing is
# skipped by multiprocessing, so the list may name more than is installed.
FORKSERVER_PRELOAD = ("destination_predictor.engine", "sklearn.preprocessing")

# How long a child may take to stop on its own after being asked to cancel.
CANCEL_GRACE_S = 10.0
_POLL_S = 0.2


class Stoppable(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class EngineArgs:
    """What a job process needs to build its own ``Engine``, and its limits."""

    model_dir: str
    plans_dir: str
    category_map: str | None
    max_cells: int = DEFAULT_MAX_CELLS
    memory_mb: int = 0  # address-space limit of the job process; 0 = none
    write_processes: int = 1  # processes writing one job's workbooks (forked by the job)

    def build(self) -> Any:
        from ..engine import Engine

        return Engine(self.model_dir, self.plans_dir, self.category_map,
                      max_cells=self.max_cells, write_processes=self.write_processes)


@dataclass(frozen=True)
class JobSpec:
    task_id: str
    upload_path: str
    year: int
    major: str | None
    config: dict[str, Any]
    out_dir: str
    file_prefix: str


@dataclass(frozen=True)
class JobOutcome:
    files: list[str]            # base names in out_dir
    summary: dict[str, Any]
    warnings: list[str]


class TaskTimedOut(Exception):
    """The run passed its deadline and was stopped."""


class JobCrashed(Exception):
    """The run died without an answer (child killed, unexpected exception).

    ``out_of_memory`` when the job process ran out of memory: a ``MemoryError``
    in Python, or an abort/kill signal (a Rust allocation that failed under
    ``PREDICT_JOB_MEMORY_MB`` aborts the process; the kernel's OOM killer kills it).
    """

    def __init__(self, detail: str, *, exitcode: int | None = None) -> None:
        super().__init__(detail)
        self.exitcode = exitcode

    @property
    def out_of_memory(self) -> bool:
        return self.exitcode in (-signal.SIGABRT, -signal.SIGKILL) or "MemoryError" in str(self)


class Runner(Protocol):
    def run(self, spec: JobSpec, progress: ProgressFn, cancel: Stoppable,
            deadline: float) -> JobOutcome: ...

    def close(self) -> None: ...


def _jsonable(value: Any) -> Any:
    """Summaries are stored as JSON; numpy scalars become plain numbers."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _outcome(result: Any, spec: JobSpec) -> JobOutcome:
    out_dir = Path(spec.out_dir).resolve()
    names = []
    for f in result.files:
        p = Path(f).resolve()
        if p.parent != out_dir or not p.name.startswith(spec.file_prefix):
            raise JobCrashed(f"engine wrote an unexpected file {p}")
        names.append(p.name)
    return JobOutcome(files=names, summary=_jsonable(result.summary),
                      warnings=[str(w) for w in result.warnings])


class _Deadline:
    """Cancel token for the engine: user cancel, shutdown or time limit."""

    def __init__(self, cancel: Stoppable, deadline: float) -> None:
        self.cancel = cancel
        self.deadline = deadline

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def is_set(self) -> bool:
        return self.cancel.is_set() or self.expired


class ThreadRunner:
    """Runs the engine in the calling pool thread; the time limit is only
    checked at the engine's steps (use the process runner for a hard limit)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def run(self, spec: JobSpec, progress: ProgressFn, cancel: Stoppable,
            deadline: float) -> JobOutcome:
        token = _Deadline(cancel, deadline)
        try:
            result = self.engine.run(
                spec.upload_path, spec.year, major=spec.major,
                config=PredictConfig.parse(spec.config), out_dir=spec.out_dir,
                file_prefix=spec.file_prefix, progress=progress, cancel=token)
        except PredictionCancelled:
            if token.expired and not cancel.is_set():
                raise TaskTimedOut() from None
            raise
        return _outcome(result, spec)

    def close(self) -> None:
        return None


class ProcessRunner:
    """One child process per job, started from the pool thread that owns it."""

    def __init__(self, engine_args: EngineArgs, *, nice: int = 0, idle: bool = False,
                 start_method: str = "forkserver") -> None:
        self.engine_args = engine_args
        self.nice = nice
        self.idle = idle
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The server imports the engine's heavy modules once; each child
            # forks from it instead of importing numpy/pandas/CatBoost again.
            self._ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))

    def warm_up(self) -> None:
        """Start the fork server now (seconds of imports) rather than on the first job."""
        if self._ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def run(self, spec: JobSpec, progress: ProgressFn, cancel: Stoppable,
            deadline: float) -> JobOutcome:
        res_r, res_w = self._ctx.Pipe(duplex=False)
        ctl_r, ctl_w = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_child_main,
            args=(self.engine_args, spec, res_w, ctl_r, self.nice, self.idle),
            name=f"predict-{spec.task_id[:8]}", daemon=True)
        proc.start()
        # Only the child keeps these ends, so EOF tells either side the other died.
        res_w.close()
        ctl_r.close()
        cancel_sent_at: float | None = None
        answered = False
        try:
            while True:
                if res_r.poll(_POLL_S):
                    try:
                        msg = res_r.recv()
                    except EOFError:
                        proc.join(2.0)
                        raise JobCrashed(f"child exited with code {proc.exitcode}",
                                         exitcode=proc.exitcode) from None
                    kind = msg[0]
                    if kind == "progress":
                        progress(int(msg[1]), str(msg[2]))
                    else:
                        answered = True
                        if kind == "done":
                            return JobOutcome(files=list(msg[1]), summary=msg[2],
                                              warnings=list(msg[3]))
                        if kind == "error":
                            raise PredictionError(msg[1], msg[2])
                        if kind == "cancelled":
                            raise PredictionCancelled()
                        raise JobCrashed(str(msg[1]) if len(msg) > 1 else "unknown child message")
                # Checked after every message too, so a flood of progress
                # cannot hold off the time limit or a cancel.
                now = time.monotonic()
                if now >= deadline:
                    raise TaskTimedOut()
                if cancel.is_set():
                    if cancel_sent_at is None:
                        cancel_sent_at = now
                        _send_quietly(ctl_w, "cancel")
                    elif now - cancel_sent_at > CANCEL_GRACE_S:
                        raise PredictionCancelled()
                if not proc.is_alive() and not res_r.poll(0):
                    proc.join()
                    raise JobCrashed(f"child exited with code {proc.exitcode}",
                                     exitcode=proc.exitcode)
        finally:
            _stop(proc, 2.0 if answered else 0.0)
            res_r.close()
            ctl_w.close()

    def close(self) -> None:
        return None


def _send_quietly(conn: Any, message: str) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass  # the child is already gone; the loop notices through the result pipe


def _stop(proc: Any, grace_s: float) -> None:
    """Let a child that already answered exit on its own, then make sure it is gone."""
    if grace_s > 0:
        proc.join(grace_s)
    if proc.is_alive():
        proc.terminate()
        proc.join(5.0)
    if proc.is_alive():
        proc.kill()
        proc.join(5.0)


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space: an allocation beyond it fails in the
    job process (a reader bug, a hostile file the checks missed), which then
    dies alone -- the service and the other jobs go on."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def lower_priority(nice: int, idle: bool) -> None:
    """Make this (job) process yield the CPU to the service's request threads.

    ``nice`` alone still let three jobs on two cores stretch a what-if answer
    from about 6 ms to about 40 ms at the median (measured); Linux's
    ``SCHED_IDLE`` class runs the job only on CPU time nothing else wants, which
    on a machine dedicated to the service costs the jobs nothing. Where the
    class is unavailable, the nice value is what remains."""
    if nice:
        os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass  # e.g. a seccomp policy refusing it: the nice value still applies


def _child_main(engine_args: EngineArgs, spec: JobSpec, results: Any, control: Any,
                nice: int, idle: bool = False) -> None:
    """Entry point of the job process; every outcome becomes one message."""
    lower_priority(nice, idle)
    limit_memory(engine_args.memory_mb)
    cancel = threading.Event()

    def watch_parent() -> None:
        while True:
            try:
                if control.recv() == "cancel":
                    cancel.set()
            except (EOFError, OSError):
                os._exit(3)  # parent gone: stop writing files nobody will record

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    try:
        engine = engine_args.build()
        result = engine.run(
            spec.upload_path, spec.year, major=spec.major,
            config=PredictConfig.parse(spec.config), out_dir=spec.out_dir,
            file_prefix=spec.file_prefix,
            progress=lambda pct, text: results.send(("progress", int(pct), str(text))),
            cancel=cancel)
        outcome = _outcome(result, spec)
        results.send(("done", outcome.files, outcome.summary, outcome.warnings))
    except PredictionCancelled:
        results.send(("cancelled",))
    except PredictionError as exc:
        results.send(("error", exc.code, exc.message))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the task and logs it
        results.send(("crash", traceback.format_exc()))
    finally:
        results.close()
