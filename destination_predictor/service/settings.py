"""The service's configuration table: environment variables ``PREDICT_*``,
overridable by a mapping passed to ``create_app``.

Read once when the app is built and frozen afterwards, so every component sees
the same values for the whole life of the process and tests can build apps
with their own data directory without touching the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]

EXECUTION_MODES = ("process", "thread")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """One field per row of the README configuration table."""

    model_dir: Path
    plans_dir: Path
    data_dir: Path
    category_map: Path | None
    api_token: str | None
    max_workers: int
    max_pending: int
    task_timeout_s: float
    retention_hours: float
    max_upload_mb: float
    max_unzipped_mb: float
    port: int
    database_url: str | None
    execution: str
    clean_interval_s: float
    child_nice: int

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def staging_dir(self) -> Path:
        """Where uploads are checked before they are allowed into ``uploads/``."""
        return self.data_dir / ".staging"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tasks.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"async_api_{self.port}.log"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_unzipped_bytes(self) -> int:
        return int(self.max_unzipped_mb * 1024 * 1024)

    @property
    def retention_s(self) -> float:
        return self.retention_hours * 3600.0

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.uploads_dir, self.results_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)


# name -> (default, parser); defaults that are paths are relative to the project.
_DEFAULTS: dict[str, Any] = {
    "PREDICT_MODEL_DIR": PROJECT_DIR / "models",
    "PREDICT_PLANS_DIR": PROJECT_DIR / "plans",
    "PREDICT_DATA_DIR": PROJECT_DIR,
    "PREDICT_CATEGORY_MAP": None,
    "PREDICT_API_TOKEN": None,
    "PREDICT_MAX_WORKERS": 3,
    "PREDICT_MAX_PENDING": 50,
    "PREDICT_TASK_TIMEOUT_S": 1800,
    "PREDICT_RETENTION_HOURS": 24,
    "PREDICT_MAX_UPLOAD_MB": 50,
    "PREDICT_MAX_UNZIPPED_MB": 300,
    "PREDICT_PORT": 8080,
    "PREDICT_DATABASE_URL": None,
    "PREDICT_EXECUTION": "process",
    "PREDICT_CLEAN_INTERVAL_S": 600,
    "PREDICT_CHILD_NICE": 10,
}

SETTING_NAMES: tuple[str, ...] = tuple(_DEFAULTS)


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the environment, then ``overrides`` (same ``PREDICT_*`` keys).

    Raises SettingsError for values that would only fail later and obscurely.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = dict(_DEFAULTS)
    for name in SETTING_NAMES:
        if name in env and env[name] != "":
            raw[name] = env[name]
    for name, value in (overrides or {}).items():
        if name in _DEFAULTS:
            raw[name] = value

    execution = str(raw["PREDICT_EXECUTION"]).strip().lower()
    if execution not in EXECUTION_MODES:
        raise SettingsError(f"PREDICT_EXECUTION must be one of {EXECUTION_MODES}, got {execution!r}")
    token = raw["PREDICT_API_TOKEN"]
    token = str(token) if token not in (None, "") else None
    return Settings(
        model_dir=_path(raw["PREDICT_MODEL_DIR"]),
        plans_dir=_path(raw["PREDICT_PLANS_DIR"]),
        data_dir=_path(raw["PREDICT_DATA_DIR"]),
        category_map=_path(raw["PREDICT_CATEGORY_MAP"]) if raw["PREDICT_CATEGORY_MAP"] else None,
        api_token=token,
        max_workers=_number(raw, "PREDICT_MAX_WORKERS", int, minimum=1),
        max_pending=_number(raw, "PREDICT_MAX_PENDING", int, minimum=0),
        task_timeout_s=_number(raw, "PREDICT_TASK_TIMEOUT_S", float, minimum=0.1),
        retention_hours=_number(raw, "PREDICT_RETENTION_HOURS", float, minimum=0.0),
        max_upload_mb=_number(raw, "PREDICT_MAX_UPLOAD_MB", float, minimum=0.001),
        max_unzipped_mb=_number(raw, "PREDICT_MAX_UNZIPPED_MB", float, minimum=0.001),
        port=_number(raw, "PREDICT_PORT", int, minimum=0),
        database_url=str(raw["PREDICT_DATABASE_URL"]) if raw["PREDICT_DATABASE_URL"] else None,
        execution=execution,
        clean_interval_s=_number(raw, "PREDICT_CLEAN_INTERVAL_S", float, minimum=0.05),
        child_nice=_number(raw, "PREDICT_CHILD_NICE", int, minimum=0),
    )


def _path(value: Any) -> Path:
    return Path(value).expanduser().resolve()


def _number(raw: Mapping[str, Any], name: str, kind: type, *, minimum: float) -> Any:
    value = raw[name]
    try:
        parsed = kind(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name} must be a number, got {value!r}") from exc
    if parsed < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value!r}")
    return parsed
