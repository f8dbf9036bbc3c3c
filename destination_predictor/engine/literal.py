"""The deployed algorithm read literally: one student, one candidate score,
one single-row model call at a time (docs/algorithm.md §5 and §7).

Not used by the service. It is the executable specification the vectorised
engine is tested against, and the benchmark's measured baseline for "the
reference way" (31 model calls per student).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .categories import BASE, STRENGTH_WALK
from .model import DestinationModel
from .plans import Plan

MAJOR_FROM = [("basic_major", .5), ("basic_subject", .3), ("math_science", .2)]
INNOVATION_FROM = [("practice", .4), ("major", .35), ("basic_major", .15), ("basic_subject", .1)]


def features(scores: dict[str, float], plan: Plan, stats: dict) -> list[float]:
    """Section 5 steps 1-3 with dicts and Python floats."""
    tot = dict.fromkeys(BASE, 0.0)
    cred = dict.fromkeys(BASE, 0.0)
    for row in plan.rows:
        if row.feature and row.course in scores:
            tot[row.feature] += scores[row.course] * row.credit
            cred[row.feature] += row.credit
    f = {c: (tot[c] / cred[c] if cred[c] > 0 else math.nan) for c in BASE}
    for target, sources in (("major", MAJOR_FROM), ("innovation", INNOVATION_FROM)):
        if math.isnan(f[target]):
            num = den = 0.0
            for k, w in sources:
                if not math.isnan(f[k]):
                    num += w * f[k]
                    den += w
            f[target] = num / den if den > 0 else math.nan
    zs = [(f[c] - stats[c][0]) / stats[c][1] for c in STRENGTH_WALK
          if c in stats and not math.isnan(f[c]) and stats[c][1] > 0]
    return [f[c] for c in BASE] + [sum(zs) / len(zs) if zs else 0.0]


def runs(pred: dict[int, int], k: int, lo: int, hi: int) -> list[tuple[int, int]]:
    out, start = [], None
    for x in range(lo, hi + 1):
        if pred[x] == k and start is None:
            start = x
        if pred[x] != k and start is not None:
            out.append((start, x - 1))
            start = None
    return out + ([(start, hi)] if start is not None else [])


def policies(pred: dict[int, int], lo: int, hi: int) -> tuple:
    """Section 7 as written: (s1, s2, ranges_1, ranges_2, policy_1, policy_2)."""
    r1, r2 = runs(pred, 1, lo, hi), runs(pred, 2, lo, hi)
    raw1 = r1[0][0] if r1 else 90
    raw2 = r2[0][0] if r2 else lo
    s2, p2 = raw2, "first_left_or_single"
    if raw2 == lo and len(r2) >= 2:
        if r2[1][0] < 70:
            s2, p2 = r2[1][0], "use_second_left_lt70"
        else:
            p2 = "keep_60_stable_ge70"
    s1, p1 = raw1, ("first_left" if raw1 < 90 else "unreachable")
    if s1 <= s2 and r1:
        widths = [b - a for a, b in r1]
        a, b = r1[widths.index(max(widths))]
        hits = [x for x in range(max(s2 + 1, a), b + 1) if pred[x] == 1]
        later = [x for x, _ in r1 if x > s2]
        if hits:
            s1, p1 = hits[0], "adjust_to_min_>s2_in_widest_interval"
        elif later:
            s1, p1 = min(later), "use_next_interval_left"
        else:
            s1, p1 = min(s2 + 10, 90), "fallback_force_s2_plus_10_cap90"
    return s1, s2, r1, r2, p1, p2


@dataclass
class LiteralStudent:
    features: list[float]
    probs: np.ndarray
    missing: list[str]
    thresholds: tuple | None  # None when nothing is missing


def predict_student(model: DestinationModel, plan: Plan, taken: dict[str, float],
                    lo: int = 60, hi: int = 90) -> LiteralStudent:
    """One student the deployed way: 1 + (hi - lo + 1) single-row model calls."""
    stats = model.strength_stats(plan.major)
    cur = features(taken, plan, stats)
    probs = model.predict(np.array([cur]), via_scaler=True)[0]
    missing = [r.course for r in plan.rows if r.course not in taken]
    if not missing:
        return LiteralStudent(cur, probs, missing, None)
    pred = {}
    for s in range(lo, hi + 1):
        merged = {**taken, **dict.fromkeys(missing, float(s))}
        x = np.array([features(merged, plan, stats)])
        pred[s] = int(model.predict(x, via_scaler=True)[0].argmax()) + 1
    return LiteralStudent(cur, probs, missing, policies(pred, lo, hi))
