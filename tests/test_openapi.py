"""The OpenAPI document (``destination_predictor/service/openapi.json``,
served at ``GET /api/openapi.json``) stays true to the code:

- it lists exactly the app's routes, with the same methods (Flask's automatic
  HEAD and OPTIONS aside), and every documented path exists;
- it is valid OpenAPI 3.1, its schemas are valid JSON Schema 2020-12 and
  every ``$ref`` resolves;
- real answers of every route through the Flask test client -- a real engine
  run on generated demo grades, a held fake job for the states in between,
  and each kind of refusal -- are validated against the schema documented for
  their method, path and status (``jsonschema``, ``$ref``s resolved against
  the document). An undocumented status, a content type the document does not
  list, or a body that does not match fails the test.

The same document is fuzzed against a real gunicorn service by
``tests/test_fuzz_api.py``.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from support.service import UNKNOWN_TASK_ID, YEAR, FakeRunner, data_dir, finished, tiny_xlsx

from destination_predictor.engine.grades import read_grades
from destination_predictor.service import openapi

DOC: dict[str, Any] = json.loads(openapi.DOCUMENT.read_text("utf-8"))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Added by Flask to every rule (OPTIONS) and to every GET rule (HEAD); the
# document says so once instead of listing them on every path.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
# The document as a JSON Schema resource: a schema is validated through a
# reference to where it stands in it, so that its "#/components/..." refs resolve.
DOC_URI = "urn:predict:openapi"
REGISTRY: Registry = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
TOKEN = "contract-token"


def openapi_path(rule: str) -> str:
    """Flask's ``/api/task/<task_id>`` -> OpenAPI's ``/api/task/{task_id}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def app_operations(app: Flask) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue  # Flask's static files (the app's and the console blueprint's)
        routes.setdefault(openapi_path(rule.rule), set()).update(rule.methods or ())
    return routes


def documented_operations() -> dict[str, set[str]]:
    return {path: {m.upper() for m in item if m in HTTP_METHODS}
            for path, item in DOC["paths"].items()}


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def at(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def resolve(ref: str) -> tuple[dict[str, Any], str]:
    """The object at ``ref`` after following OpenAPI (not JSON Schema) ``$ref``s such as
    ``#/components/responses/X``, and where it stands."""
    node = at(ref)
    while "$ref" in node:
        ref = node["$ref"]
        node = at(ref)
    return node, ref


def validator(ref: str) -> Draft202012Validator:
    """A validator of the schema at ``ref`` (a pointer into the document)."""
    return Draft202012Validator({"$ref": DOC_URI + ref}, registry=REGISTRY,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


# --- the document against the routes ----------------------------------------------


def test_every_route_is_documented_with_its_methods(app: Flask) -> None:
    routes = app_operations(app)
    documented = documented_operations()
    assert sorted(documented) == sorted(routes), "documented paths differ from the app's"
    for path, methods in routes.items():
        assert documented[path] == methods - AUTOMATIC_METHODS, path
        # HEAD is only ever Flask's automatic companion of GET, never a route of its own.
        assert ("HEAD" in methods) == ("GET" in methods), path


def test_document_is_openapi_3_1_with_valid_schemas() -> None:
    assert DOC["openapi"].startswith("3.1.")
    resolver = REGISTRY.resolver(base_uri=DOC_URI)
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    # Every $ref in the document resolves (an unresolvable one raises here).
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(DOC)):
        resolver.lookup(ref)
    op_ids = [op["operationId"] for item in DOC["paths"].values()
              for m, op in item.items() if m in HTTP_METHODS]
    assert len(op_ids) == len(set(op_ids))
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            for i, _ in enumerate(op.get("parameters", [])):
                param, _ = resolve(pointer("paths", path, method, "parameters", str(i)))
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path, (method, path, param["name"])
            for status in op["responses"]:
                response, _ = resolve(pointer("paths", path, method, "responses", status))
                for media in response.get("content", {}).values():
                    Draft202012Validator.check_schema(media["schema"])
                assert re.fullmatch(r"[1-5][0-9][0-9]", status), (method, path, status)
            secured = op.get("security", DOC["security"])
            # The token guards exactly /api/* (auth.py), except this document itself.
            if path.startswith("/api/") and path != "/api/openapi.json":
                assert secured == DOC["security"], (method, path)
            elif path != "/health":
                assert secured == [], (method, path)


def test_document_is_valid_openapi_3_1() -> None:
    """Against the OpenAPI 3.1 meta-schema (the copy schemathesis ships and checks with)."""
    schemathesis = pytest.importorskip("schemathesis")
    schemathesis.openapi.from_path(openapi.DOCUMENT).validate()


def test_document_is_served_without_a_token(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_API_TOKEN"] = TOKEN
    c = make_app().test_client()
    r = c.get("/api/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json == DOC
    # Only that path is open: everything else under /api/ still needs the token.
    assert c.get("/api/openapi.json.bak").status_code == 401
    assert c.get("/api/majors").status_code == 401


# --- real answers against the document ------------------------------------------------


class Contract:
    """Sends requests through a test client and validates each answer against
    the document; remembers which (method, path, status) were seen."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int]] = set()

    def call(self, client: FlaskClient, method: str, template: str, status: int,
             code: str | None = None, **kw: Any) -> Any:
        path_params = {k: kw.pop(k) for k in list(kw) if "{" + k + "}" in template}
        url = template.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})
        resp = client.open(url, method=method, **kw)
        assert resp.status_code == status, (method, url, resp.status_code,
                                            resp.get_data(as_text=True)[:500])
        self.conform(resp, method, template)
        if code is not None:
            assert resp.json["code"] == code, resp.json
        return resp

    def conform(self, resp: Any, method: str, template: str) -> None:
        op = DOC["paths"][template][method.lower()]
        status = str(resp.status_code)
        where = f"{method} {template} -> {status}"
        assert status in op["responses"], f"undocumented status: {where}"
        documented, ref = resolve(pointer("paths", template, method.lower(), "responses",
                                          status))
        for name, header in documented.get("headers", {}).items():
            value = resp.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{where}: missing header {name}"
            else:
                assert not list(Draft202012Validator(header["schema"]).iter_errors(value)), (
                    f"{where}: header {name}: {value!r}")
        content = documented.get("content")
        if not content:
            assert resp.get_data() == b"", f"{where}: a body where none is documented"
        else:
            assert resp.mimetype in content, f"{where}: content type {resp.mimetype}"
            schema = content[resp.mimetype]["schema"]
            if resp.mimetype == "application/json":
                where_schema = f"{ref}/content/{pointer(resp.mimetype)[2:]}/schema"
                errors = sorted(validator(where_schema).iter_errors(resp.get_json()), key=str)
                assert not errors, f"{where}: " + "; ".join(
                    f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
            else:
                assert schema["type"] == "string"  # a file: binary, not JSON
                assert resp.get_data()
        self.seen.add((method.upper(), template, resp.status_code))


def conform_error(resp: Any, status: int, code: str) -> None:
    """An answer on no documented operation (unknown path, wrong method): the error envelope."""
    assert resp.status_code == status
    assert not list(validator("#/components/schemas/Error").iter_errors(resp.json))
    assert resp.json["code"] == code


def form(content: bytes = b"", name: str = "grades.xlsx", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"year": str(YEAR), **fields}
    if content:
        data["file"] = (io.BytesIO(content), name)
    return {"data": data, "content_type": "multipart/form-data"}


def wait(contract: Contract, client: FlaskClient, task_id: str, until: Any,
         timeout: float = 90) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        data = contract.call(client, "GET", "/api/task/status/{task_id}", 200,
                             task_id=task_id).json["data"]
        if until(data):
            return data
        assert time.monotonic() < end, data
        time.sleep(0.02)


@pytest.fixture
def held(app_config: dict[str, Any], make_app: Any, tmp_path: Path) -> Iterator[
        tuple[Flask, FakeRunner]]:
    """A second app whose jobs wait for ``runner.release``: one worker, one waiting."""
    runner = FakeRunner()
    config = {**app_config, "PREDICT_DATA_DIR": tmp_path / "held",
              "PREDICT_MAX_WORKERS": 1, "PREDICT_MAX_PENDING": 1}
    try:
        yield make_app(config, runner=runner), runner
    finally:
        runner.release.set()


def test_answers_of_every_route_conform(app_config: dict[str, Any], make_app: Any,
                                        held: tuple[Flask, FakeRunner], grades: Path,
                                        tmp_path: Path) -> None:
    k = Contract()
    app_config["PREDICT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'import.sqlite3'}"
    app_config["PREDICT_SCHEDULE_ROOT"] = tmp_path / "exports"
    (tmp_path / "exports" / "registrar").mkdir(parents=True)
    app = make_app()
    c = app.test_client()

    # Open routes and read-only ones.
    k.call(c, "GET", "/health", 200)
    k.call(c, "GET", "/api/openapi.json", 200)
    k.call(c, "GET", "/", 200)
    page = k.call(c, "GET", "/admin/prediction/async", 200)
    k.call(c, "GET", "/admin/prediction/async", 304, headers={"If-None-Match": page.headers["ETag"]})
    k.call(c, "GET", "/api/majors", 200)
    k.call(c, "GET", "/api/monitor", 200)
    assert k.call(c, "GET", "/api/import/config", 200).json["data"] == {
        "enabled": True, "backend": "sqlite"}
    k.call(c, "GET", "/api/tasks", 200, query_string={"status": "running", "limit": "500"})

    # The check before a run: a report, also when a run would be refused.
    report = k.call(c, "POST", "/api/task/validate", 200,
                    **form(grades.read_bytes(), grades.name)).json["data"]
    assert report["ok"] is True and report["students"] == 40
    assert k.call(c, "POST", "/api/task/validate", 200,
                  **form(tiny_xlsx())).json["data"]["ok"] is False
    k.call(c, "POST", "/api/task/validate", 400, "BAD_YEAR", **form(tiny_xlsx(), year="20x4"))

    # A real run on generated demo grades, with every way of fetching its results.
    start = k.call(c, "POST", "/api/task/start", 200, **form(grades.read_bytes(), grades.name,
                                                             priority="high", major="ai"))
    tid = start.json["data"]["task_id"]
    done = wait(k, c, tid, finished)
    assert done["status"] == "completed", done
    k.call(c, "GET", "/api/tasks", 200, query_string={"status": "completed"})
    name = done["result_files"][-1]
    one = k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 200, task_id=tid,
                 filename=name)
    openpyxl.load_workbook(io.BytesIO(one.data), read_only=True).close()
    k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 304, task_id=tid, filename=name,
           headers={"If-None-Match": one.headers["ETag"]})
    k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 206, task_id=tid, filename=name,
           headers={"Range": "bytes=0-9"})
    k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 416, task_id=tid, filename=name,
           headers={"Range": "bytes=99999999-"})
    k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 404, "FILE_NOT_FOUND",
           task_id=tid, filename="other.xlsx")
    zipped = k.call(c, "GET", "/api/task/{task_id}/results.zip", 200, task_id=tid)
    assert len(zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()) == len(done["result_files"])
    imported = k.call(c, "POST", "/api/task/{task_id}/import", 200, task_id=tid,
                      json={"grades": True})
    assert imported.json["data"]["grades"]["rows"] > 0
    k.call(c, "POST", "/api/task/{task_id}/import", 200, task_id=tid)
    k.call(c, "POST", "/api/task/{task_id}/cancel", 409, "TASK_FINISHED", task_id=tid)
    # What-if for one student of the completed task (service/whatif.py).
    k.call(c, "GET", "/student", 200)
    k.call(c, "GET", "/plans", 200)
    k.call(c, "GET", "/schedules", 200)
    view = k.call(c, "GET", "/api/task/{task_id}/student/{snh}", 200, task_id=tid,
                  snh=read_grades(grades).students[0]).json["data"]
    k.call(c, "POST", "/api/whatif", 200, json={"year": view["year"], "major": view["major"],
                                                "grades": view["grades"],
                                                "assume": dict.fromkeys(view["missing"], 80)})
    k.call(c, "GET", "/api/task/{task_id}/student/{snh}", 404, "STUDENT_NOT_FOUND", task_id=tid,
           snh="nobody")
    k.call(c, "POST", "/api/whatif", 400, "BAD_SCORE",
           json={"year": YEAR, "major": view["major"], "grades": {"x": 101}})
    k.call(c, "POST", "/api/whatif", 413, "BODY_TOO_LARGE",
           json={"year": YEAR, "major": view["major"], "grades": {}, "pad": "y" * 70_000})
    k.call(c, "GET", "/api/monitor", 200)
    # A second identical task completes at once from the cache.
    again = k.call(c, "POST", "/api/task/start", 200,
                   **form(grades.read_bytes(), grades.name, priority="HIGH", major="ai"))
    assert again.json["data"]["status"] == "completed"
    (data_dir(app) / "results" / name).unlink()
    k.call(c, "GET", "/api/task/result/{task_id}/{filename}", 410, "RESULT_GONE", task_id=tid,
           filename=name)
    k.call(c, "GET", "/api/task/{task_id}/results.zip", 410, "RESULT_GONE", task_id=tid)

    # Refused input: 400.
    for fields, code in (({}, "MISSING_FILE"), ({"year": "２０２４"}, "BAD_YEAR"),
                         ({"year": ""}, "MISSING_YEAR"), ({"year": "1999"}, "UNKNOWN_YEAR"),
                         ({"major": "天文"}, "UNKNOWN_MAJOR"), ({"priority": "low"}, "BAD_PRIORITY"),
                         ({"config": "x" * 1025}, "BAD_CONFIG"), ({"config": "[]"}, "BAD_CONFIG")):
        body = form(tiny_xlsx(), **fields) if code != "MISSING_FILE" else form()
        k.call(c, "POST", "/api/task/start", 400, code, **body)
    k.call(c, "POST", "/api/task/start", 400, "UNSUPPORTED_FILE_TYPE", **form(b"x", "a.csv"))
    k.call(c, "POST", "/api/task/start", 400, "BAD_FILE_CONTENT", **form(b"not a zip"))
    k.call(c, "GET", "/api/tasks", 400, "BAD_STATUS", query_string={"status": "done"})
    k.call(c, "GET", "/api/tasks", 400, "BAD_LIMIT", query_string={"limit": "501"})
    for method, template, extra in (
            ("GET", "/api/task/status/{task_id}", {}),
            ("POST", "/api/task/{task_id}/cancel", {}),
            ("GET", "/api/task/result/{task_id}/{filename}", {"filename": "a.xlsx"}),
            ("GET", "/api/task/{task_id}/results.zip", {}),
            ("POST", "/api/task/{task_id}/import", {})):
        k.call(c, method, template, 400, "INVALID_TASK_ID", task_id="not-a-task-id", **extra)
        k.call(c, method, template, 404, "TASK_NOT_FOUND", task_id=UNKNOWN_TASK_ID, **extra)
    # A path parameter holding "/" matches no route: the framework's 404.
    k.call(c, "GET", "/api/task/status/{task_id}", 404, "NOT_FOUND", task_id="a/b")

    # Answers on no documented operation are the same error envelope.
    conform_error(c.get("/api/nope"), 404, "NOT_FOUND")
    for path, methods in documented_operations().items():
        wrong = "DELETE" if "POST" in methods else "POST"
        r = c.open(path.replace("{task_id}", tid).replace("{filename}", name), method=wrong)
        conform_error(r, 405, "METHOD_NOT_ALLOWED")
        assert set(r.headers["Allow"].split(", ")) == methods | (
            AUTOMATIC_METHODS if "GET" in methods else {"OPTIONS"})

    # The states in between, with a held job: 409 before done, 503 queue full, cancel.
    happ, runner = held
    h = happ.test_client()
    running = k.call(h, "POST", "/api/task/start", 200, **form(tiny_xlsx()))
    rid = running.json["data"]["task_id"]
    wait(k, h, rid, lambda d: d["status"] == "running")
    pending = k.call(h, "POST", "/api/task/start", 200, **form(tiny_xlsx()))
    pid = pending.json["data"]["task_id"]
    assert k.call(h, "GET", "/api/task/status/{task_id}", 200,
                  task_id=pid).json["data"]["queue_position"] == 1
    full = k.call(h, "POST", "/api/task/start", 503, "QUEUE_FULL", **form(tiny_xlsx()))
    assert full.headers["Retry-After"] == "30"
    k.call(h, "GET", "/api/task/result/{task_id}/{filename}", 409, "TASK_NOT_COMPLETED",
           task_id=rid, filename="x.xlsx")
    k.call(h, "GET", "/api/task/{task_id}/results.zip", 409, "TASK_NOT_COMPLETED", task_id=rid)
    k.call(h, "GET", "/api/monitor", 200)
    k.call(h, "GET", "/api/tasks", 200, query_string={"status": "pending"})
    k.call(h, "POST", "/api/task/{task_id}/import", 503, "IMPORT_NOT_CONFIGURED", task_id=rid)
    k.call(h, "GET", "/api/import/config", 200)
    k.call(h, "POST", "/api/task/{task_id}/cancel", 200, task_id=pid)
    k.call(h, "POST", "/api/task/{task_id}/cancel", 200, task_id=rid)
    wait(k, h, rid, finished)
    k.call(h, "GET", "/api/task/{task_id}/results.zip", 409, "TASK_FAILED", task_id=rid)
    k.call(h, "GET", "/api/tasks", 200, query_string={"status": "failed", "limit": "1"})
    k.call(h, "GET", "/api/monitor", 200)  # with recent failures
    runner.release.set()
    kept = k.call(h, "POST", "/api/task/start", 200, **form(tiny_xlsx()))
    kid = kept.json["data"]["task_id"]
    wait(k, h, kid, finished)
    happ.extensions["predict"].cleaner.sweep(now=time.time() + 400 * 3600)
    expired = k.call(h, "GET", "/api/task/status/{task_id}", 200, task_id=kid).json["data"]
    assert expired["expired"] is True
    k.call(h, "GET", "/api/task/{task_id}/results.zip", 410, "TASK_EXPIRED", task_id=kid)

    # Education plans (service/plan_routes.py): list, a refused upload with its
    # report, an accepted one, rollback and delete with their refusals.
    k.call(c, "GET", "/api/plans", 200)
    plan = (Path(__file__).parent.parent / "plans" / f"education-plan{YEAR}"
            / f"{YEAR}级智能科学与技术培养方案.xlsx").read_bytes()
    plan_form = {"year": str(YEAR), "major": "智能科学与技术"}
    k.call(c, "POST", "/api/plans", 422, "PLAN_CHECK_FAILED", content_type="multipart/form-data",
           data={**plan_form, "file": (io.BytesIO(tiny_xlsx()), "p.xlsx")})
    k.call(c, "POST", "/api/plans", 400, "MISSING_MAJOR", content_type="multipart/form-data",
           data={"year": str(YEAR), "file": (io.BytesIO(plan), "p.xlsx")})
    k.call(c, "POST", "/api/plans/{year}/{major}/rollback", 409, "PLAN_NO_VERSIONS",
           year=YEAR, major="ai")
    k.call(c, "POST", "/api/plans", 200, content_type="multipart/form-data",
           data={**plan_form, "file": (io.BytesIO(plan), "p.xlsx")})
    k.call(c, "POST", "/api/plans/{year}/{major}/rollback", 404, "PLAN_VERSION_NOT_FOUND",
           year=YEAR, major="ai", query_string={"version": "7"})
    k.call(c, "POST", "/api/plans/{year}/{major}/rollback", 400, "BAD_VERSION",
           year=YEAR, major="ai", query_string={"version": "x"})
    k.call(c, "DELETE", "/api/plans/{year}/{major}", 200, year=YEAR, major="ai")
    k.call(c, "POST", "/api/plans/{year}/{major}/rollback", 200, year=YEAR, major="ai")
    k.call(c, "DELETE", "/api/plans/{year}/{major}", 404, "PLAN_NOT_FOUND", year=YEAR,
           major="天文")
    k.call(c, "DELETE", "/api/plans/{year}/{major}", 400, "BAD_YEAR", year="20x4", major="ai")

    # Completion notifications (service/webhook_routes.py): manage, test, list deliveries.
    k.call(c, "GET", "/api/webhooks", 200)
    hook = k.call(c, "POST", "/api/webhooks", 201,
                  json={"url": "http://127.0.0.1:9/hook"}).json["data"]["webhook"]
    k.call(c, "POST", "/api/webhooks", 400, "BAD_WEBHOOK", json={"url": "ftp://x"})
    k.call(c, "POST", "/api/webhooks", 400, "BAD_JSON", data="[]",
           content_type="application/json")
    k.call(c, "POST", "/api/webhooks/{webhook_id}/test", 202, webhook_id=hook["id"])
    k.call(c, "GET", "/api/webhooks", 200)
    k.call(c, "GET", "/api/webhook-deliveries", 200, query_string={"limit": "5"})
    k.call(c, "GET", "/api/webhook-deliveries", 400, "BAD_LIMIT", query_string={"limit": "0"})
    k.call(c, "PATCH", "/api/webhooks/{webhook_id}", 200, webhook_id=hook["id"],
           json={"enabled": False, "events": ["task.failed"]})
    k.call(c, "PATCH", "/api/webhooks/{webhook_id}", 400, "BAD_WEBHOOK", webhook_id=hook["id"],
           json={"url": "http://elsewhere/"})
    k.call(c, "DELETE", "/api/webhooks/{webhook_id}", 200, webhook_id=hook["id"])
    for method, template in (("DELETE", "/api/webhooks/{webhook_id}"),
                             ("PATCH", "/api/webhooks/{webhook_id}"),
                             ("POST", "/api/webhooks/{webhook_id}/test")):
        k.call(c, method, template, 404, "WEBHOOK_NOT_FOUND", webhook_id="nope")
    k.call(c, "GET", "/api/webhooks", 403, "FORBIDDEN", environ_base={"REMOTE_ADDR": "10.0.0.1"})

    # Batches and schedules (service/batch_routes.py, schedule_routes.py).
    files = [(io.BytesIO(grades.read_bytes()), "一班.xlsx"), (io.BytesIO(b"junk"), "坏.xlsx")]
    bid = k.call(c, "POST", "/api/batch/start", 200, content_type="multipart/form-data",
                 data={"year": str(YEAR), "major": "ai", "files": files}).json["data"]["batch_id"]
    k.call(c, "POST", "/api/batch/start", 400, "MISSING_FILE", content_type="multipart/form-data",
           data={"year": str(YEAR)})
    end = time.monotonic() + 90
    while k.call(c, "GET", "/api/batch/status/{batch_id}", 200,
                 batch_id=bid).json["data"]["state"] == "running":
        assert time.monotonic() < end
        time.sleep(0.02)
    k.call(c, "GET", "/api/batch/status/{batch_id}", 400, "INVALID_BATCH_ID", batch_id="nope")
    k.call(c, "GET", "/api/batch/status/{batch_id}", 404, "BATCH_NOT_FOUND",
           batch_id=UNKNOWN_TASK_ID)
    k.call(c, "GET", "/api/batches", 200, query_string={"limit": "5"})
    k.call(c, "GET", "/api/batches", 400, "BAD_LIMIT", query_string={"limit": "0"})
    k.call(c, "GET", "/api/batch/result/{batch_id}", 200, batch_id=bid)
    k.call(c, "GET", "/api/batch/result/{batch_id}", 404, "BATCH_NOT_FOUND",
           batch_id=UNKNOWN_TASK_ID)
    k.call(c, "POST", "/api/batch/{batch_id}/cancel", 409, "BATCH_FINISHED", batch_id=bid)
    happ, hrunner = held
    # Held again (released above): the batch must still be running for its 409
    # and its cancel; a released fake job finished it first now and then.
    hrunner.release.clear()
    hc = happ.test_client()
    hbid = k.call(hc, "POST", "/api/batch/start", 200, content_type="multipart/form-data",
                  data={"year": str(YEAR), "files": [(io.BytesIO(tiny_xlsx()), "a.xlsx"),
                                                     (io.BytesIO(tiny_xlsx()), "b.xlsx")]}
                  ).json["data"]["batch_id"]
    k.call(hc, "GET", "/api/batch/result/{batch_id}", 409, "BATCH_NOT_FINISHED", batch_id=hbid)
    k.call(hc, "POST", "/api/batch/{batch_id}/cancel", 200, batch_id=hbid)
    k.call(hc, "POST", "/api/batch/{batch_id}/cancel", 404, "BATCH_NOT_FOUND",
           batch_id=UNKNOWN_TASK_ID)
    k.call(hc, "POST", "/api/schedules", 503, "SCHEDULES_NOT_CONFIGURED",
           json={"cron": "0 7 * * *", "year": YEAR, "source_dir": "x"})
    k.call(c, "GET", "/api/schedules", 200)
    sched = {"cron": "0 7 * * 1-5", "year": YEAR, "source_dir": "registrar"}
    sid = k.call(c, "POST", "/api/schedules", 200,
                 json=sched).json["data"]["schedule"]["schedule_id"]
    k.call(c, "POST", "/api/schedules", 400, "BAD_CRON", json={**sched, "cron": "* *"})
    k.call(c, "POST", "/api/schedules", 400, "SOURCE_OUTSIDE_ROOT", json={**sched, "source_dir": "/"})
    k.call(c, "POST", "/api/schedules/{schedule_id}/pause", 200, schedule_id=sid)
    k.call(c, "POST", "/api/schedules/{schedule_id}/resume", 200, schedule_id=sid)
    k.call(c, "GET", "/api/schedules", 200)
    k.call(c, "POST", "/api/schedules/{schedule_id}/pause", 404, "SCHEDULE_NOT_FOUND",
           schedule_id=UNKNOWN_TASK_ID)
    k.call(c, "POST", "/api/schedules/{schedule_id}/resume", 400, "INVALID_SCHEDULE_ID",
           schedule_id="nope")
    k.call(c, "DELETE", "/api/schedules/{schedule_id}", 200, schedule_id=sid)
    k.call(c, "DELETE", "/api/schedules/{schedule_id}", 404, "SCHEDULE_NOT_FOUND", schedule_id=sid)

    # Every documented operation answered at least once, and validated.
    answered = {(m, p) for m, p, _ in k.seen}
    assert answered == {(m, p) for p, ms in documented_operations().items() for m in ms}
    statuses = {s for _, _, s in k.seen}
    assert {200, 206, 304, 400, 404, 409, 410, 416, 503} <= statuses


def test_refusals_of_a_guarded_or_limited_service_conform(
        app_config: dict[str, Any], make_app: Any, tmp_path: Path) -> None:
    k = Contract()
    app_config.update(PREDICT_API_TOKEN=TOKEN, PREDICT_MAX_UPLOAD_MB=0.01)
    c = make_app().test_client()
    for path, methods in documented_operations().items():
        for method in methods:
            secured = DOC["paths"][path][method.lower()].get("security", DOC["security"])
            url = (path.replace("{task_id}", UNKNOWN_TASK_ID).replace("{filename}", "a.xlsx")
                   .replace("{snh}", "1").replace("{webhook_id}", "abc"))
            if secured == DOC["security"]:
                params = {k: v for k, v in (("task_id", UNKNOWN_TASK_ID), ("filename", "a.xlsx"),
                                            ("snh", "1"), ("webhook_id", "abc"))
                          if "{" + k + "}" in path}
                params.update({k: v for k, v in (("year", "2023"), ("major", "ai"))
                               if "{" + k + "}" in path})
                params.update({k: UNKNOWN_TASK_ID for k in ("batch_id", "schedule_id")
                               if "{" + k + "}" in path})
                r = k.call(c, method, path, 401, "UNAUTHORIZED", **params)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                url = url.replace("{year}", "2023").replace("{major}", "ai")
                url = url.replace("{batch_id}", UNKNOWN_TASK_ID).replace("{schedule_id}",
                                                                         UNKNOWN_TASK_ID)
                bad = c.open(url, method=method, headers={"X-API-Key": "wrong"})
                k.conform(bad, method, path)
                assert (bad.status_code, bad.json["code"]) == (401, "INVALID_TOKEN")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # /health without the token: only the public fields; with it: the details.
    public = k.call(c, "GET", "/health", 200).json["data"]
    assert set(public) == set(DOC["components"]["schemas"]["HealthData"]["required"])
    assert "pid" in k.call(c, "GET", "/health", 200, headers=bearer).json["data"]
    # Bigger than the upload limit plus the form's room: 413 before anything is parsed.
    k.call(c, "POST", "/api/task/start", 413, "FILE_TOO_LARGE", headers=bearer,
           **form(b"\0" * (2 * 1024 * 1024)))
    k.call(c, "GET", "/api/tasks", 200, headers={"X-API-Key": TOKEN})


def test_health_and_work_without_a_model_conform(app_config: dict[str, Any], make_app: Any,
                                                 tmp_path: Path) -> None:
    k = Contract()
    app_config["PREDICT_MODEL_DIR"] = tmp_path / "no-model"
    c = make_app().test_client()
    r = k.call(c, "GET", "/health", 503, "MODEL_UNAVAILABLE")
    assert r.json["data"]["model_loaded"] is False
    k.call(c, "GET", "/api/majors", 503, "MODEL_UNAVAILABLE")
    k.call(c, "POST", "/api/task/start", 503, "MODEL_UNAVAILABLE", **form(tiny_xlsx()))
    k.call(c, "POST", "/api/task/validate", 503, "MODEL_UNAVAILABLE", **form(tiny_xlsx()))
    k.call(c, "GET", "/api/monitor", 200)
