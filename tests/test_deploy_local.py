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
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.live_server import free_port, port_open, run_deploy_script

from destination_predictor.client import ApiClient, ApiError

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
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
    """Teardown safety net: the service's own pid only, checked like the script does."""
    pid_file = base / "shared" / "service.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if str(base) in cmdline and "gunicorn" in cmdline:
        os.kill(pid, 9)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the tests from a virtualenv: it seeds the deployed venv (--venv-from)")
    base = tmp_path_factory.mktemp("deploy") / "srv"
    dep = Deployment(base=base, port=free_port())
    proc = dep.run("deploy", "--port", str(dep.port), "--host", "127.0.0.1",
                   "--venv-from", str(VENV), "--health-timeout", "90")
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
    proc = dep.run("deploy", "--transfer", "tar")  # port, host, venv seed: kept from the last deploy
    assert proc.returncode == 0
    assert "复用虚拟环境" in proc.stdout
    assert dep.token() == token
    assert dep.current() != first
    assert os.readlink(dep.base / "previous") == first
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
