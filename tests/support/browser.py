"""Debian's chromium driven by playwright, for the console pages' tests.

One place for the executable, its flags and the error collection, so each page
test is only about its page. ``page`` fails the test on any script error or
console error (a CSP violation is one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run"]
needs_browser = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@contextmanager
def page(*, accept_dialogs: bool = False, allow: tuple[str, ...] = ()) -> Iterator[Any]:
    """A fresh zh-CN page; on leaving, asserts no script or console error happened
    other than those containing one of ``allow`` (e.g. an expected 422, which
    Chromium logs as "Failed to load resource ... 422")."""
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(locale="zh-CN")
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            if accept_dialogs:
                pg.on("dialog", lambda d: d.accept())
            yield pg
        finally:
            browser.close()
    unexpected = [e for e in errors if not any(a in e for a in allow)]
    assert not unexpected, unexpected
