"""Mapping education-plan category text to the nine model features.

Two modes: ``exact`` (the deployed behaviour: the normalised text must equal a
key) and ``rules`` (the default: exact keys, then prefixes, then suffixes),
because the 2023/2024 plans renamed categories and exact matching silently
leaves most features empty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import PredictionError

# The nine category features, in the order docs/algorithm.md §2 calls BASE.
BASE: tuple[str, ...] = (
    "public", "political", "english", "math_science", "basic_subject",
    "basic_major", "major", "practice", "innovation",
)

# The deployed code walks the values of its 13-key map, so ``public`` counts
# five times in AcademicStrength; kept whatever map is in use.
STRENGTH_WALK: tuple[str, ...] = (
    "public", "public", "public", "public", "public", "political", "english",
    "math_science", "basic_subject", "basic_major", "major", "practice", "innovation",
)


def normalise(text: object) -> str:
    """Strip and drop ASCII and full-width spaces; empty for missing cells."""
    if text is None:
        return ""
    if isinstance(text, float) and text != text:
        return ""
    return str(text).strip().replace(" ", "").replace("\u3000", "")


@dataclass(frozen=True)
class CategoryMap:
    """A loaded map; ``lookup`` returns a BASE name or None for unknown."""

    mode: str
    exact: Mapping[str, str]
    prefixes: tuple[tuple[str, str], ...] = ()
    suffixes: tuple[tuple[str, str], ...] = ()
    source: str = ""
    digest: str = ""  # sha256 of the map file's bytes (part of a run's fingerprint)
    _cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def lookup(self, text: object) -> str | None:
        key = normalise(text)
        if key in self._cache:
            return self._cache[key]
        found = self.exact.get(key)
        if found is None and self.mode != "exact" and key:
            found = next((c for p, c in self.prefixes if key.startswith(p)), None)
            if found is None:
                found = next((c for s, c in self.suffixes if key.endswith(s)), None)
        self._cache[key] = found
        return found


def default_map_path() -> Path:
    return Path(str(resources.files("destination_predictor.engine") / "data" / "category_map.json"))


def load_category_map(path: str | Path | None = None) -> CategoryMap:
    """Load a map file; refuse one that names a feature the model does not have."""
    p = Path(path) if path else default_map_path()
    try:
        raw = p.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError as exc:
        raise PredictionError("CATEGORY_MAP_MISSING", f"找不到类别映射文件: {p}") from exc
    except ValueError as exc:
        raise PredictionError("CATEGORY_MAP_INVALID", f"类别映射文件不是合法的 JSON: {p}") from exc
    if not isinstance(data, dict):
        raise PredictionError("CATEGORY_MAP_INVALID", f"类别映射文件格式错误: {p}")
    # Accept both {"categories": {...}} and a bare {text: feature} mapping.
    cats = data.get("categories", data if "mode" not in data else {})
    mode = str(data.get("mode", "exact"))
    if mode not in ("exact", "rules"):
        raise PredictionError("CATEGORY_MAP_INVALID", f"类别映射模式必须是 exact 或 rules: {mode}")

    def checked(m: object, what: str) -> dict[str, str]:
        if not isinstance(m, dict):
            raise PredictionError("CATEGORY_MAP_INVALID", f"类别映射的 {what} 必须是对象")
        out = {}
        for k, v in m.items():
            if v not in BASE:
                raise PredictionError("CATEGORY_MAP_INVALID", f"类别 {k} 映射到未知特征 {v}")
            out[normalise(k)] = v
        return out

    exact = checked(cats, "categories")
    prefixes = checked(data.get("prefixes", {}), "prefixes")
    suffixes = checked(data.get("suffixes", {}), "suffixes")
    by_len = lambda kv: -len(kv[0])  # noqa: E731 - longest rule wins
    return CategoryMap(
        mode=mode,
        exact=exact,
        prefixes=tuple(sorted(prefixes.items(), key=by_len)),
        suffixes=tuple(sorted(suffixes.items(), key=by_len)),
        source=str(p),
        digest=hashlib.sha256(raw).hexdigest(),
    )
