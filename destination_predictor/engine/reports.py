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
import xlsxwriter

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


def write_workbook(path: Path, sheets: Sequence[tuple[str, pd.DataFrame]]) -> None:
    """Write via a temp file in the same directory, then rename: never half a workbook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".xlsx", dir=path.parent)
    os.close(fd)
    try:
        wb = xlsxwriter.Workbook(tmp, {
            "constant_memory": True,
            "strings_to_formulas": False,   # a course called "=..." stays text
            "strings_to_urls": False,
            "strings_to_numbers": False,
        })
        for name, df in sheets:
            ws = wb.add_worksheet(name)
            ws.write_row(0, 0, [str(c) for c in df.columns])
            values = df.astype(object).where(df.notna(), None).to_numpy().tolist()
            for i, row in enumerate(values, start=1):
                ws.write_row(i, 0, row)
        wb.close()
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
