"""Secure by default: without a token the service listens on loopback only;
another address needs a token or an explicit, logged opt-in; ``/health`` tells
strangers only ok/degraded and the version."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from support.live_server import LiveServer, free_port
from support.paths import MODELS_DIR, PLANS_DIR, REPO

from destination_predictor.service.exposure import (
    ExposureRefused,
    bind_host,
    check_exposure,
    is_loopback,
)
from destination_predictor.service.settings import load_settings


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
    ("example.org", False), ("", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bind_hosts() -> None:
    assert [bind_host(b) for b in ("127.0.0.1:8080", "[::1]:80", "0.0.0.0:1", "unix:/run/s")] == [
        "127.0.0.1", "::1", "0.0.0.0", "unix:/run/s"]


def test_exposure_needs_a_token_or_the_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    check_exposure(["127.0.0.1"], load_settings({}, environ={}))
    with pytest.raises(ExposureRefused, match="PREDICT_API_TOKEN"):
        check_exposure(["0.0.0.0"], load_settings({}, environ={}))
    check_exposure(["0.0.0.0"], load_settings({"PREDICT_API_TOKEN": "t"}, environ={}))
    with caplog.at_level(logging.WARNING):
        check_exposure(["0.0.0.0"], load_settings({"PREDICT_ALLOW_ANONYMOUS": "1"}, environ={}))
    assert "SECURITY WARNING" in caplog.text


def test_the_default_host_is_loopback() -> None:
    assert load_settings({}, environ={}).host == "127.0.0.1"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
    env.update({"PREDICT_DATA_DIR": str(tmp_path / "data"), "PREDICT_MODEL_DIR": str(MODELS_DIR),
                "PREDICT_PLANS_DIR": str(PLANS_DIR)}, **extra)
    return env


@pytest.mark.parametrize("command", [
    [sys.executable, "async_api_server.py", "--host", "0.0.0.0"],
    [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "async_api_server:app",
     "-b", "0.0.0.0:{port}"],
], ids=["script", "gunicorn"])
def test_anonymous_public_listen_is_refused_at_start(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    cmd = [c.format(port=port) for c in command] + (["--port", str(port)] if "--host" in command
                                                     else [])
    run = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode != 0
    assert "PREDICT_API_TOKEN" in run.stderr + run.stdout


def test_debug_server_only_on_loopback(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "async_api_server.py", "--debug", "--host", "0.0.0.0",
                          "--port", str(free_port())], cwd=REPO,
                         env=_env(tmp_path, PREDICT_API_TOKEN="t"), capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "--debug" in run.stderr


@pytest.mark.slow
def test_opt_in_serves_anonymously_and_warns_at_every_start(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR,
                        env={"PREDICT_HOST": "0.0.0.0", "PREDICT_ALLOW_ANONYMOUS": "1"})
    with server:
        assert requests.get(f"{server.base}/api/majors", timeout=10).status_code == 200
        assert "SECURITY WARNING" in server.output()


def _health(client: Any, **kw: Any) -> dict[str, Any]:
    resp = client.get("/health", **kw)
    assert resp.status_code == 200
    return resp.get_json()["data"]


def test_health_details_need_the_token(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_API_TOKEN"] = "s3cret"
    client = make_app(app_config).test_client()
    public = _health(client)
    assert set(public) == {"status", "version", "model_loaded", "demo_model"}
    full = _health(client, headers={"Authorization": "Bearer s3cret"})
    assert {"pid", "free_disk_bytes", "tasks", "running"} <= set(full)
    assert set(_health(client, headers={"Authorization": "Bearer wrong"})) == set(public)


def test_without_a_token_details_only_for_loopback(client: Any) -> None:
    assert "pid" in _health(client)  # the test client comes from 127.0.0.1
    remote = _health(client, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert set(remote) == {"status", "version", "model_loaded", "demo_model"}


def test_data_files_are_private(app: Any) -> None:
    settings = app.extensions["predict"].settings
    for d in (settings.uploads_dir, settings.results_dir, settings.staging_dir):
        assert d.stat().st_mode & 0o777 == 0o700, d
    for f in (settings.db_path, settings.log_path):
        assert f.stat().st_mode & 0o077 == 0, f
