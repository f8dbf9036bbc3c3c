"""One run's workbooks written by two processes (``reports.write_reports`` with
``processes=2``): the same files as one process writes, the work really shared
with a forked child, a cancel stops the child and leaves nothing, a child's
failure is the run's failure (a full disk stays ``OSError`` ENOSPC)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook
from support.paths import DEMO_MODELS_DIR, REPO

from destination_predictor.demo.grades import make_grade_workbook
from destination_predictor.engine import Engine, PredictionCancelled, reports


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("par")
    grades = make_grade_workbook(root / "g.xlsx", 2024, 200, plans_dir=REPO / "plans", seed=5)
    captured: list = []
    mp = pytest.MonkeyPatch()
    mp.setattr("destination_predictor.engine.pipeline.write_reports",
               lambda res, *a, **k: captured.extend(res) or [])
    try:
        Engine(DEMO_MODELS_DIR, REPO / "plans").run(grades, 2024, out_dir=root / "unused")
    finally:
        mp.undo()
    assert len(captured) >= 2
    return captured


@pytest.fixture
def always_parallel(monkeypatch):
    monkeypatch.setattr(reports, "PARALLEL_MIN_CELLS", 0)


def book(path: Path) -> dict:
    wb = CalamineWorkbook.from_path(str(path))
    return {name: wb.get_sheet_by_name(name).to_python() for name in wb.sheet_names}


def test_two_processes_write_the_same_workbooks_in_the_same_order(results, tmp_path,
                                                                  always_parallel,
                                                                  monkeypatch) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    original = reports.write_workbook

    def noting_pid(path, sheets):
        (pids / f"{os.getpid()}-{path.name}").touch()
        original(path, sheets)

    monkeypatch.setattr(reports, "write_workbook", noting_pid)
    one = reports.write_reports(results, 2024, tmp_path / "one", processes=1)
    two = reports.write_reports(results, 2024, tmp_path / "two", processes=2)
    assert [p.name for p in one] == [p.name for p in two]
    assert [p.name for p in two][-1].endswith("_All.xlsx")
    for a, b in zip(one, two, strict=True):
        assert book(a) == book(b), a.name
    writers = {p.name.split("-")[0] for p in pids.iterdir()}
    assert str(os.getpid()) in writers and len(writers) == 2  # this process and one child
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in two)


def test_small_output_is_written_by_this_process_alone(results) -> None:
    books = reports._books(results, 2024, "")
    assert reports._share(books, 2) == [books]  # 200 students: below PARALLEL_MIN_CELLS
    assert len(reports._share(books, 1)) == 1


def test_cancel_stops_the_writing_child_and_leaves_nothing(results, tmp_path, always_parallel,
                                                           monkeypatch) -> None:
    parent = os.getpid()
    pid_file = tmp_path / "child.pid"
    original = reports.write_workbook

    def slow_in_child(path, sheets):
        if os.getpid() != parent:
            pid_file.write_text(str(os.getpid()))
            time.sleep(60)
        original(path, sheets)

    monkeypatch.setattr(reports, "write_workbook", slow_in_child)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(PredictionCancelled):
        reports.write_reports(results, 2024, out, processes=2, cancel=cancel)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # stopped and reaped
    assert list(out.iterdir()) == []  # no workbook, no staging directory


def test_a_child_failure_fails_the_run_as_the_same_error(results, tmp_path, always_parallel,
                                                         monkeypatch) -> None:
    parent = os.getpid()
    original = reports.write_workbook

    def disk_full_in_child(path, sheets):
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, sheets)

    monkeypatch.setattr(reports, "write_workbook", disk_full_in_child)
    out = tmp_path / "out"
    with pytest.raises(OSError) as err:
        reports.write_reports(results, 2024, out, processes=2)
    assert err.value.errno == errno.ENOSPC and "No space left" in str(err.value)
    assert list(out.iterdir()) == []


def test_engine_never_uses_more_writers_than_cores() -> None:
    engine = Engine(DEMO_MODELS_DIR, REPO / "plans", write_processes=64)
    assert 1 <= engine.write_processes <= len(os.sched_getaffinity(0))
    assert Engine(DEMO_MODELS_DIR, REPO / "plans", write_processes=0).write_processes == 1


def _write_then_hang(results, out: Path, pid_file: Path) -> None:
    parent = os.getpid()
    original = reports.write_workbook

    def slow_in_child(path, sheets):
        if os.getpid() != parent:
            pid_file.write_text(str(os.getpid()))
            time.sleep(60)
        original(path, sheets)

    reports.PARALLEL_MIN_CELLS = 0
    reports.write_workbook = slow_in_child
    reports.write_reports(results, 2024, out, processes=2)


def test_a_writing_child_dies_with_a_job_killed_midway(results, tmp_path) -> None:
    import multiprocessing
    import signal

    pid_file = tmp_path / "child.pid"
    job = multiprocessing.get_context("fork").Process(
        target=_write_then_hang, args=(results, tmp_path / "out", pid_file))
    job.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.05)
    child = int(pid_file.read_text())
    os.kill(job.pid, signal.SIGKILL)  # what the service does to a job past its time limit
    job.join()
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z":
            break  # killed, waiting to be reaped by init
        time.sleep(0.05)
    else:
        pytest.fail("the writing child outlived its job")


def _write_in_daemon(results, out: Path, conn) -> None:
    reports.PARALLEL_MIN_CELLS = 0
    try:
        conn.send([p.name for p in reports.write_reports(results, 2024, out, processes=2)])
    except BaseException as exc:  # noqa: BLE001 - the test shows it
        conn.send(repr(exc))


def test_a_job_process_that_is_a_daemon_can_share_its_writing(results, tmp_path) -> None:
    # The service's job processes are daemonic multiprocessing children, which
    # multiprocessing forbids to start children of their own.
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    receive, send = ctx.Pipe(duplex=False)
    job = ctx.Process(target=_write_in_daemon, args=(results, tmp_path / "out", send),
                      daemon=True)
    job.start()
    assert receive.poll(60)
    names = receive.recv()
    job.join()
    assert isinstance(names, list), names
    assert sorted(names) == sorted(p.name for p in (tmp_path / "out").iterdir())
