"""The vectorised engine equals the literal, one-student-one-score reading of
docs/algorithm.md sections 5 and 7 in ``destination_predictor.engine.literal``.

Run on the repository's demo model and plans (always there, so this never
skips) and on the deployed reference model in ``../shared/reference``
(skipped only where that is absent, never in CI).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import REF_EXACT_MAP, REF_MODEL, REF_PLANS, needs_reference
from support.paths import DEMO_MODELS_DIR, DEMO_PLANS_DIR

from destination_predictor.engine import Engine, literal
from destination_predictor.engine.grades import Cohort
from destination_predictor.engine.options import PredictConfig
from destination_predictor.engine.plans import Plan, find_plans, read_plan

SOURCES = {
    # model dir, plans dir, category map (None: the bundled one)
    "demo": (DEMO_MODELS_DIR, DEMO_PLANS_DIR, None),
    "reference": (REF_MODEL, REF_PLANS, REF_EXACT_MAP),
}
PLAN_KEYS = [(2023, "物联网工程"), (2024, "智能科学与技术"), (2022, "电子信息工程")]


@functools.cache
def engine_and_plans(source: str) -> tuple[Engine, dict[tuple[int, str], Plan]]:
    """Loaded once per source, on first use (not at import: the reference may be absent)."""
    model_dir, plans_dir, category_map = SOURCES[source]
    engine = Engine(model_dir, plans_dir, category_map)
    plans = {(year, major): read_plan(find_plans(plans_dir, year)[major], year, major,
                                      engine.categories)
             for year, major in PLAN_KEYS}
    return engine, plans


students = st.lists(
    st.tuples(st.floats(0, 1), st.lists(st.integers(0, 100), min_size=120, max_size=120)),
    min_size=1, max_size=3,
)


@pytest.mark.parametrize("source", ["demo", pytest.param("reference", marks=needs_reference)])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_key=st.sampled_from(PLAN_KEYS), people=students,
       bounds=st.sampled_from([(60, 90), (55, 95), (70, 80)]))
def test_vectorised_search_equals_literal_loop(source, plan_key, people, bounds):
    engine, plans = engine_and_plans(source)
    plan = plans[plan_key]
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
    res = engine.predict_major(plan, "x", cohort, sids, PredictConfig(True, lo, hi))
    for i, sid in enumerate(sids):
        taken = {c: g for s, c, g in rows if s == sid}
        ref = literal.predict_student(engine.model, plan, taken, lo, hi)
        np.testing.assert_allclose(res.features[i], ref.features[:9], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(res.probs[i], ref.probs, rtol=1e-9)
        assert res.missing[i] == ref.missing
        assert res.unknown_credits[i] == sum(r.credit for r in plan.rows if r.course not in taken)
        t = res.thresholds[i]
        if ref.thresholds is None:
            assert t.policy_1 == "no_missing_courses"
            continue
        assert (t.s1, t.s2, t.ranges_1, t.ranges_2, t.policy_1, t.policy_2) == ref.thresholds
