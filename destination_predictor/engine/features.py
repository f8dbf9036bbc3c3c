"""Credit-weighted category features (docs/algorithm.md, "Features").

Pure numpy over a batch: one row per (student, assumed score) pair, one
column per plan row in; ``build`` gives ``(batch, N_FEATURES)`` out: the nine
categories in ``BASE`` order, then AcademicStrength. The
accumulation walks the plan rows in file order with the same operations as
the deployed per-student code (``tot += score * credit``), so the floats are
identical, not merely close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .categories import BASE, STRENGTH_WALK
from .plans import Plan

MAJOR_FROM: tuple[tuple[str, float], ...] = (
    ("basic_major", 0.50), ("basic_subject", 0.30), ("math_science", 0.20),
)
INNOVATION_FROM: tuple[tuple[str, float], ...] = (
    ("practice", 0.40), ("major", 0.35), ("basic_major", 0.15), ("basic_subject", 0.10),
)
FEATURE_INDEX = {name: i for i, name in enumerate(BASE)}
N_CATEGORIES = len(BASE)            # the nine category means
N_FEATURES = N_CATEGORIES + 1       # ... and AcademicStrength, last


class PlanLayout:
    """The plan rows reduced to arrays: credit and feature index per row.

    ``credit`` and ``feature`` are ``(n_rows,)``; ``feature[r]`` is -1 for a
    row whose category maps to no feature (it counts as missing, adds nothing).

    ``course_index[r]`` points into ``courses`` (distinct names), so a course
    listed twice (once per semester) reads the same grade for both rows.
    """

    def __init__(self, plan: Plan) -> None:
        self.courses: list[str] = plan.courses
        pos = {c: i for i, c in enumerate(self.courses)}
        self.course_index = np.array([pos[r.course] for r in plan.rows], dtype=np.intp)
        self.credit = np.array([r.credit for r in plan.rows], dtype=float)
        self.feature = np.array(
            [FEATURE_INDEX[r.feature] if r.feature else -1 for r in plan.rows], dtype=np.intp
        )
        self.n_rows = len(plan.rows)


def category_means(values: np.ndarray, present: np.ndarray, layout: PlanLayout) -> np.ndarray:
    """Step 1: ``(batch, n_rows)`` values and presence -> ``(batch, 9)`` means.

    Credit-weighted per category, NaN where no credit counted; absent rows
    add nothing.
    """
    n = values.shape[0]
    tot = np.zeros((n, len(BASE)))
    cred = np.zeros((n, len(BASE)))
    for r in range(layout.n_rows):
        c = layout.feature[r]
        if c < 0:
            continue
        credit = layout.credit[r]
        p = present[:, r]
        tot[:, c] = np.where(p, tot[:, c] + values[:, r] * credit, tot[:, c])
        cred[:, c] = np.where(p, cred[:, c] + credit, cred[:, c])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cred > 0, tot / np.where(cred > 0, cred, 1.0), np.nan)


def _weighted_fill(f: np.ndarray, target: str, sources: Sequence[tuple[str, float]]) -> None:
    num = np.zeros(f.shape[0])
    den = np.zeros(f.shape[0])
    for name, w in sources:
        v = f[:, FEATURE_INDEX[name]]
        ok = ~np.isnan(v)
        num = np.where(ok, num + w * np.where(ok, v, 0.0), num)
        den = np.where(ok, den + w, den)
    t = FEATURE_INDEX[target]
    with np.errstate(invalid="ignore", divide="ignore"):
        fill = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    f[:, t] = np.where(np.isnan(f[:, t]), fill, f[:, t])


def impute(f: np.ndarray) -> np.ndarray:
    """Step 2: ``(batch, 9)`` -> ``(batch, 9)``; ``major`` first, then
    ``innovation`` (which may use the newly filled ``major``)."""
    out = f.copy()
    _weighted_fill(out, "major", MAJOR_FROM)
    _weighted_fill(out, "innovation", INNOVATION_FROM)
    return out


def academic_strength(f: np.ndarray, stats: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Step 3: ``(batch, 9)`` -> ``(batch,)`` mean z-score over the fixed
    13-entry walk (``public`` five times); 0 where nothing counts."""
    total = np.zeros(f.shape[0])
    count = np.zeros(f.shape[0])
    for name in STRENGTH_WALK:
        st = stats.get(name)
        if st is None or len(st) < 2:
            continue
        mean, std = float(st[0]), float(st[1])
        if not std > 0:
            continue
        v = f[:, FEATURE_INDEX[name]]
        ok = ~np.isnan(v)
        total = np.where(ok, total + (np.where(ok, v, 0.0) - mean) / std, total)
        count = np.where(ok, count + 1, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), 0.0)


def build(values: np.ndarray, present: np.ndarray, layout: PlanLayout,
          stats: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Steps 1-3: ``(batch, n_rows)`` values and presence -> ``(batch, N_FEATURES)``.

    The model's input in ``BASE`` order plus AcademicStrength; the category
    columns are imputed but not clipped (clipping belongs to the model).
    """
    f = impute(category_means(values, present, layout))
    return np.column_stack([f, academic_strength(f, stats)])
