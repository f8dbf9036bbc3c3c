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


def _load_note(message: Warning | str, scaler: Any) -> str:
    """One warning raised while unpickling ``scaler.pkl``, for the operator.

    The expected one is scikit-learn's ``InconsistentVersionWarning`` (the
    deployed scaler was pickled by 1.5.2): recognised by its class, and
    explained in Chinese -- after checking on the loaded object that it still
    scales exactly as ``(x - mean_) / scale_``, the only thing a StandardScaler
    does, so the predictions are those of the version that saved it. Any other
    warning keeps its own first sentence.
    """
    from sklearn.exceptions import InconsistentVersionWarning  # loaded by the unpickle anyway

    if not isinstance(message, InconsistentVersionWarning):
        return str(message).split(". ")[0]
    saved = (f"scaler.pkl 由 scikit-learn {message.original_sklearn_version} 保存，"
             f"当前为 {message.current_sklearn_version}")
    if message.estimator_name == "StandardScaler" and scaler_matches_formula(scaler):
        return f"{saved}；StandardScaler 只用 mean_/scale_（已核对缩放结果一致），结果不受影响"
    return (f"{saved}；无法确认 {message.estimator_name} 的结果不受版本影响，"
            f"请用当前版本重新保存 scaler.pkl")


def scaler_matches_formula(scaler: Any) -> bool:
    """Whether ``scaler.transform`` is exactly ``(x - mean_) / scale_`` -- what a
    StandardScaler of any version computes (see ``exact_formula``)."""
    return exact_formula(scaler) is not None


def exact_formula(scaler: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, scale)`` when ``scaler.transform(x)`` is bit for bit ``(x - mean) / scale``
    on probe rows (a StandardScaler does exactly that subtraction and division);
    None for anything else. Then one row is scaled in microseconds instead of
    the milliseconds a DataFrame and scikit-learn's validation take -- what a
    what-if answer, one student at a time, needs -- with the same floats."""
    try:
        if type(scaler).__name__ != "StandardScaler":
            return None
        width = int(scaler.n_features_in_)
        mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(width), dtype=float)
        scale = np.asarray(scaler.scale_ if scaler.with_std else np.ones(width), dtype=float)
        rng = np.random.default_rng(0)
        probe = mean + scale * rng.normal(0.0, 3.0, size=(64, width))
        probe[1, 0] = np.nan
        names = getattr(scaler, "feature_names_in_", None)
        x = pd.DataFrame(probe, columns=list(names)) if names is not None else probe
        got = np.asarray(scaler.transform(x), dtype=float)
    except Exception:  # noqa: BLE001 - anything unexpected means "not this formula"
        return None
    if not np.array_equal(got, (probe - mean) / scale, equal_nan=True):
        return None
    return mean, scale


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
    _formula: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._formula = exact_formula(self.scaler)

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
        notes = [_load_note(w.message, scaler) for w in caught]
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

    @property
    def is_demo(self) -> bool:
        """``model_params.json`` says ``"synthetic": true``: the bundled demo model,
        trained on made-up students; its predictions must never pass for real ones."""
        return bool(self.params.get("synthetic"))

    def strength_stats(self, major: str) -> dict[str, list[float]]:
        stats = self.params.get("strength_stats") or {}
        return stats.get(major) or stats.get("_global_") or {}

    def predict(self, features: np.ndarray, *, via_scaler: bool = False) -> np.ndarray:
        """Post-processed class probabilities for (batch, 10) features in BASE+strength order.

        Clip (NaN stays NaN), scale, CatBoost, then prior correction and
        temperature exactly as section 5 step 5 says. ``via_scaler`` scales
        through the scaler's own ``transform`` on a DataFrame, as the deployed
        code did on every call (the literal reading and its benchmark use it).
        """
        x = self._clipped(features)
        out = np.empty((x.shape[0], 3))
        for start in range(0, x.shape[0], PREDICT_CHUNK):
            scaled = self._scale(x[start:start + PREDICT_CHUNK], via_scaler=via_scaler)
            out[start:start + PREDICT_CHUNK] = self.booster.predict_proba(scaled)
        return self._postprocess(out)

    def _scale(self, x: np.ndarray, *, via_scaler: bool = False) -> np.ndarray:
        """Clipped features (model order) -> the booster's input: the scaler's own
        ``transform``, or the same formula in numpy when it was checked to be exact."""
        if self._formula is not None and not via_scaler:
            mean, scale = self._formula
            return (x - mean) / scale
        part = pd.DataFrame(x, columns=self.feature_columns)
        return np.asarray(self.scaler.transform(part), dtype=float)

    def _clipped(self, features: np.ndarray) -> np.ndarray:
        """(batch, 10) BASE+strength order -> the model's column order, clipped (NaN stays NaN)."""
        x = features[:, self._feature_pos].astype(float, copy=True)
        clips = self.params.get("clip_ranges") or {}
        for j, name in enumerate(self.feature_columns):
            rng = clips.get(name) or {}
            lo, hi = rng.get("min"), rng.get("max")
            if lo is not None or hi is not None:  # NaN stays NaN
                x[:, j] = np.clip(x[:, j], -np.inf if lo is None else lo,
                                  np.inf if hi is None else hi)
        return x

    def scaled(self, features: np.ndarray) -> np.ndarray:
        """The booster's input for (batch, 10) features: clipped, then scaled (model order)."""
        return self._scale(self._clipped(features))

    def reasons(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CatBoost's own SHAP values for (batch, 10) features in BASE+strength order.

        Returns ``(contributions, expected)``: ``(batch, 3, 10)`` -- how much each
        feature pushed each class's raw logit, in BASE+strength order -- and
        ``(batch, 3)`` the expected values, so that ``expected[:, k] +
        contributions[:, k].sum()`` is the booster's raw formula value for class
        ``k``. Computed on the same clipped and scaled input ``predict`` uses;
        these explain the raw logits *before* the prior correction and the
        temperature of ``_postprocess`` (which shift and scale every class alike
        per row only when ``tau`` and ``temperature`` are neutral).
        """
        from catboost import Pool

        shap = np.asarray(self.booster.get_feature_importance(
            Pool(self.scaled(features)), type="ShapValues"), dtype=float)
        if shap.ndim == 2:  # a binary model: (batch, n_features + 1), one class
            shap = shap[:, None, :]
        contrib = np.empty((shap.shape[0], shap.shape[1], len(self._feature_pos)))
        contrib[:, :, self._feature_pos] = shap[:, :, :-1]  # model order -> BASE order
        return contrib, shap[:, :, -1]

    def raw_logits(self, features: np.ndarray) -> np.ndarray:
        """The booster's raw formula values (batch, 3) for (batch, 10) features."""
        return np.asarray(self.booster.predict(self.scaled(features),
                                               prediction_type="RawFormulaVal"), dtype=float)

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
