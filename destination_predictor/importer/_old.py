"""Result workbooks (and optionally the grade workbook) into the database the
student-facing application reads.

Why this module exists: the deployed importer deleted a table's rows and then
inserted them in batches without a transaction, so a failure half way left
students with no predictions. Here every import is all-or-nothing:

1. Every workbook is read and checked before the database is touched: a
   missing file, a file that is not a workbook, a sheet without ``SNH``, an
   unknown major code or an empty sheet refuses the import with nothing written.
2. One connection, one transaction for the whole task: for each table the
   existing columns are reflected, every cell is converted to the type of its
   column (a value the column cannot take refuses the import *before* any
   write), then missing columns are added, the old rows deleted and the new
   ones inserted in bulk, and the row count checked. PostgreSQL and SQLite both
   run ``CREATE``/``ALTER TABLE`` inside the transaction, so a failure at any
   point -- a constraint, a killed connection -- rolls everything back and
   readers, who see the old rows until the commit, never see a half import.
3. Importing the same files again leaves the same rows (delete + insert).

Tables: ``Cohort{YEAR}_Predictions_{code}`` with one column per column of the
``Predictions`` sheet, named exactly as in the sheet (quoted identifiers:
course names contain ``*``, parentheses, spaces, ``&``). New tables get
``SNH``/``major`` TEXT, ``grade``/``count``/``current_pred`` BIGINT and every
other column DOUBLE PRECISION (course columns hold scores); an existing table
keeps its own column types and the cells are checked against them.
PostgreSQL cuts identifiers at 63 bytes (21 Chinese characters); such a column
is stored under the name PostgreSQL gives it, the report says so, and two
columns that would end up with the same name refuse the import.

Grades: the registrar columns of ALGORITHM.md section 4 plus ``year`` into
``academic_results``, replacing that year's rows.

Database URLs: ``postgresql://`` (or ``postgres://``) is driven by psycopg 3;
``sqlite:///path`` is a local file; no URL means ``predictions.sqlite3`` in the
given directory. Passwords never appear in a message or a log line.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import python_calamine
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement

from ..engine.errors import PredictionError
from ..engine.majors import MAJOR_CODES

log = logging.getLogger("destination_predictor.importer")

DEFAULT_SQLITE_NAME = "predictions.sqlite3"
PREDICTIONS_SHEET = "Predictions"
GRADES_TABLE = "academic_results"
GRADES_YEAR_COLUMN = "year"

# The registrar export's columns (ALGORITHM.md section 4), in file order.
REGISTRAR_COLUMNS: tuple[str, ...] = (
    "SNH", "Semester_Offered", "Current_Major", "Course_ID", "Course_Name", "Grade",
    "Course_Type", "Course_Attribute", "Hours", "Credit", "Offering_Unit", "Exam_Type",
    "Assessment_Method",
)
# Header spellings older exports use for the same column (matched like the engine does).
_REGISTRAR_ALIASES: dict[str, tuple[str, ...]] = {
    "Current_Major": ("Major",),
    "Grade": ("成绩",),
}
_REGISTRAR_REQUIRED = ("SNH", "Course_Name")

# Column kinds: how a cell is converted before it is written.
TEXT, INTEGER, REAL, BOOLEAN, ANY = "text", "integer", "real", "boolean", "any"
_KIND_NAMES = {TEXT: "文本", INTEGER: "整数", REAL: "数值", BOOLEAN: "布尔", ANY: "任意"}
_NEW_COLUMN_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    TEXT: sa.Text(), INTEGER: sa.BigInteger(), REAL: sa.Double(),
}
PREDICTION_KINDS: dict[str, str] = {
    "SNH": TEXT, "major": TEXT, "Major": TEXT,
    "grade": INTEGER, "count": INTEGER, "current_pred": INTEGER,
}
GRADE_KINDS: dict[str, str] = {name: TEXT for name in REGISTRAR_COLUMNS} | {
    "Hours": REAL, "Credit": REAL, GRADES_YEAR_COLUMN: INTEGER,
}

_RESULT_NAME = re.compile(r"(?:^|_)Cohort(\d{4})_Predictions_(.+)\.xlsx$")
_SUMMARY_CODE = "All"
_XLSX_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_INT64 = 2**63
# One constant for every importer of this project: imports are serialised.
_PG_LOCK_KEY = 0x6470_696D_706F_7274  # "dpimport"
_PG_LOCK_TIMEOUT = "60s"
_CONNECT_TIMEOUT_S = 10


class ImportRefused(PredictionError):
    """The import did not happen and the database is unchanged.

    Same shape as every engine refusal: ``code`` is UPPER_SNAKE for programs,
    ``message`` one Chinese line for people (never containing a password).
    """


# --- database URLs -----------------------------------------------------------------


def resolve_database_url(url: str | None, default_dir: str | Path | None = None) -> URL:
    """The SQLAlchemy URL to use: ``postgresql://`` gets the psycopg driver,
    nothing at all means the local SQLite file ``predictions.sqlite3``.

    A relative SQLite path is taken relative to ``default_dir`` when given (the
    service passes its data dir, so the file does not depend on the cwd
    gunicorn was started from), else to the current directory.
    """
    if url is None or not str(url).strip():
        path = Path(default_dir or Path.cwd()) / DEFAULT_SQLITE_NAME
        return URL.create("sqlite", database=str(path.resolve()))
    try:
        parsed = make_url(str(url).strip())
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise ImportRefused("BAD_DATABASE_URL",
                            "数据库地址格式不正确（示例：postgresql://用户@主机:5432/库名 "
                            "或 sqlite:///predictions.sqlite3）") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ImportRefused("BAD_DATABASE_URL",
                                "SQLite 数据库地址必须指向一个文件，例如 sqlite:///predictions.sqlite3")
        if default_dir is not None and not Path(database).is_absolute():
            database = str(Path(default_dir) / database)
        return parsed.set(drivername="sqlite", database=database)
    raise ImportRefused("UNSUPPORTED_DATABASE",
                        f"不支持的数据库类型“{backend}”：只支持 postgresql:// 和 sqlite:///")


def safe_url(url: URL | str) -> str:
    """The URL as it may appear in messages and logs: password masked."""
    try:
        parsed = url if isinstance(url, URL) else make_url(str(url))
    except Exception:  # noqa: BLE001 - an unparsable URL is not echoed at all
        return "<无法解析的数据库地址>"
    return parsed.render_as_string(hide_password=True)


def open_database(url: URL | str) -> Engine:
    """An engine whose transactions include DDL on both backends.

    pysqlite does not open a transaction before ``CREATE``/``ALTER``, so an
    added column would be committed even when the rest rolls back; the usual
    SQLAlchemy recipe takes the transaction control away from the driver and
    issues ``BEGIN IMMEDIATE`` itself (immediate: two importers queue instead
    of deadlocking on the lock upgrade).
    """
    parsed = url if isinstance(url, URL) else resolve_database_url(str(url))
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(
        parsed, pool_pre_ping=True,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S,
                      "application_name": "destination_predictor_import"},
    )


def _one_line(exc: BaseException, url: URL | None) -> str:
    """The driver's first line, with the password scrubbed in case it echoed it."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if url is not None and url.password:
        secret = str(url.password)
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            text = text.replace(form, "***")
    return text[:300]


# --- reading workbooks -----------------------------------------------------------------


@dataclass
class Sheet:
    """One sheet as imported: header names and rows (with their workbook row numbers)."""

    source: str                       # file name, for messages
    columns: list[str]
    rows: list[list[Any]]
    row_numbers: list[int]            # 1-based rows in the workbook
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResultFile:
    """A per-major result workbook, recognised by its name."""

    path: Path
    year: int
    code: str

    @property
    def table(self) -> str:
        return f"Cohort{self.year}_Predictions_{self.code}"


def _open_workbook(path: Path, what: str, *, allow_xls: bool) -> python_calamine.CalamineWorkbook:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImportRefused("RESULT_FILE_MISSING" if what == "结果文件" else "FILE_NOT_FOUND",
                            f"{what}不存在：{path.name}") from None
    except OSError as exc:
        raise ImportRefused("FILE_UNREADABLE", f"无法读取{what} {path.name}：{exc.strerror}") from None
    if not (head.startswith(_XLSX_MAGIC) or (allow_xls and head == _OLE2_MAGIC)):
        kinds = ".xlsx 或 .xls" if allow_xls else ".xlsx"
        raise ImportRefused("NOT_A_WORKBOOK", f"{what} {path.name} 不是 Excel 工作簿（{kinds}）")
    try:
        return python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise ImportRefused("NOT_A_WORKBOOK",
                            f"{what} {path.name} 已损坏，无法作为 Excel 工作簿打开") from exc


def _sheet_rows(wb: python_calamine.CalamineWorkbook, index: int, path: Path,
                what: str) -> list[list[Any]]:
    try:
        return wb.get_sheet_by_index(index).to_python(skip_empty_area=False)
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated types
        raise ImportRefused("NOT_A_WORKBOOK",
                            f"{what} {path.name} 已损坏，无法读取工作表") from exc


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def _header_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "" if v is None else str(v)


def _data_rows(raw: list[list[Any]], width: int) -> tuple[list[list[Any]], list[int]]:
    rows: list[list[Any]] = []
    numbers: list[int] = []
    for i, row in enumerate(raw[1:], start=2):
        if all(_blank(v) for v in row):
            continue
        cells = list(row[:width]) + [None] * (width - len(row))
        rows.append(cells)
        numbers.append(i)
    return rows, numbers


def read_predictions(path: str | Path) -> Sheet:
    """The ``Predictions`` sheet of a per-major result workbook, header as written."""
    path = Path(path)
    wb = _open_workbook(path, "结果文件", allow_xls=False)
    if PREDICTIONS_SHEET not in wb.sheet_names:
        raise ImportRefused("NOT_PREDICTIONS",
                            f"结果文件 {path.name} 中没有 {PREDICTIONS_SHEET} 工作表，不是预测结果")
    raw = _sheet_rows(wb, wb.sheet_names.index(PREDICTIONS_SHEET), path, "结果文件")
    if not raw:
        raise ImportRefused("EMPTY_RESULT", f"结果文件 {path.name} 的 {PREDICTIONS_SHEET} 工作表是空的")
    header = [_header_text(v) for v in raw[0]]
    while header and header[-1] == "":
        header.pop()
    for i, name in enumerate(header, start=1):
        if name.strip() == "":
            raise ImportRefused("BAD_HEADER", f"结果文件 {path.name} 第 {i} 列没有列名")
    if "SNH" not in header:
        raise ImportRefused("NOT_PREDICTIONS", f"结果文件 {path.name} 没有 SNH 列，不是预测结果")
    _refuse_duplicates(header, path.name)
    rows, numbers = _data_rows(raw, len(header))
    if not rows:
        raise ImportRefused("EMPTY_RESULT",
                            f"结果文件 {path.name} 没有任何学生的数据，拒绝用空表替换数据库中的数据")
    return Sheet(path.name, header, rows, numbers)


def _refuse_duplicates(names: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ImportRefused("DUPLICATE_COLUMN", f"{source} 中列名“{name}”出现了不止一次")
        seen.add(name)


def read_registrar_grades(path: str | Path) -> Sheet:
    """The registrar columns of a grade workbook (first non-empty sheet).

    Headers are matched on stripped, case-insensitive text (real exports spell
    ``Course_Attribute `` with a trailing space); other columns are ignored,
    an absent optional column is stored as NULL, rows without a student id
    are left out and counted.
    """
    path = Path(path)
    wb = _open_workbook(path, "成绩文件", allow_xls=True)
    raw: list[list[Any]] = []
    for i in range(len(wb.sheet_names)):
        raw = _sheet_rows(wb, i, path, "成绩文件")
        while raw and all(_blank(v) for v in raw[-1]):
            raw.pop()
        if raw:
            break
    if not raw:
        raise ImportRefused("EMPTY_WORKBOOK", f"成绩文件 {path.name} 是空的")
    header = [_header_text(v).strip().casefold() for v in raw[0]]
    positions: dict[str, int | None] = {}
    for name in REGISTRAR_COLUMNS:
        wanted = [name.casefold(), *(a.casefold() for a in _REGISTRAR_ALIASES.get(name, ()))]
        positions[name] = next((header.index(w) for w in wanted if w in header), None)
    missing = [n for n in _REGISTRAR_REQUIRED if positions[n] is None]
    if missing:
        raise ImportRefused("NOT_GRADES",
                            f"成绩文件 {path.name} 缺少必需的列：{'、'.join(missing)}")
    notes = [f"成绩文件没有 {n} 列，该列导入为空" for n in REGISTRAR_COLUMNS
             if positions[n] is None]
    rows: list[list[Any]] = []
    numbers: list[int] = []
    no_id = 0
    for number, row in enumerate(raw[1:], start=2):
        if all(_blank(v) for v in row):
            continue
        cells = [row[p] if p is not None and p < len(row) else None
                 for p in positions.values()]
        if _blank(cells[0]):
            no_id += 1
            continue
        rows.append(cells)
        numbers.append(number)
    if no_id:
        notes.append(f"成绩文件中 {no_id} 行学号为空，未导入")
    if not rows:
        raise ImportRefused("EMPTY_WORKBOOK", f"成绩文件 {path.name} 没有任何成绩行")
    return Sheet(path.name, list(REGISTRAR_COLUMNS), rows, numbers, notes)


def classify_results(paths: Iterable[str | Path],
                     known_codes: Iterable[str] | None = None) -> tuple[list[ResultFile], list[str]]:
    """Per-major workbooks by name; the ``_All`` summary and files that are not
    results are returned as skipped names. An unknown major code refuses."""
    codes = set(known_codes if known_codes is not None else MAJOR_CODES.values())
    found: list[ResultFile] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        m = _RESULT_NAME.search(path.name)
        if m is None or m.group(2) == _SUMMARY_CODE:
            skipped.append(path.name)
            continue
        year, code = int(m.group(1)), m.group(2)
        if code not in codes:
            raise ImportRefused("UNKNOWN_MAJOR_CODE",
                                f"结果文件 {path.name} 的专业代码“{code}”未知"
                                f"（已知：{'、'.join(sorted(codes))}）")
        rf = ResultFile(path, year, code)
        if rf.table in seen:
            raise ImportRefused("DUPLICATE_RESULT",
                                f"{seen[rf.table]} 和 {path.name} 都是 {rf.table} 的结果，无法确定导入哪一个")
        seen[rf.table] = path.name
        found.append(rf)
    return found, skipped


# --- values ------------------------------------------------------------------------------


class _BadValue(ValueError):
    pass


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise _BadValue
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            raise _BadValue from None
        if not math.isfinite(x):
            raise _BadValue
        return x
    raise _BadValue


def _convert(v: Any, kind: str, length: int | None) -> Any:
    """The cell as the column's Python type; ``_BadValue`` when it cannot be."""
    if _blank(v):
        return None
    if kind == TEXT:
        if isinstance(v, float) and v.is_integer():
            text = str(int(v))           # ids read back as 3322100012.0
        elif isinstance(v, (datetime, date, time)):
            text = v.isoformat()
        else:
            text = str(v)
        if length is not None and len(text) > length:
            raise _BadValue
        return text
    if kind == INTEGER:
        x = _number(v)
        if not x.is_integer() or not -_INT64 <= x < _INT64:
            raise _BadValue
        return int(x)
    if kind == REAL:
        return _number(v)
    if kind == BOOLEAN:
        if isinstance(v, bool):
            return v
        x = _number(v)
        if x not in (0.0, 1.0):
            raise _BadValue
        return bool(x)
    if isinstance(v, (datetime, date, time, str, int, float)):
        return v
    return str(v)


def _kind_of(t: sa.types.TypeEngine[Any]) -> tuple[str, int | None]:
    if isinstance(t, sa.Boolean):
        return BOOLEAN, None
    if isinstance(t, sa.Integer):
        return INTEGER, None
    if isinstance(t, (sa.Float, sa.Numeric)):
        return REAL, None
    if isinstance(t, sa.String):
        return TEXT, t.length
    return ANY, None


# --- the import ------------------------------------------------------------------------


@dataclass
class TableImport:
    """What happened to one table."""

    table: str
    rows: int                          # rows now in the table (for grades: for that year)
    replaced: int                      # rows deleted in the same transaction
    created: bool = False
    added_columns: list[str] = field(default_factory=list)
    renamed_columns: dict[str, str] = field(default_factory=dict)  # sheet name -> stored name
    year: int | None = None
    code: str | None = None
    major: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table, "rows": self.rows, "replaced": self.replaced,
            "created": self.created, "added_columns": list(self.added_columns),
            "renamed_columns": dict(self.renamed_columns), "year": self.year,
            "code": self.code, "major": self.major, "source": self.source,
        }


@dataclass
class ImportReport:
    database: str                      # the URL with the password masked
    majors: list[TableImport]
    grades: TableImport | None = None
    skipped_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.majors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "majors": [t.to_dict() for t in self.majors],
            "grades": self.grades.to_dict() if self.grades else None,
            "total_rows": self.total_rows,
            "skipped_files": list(self.skipped_files),
            "warnings": list(self.warnings),
        }


@dataclass
class _Target:
    """One table to replace: its rows, the kinds new columns get, and for
    grades the constant ``year`` column that also selects the rows replaced."""

    table: str
    sheet: Sheet
    kinds: dict[str, str]
    default_kind: str
    scope: tuple[str, int] | None = None
    report: TableImport | None = None


@dataclass
class _Plan:
    target: _Target
    table: sa.Table
    values: list[dict[str, Any]]
    create: bool
    add: list[sa.Column[Any]]
    renamed: dict[str, str]


def _stored_name(name: str, dialect: sa.Dialect) -> str:
    """The name PostgreSQL will really give a column: it cuts identifiers at
    63 bytes (at a character boundary) without an error."""
    if dialect.name == "postgresql":
        limit = dialect.max_identifier_length or 63
        raw = name.encode("utf-8")
        if len(raw) > limit:
            return raw[:limit].decode("utf-8", errors="ignore")
    return name


def _identity(name: str, dialect: sa.Dialect) -> str:
    """What makes two column names the same column: the stored name, and in
    SQLite without ASCII case (``C语言`` and ``c语言`` clash there)."""
    stored = _stored_name(name, dialect)
    return stored.translate(_ASCII_LOWER) if dialect.name == "sqlite" else stored


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _plan(conn: Connection, target: _Target) -> _Plan:
    """Reflect the table and convert every cell; raises before any write."""
    dialect = conn.dialect
    sheet = target.sheet
    names = list(sheet.columns)
    if target.scope is not None:
        names.append(target.scope[0])
    insp = sa.inspect(conn)
    exists = insp.has_table(target.table)
    existing: dict[str, dict[str, Any]] = {}
    if exists:
        for col in insp.get_columns(target.table):
            existing[_identity(col["name"], dialect)] = col

    columns: list[sa.Column[Any]] = []
    add_keys: list[str] = []
    renamed: dict[str, str] = {}
    kinds: list[tuple[str, int | None]] = []
    seen: dict[str, str] = {}
    for i, name in enumerate(names):
        ident = _identity(name, dialect)
        if ident in seen:
            raise ImportRefused(
                "COLUMN_NAME_CLASH",
                f"{sheet.source} 的列“{seen[ident]}”和“{name}”在数据库中会成为同一列"
                f"“{_stored_name(name, dialect)}”（{dialect.name} 的列名规则），无法导入")
        seen[ident] = name
        if ident in existing:
            col = existing[ident]
            kinds.append(_kind_of(col["type"]))
            stored, ctype = col["name"], col["type"]
        else:
            kind = target.kinds.get(name, target.default_kind)
            kinds.append((kind, None))
            stored, ctype = _stored_name(name, dialect), _NEW_COLUMN_TYPES[kind]
        if stored != name:
            renamed[name] = stored
        column = sa.Column(stored, ctype, key=f"c{i}")
        columns.append(column)
        if exists and ident not in existing:
            add_keys.append(column.key)
    table = sa.Table(target.table, sa.MetaData(), *columns)
    add = [table.c[key] for key in add_keys]

    values: list[dict[str, Any]] = []
    scope_value = target.scope[1] if target.scope is not None else None
    width = len(sheet.columns)
    for row, number in zip(sheet.rows, sheet.row_numbers, strict=True):
        record: dict[str, Any] = {}
        for i in range(width):
            kind, length = kinds[i]
            try:
                record[f"c{i}"] = _convert(row[i], kind, length)
            except _BadValue:
                shown = repr(row[i]) if not isinstance(row[i], str) else f"“{row[i][:50]}”"
                limit = f"（最长 {length} 个字符）" if length is not None and kind == TEXT else ""
                raise ImportRefused(
                    "BAD_VALUE",
                    f"{sheet.source} 第 {number} 行“{sheet.columns[i]}”列的值 {shown} "
                    f"不能存入{_KIND_NAMES[kind]}列{limit}，导入已取消，数据库未改变") from None
        if target.scope is not None:
            record[f"c{width}"] = scope_value
        values.append(record)
    return _Plan(target, table, values, not exists, add, renamed)


class _AddColumn(ExecutableDDLElement):
    """``ALTER TABLE ... ADD COLUMN``, compiled like ``CREATE TABLE`` columns so
    identifiers with ``%`` or ``:`` are quoted and escaped the same way."""

    def __init__(self, table: sa.Table, column: sa.Column[Any]) -> None:
        self.table = table
        self.column = column


@compiles(_AddColumn)
def _compile_add_column(element: _AddColumn, compiler: Any, **_kw: Any) -> str:
    return (f"ALTER TABLE {compiler.preparer.format_table(element.table)} "
            f"ADD COLUMN {compiler.get_column_specification(element.column)}")


def _apply(conn: Connection, plan: _Plan) -> TableImport:
    """DDL, delete, bulk insert, count check -- all inside the caller's transaction."""
    table = plan.table
    report = plan.target.report or TableImport(plan.target.table, 0, 0)
    if plan.create:
        conn.execute(sa.schema.CreateTable(table))
    for column in plan.add:
        conn.execute(_AddColumn(table, column))
    scope = plan.target.scope
    delete = sa.delete(table)
    count = sa.select(sa.func.count()).select_from(table)
    if scope is not None:
        scope_col = table.c[f"c{len(plan.target.sheet.columns)}"]
        delete = delete.where(scope_col == scope[1])
        count = count.where(scope_col == scope[1])
    replaced = conn.execute(delete).rowcount
    conn.execute(sa.insert(table), plan.values)
    stored = conn.execute(count).scalar_one()
    if stored != len(plan.values):
        raise ImportRefused("VERIFY_FAILED",
                            f"{plan.target.table} 写入后有 {stored} 行，应为 {len(plan.values)} 行，"
                            "导入已回滚")
    report.rows = stored
    report.replaced = max(replaced or 0, 0)
    report.created = plan.create
    report.added_columns = [c.name for c in plan.add]
    report.renamed_columns = plan.renamed
    return report


def _run(url: URL, targets: list[_Target]) -> None:
    """One connection, one transaction; refusals and driver errors both roll back."""
    engine = open_database(url)
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise ImportRefused("DATABASE_UNREACHABLE",
                                f"无法连接数据库 {safe_url(url)}：{_one_line(exc, url)}") from None
        with conn:
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'"))
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                    plans = [_plan(conn, t) for t in targets]
                    for p in plans:
                        _apply(conn, p)
            except ImportRefused:
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise ImportRefused(
                    "DATABASE_WRITE_FAILED",
                    f"写入数据库失败，已回滚，数据库未改变：{_one_line(exc, url)}") from None
    finally:
        engine.dispose()


def import_results(result_files: Iterable[str | Path], database_url: str | URL | None = None,
                   *, grades_file: str | Path | None = None, grades_year: int | None = None,
                   known_codes: Iterable[str] | None = None,
                   major_names: dict[str, str] | None = None,
                   default_dir: str | Path | None = None) -> ImportReport:
    """Import a task's result workbooks (and optionally its grade workbook) in
    one transaction. Raises ``ImportRefused`` with the database unchanged.

    ``known_codes`` are the accepted major codes (default: the built-in five);
    ``major_names`` maps code -> name for the report.
    """
    url = (database_url if isinstance(database_url, URL)
           else resolve_database_url(database_url, default_dir))
    if (grades_file is None) != (grades_year is None):
        raise ImportRefused("BAD_ARGUMENTS", "导入成绩需要同时给出成绩文件和年级")
    files, skipped = classify_results(result_files, known_codes)
    if not files:
        raise ImportRefused("NO_RESULTS", "没有可导入的专业结果文件（Cohort{年级}_Predictions_{专业代码}.xlsx）")
    names = major_names or {code: name for name, code in MAJOR_CODES.items()}
    targets: list[_Target] = []
    warnings: list[str] = []
    for rf in files:
        sheet = read_predictions(rf.path)
        report = TableImport(rf.table, 0, 0, year=rf.year, code=rf.code,
                             major=names.get(rf.code), source=rf.path.name)
        targets.append(_Target(rf.table, sheet, PREDICTION_KINDS, REAL, report=report))
    grades_report: TableImport | None = None
    if grades_file is not None and grades_year is not None:
        sheet = read_registrar_grades(grades_file)
        warnings.extend(sheet.notes)
        grades_report = TableImport(GRADES_TABLE, 0, 0, year=int(grades_year),
                                    source=Path(grades_file).name)
        targets.append(_Target(GRADES_TABLE, sheet, GRADE_KINDS, TEXT,
                               scope=(GRADES_YEAR_COLUMN, int(grades_year)),
                               report=grades_report))
    _run(url, targets)
    majors = [t.report for t in targets if t.report is not None and t.table != GRADES_TABLE]
    for t in majors:
        for sheet_name, stored in t.renamed_columns.items():
            warnings.append(f"{t.table}：列名“{sheet_name}”超过数据库长度限制，存为“{stored}”")
    result = ImportReport(safe_url(url), majors, grades_report, skipped, warnings)
    log.info("event=import.done database=%s tables=%s rows=%s grades=%s", result.database,
             ",".join(t.table for t in majors), result.total_rows,
             grades_report.rows if grades_report else None)
    return result
