"""One prediction run: read the workbook once, predict every major in one
batched model call per chunk, write the workbooks atomically.

``Engine`` holds what is expensive and read-only (the model, the category
map) and is shared by threads; everything per run lives in locals.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import features as feat
from .categories import CategoryMap, load_category_map
from .errors import PredictionCancelled, PredictionError
from .grades import Cohort, read_grades
from .inverse import NO_MISSING, search
from .majors import code_for, major_codes, ordered
from .model import DestinationModel
from .options import PredictConfig
from .plans import Plan, find_plans, plan_years, read_plan
from .reports import MajorResult, major_sheets, summary_frame, write_workbook

ProgressFn = Callable[[int, str], None]
# Elements of one (students x candidates x plan rows) value block; bounds memory.
BLOCK_ELEMENTS = 6_000_000


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


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
                 category_map: str | Path | None = None) -> None:
        self.plans_dir = Path(plans_dir)
        self.categories: CategoryMap = load_category_map(category_map)
        self.model = DestinationModel.load(model_dir)
        # CatBoost's predict is not documented as re-entrant; serialise it.
        self._predict_lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return self.model.version

    def majors_by_year(self) -> dict[int, list[dict[str, str]]]:
        codes = major_codes(self.plans_dir)
        out: dict[int, list[dict[str, str]]] = {}
        for year in plan_years(self.plans_dir):
            names = ordered(list(find_plans(self.plans_dir, year)), codes)
            out[year] = [{"name": m, "code": code_for(m, codes)} for m in names]
        return out

    def _predict(self, x: np.ndarray) -> np.ndarray:
        with self._predict_lock:
            return self.model.predict(x)

    def _features(self, values: np.ndarray, present: np.ndarray, layout: feat.PlanLayout,
                  stats: dict[str, list[float]]) -> np.ndarray:
        f = feat.impute(feat.category_means(values, present, layout))
        return np.column_stack([f, feat.academic_strength(f, stats)])

    def predict_major(self, plan: Plan, code: str, cohort: Cohort, sids: list[str],
                      config: PredictConfig, cancel: CancelToken | None = None) -> MajorResult:
        """Current prediction and (optionally) the inverse search for one major."""
        layout = feat.PlanLayout(plan)
        n, n_courses = len(sids), len(layout.courses)
        grades = np.full((n, n_courses), np.nan)
        sc = cohort.scores
        row_of = {s: i for i, s in enumerate(sids)}
        col_of = {c: j for j, c in enumerate(layout.courses)}
        ri = sc["sid"].map(row_of)
        ci = sc["course"].map(col_of)
        ok = ri.notna() & ci.notna()
        grades[ri[ok].to_numpy(dtype=np.intp), ci[ok].to_numpy(dtype=np.intp)] = sc["grade"][ok]
        taken_course = ~np.isnan(grades)
        values = grades[:, layout.course_index]
        taken = taken_course[:, layout.course_index]
        stats = self.model.strength_stats(plan.major)

        current = self._features(values, taken, layout, stats)
        probs = self._predict(current)

        missing_mask = ~taken
        unknown = np.zeros(n)
        for r in range(layout.n_rows):  # sequential, like the deployed sum()
            unknown = np.where(missing_mask[:, r], unknown + layout.credit[r], unknown)
        names = [r.course for r in plan.rows]
        missing = [[names[r] for r in np.flatnonzero(row)] for row in missing_mask]

        thresholds = None
        if config.with_uniform_inverse:
            thresholds = [NO_MISSING] * n
            need = np.flatnonzero(missing_mask.any(axis=1))
            lo, hi = config.min_grade, config.max_grade
            cand = np.arange(lo, hi + 1, dtype=float)
            k = len(cand)
            step = max(1, BLOCK_ELEMENTS // max(1, k * max(1, layout.n_rows)))
            all_present = np.ones((1, layout.n_rows), dtype=bool)
            for start in range(0, len(need), step):
                if cancel is not None and cancel.is_set():
                    raise PredictionCancelled()
                block = need[start:start + step]
                v = values[block]
                t = taken[block]
                # rows: student-major, candidate-minor -> (m * k, plan rows)
                grid = np.where(t[:, None, :], v[:, None, :], cand[None, :, None])
                grid = grid.reshape(len(block) * k, layout.n_rows)
                present = np.broadcast_to(all_present, grid.shape)
                x = self._features(grid, present, layout, stats)
                pred = (self._predict(x).argmax(axis=1) + 1).reshape(len(block), k)
                for i, row in zip(block, pred.tolist(), strict=True):
                    thresholds[i] = search(row, lo, hi)

        return MajorResult(
            major=plan.major, code=code, sids=sids, courses=layout.courses,
            required_rows=layout.n_rows,
            grade_counts=np.array([cohort.courses_taken[s] for s in sids], dtype=np.int64),
            features=current[:, :9], probs=probs, taken=taken_course, missing=missing,
            unknown_credits=unknown, thresholds=thresholds,
            min_grade=config.min_grade, max_grade=config.max_grade,
        )

    def run(self, scores_file: str | Path, year: int, *, major: str | None = None,
            config: PredictConfig | None = None, out_dir: str | Path = ".",
            file_prefix: str = "", progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> RunResult:
        """Predict every major of ``year`` (or just ``major``) and write the workbooks."""
        config = config or PredictConfig()
        report = progress or (lambda _p, _m: None)

        def check_cancel() -> None:
            if cancel is not None and cancel.is_set():
                raise PredictionCancelled()

        plan_files = find_plans(self.plans_dir, year)
        if not plan_files:
            raise PredictionError("NO_PLANS_FOR_YEAR", f"没有 {year} 级的培养方案")
        codes = major_codes(self.plans_dir)
        if major is not None and major not in plan_files:
            by_code = {code_for(m, codes): m for m in plan_files}
            if major in by_code:
                major = by_code[major]
            else:
                raise PredictionError(
                    "UNKNOWN_MAJOR",
                    f"{year} 级没有专业“{major}”的培养方案（可选：{'、'.join(plan_files)}）",
                )
        wanted = [major] if major else ordered(list(plan_files), codes)

        report(2, "正在读取成绩文件...")
        t0 = time.perf_counter()
        cohort = read_grades(scores_file)
        t_read = time.perf_counter() - t0
        check_cancel()
        report(10, f"已读取成绩文件：{len(cohort.students)} 名学生")
        warnings = list(cohort.warnings)

        plans = {m: read_plan(plan_files[m], year, m, self.categories) for m in wanted}
        for m in wanted:
            warnings.extend(plans[m].warnings)
            unmapped = plans[m].unmapped_categories
            if unmapped:
                warnings.append(f"{m}：无法映射的课程类别（不计入特征）：{'、'.join(unmapped)}")
        if cohort.has_major_column:
            known = set(plan_files)
            orphans: dict[str, int] = {}
            for s in cohort.students:
                rec = cohort.majors[s]
                if rec not in known:
                    key = rec or "（空）"
                    orphans[key] = orphans.get(key, 0) + 1
            for rec, cnt in orphans.items():
                warnings.append(f"{cnt} 名学生的专业“{rec}”没有 {year} 级培养方案，未预测")

        results: list[MajorResult] = []
        t0 = time.perf_counter()
        for i, m in enumerate(wanted):
            check_cancel()
            if cohort.has_major_column:
                sids = [s for s in cohort.students if cohort.majors[s] == m]
            else:
                sids = list(cohort.students)
            if not sids:
                warnings.append(f"成绩文件中没有{m}专业的学生，已跳过该专业")
                continue
            report(10 + int(75 * i / len(wanted)), f"正在预测{m}专业...")
            results.append(self.predict_major(plans[m], code_for(m, codes), cohort, sids,
                                              config, cancel))
        if not results:
            raise PredictionError("NO_STUDENTS_FOR_MAJOR",
                                  "成绩文件中没有任何所选专业的学生，没有可预测的数据")

        t_predict = time.perf_counter() - t0
        check_cancel()
        report(88, "正在写入结果文件...")
        t0 = time.perf_counter()
        files = self._write(results, year, Path(out_dir), file_prefix)
        t_write = time.perf_counter() - t0
        summary = build_summary(results, year, config)
        report(100, "预测完成")
        return RunResult(files=files, summary=summary, warnings=warnings,
                         timings={"read": t_read, "predict": t_predict, "write": t_write})

    def _write(self, results: list[MajorResult], year: int, out_dir: Path,
               prefix: str) -> list[Path]:
        """Stage every workbook, then move them in: a failed run leaves nothing."""
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
        try:
            names: list[str] = []
            pred_frames = []
            for r in results:
                sheets = major_sheets(r)
                pred_frames.append((r.major, sheets[0][1]))
                name = f"{prefix}Cohort{year}_Predictions_{r.code}.xlsx"
                write_workbook(staging / name, sheets)
                names.append(name)
            all_name = f"{prefix}Cohort{year}_Predictions_All.xlsx"
            write_workbook(staging / all_name, [("Sheet1", summary_frame(pred_frames))])
            names.append(all_name)
            final = []
            for name in names:
                target = out_dir / name
                (staging / name).replace(target)
                final.append(target)
            return final
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _share(x: int, n: int) -> float:
    return round(x / n, 4) if n else 0.0


def build_summary(results: list[MajorResult], year: int, config: PredictConfig) -> dict[str, Any]:
    """Per major: counts the operators watch, and histograms the console draws."""
    majors = []
    for r in results:
        n = len(r.sids)
        pred = r.pred
        entry: dict[str, Any] = {
            "major": r.major, "code": r.code, "students": n,
            "destinations": {str(k): int((pred == k).sum()) for k in (1, 2, 3)},
        }
        if r.thresholds is not None:
            ts = [t for t in r.thresholds if t.reachable_1 is not None]
            lo = config.min_grade
            entry.update({
                "no_missing_courses": n - len(ts),
                "s1_at_min": sum(1 for t in ts if t.s1 == lo),
                "s2_at_min": sum(1 for t in ts if t.s2 == lo),
                "dominated_by_1": sum(t.dominated_by_1 for t in ts),
                "multiple_intervals_1": sum(t.multi_1 for t in ts),
                "multiple_intervals_2": sum(t.multi_2 for t in ts),
                "reachable_1": sum(1 for t in ts if t.reachable_1),
                "reachable_2": sum(1 for t in ts if t.reachable_2),
                "histogram_1": _histogram([t.s1 for t in ts if t.reachable_1]),
                "histogram_2": _histogram([t.s2 for t in ts if t.reachable_2]),
            })
            for key in ("s1_at_min", "s2_at_min", "dominated_by_1",
                        "multiple_intervals_1", "multiple_intervals_2"):
                entry[f"{key}_share"] = _share(entry[key], n)
        majors.append(entry)
    return {
        "year": year,
        "config": config.to_dict(),
        "students": sum(m["students"] for m in majors),
        "majors": majors,
    }


def _histogram(values: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in sorted(int(x) for x in values):
        out[str(v)] = out.get(str(v), 0) + 1
    return out
