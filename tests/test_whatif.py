"""The what-if of one student (``engine/whatif.py``) against the batch engine:
same student, same floats; the SHAP reasons add up to CatBoost's raw logits;
refused input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from support.paths import MODELS_DIR, PLANS_DIR
from support.service import YEAR

from destination_predictor.engine import PredictionError
from destination_predictor.engine.features import N_CATEGORIES
from destination_predictor.engine.grades import read_grades
from destination_predictor.engine.options import PredictConfig
from destination_predictor.engine.pipeline import Engine
from destination_predictor.engine.plans import find_plans, read_plan
from destination_predictor.engine.whatif import FEATURE_NAMES, engine_whatif, whatif


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(MODELS_DIR, PLANS_DIR)


def _student_grades(cohort, sid: str) -> dict[str, float]:
    rows = cohort.scores[cohort.scores["sid"] == sid]
    return dict(zip(rows["course"], rows["grade"].astype(float), strict=True))


def test_answers_equal_the_batch_for_every_student(engine: Engine, grades: Path) -> None:
    cohort = read_grades(grades)
    config = PredictConfig()
    plans = find_plans(PLANS_DIR, YEAR)
    checked = 0
    for major, path in plans.items():
        sids = cohort.students_of(major)
        if not sids:
            continue
        plan = read_plan(path, YEAR, major, engine.categories)
        batch = engine.predict_major(plan, "x", cohort, sids, config)
        assert batch.thresholds is not None
        for i, sid in enumerate(sids):
            got = whatif(engine.model, plan, _student_grades(cohort, sid), None,
                         config.min_grade, config.max_grade)
            assert [got["probabilities"][k] for k in "123"] == batch.probs[i].tolist()
            assert got["predicted"] == int(batch.pred[i])
            feats = [got["features"][n] for n in FEATURE_NAMES[:N_CATEGORIES]]
            assert feats == [None if math.isnan(v) else v for v in batch.features[i].tolist()]
            t = batch.thresholds[i]
            for key, want in (("s1", t.s1), ("s2", t.s2)):
                have = got["thresholds"][key]
                assert (have is None and math.isnan(want)) or have == float(want)
            assert got["thresholds"]["reachable_1"] == t.reachable_1
            assert got["thresholds"]["reachable_2"] == t.reachable_2
            assert got["thresholds"]["ranges_1"] == [list(r) for r in t.ranges_1]
            assert got["missing"] == batch.missing[i]
            assert got["unknown_credits"] == float(batch.unknown_credits[i])
            checked += 1
    assert checked == 40


def test_reasons_add_up_to_the_raw_logits(engine: Engine, grades: Path) -> None:
    cohort = read_grades(grades)
    sid = cohort.students[0]
    major = cohort.majors[sid]
    answer = engine_whatif(engine, YEAR, major, _student_grades(cohort, sid))
    reasons = answer["reasons"]
    assert reasons["basis"].startswith("raw_logit_shap")
    x = np.array([[answer["features"][n] if answer["features"][n] is not None else np.nan
                   for n in FEATURE_NAMES]])
    raw = engine.model.raw_logits(x)[0]
    for k in range(3):
        total = reasons["expected"][str(k + 1)] + sum(
            reasons["contributions"][n][str(k + 1)] for n in FEATURE_NAMES)
        assert total == pytest.approx(raw[k], abs=1e-6)
    # The raw logits are what predict_proba softmaxes (demo model: neutral post-processing).
    soft = np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum()
    assert soft == pytest.approx([answer["probabilities"][k] for k in "123"], abs=1e-9)


def test_assumptions_move_the_prediction_not_the_targets(engine: Engine, grades: Path) -> None:
    cohort = read_grades(grades)
    for sid in cohort.students:
        base = engine_whatif(engine, YEAR, cohort.majors[sid], _student_grades(cohort, sid))
        if base["missing"]:
            break
    else:
        pytest.skip("no student with a missing course")
    real = _student_grades(cohort, sid)
    low = engine_whatif(engine, YEAR, base["major"], real, dict.fromkeys(base["missing"], 0))
    high = engine_whatif(engine, YEAR, base["major"], real, dict.fromkeys(base["missing"], 100))
    assert low["probabilities"] != high["probabilities"]
    assert low["thresholds"] == high["thresholds"] == base["thresholds"]
    assert low["missing"] == base["missing"]
    assert set(high["assumed"]) == set(base["missing"])
    # Assuming every missing course at s gives the batch's candidate row for s.
    s = 75
    filled = engine_whatif(engine, YEAR, base["major"], {**real, **dict.fromkeys(base["missing"], s)})
    assumed = engine_whatif(engine, YEAR, base["major"], real, dict.fromkeys(base["missing"], s))
    assert filled["probabilities"] == assumed["probabilities"]


@pytest.mark.parametrize("value", [101, -1, float("nan"), float("inf"), True, "80", None])
def test_bad_scores_are_refused(engine: Engine, value: object) -> None:
    major = next(iter(find_plans(PLANS_DIR, YEAR)))
    with pytest.raises(PredictionError) as err:
        engine_whatif(engine, YEAR, major, {"任意课程": value})
    assert err.value.code == "BAD_SCORE"
    with pytest.raises(PredictionError):
        engine_whatif(engine, YEAR, major, {}, {"任意课程": value})


def test_unknown_year_and_major(engine: Engine) -> None:
    with pytest.raises(PredictionError) as err:
        engine_whatif(engine, 1999, "x", {})
    assert err.value.code == "UNKNOWN_YEAR"
    with pytest.raises(PredictionError) as err:
        engine_whatif(engine, YEAR, "天文", {})
    assert err.value.code == "UNKNOWN_MAJOR"


def test_no_grades_at_all_is_an_answer(engine: Engine) -> None:
    major = next(iter(find_plans(PLANS_DIR, YEAR)))
    answer = engine_whatif(engine, YEAR, major, {"不在方案里的课": 88})
    assert answer["ignored"] == ["不在方案里的课"]
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
    assert answer["missing"]
