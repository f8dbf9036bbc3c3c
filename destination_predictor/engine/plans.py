"""Education plans (培养方案): which courses a major requires, with credits.

Plans are read by column position (0 category, 2 course name, 3 credit,
8 requirement), exactly like the deployed code, because real files carry
headers that vary; messy cells (dates in the semester column, empty
categories, note rows) must not break anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .categories import CategoryMap, normalise
from .errors import PredictionError

PLAN_DIR_RE = re.compile(r"^education-plan(\d{4})$")
PLAN_FILE_RE = re.compile(r"^(\d{4})级(.+)培养方案\.xlsx?$")


@dataclass(frozen=True)
class PlanRow:
    """One required row; ``feature`` is None when its category is unknown."""

    category: str
    course: str
    credit: float
    feature: str | None


@dataclass(frozen=True)
class Plan:
    year: int
    major: str
    path: Path
    rows: tuple[PlanRow, ...]
    warnings: tuple[str, ...] = ()

    @property
    def courses(self) -> list[str]:
        """Distinct required course names in first-appearance order."""
        return list(dict.fromkeys(r.course for r in self.rows))

    @property
    def unmapped_categories(self) -> list[str]:
        return list(dict.fromkeys(r.category or "（类别为空）" for r in self.rows if r.feature is None))


def plan_path(plans_dir: str | Path, year: int, major: str) -> Path:
    base = Path(plans_dir) / f"education-plan{year}"
    xlsx = base / f"{year}级{major}培养方案.xlsx"
    return xlsx if xlsx.exists() or not (base / f"{year}级{major}培养方案.xls").exists() else (
        base / f"{year}级{major}培养方案.xls"
    )


def find_plans(plans_dir: str | Path, year: int) -> dict[str, Path]:
    """Majors with a plan for ``year``, in directory-listing (name) order."""
    base = Path(plans_dir) / f"education-plan{year}"
    found: dict[str, Path] = {}
    if base.is_dir():
        for p in sorted(base.iterdir()):
            m = PLAN_FILE_RE.match(p.name)
            if m and int(m.group(1)) == year and p.is_file() and not p.name.startswith("~$"):
                found.setdefault(m.group(2), p)
    return found


def plan_years(plans_dir: str | Path) -> list[int]:
    base = Path(plans_dir)
    if not base.is_dir():
        return []
    years = [int(m.group(1)) for p in base.iterdir() if (m := PLAN_DIR_RE.match(p.name))]
    return sorted(y for y in years if find_plans(plans_dir, y))


def _credit(value: object) -> float | None:
    try:
        c = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return c if math.isfinite(c) else None


def read_plan(path: str | Path, year: int, major: str, categories: CategoryMap) -> Plan:
    """Required rows of one plan, in file order, duplicates included."""
    p = Path(path)
    try:
        df = pd.read_excel(p, sheet_name=0, header=0, engine="calamine", dtype=object)
    except FileNotFoundError as exc:
        raise PredictionError("PLAN_MISSING", f"找不到培养方案: {p.name}") from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unreadable plan
        raise PredictionError("PLAN_INVALID", f"无法读取培养方案 {p.name}: {type(exc).__name__}") from exc
    if df.shape[1] < 9:
        raise PredictionError("PLAN_INVALID", f"培养方案 {p.name} 列数不足 9 列")
    rows: list[PlanRow] = []
    warnings: list[str] = []
    for i, (cat, name, credit, req) in enumerate(
        zip(df.iloc[:, 0], df.iloc[:, 2], df.iloc[:, 3], df.iloc[:, 8], strict=True)
    ):
        if "必修" not in ("" if _missing(req) else str(req)):
            continue
        course = "" if _missing(name) else str(name).strip()
        if not course:
            warnings.append(f"培养方案 {p.name} 第 {i + 2} 行是必修但没有课程名，已忽略")
            continue
        c = _credit(credit)
        if c is None:
            warnings.append(f"培养方案 {p.name} 第 {i + 2} 行课程“{course}”学分无效，按 0 学分计")
            c = 0.0
        cat_text = normalise(cat)
        rows.append(PlanRow(cat_text, course, c, categories.lookup(cat_text)))
    return Plan(year=year, major=major, path=p, rows=tuple(rows), warnings=tuple(warnings))


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
