"""The vectorised engine equals the literal, one-student-one-score reading of
ALGORITHM.md sections 5 and 7 in ``destination_predictor.literal``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import REF_EXACT_MAP, REF_MODEL, REF_PLANS, needs_reference

from destination_predictor.engine import Engine, literal
from destination_predictor.engine.categories import load_category_map
from destination_predictor.engine.grades import Cohort
from destination_predictor.engine.options import PredictConfig
from destination_predictor.engine.plans import find_plans, read_plan

pytestmark = needs_reference

ENGINE = Engine(REF_MODEL, REF_PLANS, REF_EXACT_MAP) if REF_MODEL.is_dir() else None
PLANS = {}
if ENGINE is not None:
    cmap = load_category_map(REF_EXACT_MAP)
    for year, major in [(2023, "物联网工程"), (2024, "智能科学与技术"), (2022, "电子信息工程")]:
        PLANS[(year, major)] = read_plan(find_plans(REF_PLANS, year)[major], year, major, cmap)


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
    for i, sid in enumerate(sids):
        taken = {c: g for s, c, g in rows if s == sid}
        ref = literal.predict_student(ENGINE.model, plan, taken, lo, hi)
        np.testing.assert_allclose(res.features[i], ref.features[:9], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(res.probs[i], ref.probs, rtol=1e-9)
        assert res.missing[i] == ref.missing
        assert res.unknown_credits[i] == sum(r.credit for r in plan.rows if r.course not in taken)
        t = res.thresholds[i]
        if ref.thresholds is None:
            assert t.policy_1 == "no_missing_courses"
            continue
        assert (t.s1, t.s2, t.ranges_1, t.ranges_2, t.policy_1, t.policy_2) == ref.thresholds
