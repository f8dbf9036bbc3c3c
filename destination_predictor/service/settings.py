"""The service's configuration table: environment variables ``PREDICT_*``,
overridable by a mapping passed to ``create_app``.

Each setting is declared once, as a field of ``Settings``: its name (the
variable is ``PREDICT_`` + the name in capitals), its default, how its text is
parsed and its lower bound. The README's configuration table lists the same.

Read once when the app is built and frozen afterwards, so every component sees
the same values for the whole life of the process and tests can build apps
with their own data directory without touching the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..engine.excel import DEFAULT_MAX_CELLS
from ..engine.pipeline import DEFAULT_WRITE_PROCESSES

ENV_PREFIX = "PREDICT_"

PROJECT_DIR = Path(__file__).resolve().parents[2]

EXECUTION_MODES = ("process", "thread")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def _path(value: Any) -> Path:
    return Path(value).expanduser().resolve()


def _optional_path(value: Any) -> Path | None:
    return _path(value) if value not in (None, "") else None


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1 or 0")


def _execution(value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in EXECUTION_MODES:
        raise ValueError(f"must be one of {EXECUTION_MODES}")
    return mode


def _timezone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def parse_storage_url(raw: str | None) -> tuple[str, str, str]:
    """``(kind, location, prefix)``: ``("dir", "", "")`` for the data dir,
    ``("dir", "/abs/path", "")`` for ``file:///abs/path`` (or a bare absolute
    path), ``("s3", bucket, "prefix/")`` for ``s3://bucket/prefix``.

    Raises ValueError (the settings loader names the variable)."""
    if raw is None or raw == "":
        return "dir", "", ""
    if raw.startswith("/"):
        return "dir", str(Path(raw).resolve()), ""
    parts = urlsplit(raw)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("file:// needs an absolute path, e.g. file:///mnt/predict")
        return "dir", str(Path(parts.path).resolve()), ""
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("s3:// needs a bucket, e.g. s3://predict-files/prod")
        if parts.query or parts.fragment:
            raise ValueError("s3:// takes a bucket and a prefix only")
        prefix = parts.path.strip("/")
        return "s3", parts.netloc, f"{prefix}/" if prefix else ""
    raise ValueError("must be empty, file:///path or s3://bucket/prefix")


def _storage_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    parse_storage_url(str(value))
    return str(value)


def setting(default: Any, parse: Any, minimum: float | None = None) -> Any:
    """One row of the configuration table (a dataclass field with its parser and bound)."""
    return field(default=default, metadata={"parse": parse, "minimum": minimum})


@dataclass(frozen=True)
class Settings:
    """One field per row of the README configuration table; defaults that are
    paths are relative to the project."""

    model_dir: Path = setting(PROJECT_DIR / "models", _path)
    plans_dir: Path = setting(PROJECT_DIR / "plans", _path)
    data_dir: Path = setting(PROJECT_DIR, _path)
    category_map: Path | None = setting(None, _optional_path)
    api_token: str | None = setting(None, _optional_text)
    max_workers: int = setting(3, int, minimum=1)
    max_pending: int = setting(50, int, minimum=0)
    task_timeout_s: float = setting(1800.0, float, minimum=0.1)
    retention_hours: float = setting(24.0, float, minimum=0.0)
    max_upload_mb: float = setting(50.0, float, minimum=0.001)
    max_unzipped_mb: float = setting(300.0, float, minimum=0.001)
    port: int = setting(8080, int, minimum=0)
    database_url: str | None = setting(None, _optional_text)
    execution: str = setting("process", _execution)
    clean_interval_s: float = setting(600.0, float, minimum=0.05)
    child_nice: int = setting(10, int, minimum=0)
    child_idle: bool = setting(True, _flag)
    host: str = setting("127.0.0.1", str)
    allow_anonymous: bool = setting(False, _flag)
    max_cells: int = setting(DEFAULT_MAX_CELLS, int, minimum=1)
    job_memory_mb: int = setting(6144, int, minimum=0)
    write_processes: int = setting(DEFAULT_WRITE_PROCESSES, int, minimum=1)
    min_free_mb: float = setting(200.0, float, minimum=0.0)
    record_retention_days: float = setting(30.0, float, minimum=0.0)
    # Batches and schedules (service.batches, service.schedules): their records'
    # database (default: jobs.sqlite3 in the data dir), the size of one batch,
    # where scheduled sources may live, how late a missed run may still start.
    jobs_database_url: str | None = setting(None, _optional_text)
    max_batch_files: int = setting(50, int, minimum=1)
    max_batch_mb: float = setting(200.0, float, minimum=0.001)
    schedule_root: Path | None = setting(None, _optional_path)
    schedule_timezone: str = setting("Asia/Shanghai", _timezone)
    schedule_grace_s: float = setting(3600.0, float, minimum=0.0)
    # Completion notifications (service.notifier): the address links in them
    # point to, each attempt's time limit, how many attempts, the first wait
    # between two (doubled each time), the deliveries' database (default:
    # notifications.sqlite3 in the data dir).
    public_url: str | None = setting(None, _optional_text)
    webhook_timeout_s: float = setting(5.0, float, minimum=0.1)
    webhook_max_attempts: int = setting(5, int, minimum=1)
    webhook_backoff_s: float = setting(60.0, float, minimum=0.01)
    webhook_database_url: str | None = setting(None, _optional_text)
    # Task records (issue 12): unset = tasks.sqlite3 in the data dir, in-memory
    # index, one service per data dir; postgresql://... = the records shared by
    # several processes, the database read for every answer (service.shared_store).
    tasks_db_url: str | None = setting(None, _optional_text)
    # The distributed mode (issue 12): unset = the embedded pool; redis://host:port/db
    # = tasks dispatched as RQ jobs to ``python -m destination_predictor.worker``.
    queue_url: str | None = setting(None, _optional_text)
    # Where uploads and results live (service.storage): unset = the data dir;
    # file:///path = a directory every instance mounts; s3://bucket/prefix = an
    # object store (the S3 API at PREDICT_S3_ENDPOINT_URL, or AWS when unset).
    storage_url: str | None = setting(None, _storage_url)
    s3_endpoint_url: str | None = setting(None, _optional_text)

    @property
    def files_root(self) -> Path:
        """Where ``uploads/`` and ``results/`` are: a ``file://`` storage's
        directory, else the data dir (with ``s3://`` they are this machine's cache)."""
        kind, location, _ = parse_storage_url(self.storage_url)
        return Path(location) if kind == "dir" and location else self.data_dir

    @property
    def uploads_dir(self) -> Path:
        return self.files_root / "uploads"

    @property
    def results_dir(self) -> Path:
        return self.files_root / "results"

    @property
    def staging_dir(self) -> Path:
        """Where uploads are checked before they are allowed into ``uploads/``
        (beside it: a checked upload is moved in by a rename)."""
        return self.files_root / ".staging"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tasks.sqlite3"

    @property
    def jobs_url(self) -> str:
        """Where batches, schedules and their runs are recorded: the setting, else
        the task records' PostgreSQL (``shared_records_url``), else ``jobs.sqlite3``."""
        return (self.jobs_database_url or self.shared_records_url
                or f"sqlite:///{self.data_dir / 'jobs.sqlite3'}")

    @property
    def webhooks_url(self) -> str:
        """Where webhooks and their deliveries are recorded: the setting, else the
        task records' PostgreSQL, else ``notifications.sqlite3``."""
        return (self.webhook_database_url or self.shared_records_url
                or f"sqlite:///{self.data_dir / 'notifications.sqlite3'}")

    @property
    def shared_records_url(self) -> str | None:
        """``PREDICT_TASKS_DB_URL`` when it names PostgreSQL: the records of several
        instances are there, so batches, schedules and webhooks go there too
        (their tables have their own names) unless their own setting says otherwise."""
        return self.tasks_db_url if _url_scheme(self.tasks_db_url) == "postgresql" else None

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
        """The data folders, readable by the service's user only (they hold grades)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.uploads_dir, self.results_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)



def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


SETTING_NAMES: tuple[str, ...] = tuple(env_name(f.name) for f in fields(Settings))


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the environment, then ``overrides`` (same ``PREDICT_*`` keys).

    Raises SettingsError for values that would only fail later and obscurely.
    """
    env = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        if name in overrides:
            raw = overrides[name]
        elif env.get(name, "") != "":
            raw = env[name]
        else:
            raw = f.default
        values[f.name] = _parse(name, raw, f.metadata["parse"], f.metadata["minimum"])
    settings = Settings(**values)
    if settings.retention_s <= settings.task_timeout_s:
        # Files younger than the retention are kept; a shorter retention than a
        # task may run would sweep a running task's half-written results.
        raise SettingsError(
            f"PREDICT_RETENTION_HOURS ({settings.retention_hours:g} h) must be longer than "
            f"PREDICT_TASK_TIMEOUT_S ({settings.task_timeout_s:g} s)")
    if settings.queue_url:
        for name, url in (("PREDICT_JOBS_DATABASE_URL", settings.jobs_database_url),
                          ("PREDICT_WEBHOOK_DATABASE_URL", settings.webhook_database_url)):
            if _url_scheme(url) == "sqlite":
                # Instances on other machines would each have their own file:
                # every one of them would fire each schedule, and batches and
                # webhooks would be known only to the instance that made them.
                raise SettingsError(
                    f"{name} 是 SQLite 文件（{url}），分布式模式（PREDICT_QUEUE_URL）下各台机器上的"
                    f" API 实例无法共用它：请删除这个设置（默认与任务记录共用 PREDICT_TASKS_DB_URL"
                    f" 的 PostgreSQL），或设为 postgresql://…")
    return settings


def _url_scheme(url: str | None) -> str | None:
    """The database kind a SQLAlchemy URL names (``postgres``, ``postgresql+psycopg``
    -> ``postgresql``), without importing SQLAlchemy here."""
    if not url or ":" not in url:
        return None
    scheme = url.split(":", 1)[0].split("+", 1)[0].strip().lower()
    return "postgresql" if scheme == "postgres" else scheme


def _parse(name: str, raw: Any, parse: Any, minimum: float | None) -> Any:
    try:
        value = parse(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: {raw!r} is not valid ({exc})") from exc
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {raw!r}")
    return value
