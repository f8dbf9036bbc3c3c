"""The deploy's nginx in front of gunicorn, as ``deploy/host.sh nginx-conf``
renders it, run by the test itself (``nginx -p <tmp> -c <conf>``, started
and stopped by its pid): what the proxy answers on its own -- a body over
the upload limit, a URI or a header too long, a service that is not
running -- keeps the service's error envelope
``{"success": false, "error": "<中文>", "code": "UPPER_SNAKE"}``.

Slow clients are tested against a real deployment (``test_deploy_local``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.live_server import (
    free_port,
    need_nginx,
    reachable_tmp_dir,
    wait_until_listening,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HOST_SH = REPO / "deploy" / "host.sh"


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    """nginx on a free port in front of a backend port where nothing listens."""
    nginx = need_nginx()
    with reachable_tmp_dir("deploy-proxy-") as base:
        (base / "shared").mkdir()
        (base / "shared" / "service.env").write_text("PREDICT_MAX_UPLOAD_MB=5\n")
        port = free_port()
        conf = subprocess.run(
            ["bash", str(HOST_SH), "nginx-conf", str(base), "--port", str(port),
             "--host", "127.0.0.1", "--backend-port", str(free_port())],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert conf.returncode == 0, conf.stderr
        prefix = base / "nginx"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(conf.stdout)
        log = prefix / "error.log"
        proc = subprocess.Popen([nginx, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
                                 "-e", str(log)], stdin=subprocess.DEVNULL)
        try:
            wait_until_listening(proc, port, log, "nginx", 10)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def assert_envelope(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"success", "error", "code"}, body
    assert body["success"] is False
    assert body["code"] == code
    assert re.search(r"[\u4e00-\u9fff]", body["error"]), body
    return str(body["error"])


def test_a_body_over_the_upload_limit_is_refused_by_the_proxy(proxy: str) -> None:
    resp = requests.post(f"{proxy}/api/task/start", data=b"\0" * (60 << 20), timeout=60)
    assert "5 MB" in assert_envelope(resp, 413, "FILE_TOO_LARGE")
    # Within the limit (5 MB + 1 MB of form) the body goes on to the service.
    resp = requests.post(f"{proxy}/api/task/start", data=b"\0" * (5 << 20), timeout=60)
    assert resp.status_code == 502


def test_a_stopped_service_is_a_json_bad_gateway(proxy: str) -> None:
    assert_envelope(requests.get(f"{proxy}/health", timeout=10), 502, "BAD_GATEWAY")
    assert_envelope(requests.get(f"{proxy}/api/majors", timeout=10), 502, "BAD_GATEWAY")


def test_too_long_uri_and_header_are_json(proxy: str) -> None:
    assert_envelope(requests.get(f"{proxy}/{'a' * 9000}", timeout=10), 414, "URI_TOO_LONG")
    assert_envelope(requests.get(f"{proxy}/health", headers={"X-Big": "b" * 9000}, timeout=10),
                    431, "HEADERS_TOO_LARGE")
