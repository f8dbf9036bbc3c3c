"""``service.logging_setup``: one greppable line per event, and nothing a client
sent can act on the terminal of an operator who follows the log."""

from __future__ import annotations

import logging
from pathlib import Path

from destination_predictor.service.logging_setup import build_logger, close_logger, log_event


def test_values_are_escaped_to_printable_text(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    logger = build_logger(log, stderr=False)
    hostile = "成绩\x1b[2J\x1b[31m\r\x0b\u2028\u2029\x00 表\n.xlsx"
    log_event(logger, "upload.rejected", None, logging.WARNING, file=hostile, code="X")
    close_logger(logger)
    text = log.read_text(encoding="utf-8")
    assert text.count("\n") == 1, "one event, one line"
    line = text.rstrip("\n")
    assert all(c.isprintable() for c in line), repr(line)
    assert r'file="成绩\x1b[2J\x1b[31m\r\x0b\u2028\u2029\x00 表\n.xlsx"' in line
    assert line.endswith("code=X")


def test_plain_values_stay_unquoted(tmp_path: Path) -> None:
    log = tmp_path / "y.log"
    logger = build_logger(log, stderr=False)
    log_event(logger, "task.started", "t1", year=2024, major="物联网工程", note="a b", eq="k=v")
    close_logger(logger)
    line = log.read_text(encoding="utf-8")
    assert 'event=task.started task_id=t1 year=2024 major=物联网工程 note="a b" eq="k=v"' in line
