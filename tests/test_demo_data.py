"""The bundled demo data: plans, grade exports and the synthetic model.

Everything is written to real files in tmp_path and read back with the same
readers the engine uses, because the point of the demo data is that the
engine can read it like the real thing.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from support.paths import DEMO_MODELS_DIR as MODELS
from support.paths import DEMO_PLANS_DIR as PLANS
from support.paths import REPO

from destination_predictor.demo import curricula
from destination_predictor.demo.curricula import (
    ADVISING_CATEGORY,
    ADVISING_COURSE,
    DATE_SEMESTER_COURSE,
    HEADER,
    MAJORS,
    NOTE_TEXT,
    TWO_CATEGORY_COURSE,
    write_demo_plans,
)
from destination_predictor.demo.grades import COLUMNS, grade_table, make_grade_workbook
from destination_predictor.demo.model import (
    FEATURES,
    MODEL_FILES,
    model_inputs,
    synthetic_cohort,
    train_demo_model,
)
from destination_predictor.engine.categories import BASE, load_category_map
from destination_predictor.engine.plans import find_plans, read_plan

EXPECTED_COLUMNS = [
    "SNH", "Semester_Offered", "Current_Major", "Course_ID", "Course_Name", "Grade",
    "Course_Type", "Course_Attribute ", "Hours", "Credit", "Offering_Unit", "Exam_Type",
    "Assessment_Method ",
]
TEXT_GRADES = {"优", "良", "中", "及格", "不及格"}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_excel(path, sheet_name=0, engine="calamine", dtype=object)


def _all_plan_files(plans_dir: Path) -> list[tuple[int, str, Path]]:
    return [(y, m, p) for y in curricula.YEARS for m, p in find_plans(plans_dir, y).items()]


# --- plans -------------------------------------------------------------------

def test_plans_generator_writes_twelve_readable_plans(tmp_path):
    paths = write_demo_plans(tmp_path / "plans")
    assert len(paths) == 12
    cmap = load_category_map()
    found = _all_plan_files(tmp_path / "plans")
    assert sorted(p for _, _, p in found) == sorted(paths)
    assert {m for _, m, _ in found} == set(MAJORS)
    for year, major, path in found:
        assert path.name == f"{year}级{major}培养方案.xlsx"
        df = _read(path)
        assert list(df.columns) == list(HEADER)
        assert list(df.columns)[8] == "required"
        assert 60 <= len(df) <= 100
        assert {"必修", "选修"} <= set(df["required"].dropna())
        plan = read_plan(path, year, major, cmap)
        assert len(plan.rows) > 50
        assert any(r.credit == 0 for r in plan.rows)
        assert {0.4, 0.5, 2, 2.5, 3, 4} <= {r.credit for r in plan.rows}


def test_plans_generator_is_byte_reproducible(tmp_path):
    # Regenerating the bundled plans changes a file only when its rows change.
    first = write_demo_plans(tmp_path / "a", years=[2022, 2024])
    second = write_demo_plans(tmp_path / "b", years=[2022, 2024])
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_committed_plans_match_the_generator():
    found = _all_plan_files(PLANS)
    assert len(found) == 12
    for year, major, path in found:
        ws = load_workbook(path, read_only=True).worksheets[0]
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        assert rows[0] == list(HEADER)
        assert rows[1:] == curricula.plan_cells(year, major), path.name


def test_committed_plan_categories_all_map():
    # Only the note row has no category; every course counts for a feature, so a
    # demo run has no "无法映射的课程类别" warning (the engine's handling of a
    # category-less row is tested with plans of its own in test_engine_messy.py).
    cmap = load_category_map()
    for year, major, path in _all_plan_files(PLANS):
        df = _read(path)
        for cat, name in zip(df["category"], df["course_name"], strict=True):
            if pd.isna(cat):
                assert name == NOTE_TEXT, (path.name, name)
            else:
                assert cmap.lookup(cat) is not None, (path.name, cat)
        plan = read_plan(path, year, major, cmap)
        assert plan.unmapped_categories == []
        assert [r.course for r in plan.rows if r.feature is None] == []
        assert {r.feature for r in plan.rows} == set(BASE)


def test_plan_styles_and_messy_cells():
    cmap = load_category_map()
    old = _read(PLANS / "education-plan2023" / "2023级物联网工程培养方案.xlsx")
    new = _read(PLANS / "education-plan2024" / "2024级物联网工程培养方案.xlsx")
    assert {"思想政治理论", "英语", "数学与自然科学", "学科基础", "专业基础", "专业课", "实践教学",
            "学院特色创新必修5学分", "体育", "军事理论", "心理健康", "安全教育"} <= set(old["category"])
    assert {"国际交流", "数学与自然科学基础", "公共实践模块", "基础实验模块", "人文素养模块",
            "AI+ICT素质课", "体育基础", "国防教育", "国家安全"} <= set(new["category"])
    assert any(str(c).startswith("专业课-") for c in new["category"].dropna())
    # The exact (deployed) map leaves the renamed categories unknown; the default one does not.
    assert cmap.lookup("专业课-智能计算模块") == "major"
    assert cmap.lookup(ADVISING_CATEGORY) == "public"

    for df in (old, new):
        note = df[df["course_name"] == NOTE_TEXT]
        assert len(note) == 1
        assert note.drop(columns="course_name").isna().all(axis=None)
        dated = df[df["course_name"] == DATE_SEMESTER_COURSE]["semester"].iloc[0]
        assert isinstance(dated, datetime | pd.Timestamp)
        advising = df[df["course_name"] == ADVISING_COURSE]
        assert (advising["category"] == ADVISING_CATEGORY).all() and len(advising) == 1
        assert (advising["required"] == "必修").all()
        assert df[df["course_name"] == TWO_CATEGORY_COURSE]["category"].nunique() == 2

    plan = read_plan(PLANS / "education-plan2024" / "2024级智能科学与技术培养方案.xlsx", 2024,
                     "智能科学与技术", cmap)
    counts = Counter(r.course for r in plan.rows)
    assert counts["体育基础"] == 2
    assert counts["劳动教育"] == 7
    assert counts["毕业设计"] == 2
    assert {r.feature for r in plan.rows if r.course == TWO_CATEGORY_COURSE} == {"political", "practice"}
    raw = _read(plan.path)
    assert sorted(raw[raw["course_name"] == "劳动教育"]["semester"]) == list(range(1, 8))
    assert sorted(raw[raw["course_name"] == "毕业设计"]["semester"]) == [7, 8]


def test_majors_share_common_courses_and_differ_in_major_courses():
    cmap = load_category_map()
    plans = {m: read_plan(p, 2024, m, cmap) for m, p in find_plans(PLANS, 2024).items()}
    common = set.intersection(*({r.course for r in p.rows} for p in plans.values()))
    assert {"高等数学A(上)", "线性代数", "数据结构", "思想道德与法治"} <= common
    majors_only = [{r.course for r in p.rows if r.feature == "major"} for p in plans.values()]
    assert all(not (a & b) for i, a in enumerate(majors_only) for b in majors_only[i + 1:])


# --- grades ------------------------------------------------------------------

@pytest.fixture(scope="module")
def messy_grades(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("grades") / "g.xlsx"
    make_grade_workbook(path, 2024, 150, plans_dir=PLANS, seed=1)
    return _read(path)


def test_grade_columns_are_exact(messy_grades, tmp_path):
    assert list(messy_grades.columns) == EXPECTED_COLUMNS
    assert list(COLUMNS) == EXPECTED_COLUMNS
    path = make_grade_workbook(tmp_path / "small.xlsx", 2022, 5, plans_dir=PLANS)
    header = next(load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True))
    assert list(header) == EXPECTED_COLUMNS


def test_grade_rows_look_like_an_export(messy_grades):
    df = messy_grades
    ids = df["SNH"].dropna()
    assert ids.map(lambda s: bool(re.fullmatch(r"[0-9a-f]{40}", s))).all()
    assert ids.nunique() == 150
    assert set(df["Current_Major"]) == set(MAJORS)
    assert 20 <= df.groupby("SNH").size().median() <= 70
    assert {"必修", "任选课"} <= set(df["Course_Attribute "])
    assert set(df["Course_Attribute "]) & {"选修", "限选"}
    numbers = pd.to_numeric(df["Grade"], errors="coerce")
    assert numbers.notna().mean() > 0.7
    assert 0.8 < numbers.between(55, 99).mean()
    # Required courses are the courses of the student's plan.
    cmap = load_category_map()
    for major, path in find_plans(PLANS, 2024).items():
        names = set(read_plan(path, 2024, major, cmap).courses)
        taken = df[(df["Current_Major"] == major) & (df["Course_Attribute "] == "必修")]
        assert set(taken["Course_Name"]) <= names


def test_grade_mess_is_present(messy_grades):
    df = messy_grades
    grades = df["Grade"]
    texts = set(grades[grades.map(lambda g: isinstance(g, str))])
    assert len(texts & TEXT_GRADES) >= 3
    assert "缺考" in texts
    numbers = pd.to_numeric(grades, errors="coerce")
    assert (numbers == 105).any() and (numbers == -3).any()
    assert (grades.isna() & df["SNH"].notna()).any()
    assert df["SNH"].isna().sum() == 1
    # A retake: the same required course twice for one student with different grades,
    # on a course the plan lists only once.
    cmap = load_category_map()
    once = set()
    for major, path in find_plans(PLANS, 2024).items():
        counts = Counter(r.course for r in read_plan(path, 2024, major, cmap).rows)
        once |= {c for c, n in counts.items() if n == 1}
    req = df[(df["Course_Attribute "] == "必修") & df["Course_Name"].isin(once) & df["SNH"].notna()]
    groups = req.groupby(["SNH", "Course_Name"])["Grade"]
    retakes = groups.agg(lambda g: len(g) >= 2 and g.astype(str).nunique() >= 2)
    assert retakes.any()


def test_clean_grades_have_no_mess(tmp_path):
    path = make_grade_workbook(tmp_path / "clean.xlsx", 2023, 80, plans_dir=PLANS, messy=False)
    df = _read(path)
    assert df["SNH"].notna().all() and df["Grade"].notna().all()
    numbers = pd.to_numeric(df["Grade"], errors="coerce")
    assert numbers.dropna().between(0, 100).all()
    assert "缺考" not in set(df["Grade"].astype(str))
    assert "任选课" in set(df["Course_Attribute "])


def test_completion_share_is_respected():
    cmap = load_category_map()
    cols = grade_table(2024, 200, plans_dir=PLANS, seed=2, messy=False, completion=0.6)
    df = pd.DataFrame(cols)
    plan_rows = {m: len(read_plan(p, 2024, m, cmap).rows) for m, p in find_plans(PLANS, 2024).items()}
    req = df[df["Course_Attribute "] == "必修"]
    share = req.groupby("SNH").size() / req.groupby("SNH")["Current_Major"].first().map(plan_rows)
    assert 0.5 < share.mean() < 0.7
    # Earlier semesters first: semester 1 is almost complete, semester 8 untouched.
    assert (req["Semester_Offered"] == "2024-8").sum() == 0


def test_grades_are_deterministic_for_a_seed(tmp_path):
    a = make_grade_workbook(tmp_path / "a.xlsx", 2023, 40, plans_dir=PLANS, seed=7)
    b = make_grade_workbook(tmp_path / "b.xlsx", 2023, 40, plans_dir=PLANS, seed=7)
    c = make_grade_workbook(tmp_path / "c.xlsx", 2023, 40, plans_dir=PLANS, seed=8)
    pd.testing.assert_frame_equal(_read(a), _read(b))
    assert not _read(a).equals(_read(c))


def test_majors_can_be_chosen(tmp_path):
    path = make_grade_workbook(tmp_path / "one.xlsx", 2022, 20, plans_dir=PLANS,
                               majors=["电子信息工程"])
    assert set(_read(path)["Current_Major"]) == {"电子信息工程"}
    with pytest.raises(ValueError):
        make_grade_workbook(tmp_path / "x.xlsx", 2022, 20, plans_dir=PLANS, majors=["不存在的专业"])
    with pytest.raises(ValueError):
        make_grade_workbook(tmp_path / "x.xlsx", 2031, 20, plans_dir=PLANS)
    assert not (tmp_path / "x.xlsx").exists()


def test_xls_output_reads_with_calamine(tmp_path):
    xls = make_grade_workbook(tmp_path / "g.xls", 2024, 30, plans_dir=PLANS, seed=3, fmt="xls")
    xlsx = make_grade_workbook(tmp_path / "g.xlsx", 2024, 30, plans_dir=PLANS, seed=3)
    a, b = _read(xls), _read(xlsx)
    assert list(a.columns) == EXPECTED_COLUMNS
    assert a.shape == b.shape
    for col in ("SNH", "Course_Name", "Course_Attribute "):
        assert a[col].equals(b[col])
    ga = pd.to_numeric(a["Grade"], errors="coerce")
    gb = pd.to_numeric(b["Grade"], errors="coerce")
    assert np.allclose(ga, gb, equal_nan=True)
    with pytest.raises(ValueError, match="xls"):
        make_grade_workbook(tmp_path / "big.xls", 2024, 2000, plans_dir=PLANS, fmt="xls")
    assert not (tmp_path / "big.xls").exists()


# --- model -------------------------------------------------------------------

def _load_model_dir(d: Path):
    from catboost import CatBoostClassifier

    features = json.loads((d / "feature_columns.json").read_text(encoding="utf-8"))
    params = json.loads((d / "model_params.json").read_text(encoding="utf-8"))
    with (d / "scaler.pkl").open("rb") as f:
        scaler = pickle.load(f)  # noqa: S301 - our own freshly written file
    model = CatBoostClassifier()
    model.load_model(str(d / "catboost_model.cbm"))
    return features, params, scaler, model


def _check_model_dir(d: Path) -> np.ndarray:
    features, params, scaler, model = _load_model_dir(d)
    assert features == list(FEATURES) == [*BASE, "AcademicStrength"]
    assert list(scaler.feature_names_in_) == features
    assert params["class_order"] == [1, 2, 3]
    assert params["synthetic"] is True and params["model_version"].startswith("demo-")
    assert params["tau"] == 0.0 and params["temperature"] > 0
    assert set(params["priors"]) == {"1", "2", "3"}
    assert abs(sum(params["priors"].values()) - 1) < 1e-9
    assert set(params["clip_ranges"]) == set(BASE)
    assert all(r["min"] < r["max"] for r in params["clip_ranges"].values())
    assert set(params["strength_stats"]) == {"_global_", *MAJORS}
    for stats in params["strength_stats"].values():
        assert set(stats) == set(BASE) and all(s > 0 for _, s in stats.values())
    assert params["impute_rules"]["major_from"] == {"basic_major": 0.5, "basic_subject": 0.3,
                                                    "math_science": 0.2}
    assert list(model.classes_) == [0, 1, 2]

    data = synthetic_cohort(400, seed=11)
    assert data.features.isna().any(axis=None)
    x = scaler.transform(model_inputs(data.features, data.majors, params))
    proba = model.predict_proba(x)
    assert proba.shape == (400, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert set(proba.argmax(axis=1)) == {0, 1, 2}
    return proba


def test_demo_model_trains_and_reloads(tmp_path):
    summary = train_demo_model(tmp_path / "m", seed=0, n_students=800, iterations=40)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(MODEL_FILES)
    assert sum(summary.prediction_counts.values()) == 800
    assert all(summary.label_counts.values())
    _check_model_dir(tmp_path / "m")


def test_demo_model_is_reproducible(tmp_path):
    train_demo_model(tmp_path / "a", seed=5, n_students=500, iterations=20)
    train_demo_model(tmp_path / "b", seed=5, n_students=500, iterations=20)
    assert (tmp_path / "a" / "model_params.json").read_text() == (tmp_path / "b" / "model_params.json").read_text()
    pa, pb = _check_model_dir(tmp_path / "a"), _check_model_dir(tmp_path / "b")
    assert np.array_equal(pa, pb)


def test_committed_model_is_the_demo_model():
    assert {p.name for p in MODELS.iterdir()} >= {*MODEL_FILES, "MODEL_CARD.md"}
    _check_model_dir(MODELS)
    card = (MODELS / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "合成" in card and "PREDICT_MODEL_DIR" in card and "--model-dir" in card
    assert "python -m destination_predictor.demo.model" in card


def test_committed_model_moves_from_employment_to_graduate_school_as_scores_rise():
    features, params, scaler, model = _load_model_dir(MODELS)
    scores = np.arange(60, 91, dtype=float)
    raw = pd.DataFrame({c: scores for c in BASE})
    for major in (*MAJORS, "其它专业"):
        x = scaler.transform(model_inputs(raw, np.array([major] * len(raw)), params))
        pred = model.predict_proba(x).argmax(axis=1) + 1
        assert pred[0] == 3 and pred[-1] == 1, major
        assert 2 in pred, major
        first_1 = int(scores[np.argmax(pred == 1)])
        assert 60 < first_1 < 90


# --- the demo data as a user first runs it -----------------------------------

@pytest.mark.parametrize("year", curricula.YEARS)
def test_cli_on_demo_grades_warns_of_no_unmapped_category(tmp_path, year):
    """The bundled plans and model run clean: a first demo run shows only the
    warnings the generated grades earn (free electives, blank grades, ...),
    never a plan category the default map leaves out."""
    grades = make_grade_workbook(tmp_path / f"g{year}.xlsx", year, 40, plans_dir=PLANS, seed=year)
    run = subprocess.run(
        [sys.executable, str(REPO / "run_prediction_direct.py"), "--scores_file", str(grades),
         "--year", str(year), "--model-dir", str(MODELS), "--plans-dir", str(PLANS),
         "--out-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert "警告: 跳过" in run.stdout  # the grade mess is still reported
    assert "无法映射" not in run.stdout + run.stderr
