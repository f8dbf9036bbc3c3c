"""How well a grade export and the education plans match (plan coverage).

A 2023 export run against 2024 plans -- or against the bundled demo plans --
"completes" with predictions built from the handful of courses both happen to
share. So for each major the run counts how many of its students' courses
the plan knows (and how many of the plan's required courses have a grade),
warns in plain Chinese below ``LOW_COVERAGE``, and names the year whose plans
match best.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .categories import CategoryMap
from .errors import PredictionError
from .plans import Plan, find_plans, plan_years, read_plan

# Below this share of a plan's required courses found in the export, the run warns.
LOW_COVERAGE = 0.5


@dataclass(frozen=True)
class Coverage:
    """Courses of one major's plan vs the courses its students have grades in."""

    plan_courses: int           # distinct required courses of the plan
    plan_courses_in_file: int   # ... that appear in the export (for these students)
    file_courses: int           # distinct courses of these students in the export
    file_courses_in_plan: int   # ... that the plan requires

    @property
    def share(self) -> float:
        """The share of the export's courses that the plan knows. The other way round
        (plan courses with a grade) is low for any cohort mid-way through its
        studies; this one is high for the right plans at any point (about 3/4 for
        the real 2023 sample) and low for the wrong ones (1/5 for the demo plans)."""
        return self.file_courses_in_plan / self.file_courses if self.file_courses else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": round(self.share, 4)}


def coverage(plan: Plan, file_courses: set[str]) -> Coverage:
    required = set(plan.courses)
    return Coverage(len(required), len(required & file_courses), len(file_courses),
                    len(file_courses & required))


def best_year(plans_dir: str | Path, categories: CategoryMap, major: str,
              file_courses: set[str], years: Iterable[int] | None = None
              ) -> tuple[int, Coverage] | None:
    """The year whose plan for ``major`` covers ``file_courses`` best (None: no plan)."""
    best: tuple[int, Coverage] | None = None
    for year in years if years is not None else plan_years(plans_dir):
        path = find_plans(plans_dir, year).get(major)
        if path is None:
            continue
        try:
            cov = coverage(read_plan(path, year, major, categories), file_courses)
        except PredictionError:
            continue  # an unreadable plan of another year does not matter here
        if best is None or cov.share > best[1].share:
            best = (year, cov)
    return best


def coverage_warning(major: str, year: int, cov: Coverage,
                     best: tuple[int, Coverage] | None) -> str | None:
    """The plain-Chinese warning for a low coverage, naming a better year if there is one."""
    if cov.share >= LOW_COVERAGE:
        return None
    text = (f"{major}：成绩表中该专业的 {cov.file_courses} 门课程只有 {cov.file_courses_in_plan} 门"
            f"出现在 {year} 级培养方案中（培养方案的 {cov.plan_courses} 门必修课只有 "
            f"{cov.plan_courses_in_file} 门有成绩），是否选错了年级？")
    if best is not None and best[0] != year and best[1].share >= LOW_COVERAGE:
        b = best[1]
        text += (f"与 {best[0]} 级培养方案最吻合（{b.file_courses_in_plan}/{b.file_courses} 门课程"
                 "出现在其中）。")
    else:
        text += "其他年级的培养方案也不吻合，请确认培养方案目录是否正确（自带的是演示培养方案）。"
    return text
