"""Loading the model directory: what the operator is told about it.

The deployed ``scaler.pkl`` was pickled by scikit-learn 1.5.2; loading it with
a newer scikit-learn raises ``InconsistentVersionWarning``, whose English text
used to reach the CLI's output as is. The engine recognises that warning by its
class and explains it in Chinese, after checking that the unpickled scaler
still scales exactly as ``(x - mean_) / scale_``.
"""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
import sklearn.base
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.preprocessing import StandardScaler
from support.engine import REF_MODEL, needs_reference
from support.paths import DEMO_MODELS_DIR, DEMO_PLANS_DIR, REPO

from destination_predictor.engine.model import DestinationModel, scaler_matches_formula

OLD_VERSION = "1.5.2"


def _repickle_as(model_dir: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewrite ``scaler.pkl`` as if saved by scikit-learn ``version``."""
    path = model_dir / "scaler.pkl"
    with path.open("rb") as fh:
        scaler = pickle.load(fh)  # noqa: S301 - the repository's own demo model
    with monkeypatch.context() as m:
        m.setattr(sklearn.base, "__version__", version)
        path.write_bytes(pickle.dumps(scaler))


@pytest.fixture
def old_scaler_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "model"
    shutil.copytree(DEMO_MODELS_DIR, d)
    _repickle_as(d, OLD_VERSION, monkeypatch)
    with pytest.warns(InconsistentVersionWarning):  # the premise: it does warn
        pickle.loads((d / "scaler.pkl").read_bytes())  # noqa: S301
    return d


def _assert_explained(notes: list[str]) -> None:
    assert len(notes) == 1, notes
    note = notes[0]
    assert f"scaler.pkl 由 scikit-learn {OLD_VERSION} 保存，当前为 {sklearn.__version__}" in note
    assert "mean_/scale_" in note and "不受影响" in note
    assert "Trying to unpickle" not in note and "Use at your own risk" not in note


def test_an_older_scikit_learn_scaler_is_explained_in_chinese(old_scaler_model: Path) -> None:
    model = DestinationModel.load(old_scaler_model)
    _assert_explained(model.load_notes)


def test_the_cli_prints_the_chinese_note(old_scaler_model: Path, tmp_path: Path) -> None:
    from destination_predictor.demo.grades import make_grade_workbook

    grades = make_grade_workbook(tmp_path / "g.xlsx", 2024, 12, plans_dir=DEMO_PLANS_DIR, seed=3)
    run = subprocess.run(
        [sys.executable, str(REPO / "run_prediction_direct.py"), "--scores_file", str(grades),
         "--year", "2024", "--model-dir", str(old_scaler_model), "--plans-dir",
         str(DEMO_PLANS_DIR), "--out-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    notes = [ln for ln in run.stderr.splitlines() if ln.startswith("提示: ")]
    _assert_explained([ln.removeprefix("提示: ") for ln in notes])
    assert "Trying to unpickle" not in run.stderr + run.stdout
    assert "InconsistentVersionWarning" not in run.stderr


def test_a_scaler_of_this_version_gives_no_note() -> None:
    assert DestinationModel.load(DEMO_MODELS_DIR).load_notes == []


@needs_reference
def test_the_deployed_scaler_is_explained_and_scales_by_the_formula() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = DestinationModel.load(REF_MODEL)
    scaler = model.scaler
    if sklearn.__version__ == OLD_VERSION:
        pytest.skip("the installed scikit-learn is the one that pickled the scaler")
    assert not caught  # nothing leaks past the engine as a Python warning
    note, = model.load_notes
    assert "scikit-learn 1.5.2" in note and "不受影响" in note
    # The claim the note makes, checked here independently of the engine's own probe:
    # transform is exactly (x - mean_) / scale_, missing values staying missing.
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.uniform(0, 100, (2000, scaler.n_features_in_)),
                     columns=model.feature_columns)
    x.iloc[::7, 3] = np.nan
    manual = (x.to_numpy() - scaler.mean_) / scaler.scale_
    assert np.array_equal(scaler.transform(x), manual, equal_nan=True)


def test_the_probe_notices_a_scaler_that_does_not_follow_the_formula() -> None:
    rng = np.random.default_rng(1)
    scaler = StandardScaler().fit(pd.DataFrame(rng.normal(70, 8, (50, 3)), columns=list("abc")))
    assert scaler_matches_formula(scaler)
    no_centre = StandardScaler(with_mean=False).fit(rng.normal(70, 8, (50, 3)))
    assert scaler_matches_formula(no_centre)  # it honours with_mean/with_std
    scaler.transform = lambda x: np.asarray(x) * 2  # type: ignore[method-assign]
    assert not scaler_matches_formula(scaler)
    assert not scaler_matches_formula(object())


def test_a_scaler_that_changed_is_not_called_unaffected(
        old_scaler_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import destination_predictor.engine.model as model_module

    monkeypatch.setattr(model_module, "scaler_matches_formula", lambda scaler: False)
    note, = DestinationModel.load(old_scaler_model).load_notes
    assert f"scikit-learn {OLD_VERSION}" in note
    assert "不受影响" not in note and "重新保存" in note
