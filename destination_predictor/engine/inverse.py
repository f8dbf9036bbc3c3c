"""Uniform-score inverse search (docs/algorithm.md, "Inverse search"): the
minimum uniform score a student needs in every missing course to reach
destination 1 (保研) or 2 (出国).

Two halves: ``uniform_thresholds`` builds the candidate grid (every missing
course at each score in ``[lo, hi]``), predicts it in bounded batches and
hands each student's row of predicted destinations to ``search``, which
applies the deployed system's policies to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import features
from .errors import PredictionCancelled
from .plans import Plan

# The deployed code hard-codes 90 as "unreachable" for destination 1 and as
# the cost cut-off; these are not the configurable max_grade.
CEILING = 90
NAN = math.nan
# Elements of one (students x candidates x plan rows) value block; bounds memory.
BLOCK_ELEMENTS = 6_000_000

PredictFn = Callable[[np.ndarray], np.ndarray]  # (batch, N_FEATURES) -> (batch, 3)


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Thresholds:
    """The legacy outputs for one student, plus plain reachability."""

    s1: float | int
    s2: float | int
    ranges_1: list[tuple[int, int]]
    ranges_2: list[tuple[int, int]]
    policy_1: str
    policy_2: str
    multi_1: int
    multi_2: int
    dominated_by_1: int
    reachable_1: bool | None  # None: nothing missing, nothing to reach
    reachable_2: bool | None


NO_MISSING = Thresholds(NAN, NAN, [], [], "no_missing_courses", "no_missing_courses",
                        0, 0, 0, None, None)


def runs(pred: Sequence[int], k: int, lo: int) -> list[tuple[int, int]]:
    """Maximal runs of consecutive candidate scores predicted as ``k``."""
    out: list[tuple[int, int]] = []
    start = None
    for i, p in enumerate(pred):
        if p == k:
            if start is None:
                start = i
        elif start is not None:
            out.append((lo + start, lo + i - 1))
            start = None
    if start is not None:
        out.append((lo + start, lo + len(pred) - 1))
    return out


def search(pred: Sequence[int], lo: int, hi: int) -> Thresholds:
    """Apply the section-7 policies to ``pred[s - lo]`` for s in [lo, hi]."""
    r1 = runs(pred, 1, lo)
    r2 = runs(pred, 2, lo)
    raw1 = r1[0][0] if r1 else CEILING
    raw2 = r2[0][0] if r2 else lo
    multi1 = 1 if len(r1) >= 2 else 0
    multi2 = 1 if len(r2) >= 2 else 0
    dominated = 1 if r1 == [(lo, hi)] else 0

    # Case 1: destination 2.
    s2, policy2 = raw2, "first_left_or_single"
    if raw2 == lo and multi2:
        second = r2[1][0]
        if second < 70:
            s2, policy2 = second, "use_second_left_lt70"
        else:
            policy2 = "keep_60_stable_ge70"

    # Case 2: destination 1 must need more than destination 2.
    s1 = raw1
    policy1 = "first_left" if raw1 < CEILING else "unreachable"
    if s1 <= s2 and r1:
        widest = max(r1, key=lambda r: r[1] - r[0])  # max keeps the first on a tie
        found = next(
            (s for s in range(max(s2 + 1, widest[0]), widest[1] + 1) if pred[s - lo] == 1), None
        )
        if found is not None:
            s1, policy1 = found, "adjust_to_min_>s2_in_widest_interval"
        else:
            nxt = [a for a, _ in r1 if a > s2]
            if nxt:
                s1, policy1 = min(nxt), "use_next_interval_left"
            else:
                s1, policy1 = min(s2 + 10, CEILING), "fallback_force_s2_plus_10_cap90"
    return Thresholds(s1, s2, r1, r2, policy1, policy2, multi1, multi2, dominated,
                      bool(r1), bool(r2))


def missing_courses(missing: np.ndarray, plan: Plan) -> list[list[str]]:
    """``(n_students, n_rows)`` bool -> per student, the missing rows' course names.

    A course listed twice in the plan is listed twice here, like the deployed code."""
    names = [r.course for r in plan.rows]
    return [[names[r] for r in np.flatnonzero(row)] for row in missing]


def unknown_credits(missing: np.ndarray, layout: features.PlanLayout) -> np.ndarray:
    """``(n_students, n_rows)`` bool -> ``(n_students,)`` credits still to earn (U).

    Summed row by row in plan order, like the deployed ``sum()``, so the floats match."""
    total = np.zeros(missing.shape[0])
    for r in range(layout.n_rows):
        total = np.where(missing[:, r], total + layout.credit[r], total)
    return total


def uniform_thresholds(values: np.ndarray, taken: np.ndarray, layout: features.PlanLayout,
                       stats: Mapping[str, Sequence[float]], predict: PredictFn,
                       lo: int, hi: int, cancel: CancelToken | None = None) -> list[Thresholds]:
    """``(n_students, n_rows)`` grades and presence -> one ``Thresholds`` per student.

    For each student with a missing row, every candidate score ``s`` in
    ``[lo, hi]`` fills all missing rows at once; the ``(m * k, n_rows)``
    grid (student-major, candidate-minor) goes through ``features.build``
    and ``predict`` in blocks of at most ``BLOCK_ELEMENTS`` values, and the
    argmax destinations ``(m, k)`` go to ``search``. A student with nothing
    missing gets ``NO_MISSING``. ``cancel`` is checked between blocks.
    """
    n = values.shape[0]
    out = [NO_MISSING] * n
    need = np.flatnonzero((~taken).any(axis=1))
    cand = np.arange(lo, hi + 1, dtype=float)
    k = len(cand)
    step = max(1, BLOCK_ELEMENTS // max(1, k * max(1, layout.n_rows)))
    all_present = np.ones((1, layout.n_rows), dtype=bool)
    for start in range(0, len(need), step):
        if cancel is not None and cancel.is_set():
            raise PredictionCancelled()
        block = need[start:start + step]
        grid = np.where(taken[block][:, None, :], values[block][:, None, :], cand[None, :, None])
        grid = grid.reshape(len(block) * k, layout.n_rows)
        x = features.build(grid, np.broadcast_to(all_present, grid.shape), layout, stats)
        pred = (predict(x).argmax(axis=1) + 1).reshape(len(block), k)
        for i, row in zip(block, pred.tolist(), strict=True):
            out[i] = search(row, lo, hi)
    return out
