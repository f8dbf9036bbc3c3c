"""Property-based fuzzing of the OpenAPI document against a real service:
schemathesis generates requests for every documented operation from
``destination_predictor/service/openapi.json`` and sends them to gunicorn
(``LiveServer``, the project's ``gunicorn.conf.py``, jobs in child processes),
with the API token set and sent on every generated request.

Enabled checks (``CHECKS`` below; the others are off):

- ``not_a_server_error``: no answer with a 5xx status. The server has an
  import database (SQLite), so the import route answers 4xx rather than 503
  ``IMPORT_NOT_CONFIGURED``, and a schedule root (an empty folder), so
  ``POST /api/schedules`` answers rather than 503 ``SCHEDULES_NOT_CONFIGURED``.
- ``status_code_conformance``: every status is documented for its operation.
- ``content_type_conformance``: the Content-Type is one documented for that status.
- ``response_schema_conformance``: the body validates against the documented schema.
- ``response_headers_conformance``: required documented headers are there and valid.
- ``negative_data_rejection``: a request that violates the document is refused (4xx).
- ``unsupported_method``: an undocumented method on a documented path answers 405.
- ``ignored_auth``: each operation that needs the token is repeated without it
  and with a wrong one, and must answer 401 (about 450 extra requests).

Off on purpose: ``positive_data_acceptance`` (a schema-valid upload is still
refused with 400 unless its bytes are a real workbook of a year with plans:
the document cannot say that); the stateful checks (``use_after_free``,
``ensure_resource_availability``, ``object_level_authorization``: no
operation deletes what another reads, and there is one user);
``missing_required_header`` and ``allow_header_conformance`` (no required
request header is documented; the Allow header is checked by
``test_openapi.py``).

Bounds, sized so the whole module takes well under a minute on two cores
(about 30 s here: 3,325 generated cases, 4,231 requests, 40 operations):
``MAX_EXAMPLES`` generated cases per operation in the fuzzing phase (the
uploads ``UPLOAD_EXAMPLES``), plus schemathesis' deterministic coverage phase
(boundary and invalid values, undocumented methods); a fixed seed
(``PREDICT_FUZZ_SEED`` overrides it) and no example database, so a run is
reproducible. About one positive case in three that has a task id is sent with a real
completed task (and its result file) made before fuzzing, so the status,
download, cancel and import operations are also reached past the 404.

``test_fuzz_summary`` reports the number of generated cases, the number of
requests the server received (its access log, so the checks' extra requests
count too) and the time taken, and checks that every operation was fuzzed and
that the access log has no 5xx.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from support.live_server import LiveServer
from support.paths import MODELS_DIR, PLANS_DIR
from support.service import grade_workbook

from destination_predictor.service import openapi

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token"
SEED = int(os.environ.get("PREDICT_FUZZ_SEED", "20240917"))
MAX_EXAMPLES = 100
UPLOAD_EXAMPLES = 30
# Which schemathesis checks run: True = enabled (why, in the module docstring).
CHECKS = {
    "not_a_server_error": True,
    "status_code_conformance": True,
    "content_type_conformance": True,
    "response_schema_conformance": True,
    "response_headers_conformance": True,
    "negative_data_rejection": True,
    "unsupported_method": True,
    "ignored_auth": True,
    "positive_data_acceptance": False,
    "use_after_free": False,
    "ensure_resource_availability": False,
    "object_level_authorization": False,
    "missing_required_header": False,
    "allow_header_conformance": False,
}

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "checks": {
        **{name: {"enabled": on} for name, on in CHECKS.items()},
        # Any refusal counts, also gunicorn's own 414 (request line over 4094 bytes) and
        # 431; a 5xx is still a failure of not_a_server_error.
        "negative_data_rejection": {"enabled": True, "expected-statuses": ["4xx", "5xx"]},
    },
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
    # Security parameters are not generated (negative mode would send a wrong token on a
    # third of the cases, all answered 401): the token below is sent on every request, and
    # wrong tokens are tested by test_openapi.py.
    "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none",
                   "with-security-parameters": False},
    # Either scheme the document allows carries the token (none is left to chance).
    "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}, "apiKeyAuth": {"api_key": TOKEN}}},
    # The two uploads (start and validate) are bounded tighter: the service refuses
    # random bytes with 400 before anything heavy, so more cases find little more.
    "operations": [{"include-operation-id": ["startTask", "validateTask"],
                    "generation": {"max-examples": UPLOAD_EXAMPLES}}],
})
SCHEMA = schemathesis.openapi.from_path(openapi.DOCUMENT, config=CONFIG)

# (method, path template) -> cases sent; filled by the fuzz test, read by the summary.
SENT: dict[str, int] = {}
STARTED: list[float] = []


class Service:
    def __init__(self, server: LiveServer, access_log: Path) -> None:
        self.server = server
        self.access_log = access_log
        self.task_id = ""
        self.files: list[str] = []
        self.setup_requests = 0

    def requests_received(self) -> int:
        return sum(1 for _ in self.access_log.open(encoding="utf-8", errors="replace"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("fuzz")
    access_log = base / "access.log"
    schedule_root = base / "exports"
    schedule_root.mkdir()
    server = LiveServer(base / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR, token=TOKEN,
                        env={"PREDICT_DATABASE_URL": f"sqlite:///{base / 'import.sqlite3'}",
                             "PREDICT_SCHEDULE_ROOT": str(schedule_root),
                             "PREDICT_ACCESS_LOG": str(access_log)})
    with server:
        svc = Service(server, access_log)
        # One real completed task, so path parameters can name something that exists.
        workbook = grade_workbook(base / "grades.xlsx", 12, seed=3)
        with workbook.open("rb") as fh:
            r = requests.post(f"{server.base}/api/task/start", headers=server.headers(),
                              files={"file": ("grades.xlsx", fh)}, data={"year": "2023"},
                              timeout=30)
        assert r.status_code == 200, r.text
        svc.task_id = r.json()["data"]["task_id"]
        end = time.monotonic() + 60
        while True:
            data = server.get(f"/api/task/status/{svc.task_id}").json()["data"]
            if data["status"] in ("completed", "failed") or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert data["status"] == "completed", data
        svc.files = data["result_files"]
        # The served document is the one fuzzed, and needs no token.
        assert requests.get(f"{server.base}/api/openapi.json", timeout=10).json() == SCHEMA.raw_schema
        time.sleep(0.2)  # gunicorn writes the access log line after the answer
        svc.setup_requests = svc.requests_received()
        yield svc


def names_a_real_task(case: Any) -> bool:
    """About one positive case in three that has a task id gets the real task's
    instead: chosen from the generated value, so a run stays reproducible (a
    ``given`` strategy would switch off schemathesis' coverage phase). Never a
    negative case: its invalid task id may be what makes it negative, and
    schemathesis would still expect the refusal after the swap."""
    task_id = (case.path_parameters or {}).get("task_id")
    mode = getattr(getattr(case.meta, "generation", None), "mode", None)
    return (task_id is not None and mode is not None and mode.is_positive
            and zlib.crc32(str(task_id).encode()) % 3 == 0)


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz(case: Any, service: Service) -> None:
    if not STARTED:
        STARTED.append(time.monotonic())
    if names_a_real_task(case):
        case.path_parameters["task_id"] = service.task_id
        if "filename" in case.path_parameters:
            case.path_parameters["filename"] = service.files[-1]
    label = f"{case.operation.method.upper()} {case.operation.path}"
    SENT[label] = SENT.get(label, 0) + 1
    case.call_and_validate(base_url=service.server.base, timeout=30)


def test_fuzz_summary(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """How much was sent, how long it took, and that every operation was fuzzed."""
    if not SENT:
        pytest.skip("test_fuzz did not run in this session")
    time.sleep(0.2)
    received = service.requests_received() - service.setup_requests
    seconds = time.monotonic() - STARTED[0]
    documented = {f"{m.upper()} {p}" for p, item in SCHEMA.raw_schema["paths"].items()
                  for m in item if m in ("get", "post", "put", "patch", "delete")}
    assert set(SENT) == documented
    log = service.access_log.read_text("utf-8", errors="replace")
    assert not re.search(r'" 5\d\d ', log), "a 5xx in the access log"
    with capsys.disabled():
        print(f"\nfuzz: {sum(SENT.values())} generated cases over {len(SENT)} operations, "
              f"{received} requests received by the server in {seconds:.1f} s (seed {SEED})")
    assert received >= sum(SENT.values())
