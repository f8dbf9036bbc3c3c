"""Orchestrates one prediction run: read the workbook once, predict every
major, write the workbooks. (Interface stub; implementation in progress.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .config import PredictConfig

ProgressFn = Callable[[int, str], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class RunResult:
    files: list[Path]                      # written workbooks, per-major first, _All last
    summary: dict[str, Any]                # {"year", "majors": [{"major","code","students","destinations":{"1":n,"2":n,"3":n}, ...}], "students"}
    warnings: list[str] = field(default_factory=list)  # Chinese, one line each


class Engine:
    """Holds the model, plans directory and category map; ``run`` is thread-safe."""

    def __init__(self, model_dir: str | Path, plans_dir: str | Path,
                 category_map: str | Path | None = None) -> None:
        raise NotImplementedError

    @property
    def model_version(self) -> str:
        raise NotImplementedError

    def majors_by_year(self) -> dict[int, list[dict[str, str]]]:
        """{2023: [{"name": "智能科学与技术", "code": "ai"}, ...]} from the plans dir."""
        raise NotImplementedError

    def run(self, scores_file: str | Path, year: int, *, major: str | None = None,
            config: PredictConfig | None = None, out_dir: str | Path = ".",
            file_prefix: str = "", progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> RunResult:
        raise NotImplementedError
