"""``GET /api/openapi.json``: the OpenAPI 3.1 description of every route.

The document is a file shipped in the package (``openapi.json`` beside this
module), written by hand and kept true by the tests: ``tests/test_openapi.py``
checks that it lists exactly the app's routes and methods and validates real
answers against its schemas; ``tests/test_fuzz_api.py`` fuzzes a real
gunicorn service with it (schemathesis).

It is served as it is stored -- not wrapped in the ``{"success": ...}``
envelope, so that any OpenAPI tool can load it from the URL -- and without a
token (``auth`` exempts exactly this path): it describes the API and holds no
data.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

DOCUMENT = Path(__file__).resolve().parent / "openapi.json"
PATH = "/api/openapi.json"

bp = Blueprint("openapi", __name__)


@bp.get(PATH)
def openapi_document() -> Response:
    # Read on each request (a few dozen KB, rarely fetched): a changed file is
    # served without a restart and nothing is held in memory.
    resp = Response(DOCUMENT.read_bytes(), mimetype="application/json")
    resp.headers["Cache-Control"] = "no-cache"
    return resp
