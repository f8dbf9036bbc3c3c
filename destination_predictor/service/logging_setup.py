"""The task event log: one ``key=value`` line per event, to stderr and to
``async_api_{port}.log`` in the data dir (the file the operators' guide tails).

The logger belongs to the app (it is not registered in ``logging``'s global
registry), so two apps in one process -- tests -- never write into each
other's files, and closing the app closes its file.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

_FORMAT = "%(asctime)s %(levelname)s %(message)s"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def build_logger(log_path: Path, *, stderr: bool = True) -> logging.Logger:
    logger = logging.Logger("destination_predictor.service", level=logging.INFO)
    formatter = logging.Formatter(_FORMAT)
    file_handler = RotatingFileHandler(log_path, maxBytes=MAX_LOG_BYTES,
                                       backupCount=LOG_BACKUPS, encoding="utf-8")
    log_path.chmod(0o600)  # file names and reasons of students' uploads
    file_handler.setFormatter(formatter)
    logger.addHandler(file_handler)
    if stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(formatter)
        logger.addHandler(err)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str) -> str:
    """Every character a terminal could act on becomes visible text: ANSI
    escapes, CR, VT, U+2028 in a client's file name never reach the log raw."""
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif not c.isprintable():
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def _value(v: Any) -> str:
    text = str(v)
    escaped = _escape(text)
    if text == "" or escaped != text or any(c.isspace() or c in '"=' for c in text):
        return '"' + escaped + '"'
    return text


def log_event(logger: logging.Logger, event: str, task_id: str | None = None,
              level: int = logging.INFO, **fields: Any) -> None:
    """``event=task.started task_id=... key=value``: greppable, one line."""
    parts = [f"event={event}"]
    if task_id is not None:
        parts.append(f"task_id={task_id}")
    parts.extend(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
    logger.log(level, " ".join(parts))
