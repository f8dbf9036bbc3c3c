"""What-if for one student (the deployed app's 分数滑动): the batch algorithm on
one row of grades, plus the reasons (SHAP values) behind the prediction.

``whatif`` is pure arithmetic over a plan and a loaded model and goes through
the very functions a batch run uses -- ``features.build``, the model's
``predict``, ``inverse.uniform_thresholds``, ``inverse.missing_courses`` and
``inverse.unknown_credits`` -- so the same student gets the same floats as in
``Engine.predict_major``, not merely close ones.

Semantics (the batch's): a plan course named in ``grades`` is taken with that
score; every other plan course is missing. ``assume`` gives scores to courses
for the *current* prediction only (a missing course counts as taken with the
assumed score; a taken one is overridden): probabilities, features and reasons
follow the assumptions, while ``missing``, ``unknown_credits`` and the
thresholds stay those of the real grades -- the targets a slider is moved
against. Courses outside the plan are reported in ``ignored`` and change
nothing, as in a batch run.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import features, inverse
from .categories import BASE, CategoryMap
from .errors import PredictionError
from .model import DestinationModel
from .plans import Plan, find_plans, read_plan

FEATURE_NAMES: tuple[str, ...] = (*BASE, "AcademicStrength")
DESTINATIONS = {1: "保研", 2: "出国", 3: "就业"}
REASONS_BASIS = ("raw_logit_shap: CatBoost ShapValues of each class's raw logit on the clipped, "
                 "scaled features, before the prior correction and temperature")
# Entries beyond the plan's courses a request may name (other courses are ignored).
MAX_EXTRA_ENTRIES = 500
# How many plans the what-if keeps parsed (keyed by file identity, so an edited plan is re-read).
PLAN_CACHE_SIZE = 64
# Students whose thresholds are remembered (an advisor goes back and forth between a few).
THRESHOLD_CACHE_SIZE = 1024

PredictFn = Callable[[np.ndarray], np.ndarray]
ReasonsFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def check_score(course: str, value: Any) -> float:
    """A score must be a finite JSON number in 0..100 (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PredictionError("BAD_SCORE", f"课程“{_clip(course)}”的成绩必须是 0 到 100 之间的数字")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 100.0:
        raise PredictionError("BAD_SCORE", f"课程“{_clip(course)}”的成绩必须在 0 到 100 之间")
    return v


ThresholdsFn = Callable[[np.ndarray, np.ndarray], inverse.Thresholds]


def whatif(model: DestinationModel, plan: Plan, grades: Mapping[str, Any],
           assume: Mapping[str, Any] | None, lo: int, hi: int, *,
           predict: PredictFn | None = None, reasons: ReasonsFn | None = None,
           thresholds: ThresholdsFn | None = None) -> dict[str, Any]:
    """One student's answer (JSON-ready). ``predict``/``reasons`` default to the
    model's own; a shared engine passes versions that hold its predict lock.
    ``thresholds(values, taken)`` -- (1, n_rows) each -- defaults to the search
    itself; a caller may remember it (it depends on the real grades only, not on
    what a slider assumes)."""
    predict = predict or model.predict
    reasons = reasons or model.reasons
    assume = assume or {}
    layout = features.PlanLayout(plan)
    courses = layout.courses
    known = set(courses)
    for name, given_scores in (("grades", grades), ("assume", assume)):
        if len(given_scores) > len(courses) + MAX_EXTRA_ENTRIES:
            raise PredictionError("TOO_MANY_COURSES",
                                  f"{name} 的课程过多（最多为培养方案课程数加 {MAX_EXTRA_ENTRIES} 门）")
    real = np.full((1, len(courses)), np.nan)
    given = np.full((1, len(courses)), np.nan)
    for j, c in enumerate(courses):
        if c in grades:
            real[0, j] = given[0, j] = check_score(c, grades[c])
        if c in assume:
            given[0, j] = check_score(c, assume[c])
    for c, v in (*grades.items(), *assume.items()):
        if c not in known:
            check_score(c, v)
    taken_real = ~np.isnan(real)[:, layout.course_index]
    values_real = real[:, layout.course_index]
    taken_now = ~np.isnan(given)[:, layout.course_index]
    values_now = given[:, layout.course_index]
    stats = model.strength_stats(plan.major)

    current = features.build(values_now, taken_now, layout, stats)
    probs = predict(current)[0]
    contrib, expected = reasons(current)
    if thresholds is None:
        t = inverse.uniform_thresholds(values_real, taken_real, layout, stats, predict, lo, hi)[0]
    else:
        t = thresholds(values_real, taken_real)
    missing = inverse.missing_courses(~taken_real, plan)[0]
    pred = int(np.argmax(probs)) + 1
    return {
        "year": plan.year,
        "major": plan.major,
        "probabilities": {str(k + 1): float(probs[k]) for k in range(3)},
        "predicted": pred,
        "predicted_label": DESTINATIONS[pred],
        "features": {n: _num(current[0, i]) for i, n in enumerate(FEATURE_NAMES)},
        "thresholds": _thresholds(t, lo, hi),
        "missing": missing,
        "unknown_credits": float(inverse.unknown_credits(~taken_real, layout)[0]),
        "assumed": {c: float(assume[c]) for c in courses if c in assume},
        "ignored": sorted({c for c in (*grades, *assume) if c not in known}),
        "reasons": {
            "basis": REASONS_BASIS,
            "expected": {str(k + 1): float(expected[0, k]) for k in range(expected.shape[1])},
            "contributions": {
                n: {str(k + 1): float(contrib[0, k, i]) for k in range(contrib.shape[1])}
                for i, n in enumerate(FEATURE_NAMES)
            },
        },
    }


def _thresholds(t: inverse.Thresholds, lo: int, hi: int) -> dict[str, Any]:
    """s1/s2 as the batch writes them (NaN when nothing is missing -> null)."""
    return {
        "s1": _num(t.s1), "s2": _num(t.s2),
        "reachable_1": t.reachable_1, "reachable_2": t.reachable_2,
        "ranges_1": [list(r) for r in t.ranges_1], "ranges_2": [list(r) for r in t.ranges_2],
        "policy_1": t.policy_1, "policy_2": t.policy_2,
        "search_min": lo, "search_max": hi,
    }


def _num(v: float | int) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class WhatIfCache:
    """What stays the same while an advisor moves a slider: the parsed plans (by
    file identity: path, mtime, size, category map -- a plan replaced on disk is
    read again) and each student's thresholds (by plan and real grades; the
    31-score search is most of an answer's work). One per ``Engine``, bounded."""

    def __init__(self, plans: int = PLAN_CACHE_SIZE, thresholds: int = THRESHOLD_CACHE_SIZE) -> None:
        self._plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
        self._thresholds: OrderedDict[tuple[Any, ...], inverse.Thresholds] = OrderedDict()
        self._sizes = (plans, thresholds)
        self._lock = threading.Lock()

    def plan(self, plans_dir: str | Path, year: int, major: str,
             categories: CategoryMap) -> tuple[Plan, tuple[Any, ...]]:
        path = find_plans(plans_dir, year).get(major)
        if path is None:
            raise PredictionError("UNKNOWN_MAJOR", f"{year} 级没有专业“{major}”的培养方案")
        try:
            st = path.stat()
        except OSError as exc:
            raise PredictionError("PLAN_MISSING", f"找不到培养方案: {path.name}") from exc
        key = (str(path), st.st_mtime_ns, st.st_size, categories.digest, year, major)
        plan = self._get(self._plans, key)
        if plan is None:
            plan = read_plan(path, year, major, categories)
            self._put(self._plans, key, plan, self._sizes[0])
        return plan, key

    def thresholds(self, key: tuple[Any, ...], compute: Callable[[], inverse.Thresholds]
                   ) -> inverse.Thresholds:
        found = self._get(self._thresholds, key)
        if found is None:
            found = compute()
            self._put(self._thresholds, key, found, self._sizes[1])
        return found

    def _get(self, store: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
        with self._lock:
            value = store.get(key)
            if value is not None:
                store.move_to_end(key)
            return value

    def _put(self, store: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any,
             size: int) -> None:
        with self._lock:
            store[key] = value
            while len(store) > size:
                store.popitem(last=False)


def _plan_of(engine: Any, year: int, major: str) -> tuple[Plan, tuple[Any, ...]]:
    name = engine.resolve_major(year, major)
    if name is None:
        raise PredictionError("UNKNOWN_MAJOR", "请指定专业（名称或代码）")
    return engine.whatif_cache.plan(engine.plans_dir, year, name, engine.categories)


def student_view(engine: Any, year: int, major: str, grades: Mapping[str, float]) -> dict[str, Any]:
    """A student's grades in the plan's courses (plan order) and the missing plan rows,
    as a batch run sees them: what ``POST /api/whatif`` takes back."""
    plan, _ = _plan_of(engine, year, major)
    taken = {c: float(grades[c]) for c in plan.courses if c in grades}
    return {"year": year, "major": plan.major, "grades": taken,
            "missing": [r.course for r in plan.rows if r.course not in taken],
            "other_courses": len(grades) - len(taken)}


def engine_whatif(engine: Any, year: int, major: str, grades: Mapping[str, Any],
                  assume: Mapping[str, Any] | None = None, lo: int = 60,
                  hi: int = 90) -> dict[str, Any]:
    """``whatif`` with a loaded ``pipeline.Engine``: its model (loaded once), its plans
    and category map, and its predict lock around every call into CatBoost."""
    plan, plan_key = _plan_of(engine, year, major)
    lock = engine._predict_lock  # noqa: SLF001 - the engine's own serialisation of CatBoost
    predict = engine._predict  # noqa: SLF001

    def reasons(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with lock:
            return engine.model.reasons(x)

    def thresholds(values: np.ndarray, taken: np.ndarray) -> inverse.Thresholds:
        key = (plan_key, values.tobytes(), taken.tobytes(), lo, hi)
        layout = features.PlanLayout(plan)
        stats = engine.model.strength_stats(plan.major)
        return engine.whatif_cache.thresholds(key, lambda: inverse.uniform_thresholds(
            values, taken, layout, stats, predict, lo, hi)[0])

    return whatif(engine.model, plan, grades, assume, lo, hi, predict=predict,
                  reasons=reasons, thresholds=thresholds)
