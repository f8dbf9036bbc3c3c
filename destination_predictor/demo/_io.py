"""Atomic file replacement shared by the demo writers.

A reader (the service, a test, a half-finished CLI run) must never see a
half-written workbook or model file, so everything is written next to its
target and moved into place in one step.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; replace ``target`` on success."""
    dest = Path(target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name rather than mkstemp: the writer creates the file, so it gets
    # the usual permissions instead of mkstemp's owner-only 0600.
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically; return the final path."""
    with atomic_target(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    with atomic_target(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
