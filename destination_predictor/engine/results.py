"""What one major's prediction produced, and the JSON summary of a run.

``MajorResult`` is the hand-over between the computing steps and the
outputs: ``reports`` turns it into workbooks, ``summarize`` into the counts
and histograms the service stores with a task and the console draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inverse import Thresholds
from .options import PredictConfig


@dataclass
class MajorResult:
    """Everything one major's workbook is built from (arrays row-aligned with ``sids``)."""

    major: str
    code: str
    sids: list[str]
    courses: list[str]                 # distinct required courses, plan order
    required_rows: int                 # the ``count`` column
    grade_counts: np.ndarray           # distinct courses with a grade
    features: np.ndarray               # (n, 9) BASE order, imputed, unclipped
    probs: np.ndarray                  # (n, 3)
    taken: np.ndarray                  # (n, len(courses)) bool
    missing: list[list[str]]           # missing plan rows' course names, per student
    unknown_credits: np.ndarray        # U per student
    thresholds: list[Thresholds] | None  # None when the search is off
    min_grade: int
    max_grade: int

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1) + 1

    def s_values(self, k: int) -> np.ndarray:
        if self.thresholds is None:
            return np.full(len(self.sids), np.nan)
        return np.array([float(t.s1 if k == 1 else t.s2) for t in self.thresholds])


def _share(x: int, n: int) -> float:
    return round(x / n, 4) if n else 0.0


def summarize(results: list[MajorResult], year: int, config: PredictConfig) -> dict[str, Any]:
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
