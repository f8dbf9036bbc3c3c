"""The vectorised engine equals a literal, one-student-one-score reading of
ALGORITHM.md sections 5 and 7 (dicts, Python floats, single-row model calls)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destination_predictor.categories import BASE, STRENGTH_WALK, load_category_map
from destination_predictor.config import PredictConfig
from destination_predictor.engine import Engine
from destination_predictor.grades import Cohort
from destination_predictor.plans import find_plans, read_plan
from engine_support import REF_EXACT_MAP, REF_MODEL, REF_PLANS, needs_reference

pytestmark = needs_reference

ENGINE = Engine(REF_MODEL, REF_PLANS, REF_EXACT_MAP) if REF_MODEL.is_dir() else None
PLANS = {}
if ENGINE is not None:
    cmap = load_category_map(REF_EXACT_MAP)
    for year, major in [(2023, "物联网工程"), (2024, "智能科学与技术"), (2022, "电子信息工程")]:
        PLANS[(year, major)] = read_plan(find_plans(REF_PLANS, year)[major], year, major, cmap)


def literal_features(scores: dict[str, float], plan, stats) -> list[float]:
    tot = dict.fromkeys(BASE, 0.0)
    cred = dict.fromkeys(BASE, 0.0)
    for row in plan.rows:
        if row.feature and row.course in scores:
            tot[row.feature] += scores[row.course] * row.credit
            cred[row.feature] += row.credit
    f = {c: (tot[c] / cred[c] if cred[c] > 0 else math.nan) for c in BASE}
    for target, sources in (("major", [("basic_major", .5), ("basic_subject", .3),
                                       ("math_science", .2)]),
                            ("innovation", [("practice", .4), ("major", .35),
                                            ("basic_major", .15), ("basic_subject", .1)])):
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


def literal_policies(pred: dict[int, int], lo: int, hi: int):
    def runs(k):
        out, s = [], None
        for x in range(lo, hi + 1):
            if pred[x] == k and s is None:
                s = x
            if pred[x] != k and s is not None:
                out.append((s, x - 1))
                s = None
        return out + ([(s, hi)] if s is not None else [])

    r1, r2 = runs(1), runs(2)
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
        if hits:
            s1, p1 = hits[0], "adjust_to_min_>s2_in_widest_interval"
        elif [x for x, _ in r1 if x > s2]:
            s1, p1 = min(x for x, _ in r1 if x > s2), "use_next_interval_left"
        else:
            s1, p1 = min(s2 + 10, 90), "fallback_force_s2_plus_10_cap90"
    return s1, s2, r1, r2, p1, p2


students = st.lists(
    st.tuples(st.floats(0, 1), st.lists(st.integers(0, 100), min_size=120, max_size=120)),
    min_size=1, max_size=3,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_key=st.sampled_from(sorted(PLANS) or [None]), people=students,
       bounds=st.sampled_from([(60, 90), (55, 95), (70, 80)]))
def test_vectorised_search_equals_literal_loop(plan_key, people, bounds):
    plan = PLANS[plan_key]
    lo, hi = bounds
    courses = plan.courses
    rows, sids = [], []
    for i, (share, grades) in enumerate(people):
        sid = f"S{i}"
        sids.append(sid)
        for j, c in enumerate(courses):
            if (grades[j] % 100) / 100 < share:
                rows.append((sid, c, float(grades[j])))
        rows.append((sid, "不在培养方案里的课", 77.0))
    scores = pd.DataFrame(rows, columns=["sid", "course", "grade"])
    cohort = Cohort(students=sids, majors=dict.fromkeys(sids, plan.major), scores=scores,
                    has_major_column=True)
    res = ENGINE.predict_major(plan, "x", cohort, sids, PredictConfig(True, lo, hi))
    stats = ENGINE.model.strength_stats(plan.major)
    for i, sid in enumerate(sids):
        taken = {c: g for s, c, g in rows if s == sid}
        cur = literal_features(taken, plan, stats)
        np.testing.assert_allclose(res.features[i], cur[:9], rtol=1e-12, equal_nan=True)
        probs = ENGINE.model.predict(np.array([cur]))[0]
        np.testing.assert_allclose(res.probs[i], probs, rtol=1e-9)
        missing = [r.course for r in plan.rows if r.course not in taken]
        assert res.missing[i] == missing
        assert res.unknown_credits[i] == sum(r.credit for r in plan.rows if r.course not in taken)
        t = res.thresholds[i]
        if not missing:
            assert t.policy_1 == "no_missing_courses"
            continue
        pred = {}
        for s in range(lo, hi + 1):
            merged = {**taken, **dict.fromkeys(missing, float(s))}
            x = np.array([literal_features(merged, plan, stats)])
            pred[s] = int(ENGINE.model.predict(x)[0].argmax()) + 1
        s1, s2, r1, r2, p1, p2 = literal_policies(pred, lo, hi)
        assert (t.s1, t.s2, t.ranges_1, t.ranges_2, t.policy_1, t.policy_2) == \
            (s1, s2, r1, r2, p1, p2)
