"""The result workbooks (docs/algorithm.md, "Outputs") and their atomic writing.

Legacy sheets keep their exact columns because downstream importers insert
every column of ``Predictions`` into database tables. Extra information
(plain reachability) goes into sheets after the legacy ones.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import rustpy_xlsxwriter

from .categories import BASE
from .inverse import CEILING
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


def missing_frame(r: MajorResult) -> pd.DataFrame:
    assert r.thresholds is not None
    sid_col: list[str] = []
    course_col: list[str] = []
    t1_col: list[float] = []
    t2_col: list[float] = []
    for sid, t, miss in zip(r.sids, r.thresholds, r.missing, strict=True):
        if not miss:
            continue
        n = len(miss)
        sid_col += [sid] * n
        course_col += miss
        t1_col += [t.s1 if t.s1 < CEILING else math.nan] * n
        t2_col += [t.s2 if t.s2 < CEILING else math.nan] * n
    return pd.DataFrame({"SNH": sid_col, "Course_Name": course_col,
                         "target1_score": t1_col, "target2_score": t2_col})


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


def major_sheets(r: MajorResult) -> list[tuple[str, pd.DataFrame]]:
    sheets = [("Predictions", predictions_frame(r))]
    if r.thresholds is not None:
        sheets.append(("UniformThresholds", thresholds_frame(r)))
        miss = missing_frame(r)
        if len(miss):
            sheets.append(("MissingCoursesScores", miss))
        sheets.append(("Reachability", reachability_frame(r)))
    return sheets


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


def write_workbook(path: Path, sheets: Sequence[tuple[str, pd.DataFrame]]) -> None:
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
            [(name, writable_frame(df)) for name, df in sheets], tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(results: Sequence[MajorResult], year: int, out_dir: Path,
                  prefix: str = "") -> list[Path]:
    """Every major's workbook, then ``_All``; staged, then moved in: a failed run leaves nothing.

    Returns the final paths in that order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        names: list[str] = []
        pred_frames = []
        for r in results:
            sheets = major_sheets(r)
            pred_frames.append((r.major, sheets[0][1]))
            name = f"{prefix}Cohort{year}_Predictions_{r.code}.xlsx"
            write_workbook(staging / name, sheets)
            names.append(name)
        all_name = f"{prefix}Cohort{year}_Predictions_All.xlsx"
        write_workbook(staging / all_name, [("Sheet1", summary_frame(pred_frames))])
        names.append(all_name)
        final = []
        for name in names:
            target = out_dir / name
            (staging / name).replace(target)
            final.append(target)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
