"""The destination model: four files, loaded once, predicting whole batches.

Only the configured model directory is ever unpickled (``scaler.pkl``): a
pickle can run code, so nothing a client sends goes near ``pickle.load``.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier

from .categories import BASE
from .errors import PredictionError

MODEL_FILES = ("catboost_model.cbm", "scaler.pkl", "feature_columns.json", "model_params.json")
# Bounds the memory of one predict_proba call (rows x 10 float64 features).
PREDICT_CHUNK = 250_000


@dataclass
class DestinationModel:
    """CatBoost + scaler + the post-processing parameters of model_params.json."""

    directory: Path
    feature_columns: list[str]
    params: dict[str, Any]
    scaler: Any
    booster: CatBoostClassifier
    version: str
    _feature_pos: list[int] = field(default_factory=list, repr=False)
    load_notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, directory: str | Path) -> DestinationModel:
        d = Path(directory)
        missing = [f for f in MODEL_FILES if not (d / f).is_file()]
        if missing:
            raise PredictionError(
                "MODEL_INCOMPLETE", f"模型目录 {d} 缺少文件: {', '.join(missing)}"
            )
        try:
            feature_columns = json.loads((d / "feature_columns.json").read_text(encoding="utf-8"))
            params = json.loads((d / "model_params.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PredictionError("MODEL_INVALID", f"模型目录 {d} 中的 JSON 文件无法解析") from exc
        expected = [*BASE, "AcademicStrength"]
        if sorted(feature_columns) != sorted(expected):
            raise PredictionError("MODEL_INVALID", "feature_columns.json 与模型的 10 个特征不一致")
        with (d / "scaler.pkl").open("rb") as fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scaler = pickle.load(fh)  # noqa: S301 - the operator's own model directory
        # A scaler pickled by another scikit-learn version still transforms the
        # same way (mean_/scale_); say so once instead of on every load.
        notes = [str(w.message).split(". ")[0] for w in caught]
        booster = CatBoostClassifier()
        try:
            booster.load_model(str(d / "catboost_model.cbm"))
        except Exception as exc:  # noqa: BLE001 - CatBoostError and I/O errors alike
            raise PredictionError("MODEL_INVALID", "catboost_model.cbm 无法加载") from exc
        digest = hashlib.sha256()
        for f in MODEL_FILES:
            digest.update((d / f).read_bytes())
        label = str(params.get("model_version", "model"))
        version = f"{label}+{digest.hexdigest()[:12]}"
        order = {name: i for i, name in enumerate([*BASE, "AcademicStrength"])}
        return cls(d, list(feature_columns), params, scaler, booster, version,
                   [order[c] for c in feature_columns], notes)

    def strength_stats(self, major: str) -> dict[str, list[float]]:
        stats = self.params.get("strength_stats") or {}
        return stats.get(major) or stats.get("_global_") or {}

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Post-processed class probabilities for (batch, 10) features in BASE+strength order.

        Clip (NaN stays NaN), scale, CatBoost, then prior correction and
        temperature exactly as section 5 step 5 says.
        """
        x = features[:, self._feature_pos].astype(float, copy=True)
        clips = self.params.get("clip_ranges") or {}
        for j, name in enumerate(self.feature_columns):
            rng = clips.get(name) or {}
            lo, hi = rng.get("min"), rng.get("max")
            if lo is not None or hi is not None:  # NaN stays NaN
                x[:, j] = np.clip(x[:, j], -np.inf if lo is None else lo,
                                  np.inf if hi is None else hi)
        out = np.empty((x.shape[0], 3))
        for start in range(0, x.shape[0], PREDICT_CHUNK):
            part = pd.DataFrame(x[start:start + PREDICT_CHUNK], columns=self.feature_columns)
            scaled = self.scaler.transform(part)
            out[start:start + PREDICT_CHUNK] = self.booster.predict_proba(np.asarray(scaled))
        return self._postprocess(out)

    def _postprocess(self, p: np.ndarray) -> np.ndarray:
        logits = np.log(np.clip(p, 1e-12, 1.0))
        priors = self.params.get("priors") or {}
        tau = float(self.params.get("tau", 0.0) or 0.0)
        if priors and tau != 0:
            order = self.params.get("class_order", [1, 2, 3])
            logp = np.array([math.log(float(priors[str(k)])) for k in order])
            logits = logits - tau * logp
        temperature = float(self.params.get("temperature", 1.0))
        logits = logits / max(temperature, 1e-6)
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
