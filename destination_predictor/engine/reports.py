"""The result workbooks (docs/algorithm.md, "Outputs") and their atomic writing.

Legacy sheets keep their exact columns because downstream importers insert
every column of ``Predictions`` into database tables. Extra information
(plain reachability) goes into sheets after the legacy ones.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import rustpy_xlsxwriter

from .categories import BASE
from .errors import PredictionCancelled
from .inverse import CEILING, CancelToken
from .results import MajorResult

CURRENT_COLUMNS: tuple[str, ...] = (
    "current_public", "current_practice", "current_math_science", "current_political",
    "current_basic_subject", "current_innovation", "current_english", "current_basic_major",
    "current_major",
)
THRESHOLD_COLUMNS: tuple[str, ...] = (
    "SNH", "Major", "s_min_for_1", "s_min_for_2", "UnknownCredits", "Cost_1", "Cost_2",
    "Ranges_1", "Ranges_2", "missing_courses", "target1_scores", "target2_scores",
    "s_min_for_1_policy", "s_min_for_2_policy", "MultipleIntervalsFlag_1",
    "MultipleIntervalsFlag_2", "DominatedBy1",
)
REACH_TEXT = {True: "可达", False: "不可达", None: "无缺修课程"}


def predictions_frame(r: MajorResult) -> pd.DataFrame:
    idx = {name: i for i, name in enumerate(BASE)}
    s1 = r.s_values(1)
    cols: dict[str, object] = {
        "SNH": r.sids,
        "major": [r.major] * len(r.sids),
        "grade": r.grade_counts,
        "count": np.full(len(r.sids), r.required_rows),
    }
    for name in CURRENT_COLUMNS:
        cols[name] = r.features[:, idx[name.removeprefix("current_")]]
    cols["current_pred"] = r.pred
    for k in range(3):
        cols[f"current_prob{k + 1}"] = r.probs[:, k]
    cols["target1_min_required_score"] = s1
    cols["target2_min_required_score"] = r.s_values(2)
    head = pd.DataFrame(cols)
    fill = np.where(r.taken, np.nan, s1[:, None]) if r.courses else np.empty((len(r.sids), 0))
    body = pd.DataFrame(fill, columns=r.courses)
    return pd.concat([head, body], axis=1)


def _cost(u: float, s: float | int, lo: int) -> float:
    return u * (s - lo) if s < CEILING else math.nan


def thresholds_frame(r: MajorResult) -> pd.DataFrame:
    assert r.thresholds is not None
    rows = []
    for sid, t, miss, u in zip(r.sids, r.thresholds, r.missing, r.unknown_credits, strict=True):
        if not miss:
            rows.append((sid, r.major, math.nan, math.nan, 0, 0.0, 0.0, "[]", "[]", "[]", "{}", "{}",
                         t.policy_1, t.policy_2, 0, 0, 0))
            continue
        u = float(u)
        t1 = {c: t.s1 for c in miss} if t.s1 < CEILING else {}
        t2 = {c: t.s2 for c in miss} if t.s2 < CEILING else {}
        rows.append((sid, r.major, t.s1, t.s2, u, _cost(u, t.s1, r.min_grade),
                     _cost(u, t.s2, r.min_grade), repr(t.ranges_1), repr(t.ranges_2), repr(miss),
                     repr(t1), repr(t2), t.policy_1, t.policy_2, t.multi_1, t.multi_2,
                     t.dominated_by_1))
    return pd.DataFrame(rows, columns=list(THRESHOLD_COLUMNS))


MISSING_SCHEMA = pa.schema([("SNH", pa.string()), ("Course_Name", pa.string()),
                            ("target1_score", pa.float64()), ("target2_score", pa.float64())])
# Students per batch of the MissingCoursesScores stream (about 25 rows each).
MISSING_BATCH = 2_000


def missing_sheet(r: MajorResult) -> pa.RecordBatchReader:
    """MissingCoursesScores as a stream: one row per (student, missing course),
    built ``MISSING_BATCH`` students at a time while the writer writes, so the
    longest sheet is never held whole (it has about 25 rows per student)."""
    assert r.thresholds is not None
    thresholds, missing, sids = r.thresholds, r.missing, r.sids

    def batches() -> Iterator[pa.RecordBatch]:
        for lo in range(0, len(sids), MISSING_BATCH):
            hi = min(lo + MISSING_BATCH, len(sids))
            counts = np.array([len(m) for m in missing[lo:hi]])
            if not counts.sum():
                continue
            t = thresholds[lo:hi]
            s1 = np.array([x.s1 if x.s1 < CEILING else np.nan for x in t], dtype=float)
            s2 = np.array([x.s2 if x.s2 < CEILING else np.nan for x in t], dtype=float)
            yield pa.record_batch([
                pa.array(np.repeat(np.array(sids[lo:hi], dtype=object), counts), pa.string()),
                pa.array(list(chain.from_iterable(missing[lo:hi])), pa.string()),
                pa.array(np.repeat(s1, counts), from_pandas=True),   # NaN -> empty cell
                pa.array(np.repeat(s2, counts), from_pandas=True),
            ], schema=MISSING_SCHEMA)

    return pa.RecordBatchReader.from_batches(MISSING_SCHEMA, batches())


def reachability_frame(r: MajorResult) -> pd.DataFrame:
    """What the legacy columns hide: 90 and min_grade also mean 'not reachable'."""
    assert r.thresholds is not None
    rows = []
    for sid, t in zip(r.sids, r.thresholds, strict=True):
        first1 = t.ranges_1[0][0] if t.ranges_1 else math.nan
        first2 = t.ranges_2[0][0] if t.ranges_2 else math.nan
        rows.append((sid, r.major, REACH_TEXT[t.reachable_1], REACH_TEXT[t.reachable_2],
                     _flag(t.reachable_1), _flag(t.reachable_2), first1, first2,
                     r.min_grade, r.max_grade))
    return pd.DataFrame(rows, columns=[
        "SNH", "Major", "保研可达", "出国可达", "reachable_1", "reachable_2",
        "first_score_for_1", "first_score_for_2", "search_min", "search_max",
    ])


def _flag(v: bool | None) -> float:
    return math.nan if v is None else (1.0 if v else 0.0)


Sheet = pd.DataFrame | pa.RecordBatchReader  # a frame, or a stream of row batches


def major_sheets(r: MajorResult) -> list[tuple[str, Sheet]]:
    """One major's sheets in the legacy order; the extra sheet after them."""
    sheets: list[tuple[str, Sheet]] = [("Predictions", predictions_frame(r))]
    if r.thresholds is not None:
        sheets.append(("UniformThresholds", thresholds_frame(r)))
        if any(r.missing):
            sheets.append(("MissingCoursesScores", missing_sheet(r)))
        sheets.append(("Reachability", reachability_frame(r)))
    return sheets


def summary_sheet(results: Sequence[MajorResult]) -> Sheet:
    """The ``_All`` sheet as a stream: each major's Predictions frame is built
    when the writer reaches it and dropped after, instead of every frame being
    built and concatenated first. Same columns and cells as ``summary_frame``
    (the union in order of appearance; a major lacks the others' courses)."""
    if not results:
        return pd.DataFrame()
    first = predictions_frame(results[0])
    if not first.columns.is_unique:  # a plan course named like a fixed column: pandas' way
        return summary_frame([(r.major, predictions_frame(r)) for r in results])
    columns: dict[str, pa.DataType] = {}
    for r in results:
        frame = first if r is results[0] else predictions_frame(r)
        for name, arrow in zip(frame.columns, _arrow_types(frame), strict=True):
            columns.setdefault(name, arrow)
        columns.setdefault("Major", pa.string())
    schema = pa.schema(list(columns.items()))

    def batches() -> Iterator[pa.RecordBatch]:
        for r in results:
            frame = (first if r is results[0] else predictions_frame(r)).assign(Major=r.major)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            n = len(frame)
            yield pa.record_batch(
                [table.column(f.name).combine_chunks().cast(f.type)
                 if f.name in frame.columns else pa.nulls(n, f.type) for f in schema],
                schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _arrow_types(frame: pd.DataFrame) -> list[pa.DataType]:
    return list(pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False).types)


def summary_frame(frames: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Predictions of every major in processing order, union of columns in order of appearance."""
    # The deployed code tags each frame before concatenating, so ``Major``
    # follows the first major's columns and later majors' courses follow it.
    parts = [f.assign(Major=m) for m, f in frames]
    return pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()


# Excel's limit for one cell's text; the old writer (xlsxwriter) cut longer text
# to it, the Rust writer refuses the whole workbook instead.
MAX_CELL_TEXT = 32_767


def writable_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as the writer takes it: text column labels, unique, texts within Excel's limit.

    The writer looks columns up by label, so a label that occurs twice (a plan
    course called ``grade``) is written the way ``pandas.read_excel`` reads a
    repeated header back anyway: ``grade``, ``grade.1``. Copies only what changes.
    """
    labels = [str(c) for c in df.columns]
    if len(set(labels)) != len(labels):
        seen: dict[str, int] = {}
        unique = []
        for label in labels:
            n = seen.get(label, 0)
            seen[label] = n + 1
            name = label if n == 0 else f"{label}.{n}"
            while n and name in labels:  # "a.1" already taken: keep counting
                n += 1
                seen[label] = n + 1
                name = f"{label}.{n}"
            unique.append(name)
        labels = unique
    out = df if labels == list(df.columns) else df.set_axis(labels, axis=1)
    long_text: dict[str, object] = {}
    for i, dtype in enumerate(out.dtypes):
        col = out.iloc[:, i]
        if isinstance(dtype, pd.StringDtype):  # pandas 3's text columns (Arrow): vectorised
            if len(col) and col.str.len().max() > MAX_CELL_TEXT:
                long_text[labels[i]] = col.str.slice(0, MAX_CELL_TEXT)
        elif dtype is np.dtype(object) and _longest(values := col.tolist()) > MAX_CELL_TEXT:
            long_text[labels[i]] = [v[:MAX_CELL_TEXT] if isinstance(v, str) else v
                                    for v in values]
    return out.assign(**long_text) if long_text else out


def _longest(values: list[object]) -> int:
    """The longest text among ``values`` (a C-speed pass when they are all text)."""
    try:
        return max(map(len, values), default=0)  # type: ignore[arg-type]
    except TypeError:
        return max((len(v) for v in values if isinstance(v, str)), default=0)


def writable_stream(stream: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``stream`` with every text cut to Excel's limit, batch by batch as it is read."""
    def cut(batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        for col in batch.columns:
            if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) \
                    and len(col) and (pc.max(pc.utf8_length(col)).as_py() or 0) > MAX_CELL_TEXT:
                col = pc.utf8_slice_codeunits(col, 0, MAX_CELL_TEXT)  # code points
            columns.append(col)
        return pa.record_batch(columns, schema=batch.schema)

    return pa.RecordBatchReader.from_batches(stream.schema, (cut(b) for b in stream))


def write_workbook(path: Path, sheets: Sequence[tuple[str, Sheet]]) -> None:
    """Write via a temp file in the same directory, then rename: never half a workbook.

    rustpy-xlsxwriter (README 依赖) writes every ``str`` as an inline string --
    never a formula, link or number, so a grade export's "=1+1" stays text --
    numbers as numbers with the float's shortest exact digits, NaN/None as an
    empty cell, one row at a time (constant memory).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    try:
        rustpy_xlsxwriter.write_worksheets(
            [(name, writable_frame(sheet) if isinstance(sheet, pd.DataFrame)
              else writable_stream(sheet)) for name, sheet in sheets], tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Below this many cells a second writing process saves too little to be worth
# a process (measured: forking a 600 MB job and reaping the child takes about
# 10 ms; the writer does 2-3 million cells per second per core, so 500,000
# cells are about 0.2 s, of which a second process saves under 0.1 s).
PARALLEL_MIN_CELLS = 500_000
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class _Book:
    """One workbook to write: its file name, its size (to share the work out)
    and how to build its sheets -- built when written, so nothing is held early."""

    name: str
    cells: int
    sheets: Callable[[], list[tuple[str, Sheet]]]


def _books(results: Sequence[MajorResult], year: int, prefix: str) -> list[_Book]:
    """Every major's workbook, then ``_All`` (built again from the results: the
    per-major frames are not kept for it)."""
    # Work in "cells", weighted as measured: a missing-course row (two texts)
    # costs about six numbers; _All's empty cells (other majors' courses) nothing.
    books = []
    for r in results:
        n, missing = len(r.sids), sum(len(m) for m in r.missing)
        cells = n * (21 + len(r.courses)) + (n * 27 + missing * 6 if r.thresholds else 0)
        books.append(_Book(f"{prefix}Cohort{year}_Predictions_{r.code}.xlsx", cells,
                           partial(major_sheets, r)))
    books.append(_Book(f"{prefix}Cohort{year}_Predictions_All.xlsx",
                       sum(len(r.sids) * (22 + len(r.courses)) for r in results),
                       partial(_summary_sheets, results)))
    return books


def _summary_sheets(results: Sequence[MajorResult]) -> list[tuple[str, Sheet]]:
    return [("Sheet1", summary_sheet(results))]


def _share(books: list[_Book], processes: int) -> list[list[_Book]]:
    """The books in ``processes`` groups of about equal cells (largest first to
    the least loaded); the first group is the calling process's."""
    if processes <= 1 or sum(b.cells for b in books) < PARALLEL_MIN_CELLS:
        return [books]
    groups: list[list[_Book]] = [[] for _ in range(min(processes, len(books)))]
    load = [0] * len(groups)
    for book in sorted(books, key=lambda b: -b.cells):
        i = load.index(min(load))
        groups[i].append(book)
        load[i] += book.cells
    return [g for g in groups if g]


def _die_with_parent(parent: int) -> None:
    """Be killed when the process that forked this one dies (a job killed on its
    time limit runs no cleanup): Linux's PR_SET_PDEATHSIG; elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _fork_writer(books: list[_Book], staging: Path) -> tuple[int, Connection]:
    """Fork a process that writes ``books`` into ``staging`` and sends one message
    (None, or the failure's errno and traceback); returns its pid and the pipe.

    A plain ``os.fork``: the job process that calls this is itself a daemonic
    multiprocessing child, which multiprocessing forbids to start children."""
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, Connection(read_fd, writable=False)
    try:  # the child: never returns into the caller's stack
        os.close(read_fd)
        _die_with_parent(parent)
        conn = Connection(write_fd, readable=False)
        try:
            for book in books:
                write_workbook(staging / book.name, book.sheets())
            conn.send(None)
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
            conn.send((getattr(exc, "errno", None), traceback.format_exc()))
    finally:
        os._exit(0)


def _stop_writer(pid: int) -> None:
    """Kill a writing child if it still runs, and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def write_reports(results: Sequence[MajorResult], year: int, out_dir: Path,
                  prefix: str = "", *, processes: int = 1,
                  cancel: CancelToken | None = None) -> list[Path]:
    """Every major's workbook, then ``_All``; staged, then moved in: a failed run leaves nothing.

    With ``processes`` > 1 and at least ``PARALLEL_MIN_CELLS`` to write, the
    workbooks are shared among that many processes: this one and forked
    children, which inherit the results (copy-on-write, nothing is sent), its
    priority and its memory limit. ``cancel`` is checked between workbooks and
    while the children run; cancelling stops them. Returns the final paths, in
    the order above.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    books = _books(results, year, prefix)
    children: list[tuple[int, Connection]] = []
    try:
        mine, *others = _share(books, processes)
        for group in others:
            children.append(_fork_writer(group, staging))
        for book in mine:
            _check(cancel)
            write_workbook(staging / book.name, book.sheets())
        for _pid, receive in children:
            while not receive.poll(0.05):
                _check(cancel)
            try:
                failure = receive.recv()
            except EOFError:  # it died without a word (killed, out of memory)
                raise RuntimeError("写结果文件的子进程意外退出") from None
            if failure is not None:
                code, text = failure
                if code is not None:
                    raise OSError(code, f"写结果文件失败：{text}")
                raise RuntimeError(f"写结果文件失败：{text}")
        final = []
        for book in books:
            target = out_dir / book.name
            (staging / book.name).replace(target)
            final.append(target)
        return final
    finally:
        for pid, receive in children:
            _stop_writer(pid)
            receive.close()
        shutil.rmtree(staging, ignore_errors=True)


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise PredictionCancelled()
