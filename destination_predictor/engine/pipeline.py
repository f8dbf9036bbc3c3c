"""One prediction run: read the workbook once, predict every major in one
batched model call per chunk, write the workbooks atomically.

``Engine`` holds what is expensive and read-only (the model, the category
map) and is shared by threads; everything per run lives in locals.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from . import features, inverse
from .categories import CategoryMap, load_category_map
from .check import CheckReport, check_workbook
from .coverage import LOW_COVERAGE, best_year, coverage, coverage_warning
from .errors import PredictionCancelled, PredictionError
from .excel import DEFAULT_MAX_CELLS
from .grades import Cohort, grade_matrix, read_grades
from .inverse import CancelToken
from .majors import catalogue, code_for, major_codes, ordered, resolve
from .model import DestinationModel
from .options import PredictConfig
from .plans import Plan, find_plans, read_plan
from .reports import write_reports
from .results import MajorResult, summarize
from .whatif import WhatIfCache

ProgressFn = Callable[[int, str], None]
# Measured (README 性能): two processes write 20,000 students' workbooks in
# about 60% of the time on an idle 2-core machine, with no extra CPU time, so
# nothing is lost when the cores are busy; more than the cores never pays.
DEFAULT_WRITE_PROCESSES = 2
# More distinct majors without a plan than this are summarised in one warning.
MAX_LISTED_MAJORS = 5


@dataclass
class RunResult:
    """Written workbooks (per major, then ``_All``), a summary and warnings."""

    files: list[Path]
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class Engine:
    """The model, plans directory and category map; ``run`` is thread-safe."""

    def __init__(self, model_dir: str | Path, plans_dir: str | Path,
                 category_map: str | Path | None = None, *,
                 max_cells: int = DEFAULT_MAX_CELLS,
                 write_processes: int = DEFAULT_WRITE_PROCESSES) -> None:
        self.plans_dir = Path(plans_dir)
        self.max_cells = max_cells  # rows x columns a grade sheet may reach
        # Processes that write one run's workbooks (reports.write_reports): the
        # run's own plus forked children when the output is big enough; never
        # more than this process may run on.
        self.write_processes = max(1, min(write_processes, _cores()))
        self.categories: CategoryMap = load_category_map(category_map)
        self.model = DestinationModel.load(model_dir)
        # CatBoost's predict is not documented as re-entrant; serialise it.
        self._predict_lock = threading.Lock()
        self.whatif_cache = WhatIfCache()  # plans and thresholds of what-if answers

    @property
    def model_version(self) -> str:
        return self.model.version

    def fingerprint(self, year: int, major: str | None) -> str:
        """What a run's results depend on besides the upload and the options:
        the engine version, the model, the category map, ``majors.json`` and
        the content of every plan the run would read. Two runs with the same
        fingerprint, upload and options write the same workbooks (the result
        cache relies on it: a plan edited in place gives a new fingerprint)."""
        digest = hashlib.sha256()
        digest.update(f"engine={__version__}\nmodel={self.model.version}\n".encode())
        digest.update(self.categories.digest.encode())
        plans = find_plans(self.plans_dir, year)
        names = [major] if major is not None and major in plans else sorted(plans)
        for path in [self.plans_dir / "majors.json", *(plans[m] for m in names)]:
            digest.update(f"\n{path.name}\n".encode())
            if path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def check(self, scores_file: str | Path, year: int, *, major: str | None = None,
              config: PredictConfig | None = None) -> CheckReport:
        """What a ``run`` with these arguments would find and refuse, without predicting."""
        config = config or PredictConfig()
        return check_workbook(scores_file, year, plans_dir=self.plans_dir,
                              categories=self.categories, major=major, max_cells=self.max_cells,
                              legacy_columns=config.legacy_columns)

    def _coverage_warnings(self, plan: Plan, cohort: Cohort, sids: list[str]) -> list[str]:
        """A warning when few of the plan's required courses appear for these students
        (a wrong year, or the demo plans with real grades), naming the best year."""
        taken = cohort.scores.loc[cohort.scores["sid"].isin(sids), "course"]
        file_courses = set(taken.unique())
        cov = coverage(plan, file_courses)
        if cov.share >= LOW_COVERAGE:
            return []
        best = best_year(self.plans_dir, self.categories, plan.major, file_courses)
        warning = coverage_warning(plan.major, plan.year, cov, best)
        return [warning] if warning else []

    @property
    def is_demo_model(self) -> bool:
        """The bundled demo model (trained on synthetic data): every answer says so."""
        return self.model.is_demo

    def majors_by_year(self) -> dict[int, list[dict[str, str]]]:
        return catalogue(self.plans_dir)

    def resolve_major(self, year: int, major: str | None) -> str | None:
        """The plan name for ``major`` (name or code) in ``year``; see ``majors.resolve``."""
        return resolve(self.plans_dir, year, major)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        with self._predict_lock:
            return self.model.predict(x)

    def predict_major(self, plan: Plan, code: str, cohort: Cohort, sids: list[str],
                      config: PredictConfig, cancel: CancelToken | None = None) -> MajorResult:
        """One major: its students' grades through every step of the algorithm."""
        layout = features.PlanLayout(plan)
        by_course = grade_matrix(cohort, sids, layout.courses)   # (n, n_courses), NaN = none
        taken_course = ~np.isnan(by_course)
        values = by_course[:, layout.course_index]               # (n, n_rows): a column per plan row
        taken = taken_course[:, layout.course_index]
        stats = self.model.strength_stats(plan.major)
        current = features.build(values, taken, layout, stats)   # (n, N_FEATURES)
        thresholds = None
        if config.with_uniform_inverse:
            thresholds = inverse.uniform_thresholds(values, taken, layout, stats, self._predict,
                                                    config.min_grade, config.max_grade, cancel)
        return MajorResult(
            major=plan.major, code=code, sids=sids, courses=layout.courses,
            required_rows=layout.n_rows,
            grade_counts=np.array([cohort.courses_taken[s] for s in sids], dtype=np.int64),
            features=current[:, :features.N_CATEGORIES], probs=self._predict(current),
            taken=taken_course, missing=inverse.missing_courses(~taken, plan),
            unknown_credits=inverse.unknown_credits(~taken, layout), thresholds=thresholds,
            min_grade=config.min_grade, max_grade=config.max_grade,
        )

    def run(self, scores_file: str | Path, year: int, *, major: str | None = None,
            config: PredictConfig | None = None, out_dir: str | Path = ".",
            file_prefix: str = "", progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> RunResult:
        """Predict every major of ``year`` (or just ``major``) and write the workbooks."""
        config = config or PredictConfig()
        report = progress or (lambda _p, _m: None)
        stopwatch = _Stopwatch()

        def check_cancel() -> None:
            if cancel is not None and cancel.is_set():
                raise PredictionCancelled()

        major = resolve(self.plans_dir, year, major)
        plan_files = find_plans(self.plans_dir, year)
        codes = major_codes(self.plans_dir)
        wanted = [major] if major else ordered(list(plan_files), codes)

        report(2, "正在读取成绩文件...")
        with stopwatch("read"):
            cohort = read_grades(scores_file, max_cells=self.max_cells,
                                 require_major=major is None,
                                 legacy_columns=config.legacy_columns)
        check_cancel()
        report(10, f"已读取成绩文件：{len(cohort.students)} 名学生")
        plans = {m: read_plan(plan_files[m], year, m, self.categories) for m in wanted}
        warnings = [*cohort.warnings, *_plan_warnings(plans.values()),
                    *_orphan_warnings(cohort, set(plan_files), year)]

        results: list[MajorResult] = []
        with stopwatch("predict"):
            for i, m in enumerate(wanted):
                check_cancel()
                sids = cohort.students_of(m)
                if not sids:
                    warnings.append(f"成绩文件中没有{m}专业的学生，已跳过该专业")
                    continue
                report(10 + int(75 * i / len(wanted)), f"正在预测{m}专业...")
                warnings.extend(self._coverage_warnings(plans[m], cohort, sids))
                results.append(self.predict_major(plans[m], code_for(m, codes), cohort, sids,
                                                  config, cancel))
        if not results:
            raise PredictionError("NO_STUDENTS_FOR_MAJOR",
                                  "成绩文件中没有任何所选专业的学生，没有可预测的数据")

        check_cancel()
        report(88, "正在写入结果文件...")
        with stopwatch("write"):
            files = write_reports(results, year, Path(out_dir), file_prefix,
                                  processes=self.write_processes, cancel=cancel)
        report(100, "预测完成")
        return RunResult(files=files, summary=summarize(results, year, config),
                         warnings=warnings, timings=stopwatch.seconds)


def _cores() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _plan_warnings(plans: Iterable[Plan]) -> list[str]:
    """What each plan's reader skipped, and categories no feature takes."""
    out: list[str] = []
    for plan in plans:
        out.extend(plan.warnings)
        if plan.unmapped_categories:
            out.append(f"{plan.major}：无法映射的课程类别（不计入特征）："
                       f"{'、'.join(plan.unmapped_categories)}")
    return out


def _orphan_warnings(cohort: Cohort, majors_with_plans: set[str], year: int) -> list[str]:
    """Students whose recorded major has no plan of ``year`` are not predicted: one line
    per such major, or -- beyond ``MAX_LISTED_MAJORS`` of them -- one line with the
    count and the largest few (an export with 40,000 distinct majors gave a 7.8 MB
    task status before)."""
    if not cohort.has_major_column:
        return []
    orphans = Counter(cohort.majors[s] or "（空）" for s in cohort.students
                      if cohort.majors[s] not in majors_with_plans)
    if len(orphans) <= MAX_LISTED_MAJORS:
        return [f"{cnt} 名学生的专业“{rec}”没有 {year} 级培养方案，未预测"
                for rec, cnt in orphans.items()]
    examples = "、".join(f"“{_clip(rec)}”（{cnt} 人）"
                        for rec, cnt in orphans.most_common(MAX_LISTED_MAJORS))
    return [f"{sum(orphans.values())} 名学生的专业没有 {year} 级培养方案，未预测："
            f"共 {len(orphans)} 个专业，人数最多的有 {examples} 等"]


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class _Stopwatch:
    """Wall time per named stage, for ``RunResult.timings`` (``make bench`` reads them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - t0
