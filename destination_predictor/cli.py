"""``run_prediction_direct.py``: the prediction as a command (the contract
existing scripts call). Exit 0 on success; on refusal one Chinese line on
stderr, exit 2, and nothing written."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TextIO

from .engine import Engine, PredictConfig, PredictionError, RunResult
from .engine.categories import load_category_map
from .engine.check import CheckReport, check_workbook
from .engine.grades import ROLE_NAMES
from .engine.pipeline import DEFAULT_WRITE_PROCESSES

DEMO_NOTICE = ("注意: 正在使用自带的演示模型（合成数据训练），预测结果不代表真实学生的去向；"
               "真实使用请用 --model-dir 指向真实模型")

PROJECT_DIR = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_prediction_direct.py",
        description="学生去向预测：读取成绩文件，按专业输出预测结果工作簿",
    )
    p.add_argument("--scores_file", "--scores-file", dest="scores_file", required=True,
                   help="成绩文件 (.xlsx/.xls)")
    p.add_argument("--year", required=True, help="年级，如 2023")
    p.add_argument("--major", default=None, help="只预测这个专业（名称或代码）")
    p.add_argument("--config", default=None,
                   help='JSON: {"with_uniform_inverse":1,"min_grade":60,"max_grade":90}')
    p.add_argument("--model-dir", default=str(PROJECT_DIR / "models"))
    p.add_argument("--plans-dir", default=str(PROJECT_DIR / "plans"))
    p.add_argument("--category-map", default=None, help="类别映射 JSON（默认：项目自带映射）")
    p.add_argument("--out-dir", default=".")
    p.add_argument("--check", action="store_true",
                   help="只检查成绩文件（表头、各专业人数、跳过的行、培养方案覆盖、会被拒绝的原因），不预测、不写文件")
    p.add_argument("--legacy-columns", action="store_true",
                   help="原系统的做法：没有学号列时用第一列，没有专业列时每名学生按每个专业预测")
    p.add_argument("--write-processes", type=int, default=DEFAULT_WRITE_PROCESSES,
                   help="写结果工作簿的进程数（输出超过 50 万个单元格时才启用，不超过可用 CPU 数；"
                        f"默认 {DEFAULT_WRITE_PROCESSES}）")
    return p


def _year(text: str) -> int:
    try:
        y = int(str(text).strip())
    except ValueError as exc:
        raise PredictionError("BAD_YEAR", f"年级必须是四位数字，收到: {text}") from exc
    if not 2000 <= y <= 2100:
        raise PredictionError("BAD_YEAR", f"年级必须是四位数字，收到: {text}")
    return y


def print_report(result: RunResult, out: TextIO | None = None) -> None:
    """Per major the numbers operators watch, then every warning. ``out`` is
    looked up at call time (default ``sys.stdout``), so a caller that swaps
    stdout -- pytest's capture, a second ``main()`` in one process -- is honoured."""
    out = out or sys.stdout
    for m in result.summary["majors"]:
        d = m["destinations"]
        line = (f"{m['major']}({m['code']}): 学生 {m['students']} 人; "
                f"保研 {d['1']} / 出国 {d['2']} / 就业 {d['3']}")
        if "s1_at_min_share" in m:
            line += (f"; 阈值=最低分 保研 {m['s1_at_min_share']:.1%} 出国 {m['s2_at_min_share']:.1%}"
                     f"; 全段保研 {m['dominated_by_1_share']:.1%}"
                     f"; 多区间 保研 {m['multiple_intervals_1_share']:.1%}"
                     f" 出国 {m['multiple_intervals_2_share']:.1%}")
        print(line, file=out)
    for f in result.files:
        print(f"已写入: {f}", file=out)
    for w in result.warnings:
        print(f"警告: {w}", file=out)


def print_check(report: CheckReport, out: TextIO | None = None) -> None:
    """The check report as lines a person reads; problems first."""
    out = out or sys.stdout
    print(report.summary, file=out)  # with every refusal a run would give
    if report.header:
        mapped = "、".join(f"{ROLE_NAMES[r].split('（')[0]}←“{h}”"
                          for r, h in report.header["mapped"].items() if h)
        print(f"表头（第 {report.header['row']} 行）: {mapped}", file=out)
    for m in report.majors:
        line = f"{m['major']}: {m['students']} 名学生，{m['rows']} 行"
        if m["has_plan"]:
            line += (f"；培养方案必修课 {m['plan_courses_in_file']}/{m['plan_courses']} 门出现在成绩表中"
                     f"，成绩表课程 {m['file_courses_in_plan']}/{m['file_courses']} 门属于培养方案")
        else:
            line += f"；没有 {report.year} 级培养方案"
        print(line, file=out)
    if report.best_year is not None:
        print(f"最吻合的年级: {report.best_year}", file=out)
    for w in report.warnings:
        print(f"警告: {w}", file=out)


def _check(args: argparse.Namespace, config: PredictConfig, year: int) -> int:
    report = check_workbook(args.scores_file, year, plans_dir=args.plans_dir,
                            categories=load_category_map(args.category_map), major=args.major,
                            legacy_columns=config.legacy_columns)
    print_check(report)
    return 0 if report.ok else 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = PredictConfig.parse(args.config)
        if args.legacy_columns:
            config = dataclasses.replace(config, legacy_columns=True)
        year = _year(args.year)
        if args.check:
            return _check(args, config, year)
        engine = Engine(args.model_dir, args.plans_dir, args.category_map,
                        write_processes=args.write_processes)
        if engine.is_demo_model:
            print(DEMO_NOTICE, file=sys.stderr)
        result = engine.run(args.scores_file, year, major=args.major, config=config,
                            out_dir=args.out_dir)
    except PredictionError as exc:
        print(f"错误: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output directory that cannot be written
        where = exc.filename or args.out_dir
        print(f"错误: 无法读写文件 {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for note in engine.model.load_notes:
        print(f"提示: {note}", file=sys.stderr)
    print_report(result)
    return 0
