"""Where the import writes: database URLs, connections, the lock that
serialises imports, and driver messages with the password scrubbed.

URLs: ``postgresql://`` (or ``postgres://``) is driven by psycopg 3;
``sqlite:///path`` is a local file; no URL means ``predictions.sqlite3`` in the
given directory. Passwords never appear in a message or a log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine import Engine as SqlEngine

from .errors import ImportRefused

DEFAULT_SQLITE_NAME = "predictions.sqlite3"
# One constant for every importer of this project: imports are serialised.
_PG_LOCK_KEY = 0x6470_696D_706F_7274  # "dpimport"
_PG_LOCK_TIMEOUT = "60s"
_CONNECT_TIMEOUT_S = 10


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


def open_database(url: URL | str) -> SqlEngine:
    """A SQLAlchemy engine whose transactions include DDL on both backends.

    pysqlite does not open a transaction before ``CREATE``/``ALTER``, so an
    added column would be committed even when the rest rolls back; the usual
    SQLAlchemy recipe takes the transaction control away from the driver and
    issues ``BEGIN IMMEDIATE`` itself (immediate: two importers queue instead
    of deadlocking on the lock upgrade).
    """
    parsed = url if isinstance(url, URL) else resolve_database_url(str(url))
    if parsed.get_backend_name() == "sqlite":
        sql_engine = sa.create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(sql_engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(sql_engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return sql_engine
    return sa.create_engine(
        parsed, pool_pre_ping=True,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S,
                      "application_name": "destination_predictor_import"},
    )


def _lock_imports(conn: Connection) -> None:
    """On PostgreSQL, wait (at most ``_PG_LOCK_TIMEOUT``) until no other import
    runs; the advisory lock is released with the caller's transaction. SQLite
    needs nothing: ``BEGIN IMMEDIATE`` already queues writers."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{_PG_LOCK_TIMEOUT}'"))
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))


def _one_line(exc: BaseException, url: URL | None) -> str:
    """The driver's first line, with the password scrubbed in case it echoed it."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if url is not None and url.password:
        secret = str(url.password)
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            text = text.replace(form, "***")
    return text[:300]
