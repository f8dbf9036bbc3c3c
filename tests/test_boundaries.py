"""Which package may import what: the layout's promises, enforced.

Each check runs in a fresh interpreter, because this test process has long
imported Flask and SQLAlchemy for the other tests.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest
from support.paths import REPO

WEB_AND_DATABASE = ("flask", "werkzeug", "sqlalchemy", "requests")


def loaded_after_import(package: str) -> set[str]:
    """Top-level module names present after importing ``package`` and every module in it."""
    script = f"""
import importlib, json, pkgutil, sys
pkg = importlib.import_module({package!r})
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=120)
    return set(json.loads(out.stdout))


def test_engine_loads_no_web_or_database_code() -> None:
    """The algorithm runs in the CLI, the job process and the benchmark alike."""
    loaded = loaded_after_import("destination_predictor.engine")
    assert not loaded & set(WEB_AND_DATABASE), sorted(loaded & set(WEB_AND_DATABASE))


def test_client_needs_no_server_code() -> None:
    """Operators run the client and the end-to-end check on machines without the service."""
    loaded = loaded_after_import("destination_predictor.client")
    assert not loaded & {"flask", "werkzeug", "sqlalchemy"}


def test_the_engine_has_every_step_in_its_own_module() -> None:
    """The layout the README describes, so a renamed step is a visible change."""
    import destination_predictor.engine as engine

    names = {m.name for m in pkgutil.iter_modules(engine.__path__)}
    assert {"options", "majors", "categories", "plans", "grades", "features", "model",
            "inverse", "results", "reports", "pipeline", "literal", "errors"} <= names


@pytest.mark.parametrize("package", ["engine", "client", "importer", "service", "demo"])
def test_every_package_says_what_it_is_for(package: str) -> None:
    init = REPO / "destination_predictor" / package / "__init__.py"
    assert init.is_file()
    text = init.read_text(encoding="utf-8")
    assert text.lstrip().startswith('"""') and len(text.split('"""')[1].strip()) > 20


def test_the_task_record_needs_no_flask() -> None:
    """The task's states and transitions are plain Python (tested without an app)."""
    script = ("import sys, destination_predictor.service.task, destination_predictor.service.settings;"
              " print('flask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
