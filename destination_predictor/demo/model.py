"""The bundled DEMO model, trained on synthetic students.

The deployed model is private. This one has the same four files and the same
conventions (docs/algorithm.md §1) so the engine, the service and the tests
run anywhere; its predictions mean nothing about real students.

Synthetic students have a latent ability; each category score is ability
plus noise, some are missing; the destination is drawn from a noisy average
score: above about 83 mostly 1 (保研), 77.5-83 mostly 2 (出国), below mostly 3
(就业). So the model's class moves 3 -> 2 -> 1 as scores rise, which is what
the uniform-score inverse search looks for.

Run ``python -m destination_predictor.demo.model --out models``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.categories import BASE, STRENGTH_WALK
from ._io import atomic_target, write_bytes_atomic, write_text_atomic
from .curricula import MAJORS

FEATURES: tuple[str, ...] = (*BASE, "AcademicStrength")
MODEL_FILES: tuple[str, ...] = (
    "feature_columns.json", "model_params.json", "scaler.pkl", "catboost_model.cbm",
)
CLASS_ORDER: tuple[int, ...] = (1, 2, 3)
IMPUTE_RULES: dict[str, dict[str, float]] = {
    "major_from": {"basic_major": 0.5, "basic_subject": 0.3, "math_science": 0.2},
    "innovation_from": {"practice": 0.4, "major": 0.35, "basic_major": 0.15, "basic_subject": 0.1},
}

# Synthetic score model: typical level, how strongly ability moves it, how
# often the category is missing for a student.
_MEAN = {"public": 84.0, "political": 85.0, "english": 77.0, "math_science": 74.0,
         "basic_subject": 76.0, "basic_major": 78.0, "major": 80.0, "practice": 85.0,
         "innovation": 83.0}
_LOADING = {"public": 4.0, "political": 4.0, "english": 6.0, "math_science": 7.5,
            "basic_subject": 6.5, "basic_major": 6.5, "major": 6.0, "practice": 4.0,
            "innovation": 4.5}
_MISSING = {"public": 0.02, "political": 0.02, "english": 0.04, "math_science": 0.04,
            "basic_subject": 0.08, "basic_major": 0.15, "major": 0.30, "practice": 0.08,
            "innovation": 0.30}
_MAJOR_SHIFT = dict(zip(MAJORS, (1.0, 0.0, -1.0, 0.5), strict=True))
_NOISE = 3.5
# Destination from the noisy mean score: >= HIGH -> 1, >= LOW -> 2, else 3.
CUT_HIGH, CUT_LOW = 83.0, 77.5
_LABEL_NOISE = 2.5
_FLIP = 0.05


@dataclass
class TrainingSet:
    """Synthetic cohort: raw (imputed, unclipped) features, labels 0..2 and majors."""

    features: pd.DataFrame
    labels: np.ndarray
    majors: np.ndarray


@dataclass
class DemoModelSummary:
    out_dir: Path
    files: list[Path]
    label_counts: dict[int, int]
    prediction_counts: dict[int, int]
    train_accuracy: float
    params: dict = field(repr=False, default_factory=dict)


def _impute(df: pd.DataFrame) -> None:
    """The engine's imputation (docs/algorithm.md §5.2), so training sees what prediction sees."""
    for target, rule in (("major", IMPUTE_RULES["major_from"]),
                         ("innovation", IMPUTE_RULES["innovation_from"])):
        vals = df[list(rule)].to_numpy(float)
        w = np.array(list(rule.values()))[None, :] * ~np.isnan(vals)
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.nansum(vals * w, axis=1) / total
        est[total == 0] = np.nan
        missing = df[target].isna().to_numpy()
        df.loc[missing, target] = est[missing]


def synthetic_cohort(n_students: int = 3000, seed: int = 0) -> TrainingSet:
    """Students with a latent ability, category scores and a destination."""
    rng = np.random.default_rng(seed)
    majors = np.array(MAJORS, dtype=object)[rng.integers(0, len(MAJORS), n_students)]
    ability = rng.normal(0.0, 1.0, n_students)
    shift = np.array([_MAJOR_SHIFT[m] for m in majors])
    data = {}
    for c in BASE:
        score = _MEAN[c] + shift + _LOADING[c] * ability + rng.normal(0.0, _NOISE, n_students)
        score = np.clip(score, 35.0, 99.0)
        score[rng.random(n_students) < _MISSING[c]] = np.nan
        data[c] = score
    df = pd.DataFrame(data)
    merit = df.mean(axis=1, skipna=True).fillna(75.0).to_numpy()
    noisy = merit + rng.normal(0.0, _LABEL_NOISE, n_students)
    labels = np.where(noisy >= CUT_HIGH, 0, np.where(noisy >= CUT_LOW, 1, 2))
    flip = rng.random(n_students) < _FLIP
    labels[flip] = rng.integers(0, 3, int(flip.sum()))
    _impute(df)
    return TrainingSet(df, labels.astype(np.int64), majors)


def strength_stats(features: pd.DataFrame, majors: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """{major or _global_: {feature: [mean, std]}} over the non-missing values."""
    def stats(frame: pd.DataFrame) -> dict[str, list[float]]:
        return {c: [float(frame[c].mean()), float(frame[c].std())] for c in BASE}

    out = {"_global_": stats(features)}
    for m in MAJORS:
        out[m] = stats(features[majors == m])
    return out


def academic_strength(features: pd.DataFrame, majors: np.ndarray,
                      stats: dict[str, dict[str, list[float]]]) -> np.ndarray:
    """Mean z-score over the fixed 13-entry walk (docs/algorithm.md §5.3)."""
    total = np.zeros(len(features))
    count = np.zeros(len(features))
    for c in STRENGTH_WALK:
        values = features[c].to_numpy(float)
        mean = np.array([stats.get(m, stats["_global_"])[c][0] for m in majors])
        std = np.array([stats.get(m, stats["_global_"])[c][1] for m in majors])
        ok = ~np.isnan(values) & (std > 0)
        total[ok] += (values[ok] - mean[ok]) / std[ok]
        count[ok] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def clip_ranges(features: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {c: {"min": float(np.nanpercentile(features[c], 1)),
                "max": float(np.nanpercentile(features[c], 99))} for c in BASE}


def model_inputs(features: pd.DataFrame, majors: np.ndarray,
                 params: dict) -> pd.DataFrame:
    """Raw features -> clipped model input with AcademicStrength, in FEATURES order."""
    x = features[list(BASE)].copy()
    x["AcademicStrength"] = academic_strength(features, majors, params["strength_stats"])
    for c, r in params["clip_ranges"].items():
        x[c] = x[c].clip(r["min"], r["max"])
    return x[list(FEATURES)]


def train_demo_model(out_dir: str | Path, *, seed: int = 0, n_students: int = 3000,
                     iterations: int = 250, depth: int = 4) -> DemoModelSummary:
    """Generate the cohort, fit scaler and CatBoost, write the four model files."""
    from catboost import CatBoostClassifier
    from sklearn.preprocessing import StandardScaler

    data = synthetic_cohort(n_students, seed)
    counts = np.bincount(data.labels, minlength=3)
    params = {
        "model_version": f"demo-seed{seed}",
        "synthetic": True,
        "description": "合成数据训练的演示模型，不代表真实学生的去向规律",
        "class_order": list(CLASS_ORDER),
        "temperature": 1.0,
        "tau": 0.0,
        "priors": {str(k): float(counts[k - 1] / counts.sum()) for k in CLASS_ORDER},
        "strength_stats": strength_stats(data.features, data.majors),
        "clip_ranges": clip_ranges(data.features),
        "impute_rules": IMPUTE_RULES,
        "training": {"seed": seed, "n_students": n_students, "iterations": iterations,
                     "depth": depth, "cut_high": CUT_HIGH, "cut_low": CUT_LOW},
    }
    x = model_inputs(data.features, data.majors, params)
    scaler = StandardScaler().fit(x)
    x_scaled = pd.DataFrame(scaler.transform(x), columns=list(FEATURES))
    model = CatBoostClassifier(
        loss_function="MultiClass", iterations=iterations, depth=depth, learning_rate=0.1,
        random_seed=seed, thread_count=2, allow_writing_files=False, verbose=False,
    )
    model.fit(x_scaled, data.labels)
    # Say it inside the .cbm too, so a copied file still tells what it is.
    meta = model.get_metadata()
    meta["model_version"] = params["model_version"]
    meta["synthetic"] = "true"
    pred = np.asarray(model.predict(x_scaled)).reshape(-1).astype(np.int64)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [
        write_text_atomic(out / "feature_columns.json",
                          json.dumps(list(FEATURES), ensure_ascii=False, indent=2) + "\n"),
        write_text_atomic(out / "model_params.json",
                          json.dumps(params, ensure_ascii=False, indent=2) + "\n"),
        write_bytes_atomic(out / "scaler.pkl", pickle.dumps(scaler)),
    ]
    with atomic_target(out / "catboost_model.cbm") as tmp:
        model.save_model(str(tmp), format="cbm")
    files.append(out / "catboost_model.cbm")
    pc = np.bincount(pred, minlength=3)
    return DemoModelSummary(
        out_dir=out,
        files=files,
        label_counts={k: int(counts[k - 1]) for k in CLASS_ORDER},
        prediction_counts={k: int(pc[k - 1]) for k in CLASS_ORDER},
        train_accuracy=float((pred == data.labels).mean()),
        params=params,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m destination_predictor.demo.model",
        description="用合成数据训练演示模型，写出模型目录的四个文件",
    )
    parser.add_argument("--out", default="models", help="输出目录（默认 models）")
    parser.add_argument("--seed", type=int, default=0, help="随机种子（默认 0）")
    parser.add_argument("--students", type=int, default=3000, help="合成学生人数（默认 3000）")
    parser.add_argument("--iterations", type=int, default=250, help="CatBoost 迭代次数（默认 250）")
    args = parser.parse_args(argv)
    s = train_demo_model(args.out, seed=args.seed, n_students=args.students,
                         iterations=args.iterations)
    for p in s.files:
        print(f"已写入 {p}")
    print(f"标签分布（1 保研 / 2 出国 / 3 就业）: {s.label_counts}")
    print(f"训练集预测分布: {s.prediction_counts}，训练集准确率 {s.train_accuracy:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
