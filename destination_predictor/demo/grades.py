"""Synthetic registrar grade exports (one row per student per course).

Real exports are private, so demos, tests and benchmarks use these. They
follow the real layout (13 columns, trailing spaces in two headers) and the
real mess the reader must survive: text grades, retakes, blank and
out-of-range grades, free electives that must not count, a row without a
student id. Courses come from the education plans of the chosen year, so
the engine finds the students' courses in its plans.

Run ``python -m destination_predictor.demo.grades --year 2024 --students 200
--out demo_grades_2024.xlsx``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xlsxwriter

from ..engine.categories import load_category_map, normalise
from ..engine.plans import Plan, find_plans, read_plan
from ._io import atomic_target

COLUMNS: tuple[str, ...] = (
    "SNH", "Semester_Offered", "Current_Major", "Course_ID", "Course_Name", "Grade",
    "Course_Type", "Course_Attribute ", "Hours", "Credit", "Offering_Unit", "Exam_Type",
    "Assessment_Method ",
)
XLS_MAX_ROWS = 65_535  # data rows below the header in a .xls sheet

TEXT_GRADES: tuple[tuple[int, str], ...] = ((90, "优"), (80, "良"), (70, "中"), (60, "及格"))
FAIL_TEXT = "不及格"
ABSENT_TEXT = "缺考"
FREE_ELECTIVE = "任选课"

# Free electives any student may pick; they never count for the features.
_FREE_ELECTIVES: tuple[tuple[str, float], ...] = (
    ("音乐鉴赏", 1), ("影视作品赏析", 1), ("摄影基础", 1), ("围棋入门", 1),
    ("书法艺术", 1), ("中国古典诗词欣赏", 1.5), ("心理学与生活", 1.5), ("创业管理实务", 2),
    ("网页设计入门", 1.5), ("Python数据分析入门", 2), ("职业生涯规划", 1), ("演讲与口才", 1),
    ("健康生活方式", 1), ("环境与可持续发展", 1.5), ("中国传统节日文化", 1), ("科幻文学导读", 1),
)

# Typical score level of a category relative to the student's own level.
_FEATURE_OFFSET = {
    "public": 3.0, "political": 4.0, "english": -2.0, "math_science": -5.0,
    "basic_subject": -3.0, "basic_major": -1.0, "major": 1.0, "practice": 5.0, "innovation": 3.0,
}
_UNIT = {
    "political": "马克思主义学院", "english": "外国语学院", "math_science": "理学院",
    "public": "公共教学部",
}
_DEFAULT_UNIT = "信息与通信工程学院"


@dataclass
class _Catalogue:
    """Course attributes of one major, one entry per plan row (arrays line up)."""

    names: np.ndarray
    ids: np.ndarray
    categories: np.ndarray
    features: list[str | None]
    credits: np.ndarray
    hours: np.ndarray
    semesters: np.ndarray
    exams: np.ndarray
    attributes: np.ndarray


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def _float(v: object, default: float) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _semester(v: object) -> int:
    """Semester 1-8 from a messy cell; 4 when it cannot be told.

    A "3-4" typed into Excel arrives as a date; its month is the first semester.
    """
    if isinstance(v, datetime | date | pd.Timestamp):
        s = v.month
    elif isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
        s = int(v)
    else:
        m = re.search(r"\d", _text(v))
        s = int(m.group()) if m else 0
    return s if 1 <= s <= 8 else 4


def _raw_rows(path: Path) -> list[list[object]]:
    df = pd.read_excel(path, sheet_name=0, header=0, engine="calamine", dtype=object)
    width = df.shape[1]
    return [list(r) + [None] * (12 - width) for r in df.itertuples(index=False, name=None)]


def _catalogues(plan: Plan) -> tuple[_Catalogue, _Catalogue]:
    """(required rows aligned with ``plan.rows``, elective rows) of one plan."""
    raw = _raw_rows(plan.path)
    req_raw = [r for r in raw if "必修" in _text(r[8]) and _text(r[2])]
    if [_text(r[2]) for r in req_raw] != [row.course for row in plan.rows]:
        # Fall back to the first raw row of each name if the two readings disagree.
        by_name: dict[str, list[object]] = {}
        for r in raw:
            by_name.setdefault(_text(r[2]), r)
        req_raw = [by_name.get(row.course, [None] * 12) for row in plan.rows]
    required = _catalogue(
        req_raw, [row.course for row in plan.rows], [row.category for row in plan.rows],
        [row.feature for row in plan.rows], [row.credit for row in plan.rows], ["必修"] * len(req_raw),
    )
    cmap = load_category_map()
    ele_raw = [r for r in raw if ("选修" in _text(r[8]) or "限选" in _text(r[8])) and _text(r[2])]
    ele_attr = ["限选" if "限选" in _text(r[8]) or i % 3 else "选修" for i, r in enumerate(ele_raw)]
    electives = _catalogue(
        ele_raw, [_text(r[2]) for r in ele_raw], [normalise(r[0]) for r in ele_raw],
        [cmap.lookup(r[0]) for r in ele_raw], [_float(r[3], 0.0) for r in ele_raw], ele_attr,
    )
    return required, electives


def _catalogue(raw: list[list[object]], names: list[str], cats: list[str],
               feats: list[str | None], credits: list[float], attrs: list[str]) -> _Catalogue:
    return _Catalogue(
        names=np.array(names, dtype=object),
        ids=np.array([_text(r[1]) or None for r in raw], dtype=object),
        categories=np.array([c or None for c in cats], dtype=object),
        features=list(feats),
        credits=np.array(credits, dtype=float),
        hours=np.array([_float(r[4], c * 16) for r, c in zip(raw, credits, strict=True)], dtype=float),
        semesters=np.array([_semester(r[7]) for r in raw], dtype=np.int64),
        exams=np.array([_text(r[9]) or "考查" for r in raw], dtype=object),
        attributes=np.array(attrs, dtype=object),
    )


def _free_catalogue() -> _Catalogue:
    names = [n for n, _ in _FREE_ELECTIVES]
    credits = np.array([c for _, c in _FREE_ELECTIVES], dtype=float)
    k = len(names)
    return _Catalogue(
        names=np.array(names, dtype=object),
        ids=np.array([f"99{zlib.crc32(n.encode()) % 10**8:08d}" for n in names], dtype=object),
        categories=np.array(["公共任选课"] * k, dtype=object),
        features=[None] * k,
        credits=credits,
        hours=credits * 16,
        semesters=np.zeros(k, dtype=np.int64),
        exams=np.array(["考查"] * k, dtype=object),
        attributes=np.array([FREE_ELECTIVE] * k, dtype=object),
    )


def _difficulty(names: np.ndarray) -> np.ndarray:
    """A fixed per-course shift in [-4, 4): the same course is as hard everywhere."""
    return np.array([(zlib.crc32(str(n).encode()) % 1000) / 1000 * 8 - 4 for n in names])


@dataclass
class _Taken:
    """Rows taken from one catalogue: student index, catalogue index, semester, score."""

    cat: _Catalogue
    student: np.ndarray
    course: np.ndarray
    semester: np.ndarray
    score: np.ndarray


def _take_required(cat: _Catalogue, students: np.ndarray, ability: np.ndarray,
                   share: np.ndarray, rng: np.random.Generator) -> tuple[_Taken, np.ndarray]:
    """Earlier semesters first, with some shuffling; returns the rows and each student's last semester."""
    s, r = len(students), len(cat.names)
    keys = cat.semesters[None, :] + rng.uniform(-0.9, 0.9, (s, r))
    rank = np.empty((s, r), dtype=np.int64)
    rank[np.arange(s)[:, None], np.argsort(keys, axis=1, kind="stable")] = np.arange(r)
    k = np.rint(share * r).astype(np.int64)
    taken = (rank < k[:, None]) & (rng.random((s, r)) > 0.02)
    last_sem = np.where(taken, cat.semesters[None, :], 1).max(axis=1, initial=1)
    return _scores(cat, students, ability, taken, rng, 0.0), last_sem


def _scores(cat: _Catalogue, students: np.ndarray, ability: np.ndarray, taken: np.ndarray,
            rng: np.random.Generator, bonus: float) -> _Taken:
    offset = np.array([_FEATURE_OFFSET.get(f or "", 0.0) for f in cat.features])
    si, ci = np.nonzero(taken)
    raw = (79.0 + bonus + 6.5 * ability[students[si]] + offset[ci] + _difficulty(cat.names)[ci]
           + rng.normal(0.0, 4.5, len(si)))
    score = np.clip(np.rint(raw), 30, 99)
    return _Taken(cat, students[si], ci, cat.semesters[ci].copy(), score)


def _take_optional(cat: _Catalogue, students: np.ndarray, ability: np.ndarray, last_sem: np.ndarray,
                   per_student: float, rng: np.random.Generator) -> _Taken:
    s, e = len(students), len(cat.names)
    if e == 0 or s == 0:
        return _scores(cat, students, ability, np.zeros((s, e), dtype=bool), rng, 2.0)
    sems = cat.semesters
    if not sems.any():  # free electives: any semester the student has reached
        sems = rng.integers(1, last_sem[:, None] + 1, (s, e))
        avail = np.ones((s, e), dtype=bool)
    else:
        sems = np.broadcast_to(sems, (s, e))
        avail = sems <= last_sem[:, None]
    taken = avail & (rng.random((s, e)) < min(0.9, per_student / e))
    out = _scores(cat, students, ability, taken, rng, 2.0)
    out.semester = sems[np.nonzero(taken)].astype(np.int64)
    return out


def _to_text_grade(score: float) -> str:
    return next((t for lim, t in TEXT_GRADES if score >= lim), FAIL_TEXT)


def _snh_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    raw = rng.bytes(20 * n).hex()
    return np.array([raw[i * 40:(i + 1) * 40] for i in range(n)], dtype=object)


def _plans_for(plans_dir: str | Path, year: int, majors: Sequence[str] | None) -> list[Plan]:
    found = find_plans(plans_dir, year)
    if not found:
        raise ValueError(f"目录 {plans_dir} 中没有 {year} 级的培养方案")
    if majors is None:
        chosen = list(found)
    else:
        missing = [m for m in majors if m not in found]
        if missing:
            raise ValueError(f"{year} 级没有这些专业的培养方案: {'、'.join(missing)}")
        chosen = list(dict.fromkeys(majors))
    cmap = load_category_map()
    return [read_plan(found[m], year, m, cmap) for m in chosen]


def grade_table(year: int, n_students: int, *, plans_dir: str | Path, seed: int = 0,
                majors: Sequence[str] | None = None, completion: float = 0.6,
                messy: bool = True) -> dict[str, np.ndarray]:
    """The export's columns (name -> array) in row order, without writing a file."""
    if n_students < 1:
        raise ValueError("学生人数至少为 1")
    if not 0 < completion <= 1:
        raise ValueError("completion 必须在 (0, 1] 之间")
    plans = _plans_for(plans_dir, year, majors)
    rng = np.random.default_rng([seed, year])
    snh = _snh_ids(n_students, rng)
    major_of = rng.permutation(np.arange(n_students) % len(plans))
    ability = rng.normal(0.0, 1.0, n_students)
    share = np.clip(completion + rng.normal(0.0, 0.07, n_students), 0.05, 1.0)
    free = _free_catalogue()

    parts: list[_Taken] = []
    for m, plan in enumerate(plans):
        students = np.flatnonzero(major_of == m)
        required, electives = _catalogues(plan)
        taken, last_sem = _take_required(required, students, ability, share[students], rng)
        parts += [
            taken,
            _take_optional(electives, students, ability, last_sem, 3.0, rng),
            _take_optional(free, students, ability, last_sem, 1.5, rng),
        ]

    def cat_field(name: str) -> np.ndarray:
        return np.concatenate([getattr(p.cat, name)[p.course] for p in parts])

    student = np.concatenate([p.student for p in parts])
    semester = np.concatenate([p.semester for p in parts])
    score = np.concatenate([p.score for p in parts])
    names, ids, cats = cat_field("names"), cat_field("ids"), cat_field("categories")
    credits, hours, exams, attrs = cat_field("credits"), cat_field("hours"), cat_field("exams"), cat_field("attributes")
    feature = np.concatenate([np.array(p.cat.features, dtype=object)[p.course] for p in parts])
    major = np.array([p.major for p in plans], dtype=object)[major_of[student]]
    seq = np.arange(len(student))

    grade = score.astype(object)
    text = (exams != "考试") & (rng.random(len(grade)) < 0.3)
    grade[text] = [_to_text_grade(v) for v in score[text]]

    if messy:
        # Retakes: every fail and a few random rows appear again later with a new grade.
        numeric_req = np.flatnonzero(~text & (attrs == "必修"))
        fails = numeric_req[score[numeric_req] < 60]
        extra = rng.choice(numeric_req, size=min(len(numeric_req), max(1, n_students // 200)), replace=False)
        again = np.union1d(fails, extra)
        new_grade = rng.integers(60, 90, len(again)).astype(float)
        new_grade[new_grade == score[again]] += 1
        idx = np.concatenate([seq, again])
        student, semester, seq = student[idx], semester[idx], seq[idx]
        semester[len(score):] = np.minimum(semester[len(score):] + 1, 8)
        seq[len(score):] += len(score)
        grade = np.concatenate([grade, np.array(new_grade.tolist(), dtype=object)])
        names, ids, cats, credits, hours, exams, attrs, major, feature = (
            a[idx] for a in (names, ids, cats, credits, hours, exams, attrs, major, feature)
        )

    order = np.lexsort((seq, semester, student))
    cols = {
        "SNH": snh[student[order]],
        "Semester_Offered": np.array([f"{year}-{s}" for s in semester[order]], dtype=object),
        "Current_Major": major[order],
        "Course_ID": ids[order],
        "Course_Name": names[order],
        "Grade": np.array([g if isinstance(g, str) else int(g) for g in grade[order]], dtype=object),
        "Course_Type": cats[order],
        "Course_Attribute ": attrs[order],
        "Hours": hours[order],
        "Credit": credits[order],
        "Offering_Unit": np.array([_UNIT.get(f or "", _DEFAULT_UNIT) for f in feature[order]], dtype=object),
        "Exam_Type": exams[order],
        "Assessment_Method ": np.where(exams[order] == "考试", "闭卷", "开卷").astype(object),
    }
    cols["Offering_Unit"][attrs[order] == FREE_ELECTIVE] = "教务处"
    if messy:
        cols = _mess_up(cols, rng)
    return cols


def _mess_up(cols: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Blank, out-of-range and absent grades on a few rows, plus one row without an id."""
    grade = cols["Grade"]
    n = len(grade)
    numeric = np.flatnonzero(np.fromiter((not isinstance(g, str) for g in grade), bool, n)
                             & (cols["Course_Attribute "] == "必修"))
    n_blank = max(1, n // 500)
    picks = rng.permutation(numeric)[: n_blank + 4]
    for i, row in enumerate(picks):
        if i < n_blank:
            grade[row] = None
        else:
            grade[row] = (105, -3, ABSENT_TEXT, ABSENT_TEXT)[i - n_blank]
    if n:
        at = int(rng.integers(0, n))
        cols = {k: np.insert(v, at + 1, v[at]) for k, v in cols.items()}
        cols["SNH"][at + 1] = None
    return cols


def _write_xls(path: str | Path, cols: dict[str, np.ndarray]) -> None:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    for j, name in enumerate(cols):
        ws.write(0, j, name)
        for i, v in enumerate(cols[name].tolist(), start=1):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            ws.write(i, j, v)
    with atomic_target(path) as tmp:
        wb.save(str(tmp))


def _write_xlsx(path: str | Path, cols: dict[str, np.ndarray]) -> None:
    """One sheet through xlsxwriter's streaming mode; blanks stay empty cells."""
    frame = pd.DataFrame(cols)
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    with atomic_target(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True,
                                            "strings_to_formulas": False,
                                            "strings_to_urls": False})
        ws = wb.add_worksheet("Sheet1")
        ws.write_row(0, 0, list(cols))
        for i, row in enumerate(rows, start=1):
            ws.write_row(i, 0, row)
        wb.close()


def make_grade_workbook(path: str | Path, year: int, n_students: int, *, plans_dir: str | Path,
                        seed: int = 0, majors: Sequence[str] | None = None, fmt: str = "xlsx",
                        completion: float = 0.6, messy: bool = True) -> Path:
    """Write a registrar-style grade export for ``n_students`` of cohort ``year``.

    Same inputs, same cell values. ``completion`` is the typical share of the
    required plan rows a student already has grades for.
    """
    if fmt not in ("xlsx", "xls"):
        raise ValueError(f"不支持的格式: {fmt}（可选 xlsx、xls）")
    cols = grade_table(year, n_students, plans_dir=plans_dir, seed=seed, majors=majors,
                       completion=completion, messy=messy)
    rows = len(cols["SNH"])
    if fmt == "xls":
        if rows > XLS_MAX_ROWS:
            raise ValueError(f"xls 格式最多 {XLS_MAX_ROWS} 行数据，本次有 {rows} 行；请减少学生人数或改用 xlsx")
        _write_xls(path, cols)
    else:
        _write_xlsx(path, cols)
    return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m destination_predictor.demo.grades",
        description="生成示例成绩导出表（每名学生每门课一行）",
    )
    parser.add_argument("--year", type=int, required=True, help="年级，如 2024")
    parser.add_argument("--students", type=int, required=True, help="学生人数")
    parser.add_argument("--out", required=True, help="输出文件（.xlsx 或 .xls）")
    parser.add_argument("--plans-dir", default="plans", help="培养方案目录（默认 plans）")
    parser.add_argument("--seed", type=int, default=0, help="随机种子（默认 0）")
    parser.add_argument("--majors", nargs="+", help="只生成这些专业（默认该年级全部专业）")
    parser.add_argument("--completion", type=float, default=0.6, help="已修必修课比例（默认 0.6）")
    parser.add_argument("--clean", action="store_true", help="不加入重修、空成绩等脏数据")
    args = parser.parse_args(argv)
    fmt = "xls" if str(args.out).lower().endswith(".xls") else "xlsx"
    try:
        out = make_grade_workbook(args.out, args.year, args.students, plans_dir=args.plans_dir,
                                  seed=args.seed, majors=args.majors, fmt=fmt,
                                  completion=args.completion, messy=not args.clean)
    except ValueError as exc:
        print(f"错误: {exc}", file=sys.stderr)
        return 2
    print(f"已写入 {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
