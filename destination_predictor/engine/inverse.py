"""Uniform-score inverse search (ALGORITHM.md section 7): from the predicted
destination at each candidate score, the minimum uniform score a student
needs in every missing course to reach destination 1 or 2.

The model work is batched by the engine; this module only reads the
prediction grid ``pred[s]`` of one student and applies the legacy policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The deployed code hard-codes 90 as "unreachable" for destination 1 and as
# the cost cut-off; these are not the configurable max_grade.
CEILING = 90
NAN = math.nan


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
