"""The per-run options of the inverse search (the ``--config`` JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from .errors import PredictionError

# Three small fields; anything longer is not a config someone meant to send.
MAX_CONFIG_CHARS = 1024


@dataclass(frozen=True)
class PredictConfig:
    """``with_uniform_inverse`` switches the search on; grades bound the candidates;
    ``legacy_columns`` restores the deployed code's fallbacks for a grade sheet
    without an id column (first column) or major column (every major)."""

    with_uniform_inverse: bool = True
    min_grade: int = 60
    max_grade: int = 90
    legacy_columns: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``config`` clients see; ``legacy_columns`` only when it is on."""
        d = asdict(self)
        d["with_uniform_inverse"] = 1 if self.with_uniform_inverse else 0
        if self.legacy_columns:
            d["legacy_columns"] = 1
        else:
            del d["legacy_columns"]
        return d

    @classmethod
    def parse(cls, raw: str | dict[str, Any] | None) -> PredictConfig:
        """Validate a JSON text or mapping; refuse anything ambiguous."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return cls()
        if isinstance(raw, str):
            if len(raw) > MAX_CONFIG_CHARS:
                raise PredictionError("BAD_CONFIG",
                                      f"config 过长（最多 {MAX_CONFIG_CHARS} 个字符）")
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # 100,000 nested brackets recurse
                raise PredictionError("BAD_CONFIG", "config 不是合法的 JSON") from exc
        else:
            data = raw
        if not isinstance(data, dict):
            raise PredictionError("BAD_CONFIG", "config 必须是 JSON 对象")
        unknown = set(data) - {"with_uniform_inverse", "min_grade", "max_grade", "legacy_columns"}
        if unknown:
            raise PredictionError("BAD_CONFIG", f"config 含有未知字段: {', '.join(sorted(unknown))}")
        flag = data.get("with_uniform_inverse", 1)
        if flag not in (0, 1, True, False):
            raise PredictionError("BAD_CONFIG", "with_uniform_inverse 只能是 1 或 0")
        legacy = data.get("legacy_columns", 0)
        if legacy not in (0, 1, True, False):
            raise PredictionError("BAD_CONFIG", "legacy_columns 只能是 1 或 0")
        lo = _grade(data.get("min_grade", 60), "min_grade")
        hi = _grade(data.get("max_grade", 90), "max_grade")
        if lo > hi:
            raise PredictionError("BAD_CONFIG", "min_grade 不能大于 max_grade")
        return cls(with_uniform_inverse=bool(flag), min_grade=lo, max_grade=hi,
                   legacy_columns=bool(legacy))


def _grade(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PredictionError("BAD_CONFIG", f"{name} 必须是 0 到 100 之间的整数")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise PredictionError("BAD_CONFIG", f"{name} 必须是 0 到 100 之间的整数")
    if not 0 <= value <= 100:
        raise PredictionError("BAD_CONFIG", f"{name} 必须在 0 到 100 之间")
    return int(value)
