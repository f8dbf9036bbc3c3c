"""The import itself: result sheets (and optionally grades) replace the rows
of their tables in one transaction.

Why this module exists: the deployed importer deleted a table's rows and then
inserted them in batches without a transaction, so a failure half way left
students with no predictions. Here every import is all-or-nothing:

1. Every workbook is read and checked before the database is touched
   (``workbooks``).
2. One connection, one transaction for the whole task: for each table the
   existing columns are reflected, every cell is converted to the type of its
   column (a value the column cannot take refuses the import *before* any
   write; ``cells``), then missing columns are added, the old rows deleted and
   the new ones inserted in bulk, and the row count checked. PostgreSQL and
   SQLite both run ``CREATE``/``ALTER TABLE`` inside the transaction, so a
   failure at any point -- a constraint, a killed connection -- rolls
   everything back and readers, who see the old rows until the commit, never
   see a half import.
3. Importing the same files again leaves the same rows (delete + insert).

Tables: ``Cohort{YEAR}_Predictions_{code}`` with one column per column of the
``Predictions`` sheet, named exactly as in the sheet (quoted identifiers:
course names contain ``*``, parentheses, spaces, ``&``). New tables get
``SNH``/``major`` TEXT, ``grade``/``count``/``current_pred`` BIGINT and every
other column DOUBLE PRECISION (course columns hold scores); an existing table
keeps its own column types and the cells are checked against them.
PostgreSQL cuts identifiers at 63 bytes (21 Chinese characters); such a column
is stored under the name PostgreSQL gives it, the report says so, and two
columns that would end up with the same name refuse the import. Table names
are cut the same way (a major without a code has its Chinese name as code:
``Cohort2024_Predictions_`` + 15 characters is 68 bytes): the table is
created, reflected and reported (``TableImport.table``) under the name
PostgreSQL stores, so the next import finds it, and two tables that would
share a name refuse the import (``TABLE_NAME_CLASH``).

Grades: the registrar columns of docs/algorithm.md, section 'The grade export',
plus ``year`` into ``academic_results``, replacing that year's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement

from ..engine.excel import DEFAULT_MAX_CELLS
from ..engine.majors import MAJOR_CODES
from .cells import (
    _KIND_NAMES,
    _NEW_COLUMN_TYPES,
    INTEGER,
    REAL,
    TEXT,
    _BadValue,
    _convert,
    _kind_of,
)
from .database import _lock_imports, _one_line, open_database, resolve_database_url, safe_url
from .errors import ImportRefused
from .workbooks import (
    REGISTRAR_COLUMNS,
    Sheet,
    check_code,
    classify_results,
    read_predictions,
    read_registrar_grades,
)

log = logging.getLogger("destination_predictor.importer")

GRADES_TABLE = "academic_results"
GRADES_YEAR_COLUMN = "year"

# The kinds (``cells``) new columns get; any other column gets the table's default kind.
PREDICTION_KINDS: dict[str, str] = {
    "SNH": TEXT, "major": TEXT, "Major": TEXT,
    "grade": INTEGER, "count": INTEGER, "current_pred": INTEGER,
}
GRADE_KINDS: dict[str, str] = {name: TEXT for name in REGISTRAR_COLUMNS} | {
    "Hours": REAL, "Credit": REAL, GRADES_YEAR_COLUMN: INTEGER,
}


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

    table: str                         # as named; stored as _stored_name(table)
    sheet: Sheet
    kinds: dict[str, str]
    default_kind: str
    scope: tuple[str, int] | None = None
    report: TableImport | None = None


@dataclass
class TableWrite:
    """What will be written to one table, worked out before any write: the
    table with its columns, every row converted, and the DDL it needs."""

    target: _Target
    table: sa.Table
    values: list[dict[str, Any]]
    create: bool
    add: list[sa.Column[Any]]
    renamed: dict[str, str]


def _stored_name(name: str, dialect: sa.Dialect) -> str:
    """The name PostgreSQL will really give a column or table: it cuts
    identifiers at 63 bytes (at a character boundary) without an error."""
    if dialect.name == "postgresql":
        limit = dialect.max_identifier_length or 63
        raw = name.encode("utf-8")
        if len(raw) > limit:
            return raw[:limit].decode("utf-8", errors="ignore")
    return name


def _identity(name: str, dialect: sa.Dialect) -> str:
    """What makes two column (or table) names the same: the stored name, and in
    SQLite without ASCII case (``C语言`` and ``c语言`` clash there)."""
    stored = _stored_name(name, dialect)
    return stored.translate(_ASCII_LOWER) if dialect.name == "sqlite" else stored


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _plan_table_write(conn: Connection, target: _Target) -> TableWrite:
    """Reflect the table and convert every cell; raises before any write."""
    dialect = conn.dialect
    sheet = target.sheet
    table_name = _stored_name(target.table, dialect)
    names = list(sheet.columns)
    if target.scope is not None:
        names.append(target.scope[0])
    insp = sa.inspect(conn)
    exists = insp.has_table(table_name)
    existing: dict[str, dict[str, Any]] = {}
    if exists:
        for col in insp.get_columns(table_name):
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
    table = sa.Table(table_name, sa.MetaData(), *columns)
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
    return TableWrite(target, table, values, not exists, add, renamed)


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


def _apply(conn: Connection, write: TableWrite) -> TableImport:
    """DDL, delete, bulk insert, count check -- all inside the caller's transaction."""
    table = write.table
    report = write.target.report or TableImport(table.name, 0, 0)
    if write.create:
        conn.execute(sa.schema.CreateTable(table))
    for column in write.add:
        conn.execute(_AddColumn(table, column))
    scope = write.target.scope
    delete = sa.delete(table)
    count = sa.select(sa.func.count()).select_from(table)
    if scope is not None:
        scope_col = table.c[f"c{len(write.target.sheet.columns)}"]
        delete = delete.where(scope_col == scope[1])
        count = count.where(scope_col == scope[1])
    replaced = conn.execute(delete).rowcount
    conn.execute(sa.insert(table), write.values)
    stored = conn.execute(count).scalar_one()
    if stored != len(write.values):
        raise ImportRefused("VERIFY_FAILED",
                            f"{table.name} 写入后有 {stored} 行，应为 {len(write.values)} 行，"
                            "导入已回滚")
    report.table = table.name
    report.rows = stored
    report.replaced = max(replaced or 0, 0)
    report.created = write.create
    report.added_columns = [c.name for c in write.add]
    report.renamed_columns = write.renamed
    return report


def _refuse_table_clashes(targets: list[_Target], dialect: sa.Dialect) -> None:
    """Two tables of one import must not end up as one table in this database."""
    seen: dict[str, _Target] = {}
    for target in targets:
        ident = _identity(target.table, dialect)
        if ident in seen:
            raise ImportRefused(
                "TABLE_NAME_CLASH",
                f"{seen[ident].sheet.source} 和 {target.sheet.source} 的表名“{seen[ident].table}”和"
                f"“{target.table}”在数据库中会成为同一个表“{_stored_name(target.table, dialect)}”"
                f"（{dialect.name} 的表名规则），无法导入")
        seen[ident] = target


def _run(url: URL, targets: list[_Target]) -> None:
    """One connection, one transaction; refusals and driver errors both roll back."""
    sql_engine = open_database(url)
    try:
        try:
            conn = sql_engine.connect()
        except sa.exc.DBAPIError as exc:
            raise ImportRefused("DATABASE_UNREACHABLE",
                                f"无法连接数据库 {safe_url(url)}：{_one_line(exc, url)}") from None
        with conn:
            try:
                with conn.begin():
                    _lock_imports(conn)
                    _refuse_table_clashes(targets, conn.dialect)
                    writes = [_plan_table_write(conn, t) for t in targets]
                    for write in writes:
                        _apply(conn, write)
            except ImportRefused:
                raise
            except sa.exc.SQLAlchemyError as exc:
                raise ImportRefused(
                    "DATABASE_WRITE_FAILED",
                    f"写入数据库失败，已回滚，数据库未改变：{_one_line(exc, url)}") from None
    finally:
        sql_engine.dispose()


def import_results(result_files: Iterable[str | Path], database_url: str | URL | None = None,
                   *, grades_file: str | Path | None = None, grades_year: int | None = None,
                   known_codes: Iterable[str] | None = None,
                   major_names: dict[str, str] | None = None,
                   default_dir: str | Path | None = None,
                   max_cells: int = DEFAULT_MAX_CELLS) -> ImportReport:
    """Import a task's result workbooks (and optionally its grade workbook) in
    one transaction. Raises ``ImportRefused`` with the database unchanged.

    ``known_codes`` are the accepted major codes (default: the built-in five),
    ``major_names`` maps code -> name for the report, and its codes are
    accepted too. Any other code is accepted only when the file's sheet
    records the major it is the engine's code of (``workbooks.check_code``).
    ``max_cells`` bounds the extent of every workbook read
    (``WORKBOOK_TOO_LARGE``; the service passes ``PREDICT_MAX_CELLS``).
    """
    url = (database_url if isinstance(database_url, URL)
           else resolve_database_url(database_url, default_dir))
    if (grades_file is None) != (grades_year is None):
        raise ImportRefused("BAD_ARGUMENTS", "导入成绩需要同时给出成绩文件和年级")
    names = {code: name for name, code in MAJOR_CODES.items()} | dict(major_names or {})
    codes = set(known_codes if known_codes is not None else MAJOR_CODES.values()) | set(names)
    files, skipped = classify_results(result_files, codes, unknown_ok=True)
    if not files:
        raise ImportRefused("NO_RESULTS", "没有可导入的专业结果文件（Cohort{年级}_Predictions_{专业代码}.xlsx）")
    targets: list[_Target] = []
    warnings: list[str] = []
    for rf in files:
        sheet = read_predictions(rf.path, max_cells)
        major = check_code(rf, sheet, codes, names)
        report = TableImport(rf.table, 0, 0, year=rf.year, code=rf.code,
                             major=major, source=rf.path.name)
        targets.append(_Target(rf.table, sheet, PREDICTION_KINDS, REAL, report=report))
    grades_report: TableImport | None = None
    if grades_file is not None and grades_year is not None:
        sheet = read_registrar_grades(grades_file, max_cells)
        warnings.extend(sheet.notes)
        grades_report = TableImport(GRADES_TABLE, 0, 0, year=int(grades_year),
                                    source=Path(grades_file).name)
        targets.append(_Target(GRADES_TABLE, sheet, GRADE_KINDS, TEXT,
                               scope=(GRADES_YEAR_COLUMN, int(grades_year)),
                               report=grades_report))
    _run(url, targets)
    majors: list[TableImport] = []
    for target in targets:
        t = target.report
        if t is None or t is grades_report:
            continue
        majors.append(t)
        if t.table != target.table:
            warnings.append(f"表名“{target.table}”超过数据库长度限制，存为“{t.table}”")
        for sheet_name, stored in t.renamed_columns.items():
            warnings.append(f"{t.table}：列名“{sheet_name}”超过数据库长度限制，存为“{stored}”")
    result = ImportReport(safe_url(url), majors, grades_report, skipped, warnings)
    log.info("event=import.done database=%s tables=%s rows=%s grades=%s", result.database,
             ",".join(t.table for t in majors), result.total_rows,
             grades_report.rows if grades_report else None)
    return result
