"""One way to open the service's SQL databases (task records, batches and
schedules, notifications): the same file mode, journal and connection checks
for all three, so they can live in one PostgreSQL or in SQLite files beside
each other without three slightly different set-ups.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

SQLITE_BUSY_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5


def open_engine(url: str | URL) -> Engine:
    """An engine for ``url``.

    SQLite: the file is created with mode 0600 (the records name uploaded files;
    webhooks hold secrets), used in WAL mode from several threads with a busy
    timeout. PostgreSQL: connections are checked before use and connecting gives
    up after a few seconds, so a restarted server costs one failed request at
    most and a stopped one is reported instead of hanging a request.
    """
    parsed = url if isinstance(url, URL) else make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        # psycopg 3 (a runtime dependency) for every PostgreSQL URL, as for the
        # task records: the batch and webhook records default to the same URL.
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if parsed.database and parsed.database != ":memory:":
            fd = os.open(parsed.database, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(parsed.database, 0o600)
    else:
        kwargs["pool_pre_ping"] = True
        if backend == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine
