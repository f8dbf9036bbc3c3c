"""``import_results.py``: download a completed task's results from the service
and import them into a database in one transaction.

    python import_results.py --base-url http://127.0.0.1:8080 --task-id ID \\
        [--token T] [--database-url URL] [--grades FILE --year YEAR]

Exit 0 after printing the rows imported per major; on any refusal one Chinese
line on stderr, exit 2, and the database unchanged. The token and the database
URL can also come from ``PREDICT_API_TOKEN`` / ``PREDICT_DATABASE_URL`` (keeps
a password off the command line, where ``ps`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..client import ApiClient, ApiError
from .errors import ImportRefused
from .tables import ImportReport, import_results
from .workbooks import majors_of_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="import_results.py",
                                description="下载已完成任务的预测结果并导入数据库（单个事务，失败不改变数据库）")
    p.add_argument("--base-url", required=True, help="预测服务地址，如 http://127.0.0.1:8080")
    p.add_argument("--task-id", required=True, help="任务ID")
    p.add_argument("--token", default=os.environ.get("PREDICT_API_TOKEN") or None,
                   help="访问令牌（默认取环境变量 PREDICT_API_TOKEN）")
    p.add_argument("--database-url", default=os.environ.get("PREDICT_DATABASE_URL") or None,
                   help="数据库地址：postgresql://用户:密码@主机:5432/库名 或 sqlite:///文件；"
                        "默认环境变量 PREDICT_DATABASE_URL，再默认当前目录的 predictions.sqlite3")
    p.add_argument("--grades", default=None, help="同时导入这个成绩文件到 academic_results")
    p.add_argument("--year", default=None, help="成绩文件的年级（与 --grades 一起使用）")
    p.add_argument("--timeout", type=float, default=60, help="单个 HTTP 请求的超时秒数")
    return p


def _grades_year(args: argparse.Namespace) -> int | None:
    if args.grades is None and args.year is None:
        return None
    if args.grades is None or args.year is None:
        raise ImportRefused("BAD_ARGUMENTS", "--grades 和 --year 必须一起使用")
    text = str(args.year).strip()
    if not (text.isascii() and text.isdigit() and len(text) == 4):
        raise ImportRefused("BAD_YEAR", f"年级必须是四位数字，收到: {args.year}")
    return int(text)


def print_report(report: ImportReport) -> None:
    print(f"数据库: {report.database}")
    for t in report.majors:
        extra = f"；新增列 {len(t.added_columns)} 个" if t.added_columns else ""
        print(f"{t.major or t.code}({t.code}): 导入 {t.rows} 行 -> 表 {t.table}"
              f"（替换原有 {t.replaced} 行{extra}）")
    if report.grades is not None:
        g = report.grades
        print(f"成绩: 导入 {g.rows} 行 -> 表 {g.table}（{g.year} 级，替换原有 {g.replaced} 行）")
    print(f"合计: {report.total_rows} 行预测结果")
    for w in report.warnings:
        print(f"警告: {w}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = ApiClient(args.base_url, args.token, timeout=args.timeout)
    except ValueError:
        print(f"错误: 服务地址无效（应形如 http://主机:端口）：{args.base_url}", file=sys.stderr)
        return 2
    try:
        year = _grades_year(args)
        with client, tempfile.TemporaryDirectory(prefix="import-") as tmp:
            status = client.status(args.task_id)
            if status["status"] == "failed":
                raise ImportRefused("TASK_FAILED",
                                    f"任务执行失败，没有可导入的结果：{status.get('error') or '未知原因'}")
            if status["status"] != "completed":
                raise ImportRefused("TASK_NOT_COMPLETED",
                                    f"任务尚未完成（状态 {status['status']}，进度 {status['progress']}%），"
                                    "完成后再导入")
            files = [client.download(args.task_id, name, tmp) for name in status["result_files"]]
            # The majors the task recorded: their codes may come from the service's majors.json.
            report = import_results(files, args.database_url, grades_file=args.grades,
                                    grades_year=year,
                                    major_names=majors_of_summary(status.get("summary")))
    except ImportRefused as exc:
        print(f"错误: {exc.message}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"错误: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    return 0
