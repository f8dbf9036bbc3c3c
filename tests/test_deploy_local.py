"""``deploy-async.sh deploy --local`` with real processes: the operators' whole
life cycle on one machine -- first deploy, redeploy, restart, a broken
release that must roll back by itself, ``rollback``, ``stop`` -- and the
promise behind all of it: uploads, results and task records are never lost.

The tests share one deployment (module fixture) and run in file order, as an
operator would; every step checks the service from outside, over HTTP.
The deployed venv is seeded from the venv running the tests (``--venv-from``),
so no package is downloaded.

``deploy-async.sh`` runs ``deploy/transfer.sh`` and ``deploy/host.sh`` for the
work; the tests drive only the operators' command, as before. The health
check those scripts rely on, ``destination_predictor.client.probe``, is
tested here too: against the deployment, and with nothing listening.

The deploy's hardening, each against the real processes: nginx in front
(slow clients cannot starve ``/health``), the service as its own system
user, no start without a token, a stale pid file never signalled, and only
what git tracks shipped (local grade data never leaves the machine).
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from support.live_server import (
    SERVICE_USER,
    free_port,
    kill_leftover,
    need_nginx,
    port_open,
    proc_uid,
    reachable_tmp_dir,
    run_deploy_script,
    service_user_venv,
    source_checkout,
)

from destination_predictor.client import ApiClient, ApiError

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HOST_SH = REPO / "deploy" / "host.sh"
# Local data an operator may leave in the project folder: never shipped.
LOCAL_DATA = ("predictions.sqlite3", "成绩.xlsx")
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "uploads",
    "results", "test-artifacts", "bench-out", "node_modules", "*.log", "tasks.sqlite3*")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Deployment:
    base: Path
    port: int
    source: Path  # the git checkout it was deployed from

    @property
    def shared(self) -> Path:
        return self.base / "shared"

    def token(self) -> str:
        return (self.shared / "api_token").read_text().strip()

    def client(self) -> ApiClient:
        return ApiClient(f"http://127.0.0.1:{self.port}", token=self.token(), timeout=10)

    def current(self) -> str:
        return os.readlink(self.base / "current")

    def pid(self) -> int:
        return int((self.shared / "service.pid").read_text().strip())

    def run(self, sub: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_deploy_script(sub, "--local", str(self.base), *extra)


def _stop_leftover(base: Path) -> None:
    """Teardown safety net: the service's and the proxy's own pids only."""
    kill_leftover(base / "shared" / "service.pid", str(base))
    kill_leftover(base / "nginx" / "nginx.pid", str(base))


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the tests from a virtualenv: it seeds the deployed venv (--venv-from)")
    need_nginx()
    with reachable_tmp_dir("deploy-local-") as tmp:
        # The project as operators deploy it: a git checkout, with local data
        # lying around in it (grades, a predictions database) that must stay here.
        source = source_checkout(tmp / "source")
        for name in LOCAL_DATA:
            (source / name).write_bytes(b"student grades\n")
        base = tmp / "srv"
        dep = Deployment(base=base, port=free_port(), source=source)
        proc = dep.run("deploy", "--source", str(source), "--port", str(dep.port),
                       "--host", "127.0.0.1", "--backend-port", str(free_port()),
                       "--venv-from", str(service_user_venv(tmp / "seed")),
                       "--health-timeout", "90")
        try:
            assert proc.returncode == 0, proc.stdout + proc.stderr
            yield dep
        finally:
            dep.run("stop")
            _stop_leftover(base)


@pytest.fixture(scope="module")
def completed_task(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A task run to completion on the first release; later steps must keep serving it."""
    from destination_predictor.demo.grades import make_grade_workbook

    grades = make_grade_workbook(tmp_path_factory.mktemp("grades") / "grades_2024.xlsx", 2024, 24,
                                 plans_dir=REPO / "plans", seed=5)
    with deployment.client() as client:
        task_id = client.start(grades, 2024)
        final = client.wait(task_id, interval=0.5, timeout=180)
    assert final["status"] == "completed", final
    return task_id


def assert_task_served(dep: Deployment, task_id: str, dest: Path) -> None:
    import openpyxl

    with dep.client() as client:
        data = client.status(task_id)
        assert data["status"] == "completed"
        files = client.download_all(task_id, dest)
    assert files and len(files) == len(data["result_files"])
    wb = openpyxl.load_workbook(files[0], read_only=True)
    try:
        assert wb.sheetnames[0] == "Predictions"
    finally:
        wb.close()


def test_first_deploy_is_healthy_with_data_outside_the_release(deployment: Deployment) -> None:
    dep = deployment
    assert dep.current().startswith("releases/")
    release = dep.base / dep.current()
    assert (release / "async_api_server.py").is_file()
    assert (release / ".venv").is_symlink()
    for d in ("uploads", "results", "venvs"):
        assert (dep.shared / d).is_dir()
    token_file = dep.shared / "api_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(dep.token()) >= 32

    with dep.client() as client:
        assert client.health()["status"] == "ok"
        assert client.majors()
    # The token is really required.
    with pytest.raises(ApiError) as err, ApiClient(f"http://127.0.0.1:{dep.port}") as anon:
        anon.majors()
    assert err.value.status == 401

    status = dep.run("status")
    assert status.returncode == 0
    assert "健康检查:   正常" in status.stdout
    assert str(token_file) in status.stdout


def test_slow_clients_cannot_starve_health(deployment: Deployment) -> None:
    """50 connections trickling a request line or header (the slowloris
    pattern that held all 8 gunicorn threads): nginx holds them, /health
    through the same port still answers at once."""
    port = deployment.port
    slow: list[socket.socket] = []
    latencies: list[float] = []
    try:
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /hea" if i % 2 else b"GET /health HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        for round_ in range(4):  # bounded: one more fragment per connection per round
            for i, s in enumerate(slow):
                s.sendall(b"l" if i % 2 else f"X-Slow-{round_}: 1\r\n".encode())
            for _ in range(3):
                start = time.monotonic()
                try:
                    ok = requests.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
                except requests.RequestException:
                    ok = False
                latencies.append(time.monotonic() - start if ok else math.inf)
                assert ok, f"/health did not answer under 50 slow connections: {latencies}"
                time.sleep(0.25)
    finally:
        for s in slow:
            s.close()
    p50, worst = statistics.median(latencies), max(latencies)
    print(f"/health under 50 slow connections: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert worst < 1.0, latencies


def test_release_holds_tracked_files_only(deployment: Deployment) -> None:
    """The source checkout had local grade data lying around: not one byte of it is shipped."""
    release = deployment.base / deployment.current()
    for name in LOCAL_DATA:
        assert not (release / name).exists(), f"{name} was shipped"
    assert (release / "models" / "catboost_model.cbm").is_file()
    assert list((release / "plans").rglob("*.xlsx"))
    assert (release / "deploy" / "run-service.sh").is_file()


def test_service_runs_as_its_own_user(deployment: Deployment) -> None:
    dep = deployment
    uid = proc_uid(dep.pid())
    if os.geteuid() != 0:
        assert uid == os.geteuid()  # nothing to switch to without root
        return
    user = pwd.getpwnam(SERVICE_USER)
    assert uid == user.pw_uid
    assert user.pw_shell == "/usr/sbin/nologin"
    # Its data and its secrets are its own; the deploy's own files stay root's.
    for path in (dep.shared / "uploads", dep.shared / "results", dep.shared / "api_token",
                 dep.shared / "service.env", dep.shared / "tasks.sqlite3"):
        assert path.stat().st_uid == user.pw_uid, path
    assert stat.S_IMODE((dep.shared / "service.env").stat().st_mode) == 0o600
    assert (dep.shared / "venvs").stat().st_uid == 0


def test_systemd_unit_is_hardened(deployment: Deployment) -> None:
    """No systemd here: the unit as the deploy would install it, printed by host.sh."""
    def unit(*extra: str) -> list[str]:
        proc = subprocess.run(["bash", str(HOST_SH), "unit", str(deployment.base), *extra],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    lines = unit()
    for want in (f"User={SERVICE_USER}", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 f"ReadWritePaths={deployment.shared}", "PrivateTmp=yes", "ProtectHome=yes",
                 "MemoryMax=80%"):
        assert want in lines, want
    assert "MemoryMax=3G" in unit("--memory-max", "3G")


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    """The probe as deploy/host.sh runs it: a module of the release's code."""
    return subprocess.run([sys.executable, "-m", "destination_predictor.client.probe", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def assert_one_chinese_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    assert re.search(r"[\u4e00-\u9fff]", text), text
    return text.strip()


def test_probe_passes_with_the_deploys_token_only(deployment: Deployment, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{deployment.port}"
    ok = run_probe("--base-url", url, "--token-file", str(deployment.shared / "api_token"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("status=ok model=")
    assert ok.stderr == ""

    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64 + "\n")
    refused = run_probe("--base-url", url, "--token-file", str(wrong))
    assert refused.returncode == 1
    line = assert_one_chinese_line(refused.stderr)
    assert "/api/majors" in line and "HTTP 401" in line
    assert refused.stdout == ""


def test_redeploy_keeps_token_and_tasks(deployment: Deployment, completed_task: str,
                                        tmp_path: Path) -> None:
    dep = deployment
    token, first = dep.token(), dep.current()
    # port, host, venv seed: kept from the last deploy
    proc = dep.run("deploy", "--source", str(dep.source), "--transfer", "tar")
    assert proc.returncode == 0
    assert "复用虚拟环境" in proc.stdout
    assert dep.token() == token
    assert dep.current() != first
    assert os.readlink(dep.base / "previous") == first
    for name in LOCAL_DATA:  # tar ships the same file list as rsync
        assert not (dep.base / dep.current() / name).exists()
    assert_task_served(dep, completed_task, tmp_path / "dl")


def test_restart_keeps_completed_tasks(deployment: Deployment, completed_task: str,
                                       tmp_path: Path) -> None:
    dep = deployment
    before = dep.pid()
    proc = dep.run("restart")
    assert proc.returncode == 0
    assert dep.pid() != before
    assert not pid_alive(before)
    assert_task_served(dep, completed_task, tmp_path / "dl")
    # Still with its plans: the plan store's own folders in shared/plans
    # (versions/, builds/) are not taken for an operator's real plans.
    assert (dep.shared / "plans" / "versions").is_dir()
    with dep.client() as client:
        assert client.majors()


def test_broken_release_rolls_back_by_itself(deployment: Deployment, completed_task: str,
                                             tmp_path: Path) -> None:
    dep = deployment
    source = tmp_path / "broken-source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE, symlinks=True)
    with (source / "async_api_server.py").open("a", encoding="utf-8") as fh:
        fh.write("\ndef broken(:\n")
    working = dep.current()

    proc = dep.run("deploy", "--source", str(source), "--health-timeout", "60")
    assert proc.returncode != 0
    assert "自动回滚" in proc.stderr
    assert "SyntaxError" in proc.stdout + proc.stderr  # the log tail shows why
    assert dep.current() == working
    failed = [p.name for p in (dep.base / "releases").iterdir() if p.name.endswith("-failed")]
    assert len(failed) == 1

    with dep.client() as client:
        assert client.health()["status"] == "ok"
    assert_task_served(dep, completed_task, tmp_path / "dl")


def test_rollback_switches_to_previous_and_back(deployment: Deployment) -> None:
    dep = deployment
    cur, prev = dep.current(), os.readlink(dep.base / "previous")
    assert dep.run("rollback").returncode == 0
    assert dep.current() == prev
    assert os.readlink(dep.base / "previous") == cur
    with dep.client() as client:
        assert client.health()["status"] == "ok"
    assert dep.run("rollback").returncode == 0
    assert dep.current() == cur


def test_logs_show_the_service_log(deployment: Deployment) -> None:
    proc = deployment.run("logs", "--lines", "20")
    assert proc.returncode == 0
    assert f"async_api_{deployment.port}.log" in proc.stdout
    assert "event=service.started" in proc.stdout


def test_stop_ends_the_service_and_keeps_the_data(deployment: Deployment,
                                                  completed_task: str) -> None:
    dep = deployment
    pid = dep.pid()
    proc = dep.run("stop")
    assert proc.returncode == 0
    assert not pid_alive(pid)
    assert not port_open(dep.port)
    assert not (dep.shared / "service.pid").exists()
    assert dep.run("status").returncode == 3
    assert dep.run("stop").returncode == 0  # idempotent
    # Nothing of the data went with it.
    assert any(p.name.startswith(completed_task) for p in (dep.shared / "results").iterdir())
    assert (dep.shared / "tasks.sqlite3").is_file()


def test_no_token_no_service(deployment: Deployment) -> None:
    """Fails closed: with the token file gone, neither a restart nor the runner
    itself (systemd's ExecStart) starts the service anonymously."""
    dep = deployment  # stopped by the previous test
    token = dep.shared / "api_token"
    saved, owner = token.read_bytes(), token.stat()
    token.unlink()
    try:
        proc = dep.run("restart")
        assert proc.returncode != 0
        assert "令牌" in proc.stderr
        assert not port_open(dep.port)
        runner = subprocess.run(
            ["bash", str(dep.base / "current" / "deploy" / "run-service.sh"), str(dep.base)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert runner.returncode != 0
        assert "令牌" in runner.stderr
    finally:
        dep.run("stop")
        token.write_bytes(saved)
        os.chown(token, owner.st_uid, owner.st_gid)
        token.chmod(0o600)


def fake_deploy_path(base: Path) -> Path:
    """A deploy path as the pid-file mode leaves it, with nothing of ours running."""
    shared = base / "shared"
    shared.mkdir(parents=True)
    (base / "releases" / "20000101T000000Z").mkdir(parents=True)
    os.symlink("releases/20000101T000000Z", base / "current")
    (shared / "deploy.conf").write_text("PORT=1\nMANAGER=pid\n")
    (shared / "api_token").write_text("0" * 64 + "\n")  # so restart gets as far as stopping
    return shared


@pytest.mark.parametrize("sub", ["stop", "restart"])
@pytest.mark.parametrize("start_record", ["none", "other"])
def test_a_lookalike_pid_is_never_signalled(tmp_path: Path, sub: str, start_record: str) -> None:
    """A stale pid that now names a process whose command line holds both
    "gunicorn" and the deploy path (a `tail -F` of gunicorn.log): its start
    time is not the one recorded, so neither stop nor restart signals it."""
    shared = fake_deploy_path(tmp_path / "srv")
    log = shared / "gunicorn.log"
    log.touch()
    tail = subprocess.Popen(["tail", "-F", str(log)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        (shared / "service.pid").write_text(f"{tail.pid}\n")
        if start_record == "other":
            (shared / "service.pid.start").write_text("12345\n")
        run_deploy_script(sub, "--local", str(tmp_path / "srv"))
        time.sleep(0.2)
        assert tail.poll() is None, f"{sub} signalled a process that was not the service"
    finally:
        tail.kill()
        tail.wait()


def test_stop_never_kills_a_foreign_pid(tmp_path: Path) -> None:
    """A stale pid file that names some other process: only the file goes."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        base = tmp_path / "srv"
        shared = base / "shared"
        shared.mkdir(parents=True)
        (base / "releases" / "20000101T000000Z").mkdir(parents=True)
        os.symlink("releases/20000101T000000Z", base / "current")
        (shared / "deploy.conf").write_text("PORT=1\nMANAGER=pid\n")
        (shared / "service.pid").write_text(f"{other.pid}\n")
        proc = run_deploy_script("stop", "--local", str(base))
        assert proc.returncode == 0
        assert other.poll() is None
        assert not (shared / "service.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_probe_fails_in_one_chinese_line_when_nothing_listens(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from destination_predictor.client.probe import main

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--base-url", url, "--timeout", "2"]) == 1
    out = capsys.readouterr()
    line = assert_one_chinese_line(out.err)
    assert "/health" in line and "无法连接服务" in line
    assert out.out == ""

    # Arguments it cannot use are a different exit code, still one line.
    assert main(["--base-url", url, "--token-file", str(tmp_path / "missing")]) == 2
    assert "令牌文件" in assert_one_chinese_line(capsys.readouterr().err)
    assert main(["--base-url", "127.0.0.1:8080"]) == 2
    assert "--base-url" in assert_one_chinese_line(capsys.readouterr().err)


def test_probe_fails_when_the_api_answers_without_a_token(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A service whose /api answers anonymously (a start without the token)
    must never pass the deploy's health check."""
    from destination_predictor.client.probe import main

    class Open(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = (b'{"status": "ok"}' if self.path == "/health"
                    else b'{"success": true, "data": {"majors": {"2024": []}}}')
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Open)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text("a" * 64 + "\n")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["--base-url", url, "--token-file", str(token), "--timeout", "5"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    out = capsys.readouterr()
    line = assert_one_chinese_line(out.err)
    assert "/api/majors" in line and "令牌" in line
    assert out.out == ""
