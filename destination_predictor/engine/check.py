"""The check before a run: what a grade workbook holds and what a run would do
with it, without predicting or writing anything.

The deployed web application had this as a separate step; here it answers
``POST /api/task/validate`` and ``run_prediction_direct.py --check``. It reads
the export exactly as a run does (same header recognition, same refusals) and
reads the plans, but never loads the model, so it takes about as long as
reading the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .categories import CategoryMap
from .coverage import LOW_COVERAGE, best_year, coverage, coverage_warning
from .errors import PredictionError
from .excel import DEFAULT_MAX_CELLS
from .grades import SKIP_REASONS, Cohort, read_grades
from .majors import code_for, major_codes, ordered, resolve
from .plans import find_plans, plan_years, read_plan


@dataclass
class CheckReport:
    """Everything the check found; ``ok`` is False when a run would be refused."""

    year: int
    major: str | None
    ok: bool = True
    header: dict[str, Any] | None = None
    students: int = 0
    rows_kept: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    majors: list[dict[str, Any]] = field(default_factory=list)
    best_year: int | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def refuse(self, exc: PredictionError) -> None:
        self.ok = False
        self.problems.append({"code": exc.code, "message": exc.message})

    @property
    def summary(self) -> str:
        """One line for people, e.g. "48 名学生，4 个专业；跳过 143 行（任选课不计入 83）"."""
        if not self.ok:
            return "无法预测：" + "；".join(p["message"] for p in self.problems)
        predicted = [m for m in self.majors if m["has_plan"] and m["students"]]
        text = f"{self.students} 名学生，{len(predicted)} 个专业可预测"
        skipped = sum(s["rows"] for s in self.skipped)
        if skipped:
            parts = "、".join(f"{s['text']} {s['rows']}" for s in self.skipped)
            text += f"；跳过 {skipped} 行（{parts}）"
        if self.warnings:
            text += f"；{len(self.warnings)} 条警告"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "year": self.year, "major": self.major, "header": self.header,
            "students": self.students, "rows_kept": self.rows_kept, "skipped": self.skipped,
            "majors": self.majors, "best_year": self.best_year, "problems": self.problems,
            "warnings": self.warnings, "summary": self.summary,
        }


def check_workbook(path: str | Path, year: int, *, plans_dir: str | Path,
                   categories: CategoryMap, major: str | None = None,
                   max_cells: int | None = DEFAULT_MAX_CELLS, legacy_columns: bool = False
                   ) -> CheckReport:
    """Read ``path`` as a run of ``year`` (and ``major``) would; report, never raise a refusal."""
    report = CheckReport(year=year, major=major)
    try:
        major = resolve(plans_dir, year, major)
        report.major = major
    except PredictionError as exc:
        report.refuse(exc)
        return report
    try:
        cohort = read_grades(path, max_cells=max_cells, require_major=major is None,
                             legacy_columns=legacy_columns)
    except PredictionError as exc:
        report.refuse(exc)
        return report
    _describe_cohort(report, cohort)
    _describe_majors(report, cohort, year, major, Path(plans_dir), categories)
    return report


def _describe_cohort(report: CheckReport, cohort: Cohort) -> None:
    if cohort.header is not None:
        h = cohort.header
        report.header = {"row": h.row, "sheet": h.sheet, "found": h.found, "mapped": h.mapped}
    report.students = len(cohort.students)
    report.rows_kept = len(cohort.scores)
    report.skipped = [{"reason": r, "text": SKIP_REASONS[r], "rows": n}
                      for r, n in cohort.skipped.most_common()]
    report.warnings.extend(w for w in cohort.warnings if not w.startswith("跳过 "))


def _describe_majors(report: CheckReport, cohort: Cohort, year: int, major: str | None,
                     plans_dir: Path, categories: CategoryMap) -> None:
    plan_files = find_plans(plans_dir, year)
    codes = major_codes(plans_dir)
    # Students, kept rows and distinct courses per recorded major, in one pass.
    scores = cohort.scores
    if cohort.has_major_column:
        group = scores["sid"].map(lambda s: cohort.majors[s] or "（空）")
        students = Counter(cohort.majors[s] or "（空）" for s in cohort.students)
        rows = group.value_counts().to_dict()
        courses = {m: set(c) for m, c in scores.groupby(group, sort=False)["course"].unique()
                   .items()}
    else:  # no major column (a chosen major, or legacy): every student is in every major
        everyone = len(cohort.students)
        students = Counter(dict.fromkeys(plan_files, everyone))
        rows = dict.fromkeys(plan_files, len(scores))
        courses = dict.fromkeys(plan_files, set(scores["course"].unique()))
    wanted = [major] if major else ordered(list(plan_files), codes)
    names = wanted + [m for m in students if m not in plan_files and major is None]
    years = plan_years(plans_dir)
    best_votes: Counter = Counter()
    for name in names:
        sids = students.get(name, 0)
        entry: dict[str, Any] = {"major": name, "code": code_for(name, codes) if name in
                                 plan_files else None, "students": sids,
                                 "has_plan": name in plan_files, "rows": rows.get(name, 0)}
        file_courses = courses.get(name, set())
        if name in plan_files:
            try:
                plan = read_plan(plan_files[name], year, name, categories)
            except PredictionError as exc:
                report.refuse(exc)
                continue
            cov = coverage(plan, file_courses)
            best = best_year(plans_dir, categories, name, file_courses, years) if sids else None
            entry.update(cov.to_dict(), unmapped_categories=plan.unmapped_categories,
                         best_year=best[0] if best else None)
            if best is not None:
                best_votes[best[0]] += sids
            if sids and cov.share < LOW_COVERAGE:
                warning = coverage_warning(name, year, cov, best)
                if warning:
                    report.warnings.append(warning)
            if not sids:
                report.warnings.append(f"成绩文件中没有{name}专业的学生，将跳过该专业")
        elif sids:
            report.warnings.append(f"{sids} 名学生的专业“{name}”没有 {year} 级培养方案，不会预测")
        report.majors.append(entry)
    if best_votes:
        report.best_year = best_votes.most_common(1)[0][0]
    if report.ok and not any(m["has_plan"] and m["students"] for m in report.majors):
        report.refuse(PredictionError("NO_STUDENTS_FOR_MAJOR",
                                      "成绩文件中没有任何所选专业的学生，没有可预测的数据"))
