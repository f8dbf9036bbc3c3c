"""End-to-end check of a running prediction service (``test-async-api.py``).

Operators run it right after a deploy (the guide's step 2, "验证阿里云服务"):
it walks the same path a real client takes -- health, majors, upload a grade
workbook, poll every 3 s, download every result -- and then checks that the
service refuses bad requests the way the contract says. Each check is
recorded with a Chinese/English line; the exit status is 0 only when every
check passed, so scripts and CI can rely on it.

The result workbooks are checked against docs/algorithm.md §8-9: the
``Predictions`` sheet first with its fixed leading columns,
``UniformThresholds`` with its exact columns (when the inverse search is on),
and the summary ``_All`` workbook's ``Sheet1``.

It needs only ``requests`` and the standard library (requirements-client.txt),
because operators run it from any machine, not just the server's venv: the
grade workbook it uploads and the result workbooks it reads are written and
read here with ``zipfile`` and ``xml.etree`` (an .xlsx is XML in a zip). The
workbook has students of each of the year's majors the service lists, graded
in the required courses of the checkout's plans (``--plans-dir``) when they are
there, and in made-up courses otherwise -- the service ignores courses its plan
does not have, so the task still runs end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import requests

from .api import ApiClient, ApiError

PREDICTION_PREFIX: tuple[str, ...] = (
    "SNH", "major", "grade", "count",
    "current_public", "current_practice", "current_math_science", "current_political",
    "current_basic_subject", "current_innovation", "current_english", "current_basic_major",
    "current_major",
    "current_pred", "current_prob1", "current_prob2", "current_prob3",
    "target1_min_required_score", "target2_min_required_score",
)
THRESHOLD_HEADER: tuple[str, ...] = (
    "SNH", "Major", "s_min_for_1", "s_min_for_2", "UnknownCredits", "Cost_1", "Cost_2",
    "Ranges_1", "Ranges_2", "missing_courses", "target1_scores", "target2_scores",
    "s_min_for_1_policy", "s_min_for_2_policy", "MultipleIntervalsFlag_1",
    "MultipleIntervalsFlag_2", "DominatedBy1",
)
MISSING_HEADER: tuple[str, ...] = ("SNH", "Course_Name", "target1_score", "target2_score")

_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_PROJECT_DIR = Path(__file__).resolve().parents[2]


def say(line: str) -> None:
    """Print at once: operators watch the progress lines live, often through ssh."""
    print(line, flush=True)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """The checks done so far, printed as they happen."""

    checks: list[Check] = field(default_factory=list)
    out: Callable[[str], None] = say

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        mark = "通过 PASS" if ok else "失败 FAIL"
        self.out(f"[{mark}] {name}" + (f" -- {detail}" if detail else ""))
        return ok

    def run(self, name: str, fn: Callable[[], str | None]) -> bool:
        """Run one check; any exception is that check's failure, never a traceback.

        ``fn`` returns a detail line on success and raises on failure.
        """
        try:
            detail = fn()
        except ApiError as exc:
            return self.add(name, False, str(exc))
        except Exception as exc:  # noqa: BLE001 -- a check that crashes is a failed check
            return self.add(name, False, f"{type(exc).__name__}: {exc}")
        return self.add(name, True, detail or "")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def summary(self) -> str:
        failed = [c for c in self.checks if not c.ok]
        lines = ["", "=" * 60,
                 f"汇总 Summary: {len(self.checks) - len(failed)}/{len(self.checks)} 项通过 passed"]
        for c in failed:
            lines.append(f"  失败 FAILED: {c.name}: {c.detail}")
        lines.append("结论 Result: " + ("全部通过 ALL PASSED" if not failed else "存在失败 FAILED"))
        return "\n".join(lines)


class CheckFailed(AssertionError):
    """A check's expectation not met; the message says what was expected."""


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# --- .xlsx with the standard library -------------------------------------------------

_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_DOC_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]+)")


def _column(ref: str | None) -> int | None:
    """0-based column of a cell reference such as ``AB12``."""
    m = _CELL_REF.match(ref or "")
    if not m:
        return None
    n = 0
    for ch in m.group(1):
        n = n * 26 + ord(ch) - 64
    return n - 1


def _text_of(node: ElementTree.Element) -> str:
    """The text of a shared or inline string: plain ``<t>`` or rich-text runs
    (phonetic hints, ``<rPh>``, are not part of the value)."""
    parts = [t.text or "" for t in node.findall(f"{_MAIN_NS}t")]
    parts += [t.text or "" for t in node.findall(f"{_MAIN_NS}r/{_MAIN_NS}t")]
    return "".join(parts)


class Workbook:
    """The sheets of an .xlsx file and their cell values, read as XML.

    Enough for what the check looks at (sheet names, header rows, row counts):
    shared, inline and formula strings, numbers and booleans; styles and dates
    are not interpreted.
    """

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path)
        try:
            book = ElementTree.fromstring(self._zip.read("xl/workbook.xml"))
            rels = ElementTree.fromstring(self._zip.read("xl/_rels/workbook.xml.rels"))
        except (KeyError, ElementTree.ParseError) as exc:
            self._zip.close()
            raise CheckFailed(f"{path.name} 不是有效的 Excel 工作簿：{exc}") from None
        targets = {r.get("Id"): r.get("Target") or ""
                   for r in rels.iter(f"{_PKG_REL_NS}Relationship")}
        self._sheets: dict[str, str] = {}
        for sheet in book.iter(f"{_MAIN_NS}sheet"):
            target = targets.get(sheet.get(f"{_DOC_REL_NS}id"), "")
            part = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
                "xl/" + target)
            self._sheets[sheet.get("name") or ""] = part
        self._shared: list[str] | None = None

    @property
    def sheetnames(self) -> list[str]:
        return list(self._sheets)

    def _shared_strings(self) -> list[str]:
        if self._shared is None:
            self._shared = []
            if "xl/sharedStrings.xml" in self._zip.namelist():
                with self._zip.open("xl/sharedStrings.xml") as fh:
                    for _, node in ElementTree.iterparse(fh):
                        if node.tag == f"{_MAIN_NS}si":
                            self._shared.append(_text_of(node))
                            node.clear()
        return self._shared

    def _value(self, cell: ElementTree.Element) -> Any:
        kind = cell.get("t")
        if kind == "inlineStr":
            inline = cell.find(f"{_MAIN_NS}is")
            return _text_of(inline) if inline is not None else ""
        v = cell.find(f"{_MAIN_NS}v")
        if v is None or v.text is None:
            return None
        if kind == "s":
            return self._shared_strings()[int(v.text)]
        if kind in ("str", "e"):
            return v.text
        if kind == "b":
            return v.text == "1"
        number = float(v.text)
        return int(number) if number.is_integer() else number

    def rows(self, name: str) -> Iterator[list[Any]]:
        """Each non-empty row of the sheet as a list of values (``None`` for gaps)."""
        with self._zip.open(self._sheets[name]) as fh:
            for _, node in ElementTree.iterparse(fh):
                if node.tag != f"{_MAIN_NS}row":
                    continue
                cells: dict[int, Any] = {}
                for cell in node.iter(f"{_MAIN_NS}c"):
                    col = _column(cell.get("r"))
                    cells[len(cells) if col is None else col] = self._value(cell)
                node.clear()
                yield [cells.get(i) for i in range(max(cells) + 1)] if cells else []

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cell_xml(ref: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    return (f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">'
            f'{escape(str(value))}</t></is></c>')


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def write_workbook(path: Path, rows: Sequence[Sequence[Any]], sheet: str = "Sheet1") -> Path:
    """A minimal valid .xlsx (one sheet, inline strings) that Excel, WPS,
    LibreOffice and the service's reader open."""
    width = max((len(r) for r in rows), default=1)
    body = "".join(
        f'<row r="{i}">' + "".join(_cell_xml(f"{_column_letters(j)}{i}", v)
                                   for j, v in enumerate(row)) + "</row>"
        for i, row in enumerate(rows, start=1))
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    ctype = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ctype}.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            f'ContentType="{ctype}.worksheet+xml"/></Types>'),
        "_rels/.rels": (
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
            f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
            f'<sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/worksheet" '
            f'Target="worksheets/sheet1.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": (
            f'<worksheet xmlns="{main}"><dimension ref="A1:{_column_letters(width - 1)}'
            f'{max(len(rows), 1)}"/><sheetData>{body}</sheetData></worksheet>'),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, xml in parts.items():
            zf.writestr(name, head + xml)
    return path


# --- the grade workbook it uploads ---------------------------------------------------

GRADE_HEADER: tuple[str, ...] = ("SNH", "Current_Major", "Course_Name", "Grade",
                                 "Course_Attribute")
GENERIC_COURSES: tuple[str, ...] = tuple(f"端到端检查课程{i:02d}" for i in range(1, 21))


def plan_courses(plans_dir: Path, year: int, major: str) -> list[str]:
    """The required courses of a plan in the checkout (plan order, each once);
    empty when the plan is not there or not readable."""
    path = plans_dir / f"education-plan{year}" / f"{year}级{major}培养方案.xlsx"
    if not path.is_file():
        return []
    try:
        with Workbook(path) as wb:
            rows = list(wb.rows(wb.sheetnames[0]))[1:] if wb.sheetnames else []
    except (CheckFailed, zipfile.BadZipFile, ElementTree.ParseError, KeyError, OSError):
        return []
    names = [str(r[2]).strip() for r in rows
             if len(r) > 8 and r[2] is not None and "必修" in str(r[8] or "")]
    return list(dict.fromkeys(n for n in names if n))


def local_majors(plans_dir: Path, year: int) -> list[str]:
    """The majors with a plan for ``year`` in the checkout, by file name."""
    folder = plans_dir / f"education-plan{year}"
    prefix, suffix = f"{year}级", "培养方案.xlsx"
    names = [p.name for p in folder.glob(f"{prefix}*{suffix}")] if folder.is_dir() else []
    return sorted(n[len(prefix):-len(suffix)] for n in names if len(n) > len(prefix + suffix))


@dataclass
class GradeWorkbook:
    path: Path
    students: int
    majors: list[str]
    planned: list[str]    # majors graded in their plan's courses
    generic: list[str]    # majors graded in made-up courses (no plan here)


def make_grade_workbook(path: Path, year: int, majors: Sequence[str], students: int,
                        plans_dir: Path, seed: int) -> GradeWorkbook:
    """Students spread over ``majors``, each graded in about 60% of the major's
    required courses (the earlier part of a plan, as mid-way through studies)."""
    rng = random.Random(seed)
    courses = {m: plan_courses(plans_dir, year, m) for m in majors}
    rows: list[list[Any]] = [list(GRADE_HEADER)]
    for i in range(students):
        major = majors[i % len(majors)]
        names = courses[major] or list(GENERIC_COURSES)
        level = rng.gauss(78, 8)
        snh = hashlib.sha1(f"apicheck-{seed}-{i}".encode()).hexdigest()
        taken = names[:max(1, round(len(names) * rng.uniform(0.5, 0.7)))]
        for course in taken:
            grade = round(min(100.0, max(40.0, rng.gauss(level, 6))))
            rows.append([snh, major, course, grade, "必修"])
    write_workbook(path, rows)
    return GradeWorkbook(path, students, list(majors), [m for m in majors if courses[m]],
                         [m for m in majors if not courses[m]])


# --- workbook checks ---------------------------------------------------------------


def _sheet_rows(rows: Iterator[list[Any]]) -> tuple[list[Any], int]:
    """Header row and the number of data rows of a sheet."""
    header = list(next(rows, ()) or ())
    while header and header[-1] is None:
        header.pop()
    count = sum(1 for r in rows if any(v is not None for v in r))
    return header, count


def check_major_workbook(path: Path, inverse: bool) -> tuple[int, str]:
    """One major's ``Cohort{Y}_Predictions_{code}.xlsx``; returns (rows, detail)."""
    wb = Workbook(path)
    try:
        names = wb.sheetnames
        _expect(bool(names) and names[0] == "Predictions",
                f"第一个工作表应为 Predictions，实际 {names}")
        header, rows = _sheet_rows(wb.rows("Predictions"))
        n = len(PREDICTION_PREFIX)
        _expect(tuple(header[:n]) == PREDICTION_PREFIX,
                f"Predictions 列应以 {list(PREDICTION_PREFIX)} 开头，实际 {header[:n]}")
        courses = header[n:]
        _expect(all(isinstance(c, str) and c for c in courses), "课程列名应为非空文本")
        _expect(len(set(courses)) == len(courses), "课程列名不应重复")
        _expect(rows > 0, "Predictions 没有数据行")
        if inverse:
            _expect("UniformThresholds" in names, f"缺少 UniformThresholds 工作表：{names}")
            t_header, t_rows = _sheet_rows(wb.rows("UniformThresholds"))
            _expect(tuple(t_header) == THRESHOLD_HEADER,
                    f"UniformThresholds 列应为 {list(THRESHOLD_HEADER)}，实际 {t_header}")
            _expect(t_rows == rows, f"UniformThresholds 行数 {t_rows} 与 Predictions {rows} 不一致")
        if "MissingCoursesScores" in names:
            m_header, _ = _sheet_rows(wb.rows("MissingCoursesScores"))
            _expect(tuple(m_header) == MISSING_HEADER,
                    f"MissingCoursesScores 列应为 {list(MISSING_HEADER)}，实际 {m_header}")
        return rows, f"{rows} 名学生, {len(courses)} 门课程列, 工作表 {names}"
    finally:
        wb.close()


def check_summary_workbook(path: Path, expected_rows: int | None) -> str:
    """``Cohort{Y}_Predictions_All.xlsx``: ``Sheet1`` = every major's Predictions + ``Major``."""
    wb = Workbook(path)
    try:
        names = wb.sheetnames
        _expect(bool(names) and names[0] == "Sheet1", f"汇总表第一个工作表应为 Sheet1，实际 {names}")
        header, rows = _sheet_rows(wb.rows("Sheet1"))
        n = len(PREDICTION_PREFIX)
        _expect(tuple(header[:n]) == PREDICTION_PREFIX,
                f"Sheet1 列应以 {list(PREDICTION_PREFIX)} 开头，实际 {header[:n]}")
        _expect("Major" in header, "Sheet1 缺少 Major 列")
        if expected_rows is not None:
            _expect(rows == expected_rows,
                    f"Sheet1 行数 {rows} 应等于各专业 Predictions 行数之和 {expected_rows}")
        return f"Sheet1 {rows} 行, {len(header)} 列"
    finally:
        wb.close()


# --- refusal checks ------------------------------------------------------------------


def _expect_refusal(resp: requests.Response, status: int) -> str:
    """The contract's error shape: the status, JSON ``success: false``, a code and a message."""
    _expect(resp.status_code == status, f"应返回 HTTP {status}，实际 {resp.status_code}")
    try:
        body = resp.json()
    except ValueError:
        raise CheckFailed(f"错误响应应为 JSON，实际 Content-Type "
                          f"{resp.headers.get('Content-Type')}") from None
    _expect(isinstance(body, dict) and body.get("success") is False,
            f"错误响应应含 success: false，实际 {str(body)[:200]}")
    code, error = body.get("code"), body.get("error")
    _expect(isinstance(code, str) and bool(_CODE_RE.match(code)),
            f"code 应为大写下划线形式，实际 {code!r}")
    _expect(isinstance(error, str) and bool(error.strip()), "error 应为非空的说明文字")
    return f"HTTP {status} {code}: {error}"


# --- the run -------------------------------------------------------------------------


@dataclass
class Options:
    base_url: str
    token: str | None
    year: int
    file: Path | None
    students: int
    major: str | None
    interval: float
    timeout: float
    out_dir: Path | None
    plans_dir: Path
    request_timeout: float
    seed: int


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="test-async-api.py",
        description="对运行中的预测服务做端到端检查（健康、专业、完整异步预测、结果下载、错误处理）。"
                    " End-to-end check of a running prediction service.",
    )
    p.add_argument("--base-url", default=os.environ.get("PREDICT_BASE_URL"),
                   help="服务地址，如 http://服务器:8080（或环境变量 PREDICT_BASE_URL）")
    p.add_argument("--token", default=os.environ.get("PREDICT_API_TOKEN"),
                   help="API 令牌（或环境变量 PREDICT_API_TOKEN）")
    p.add_argument("--year", type=int, default=2024, help="年级，默认 2024")
    p.add_argument("--file", type=Path, help="上传这个成绩文件，而不是生成演示成绩")
    p.add_argument("--students", type=int, default=60,
                   help="生成演示成绩的学生数（分到该年级的各专业），默认 60")
    p.add_argument("--major", help="只预测这个专业（可选）")
    p.add_argument("--interval", type=float, default=3.0, help="轮询间隔秒数，默认 3")
    p.add_argument("--timeout", type=float, default=1800, help="等待任务的最长秒数，默认 1800")
    p.add_argument("--out-dir", type=Path, help="结果文件保存目录（默认临时目录，检查后删除）")
    p.add_argument("--plans-dir", type=Path, default=_PROJECT_DIR / "plans",
                   help="生成演示成绩时从这里读各专业的必修课名，默认项目的 plans/；"
                        "没有该专业的培养方案时使用通用课程名（服务忽略它不认识的课程）")
    p.add_argument("--request-timeout", type=float, default=30, help="单个请求超时秒数")
    p.add_argument("--seed", type=int, default=None,
                   help="演示成绩的随机种子（默认每次不同：相同的文件会命中服务的结果缓存，"
                        "就检查不到一次真实的预测）")
    a = p.parse_args(argv)
    if not a.base_url:
        p.error("需要 --base-url（例如 http://服务器:8080）/ --base-url is required")
    if a.file is not None and not a.file.is_file():
        p.error(f"文件不存在：{a.file}")
    if a.students < 1:
        p.error("--students 至少为 1")
    seed = a.seed if a.seed is not None else secrets.randbelow(2**31)
    return Options(a.base_url, a.token or None, a.year, a.file, a.students, a.major,
                   a.interval, a.timeout, a.out_dir, a.plans_dir, a.request_timeout, seed)


def _chosen_majors(opts: Options, entries: list[dict[str, Any]] | None) -> list[str]:
    """The majors to put students in: the service's for the year, or ``--major``'s.

    When the service did not list them (that check has failed already), the
    checkout's plans for the year stand in, so the task checks still run."""
    if not entries:
        entries = [{"name": m, "code": ""} for m in local_majors(opts.plans_dir, opts.year)]
    _expect(bool(entries), f"没有从服务得到 {opts.year} 级的专业，{opts.plans_dir} 中也没有该年级的"
                           "培养方案，无法生成成绩表（可用 --file 上传自己的成绩文件）")
    if opts.major:
        chosen = [e["name"] for e in entries if opts.major in (e["name"], e["code"])]
        return chosen or [opts.major]
    return [e["name"] for e in entries]


def _inverse_on(task: dict[str, Any]) -> bool:
    """The task's config decides whether ``UniformThresholds`` must exist."""
    config = task.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = None
    if isinstance(config, dict) and "with_uniform_inverse" in config:
        return str(config["with_uniform_inverse"]).strip().lower() not in ("0", "false", "")
    return True


def run(opts: Options, out: Callable[[str], None] = say) -> Report:
    report = Report(out=out)
    client = ApiClient(opts.base_url, token=opts.token, timeout=opts.request_timeout)
    out(f"检查服务 Checking {client.base_url}" + ("（带令牌 with token）" if opts.token else ""))
    with tempfile.TemporaryDirectory(prefix="apicheck-") as tmp, client:
        work = Path(tmp)
        entries = _service_checks(report, client, opts)
        _task_checks(report, client, opts, work, entries)
        _refusal_checks(report, client, opts, work)
    out(report.summary())
    return report


def _service_checks(report: Report, client: ApiClient,
                    opts: Options) -> list[dict[str, Any]] | None:
    """Health, majors, token; returns the year's majors as the service lists them."""
    found: list[dict[str, Any]] = []

    def health() -> str:
        h = client.health()
        _expect(h["status"].lower() in ("ok", "healthy", "up"), f"status 为 {h['status']!r}")
        extra = {k: h[k] for k in ("model_loaded", "model_version", "running", "pending")
                 if k in h}
        return f"status={h['status']} {extra}" if extra else f"status={h['status']}"

    def majors() -> str:
        by_year = client.majors()
        entries = by_year.get(str(opts.year)) or []
        _expect(bool(entries), f"服务没有 {opts.year} 级的培养方案（已有年级：{sorted(by_year)}）")
        found.extend(entries)
        names = "、".join(f"{e['name']}({e['code']})" for e in entries)
        return f"{opts.year} 级 {len(entries)} 个专业：{names}；年级 {sorted(by_year)}"

    report.run("健康检查 GET /health", health)
    report.run("专业列表 GET /api/majors", majors)
    if opts.token:
        def unauthorised() -> str:
            resp = requests.get(client.base_url + "/api/majors", timeout=opts.request_timeout)
            return _expect_refusal(resp, 401)
        report.run("无令牌请求被拒绝 401 without token", unauthorised)
    return found or None


def _task_checks(report: Report, client: ApiClient, opts: Options, work: Path,
                 entries: list[dict[str, Any]] | None) -> None:
    upload: Path | None = opts.file
    if upload is None:
        def make() -> str:
            nonlocal upload
            made = make_grade_workbook(work / f"apicheck_grades_{opts.year}.xlsx", opts.year,
                                       _chosen_majors(opts, entries), opts.students,
                                       opts.plans_dir, opts.seed)
            upload = made.path
            detail = (f"{made.path.name}（{made.students} 名学生, {opts.year} 级 "
                      f"{len(made.majors)} 个专业, seed {opts.seed}）")
            if made.planned:
                detail += f"；培养方案课程：{'、'.join(made.planned)}"
            if made.generic:
                detail += (f"；{opts.plans_dir} 中没有 {'、'.join(made.generic)} 的培养方案，"
                           "使用通用课程名")
            return detail
        if not report.run("生成演示成绩 make grade workbook", make):
            return

    assert upload is not None
    task_id = ""

    def start() -> str:
        nonlocal task_id
        task_id = client.start(upload, opts.year, major=opts.major)
        return f"task_id={task_id}"

    if not report.run("启动任务 POST /api/task/start", start):
        return

    began = time.monotonic()
    seen: list[int] = []

    def show(data: dict[str, Any]) -> None:
        seen.append(data["progress"])
        report.out(f"  [{time.monotonic() - began:6.1f}s] {data['status']:<9} "
                   f"{data['progress']:3d}% {data['message']}")

    final: dict[str, Any] = {}

    def wait() -> str:
        final.update(client.wait(task_id, interval=opts.interval, timeout=opts.timeout,
                                 on_progress=show))
        _expect(final["status"] == "completed",
                f"任务失败：{final.get('error')}（{final.get('error_code')}）")
        _expect(final["progress"] == 100, f"完成时进度应为 100，实际 {final['progress']}")
        _expect(bool(final["result_files"]), "完成的任务没有 result_files")
        return f"用时 {time.monotonic() - began:.1f}s, {len(final['result_files'])} 个结果文件"

    if not report.run("轮询至完成 poll until completed", wait):
        return
    report.add("进度不回退 progress never goes back",
               all(a <= b for a, b in zip(seen, seen[1:], strict=False)), f"{seen}")

    dest = opts.out_dir or work / "results"
    files: list[Path] = []

    def download() -> str:
        files.extend(client.download_all(task_id, dest))
        return f"保存到 {dest}: " + ", ".join(p.name for p in files)

    if not report.run("下载全部结果 download every result file", download):
        return

    inverse = _inverse_on(final)
    majors = [p for p in files if not p.name.endswith("_All.xlsx")]
    summaries = [p for p in files if p.name.endswith("_All.xlsx")]
    report.add("结果包含各专业与汇总 per-major and _All workbooks",
               bool(majors) and len(summaries) == 1,
               f"{len(majors)} 个专业文件, {len(summaries)} 个汇总文件")
    total: int | None = 0
    for path in majors:
        def one(path: Path = path) -> str:
            nonlocal total
            rows, detail = check_major_workbook(path, inverse)
            if total is not None:
                total += rows
            return detail
        if not report.run(f"结果工作簿 {path.name}", one):
            total = None
    for path in summaries:
        report.run(f"汇总工作簿 {path.name}",
                   lambda path=path: check_summary_workbook(path, total))

    def missing_file() -> str:
        resp = client.session.get(
            f"{client.base_url}/api/task/result/{task_id}/not_a_result.xlsx",
            timeout=opts.request_timeout)
        return _expect_refusal(resp, 404)

    report.run("下载不存在的结果文件 404 unknown result file", missing_file)


def _refusal_checks(report: Report, client: ApiClient, opts: Options, work: Path) -> None:
    url = client.base_url + "/api/task/start"

    def no_file() -> str:
        resp = client.session.post(url, data={"year": str(opts.year)},
                                   timeout=opts.request_timeout)
        return _expect_refusal(resp, 400)

    def wrong_type() -> str:
        bogus = work / "not_grades.txt"
        bogus.write_text("这不是成绩表 / not a workbook\n", encoding="utf-8")
        with bogus.open("rb") as fh:
            resp = client.session.post(url, data={"year": str(opts.year)},
                                       files={"file": (bogus.name, fh, "text/plain")},
                                       timeout=opts.request_timeout)
        return _expect_refusal(resp, 400)

    def unknown_task() -> str:
        resp = client.session.get(f"{client.base_url}/api/task/status/{uuid.uuid4()}",
                                  timeout=opts.request_timeout)
        return _expect_refusal(resp, 404)

    report.run("缺少文件被拒绝 400 no file", no_file)
    report.run("错误文件类型被拒绝 400 wrong type", wrong_type)
    report.run("未知任务 404 unknown task", unknown_task)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        report = run(opts)
    except KeyboardInterrupt:
        print("\n已中断 interrupted", file=sys.stderr)
        return 130
    return 0 if report.passed else 1
