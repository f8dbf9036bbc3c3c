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
from .excel import WorkbookTooLarge, check_extent, is_reader_panic, sniff_file, too_large_message

PLAN_DIR_RE = re.compile(r"^education-plan(\d{4})$")
PLAN_FILE_RE = re.compile(r"^(\d{4})级(.+)培养方案\.xlsx?$")


@dataclass(frozen=True)
class PlanRow:
    """One required row; ``feature`` is None when its category is unknown."""

    category: str
    course: str
    credit: float
    feature: str | None
    semester: str = ""  # column 7 as text; tells a course's per-semester rows apart


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
    for i, (cat, name, credit, sem, req) in enumerate(
        zip(df.iloc[:, 0], df.iloc[:, 2], df.iloc[:, 3], df.iloc[:, 7], df.iloc[:, 8], strict=True)
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
        rows.append(PlanRow(cat_text, course, c, categories.lookup(cat_text),
                            "" if _missing(sem) else str(sem).strip()))
    return Plan(year=year, major=major, path=p, rows=tuple(rows), warnings=tuple(warnings))


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --- the check of a plan before it is used -------------------------------------------

# Column positions ``read_plan`` relies on, with what they must hold.
PLAN_COLUMNS = ((0, "课程类别"), (2, "课程名称"), (3, "学分"), (8, "修读要求（必修/选修）"))


@dataclass(frozen=True)
class PlanCheck:
    """What ``check_plan`` found: ``problems`` refuse the plan, ``warnings`` do not."""

    year: int
    major: str
    courses: int = 0                       # distinct required courses
    required_rows: int = 0
    credits: float = 0.0
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    unmapped_categories: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    bad_credits: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "year": self.year, "major": self.major, "courses": self.courses,
            "required_rows": self.required_rows, "credits": round(self.credits, 2),
            "problems": list(self.problems), "warnings": list(self.warnings),
            "unmapped_categories": list(self.unmapped_categories),
            "duplicates": list(self.duplicates), "bad_credits": list(self.bad_credits),
        }


def check_plan(path: str | Path, year: int, major: str, categories: CategoryMap, *,
               max_cells: int | None = None) -> PlanCheck:
    """The rules a plan must meet before the engine uses it, in Chinese.

    Readable (an Excel workbook within ``max_cells``), at least 9 columns (read
    by position: 0 category, 2 course, 3 credit, 8 requirement), at least one
    ``必修`` row, a numeric credit on every required row, every category mapped
    by ``categories`` (the unmapped ones listed), no required course twice.
    Never raises for a bad file: every refusal is a problem of the report.
    """
    p = Path(path)
    try:
        fmt = sniff_file(p)
    except OSError:
        fmt = None
    if fmt is None:
        return PlanCheck(year, major, problems=("文件不是 Excel 工作簿（.xlsx 或 .xls），无法读取",))
    try:
        if max_cells is not None:
            check_extent(p, max_cells)
        plan = read_plan(p, year, major, categories)
    except WorkbookTooLarge as exc:
        return PlanCheck(year, major, problems=(too_large_message(exc),))
    except PredictionError as exc:
        text = exc.message.replace(p.name, "文件")
        if "列数不足" in text:
            text = ("缺少必需的列：培养方案按位置读取，至少要有 9 列（"
                    + "、".join(f"第 {i + 1} 列{name}" for i, name in PLAN_COLUMNS) + "）")
        return PlanCheck(year, major, problems=(text,))
    except BaseException as exc:
        if not is_reader_panic(exc):
            raise
        return PlanCheck(year, major, problems=("文件已损坏，无法作为 Excel 工作簿打开",))
    problems: list[str] = []
    warnings = [w.replace(f"培养方案 {p.name} ", "") for w in plan.warnings
                if "学分无效" not in w]
    bad_credits = [w.replace(f"培养方案 {p.name} ", "").replace("，按 0 学分计", "")
                   for w in plan.warnings if "学分无效" in w]
    if not plan.rows:
        problems.append("没有任何必修课：第 9 列（修读要求）中没有“必修”")
    if bad_credits:
        problems.append("学分不是数字：" + "；".join(bad_credits[:10])
                        + (f"……共 {len(bad_credits)} 行" if len(bad_credits) > 10 else ""))
    unmapped = plan.unmapped_categories
    if unmapped:
        problems.append("以下课程类别在当前使用的类别映射中没有对应：" + "、".join(unmapped)
                        + "（请改用已映射的类别名，或更新类别映射 PREDICT_CATEGORY_MAP）")
    # A course may have several required rows (one per semester, or its practice
    # part under another category); the same course twice in the same category
    # and semester is a copy-paste error that would count it twice.
    seen: dict[tuple[str, str, str], int] = {}
    for r in plan.rows:
        key = (r.category, r.course, r.semester)
        seen[key] = seen.get(key, 0) + 1
    dup_keys = [k for k, n in seen.items() if n > 1]
    duplicates = list(dict.fromkeys(k[1] for k in dup_keys))
    if dup_keys:
        problems.append("必修课程重复（同一类别、同一学期出现多次）：" + "、".join(
            f"{c}（{cat or '类别为空'}，第 {sem or '?'} 学期，{seen[(cat, c, sem)]} 次）"
            for cat, c, sem in dup_keys))
    return PlanCheck(
        year, major, courses=len(plan.courses), required_rows=len(plan.rows),
        credits=sum(r.credit for r in plan.rows), problems=tuple(problems),
        warnings=tuple(warnings), unmapped_categories=tuple(unmapped),
        duplicates=tuple(duplicates), bad_credits=tuple(bad_credits))
