"""``destination_predictor.service.settings``: every setting is the
environment variable ``PREDICT_`` + its field name in capitals, overridable by
the mapping given to ``create_app``; a bad value is refused with the
variable's name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO

from destination_predictor.service.settings import (
    SETTING_NAMES,
    Settings,
    SettingsError,
    env_name,
    load_settings,
)

FIELDS = [f.name for f in dataclasses.fields(Settings)]


# Settings whose type says nothing about which other text is valid.
OTHER_TEXT = {"execution": " Thread ", "api_token": "tok", "database_url": "sqlite:///x.sqlite3",
              "schedule_timezone": "Europe/Berlin", "child_idle": "0"}


def other_value(f: dataclasses.Field[Any], tmp_path: Path) -> str:
    """A valid text for setting ``f`` that is not its default."""
    if f.name in OTHER_TEXT:
        return OTHER_TEXT[f.name]
    if isinstance(f.default, int):
        return str(f.default + 1)
    if isinstance(f.default, float):
        return str(f.default + 1.5)
    return str(tmp_path / f.name)  # the paths, optional or not


def test_each_setting_is_predict_plus_its_name(tmp_path: Path) -> None:
    assert SETTING_NAMES == tuple("PREDICT_" + name.upper() for name in FIELDS)
    defaults = load_settings({}, environ={})
    for f in dataclasses.fields(Settings):
        var = env_name(f.name)
        assert var == "PREDICT_" + f.name.upper()
        raw = other_value(f, tmp_path)
        expected = f.metadata["parse"](raw)
        assert getattr(defaults, f.name) != expected, f.name
        assert getattr(load_settings({}, environ={var: raw}), f.name) == expected, var
        assert getattr(load_settings({var: raw}, environ={}), f.name) == expected, var
    assert load_settings({}, environ={"PREDICT_EXECUTION": " Thread "}).execution == "thread"


def test_overrides_beat_the_environment_which_beats_defaults() -> None:
    env = {"PREDICT_MAX_WORKERS": "5", "PREDICT_MAX_PENDING": "", "PREDICT_OTHER": "x"}
    s = load_settings({"PREDICT_MAX_WORKERS": 2}, environ=env)
    assert s.max_workers == 2
    assert load_settings({}, environ=env).max_workers == 5
    assert s.max_pending == Settings().max_pending  # an empty variable means the default
    assert load_settings({}, environ={}) == Settings()


@pytest.mark.parametrize(("var", "raw"), [
    ("PREDICT_MAX_WORKERS", "many"),
    ("PREDICT_MAX_WORKERS", "0"),
    ("PREDICT_TASK_TIMEOUT_S", "-1"),
    ("PREDICT_EXECUTION", "fork"),
    ("PREDICT_PORT", "80.5"),
])
def test_a_bad_value_names_its_variable(var: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(var)):
        load_settings({}, environ={var: raw})
    with pytest.raises(SettingsError, match=re.escape(var)):
        load_settings({var: raw}, environ={})


def test_the_readme_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    listed = set(re.findall(r"^\| `(PREDICT_[A-Z0-9_]+)`", readme, re.M))
    listed |= set(re.findall(r"^\| `PREDICT_[A-Z0-9_]+` / `(PREDICT_[A-Z0-9_]+)`", readme, re.M))
    assert set(SETTING_NAMES) - listed == set()
