"""The default category map covers every category of the real plans, and
the exact map reproduces the deployed (narrower) behaviour."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.engine import REF_EXACT_MAP, REF_PLANS, needs_reference

from destination_predictor.engine.categories import BASE, load_category_map, normalise
from destination_predictor.engine.errors import PredictionError


def real_plan_categories() -> set[str]:
    cats: set[str] = set()
    for path in sorted(REF_PLANS.glob("education-plan*/*.xlsx")):
        df = pd.read_excel(path, engine="calamine", dtype=object)
        cats |= {normalise(c) for c in df.iloc[:, 0]} - {"", "category"}
    return cats


@needs_reference
def test_default_map_covers_every_category_in_the_reference_plans():
    cats = real_plan_categories()
    assert len(cats) > 40  # 2021-2024 plans, old and new names
    default = load_category_map()
    unmapped = sorted(c for c in cats if default.lookup(c) is None)
    assert unmapped == []


@needs_reference
def test_exact_map_is_the_deployed_narrow_one():
    exact = load_category_map(REF_EXACT_MAP)
    assert exact.lookup("专业课-智能技术模块") is None
    assert exact.lookup("数学与自然科学基础") is None
    assert exact.lookup("数学与 自然科学") == "math_science"  # spaces are normalised away
    assert exact.lookup("学院特色创新必修5学分") == "innovation"


def test_default_map_rules_and_feature_names():
    m = load_category_map()
    assert m.lookup("专业课-通信系统模块") == "major"
    assert m.lookup("学院特色创新必修3学分") == "innovation"
    assert m.lookup("通信网络模块") == "practice"
    assert m.lookup("体育、美育") == "public"
    assert m.lookup("\u3000英 语 ") == "english"
    assert m.lookup(float("nan")) is None
    assert set(m.exact.values()) <= set(BASE)


def test_operator_map_is_validated(tmp_path):
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"mode": "exact", "categories": {"英语": "languages"}}),
                   encoding="utf-8")
    with pytest.raises(PredictionError) as err:
        load_category_map(bad)
    assert err.value.code == "CATEGORY_MAP_INVALID"
    override = tmp_path / "mine.json"
    override.write_text(json.dumps({"英语": "english"}), encoding="utf-8")
    assert load_category_map(override).lookup("英语") == "english"
