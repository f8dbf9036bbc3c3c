"""``deploy-async.sh`` over real SSH: a private sshd on a free loopback port
(its own host key, its own authorized_keys, key-only login), a deploy to
``root@127.0.0.1`` into a temp path, then ``status``, ``logs``, ``restart``
and ``stop`` from this side, the way an operator drives a cloud server.
Every one of them sends ``deploy/host.sh`` over ssh and runs it there; the
deploy first uploads the code with ``deploy/transfer.sh`` (rsync over ssh).

Needs root and openssh-server/openssh-client/rsync/nginx (``.ci/run``
installs them); skipped, with the reason, where they are missing.

Secrets travel with the SSH connection's stdin, never on a command line:
a deploy with a database password is watched from ``/proc/*/cmdline`` (both
ends are this machine) while it runs.
"""

from __future__ import annotations

import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live_server import (
    free_port,
    kill_leftover,
    port_open,
    reachable_tmp_dir,
    run_deploy_script,
)
from support.sshd import Sshd, running_sshd

from destination_predictor.client import ApiClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with reachable_tmp_dir("deploy-ssh-") as path:
        yield path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, work: Path) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd"), work) as server:
        yield server


def stop_everything(base: Path) -> None:
    run_deploy_script("stop", "--local", str(base))
    kill_leftover(base / "shared" / "service.pid", str(base))
    kill_leftover(base / "nginx" / "nginx.pid", str(base))


def test_deploy_over_ssh_then_status_logs_restart_stop(sshd: Sshd) -> None:
    base = sshd.work / "remote" / "srv"
    port = free_port()
    remote = [*sshd.target_args(), "--path", str(base)]
    try:
        proc = run_deploy_script("deploy", *remote, "--source", str(sshd.source),
                                 "--port", str(port), "--host", "127.0.0.1",
                                 "--backend-port", str(free_port()),
                                 "--venv-from", str(sshd.venv), "--health-timeout", "90")
        assert proc.returncode == 0
        assert "rsync over ssh" in proc.stdout
        assert f"{base}/shared/api_token" in proc.stdout  # where the token is

        token = (base / "shared" / "api_token").read_text().strip()
        with ApiClient(f"http://127.0.0.1:{port}", token=token, timeout=10) as client:
            assert client.health()["status"] == "ok"
            assert client.majors()

        status = run_deploy_script("status", *remote)
        assert status.returncode == 0
        assert "健康检查:   正常" in status.stdout
        assert f"127.0.0.1:{port}" in status.stdout

        logs = run_deploy_script("logs", *remote, "--lines", "50")
        assert logs.returncode == 0
        assert "event=service.started" in logs.stdout

        pid = int((base / "shared" / "service.pid").read_text())
        assert run_deploy_script("restart", *remote).returncode == 0
        assert int((base / "shared" / "service.pid").read_text()) != pid

        stop = run_deploy_script("stop", *remote)
        assert stop.returncode == 0
        assert not port_open(port)
        assert run_deploy_script("status", *remote).returncode == 3
    finally:
        stop_everything(base)


class CmdlineWatch:
    """Reads every process's ``/proc/<pid>/cmdline`` in a loop until stopped,
    recording the ones that contain ``needle``: what ``ps`` shows every user."""

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode()
        self.hits: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if self.needle in cmdline:
                    self.hits.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            time.sleep(0.005)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_secrets_never_reach_a_command_line(sshd: Sshd, tmp_path: Path) -> None:
    password = "Pw-" + secrets.token_hex(12)
    url = f"postgresql://app:{password}@127.0.0.1:1/predictions"
    base = sshd.work / "secret" / "srv"
    remote = [*sshd.target_args(), "--path", str(base), "--source", str(sshd.source),
              "--port", str(free_port()), "--host", "127.0.0.1", "--backend-port", str(free_port()),
              "--venv-from", str(sshd.venv), "--health-timeout", "90"]
    env_file = tmp_path / "secrets.env"
    env_file.write_text(f"# the database, with its password\nPREDICT_DATABASE_URL={url}\n")
    env_file.chmod(0o600)
    try:
        # On the operator's command line it is in `ps` already: --env refuses
        # it before starting anything (host.sh's check, ssh) that would show it too.
        with CmdlineWatch(password) as watch:
            refused = run_deploy_script("deploy", *remote, "--env", f"PREDICT_DATABASE_URL={url}")
        assert refused.returncode != 0
        assert "--env-file" in refused.stderr
        # Only the operator's own command shows it (seen as "bash deploy-async.sh ..." or,
        # for an instant while the shebang runs, "/usr/bin/env bash deploy-async.sh ...").
        assert all(any(arg.endswith("deploy-async.sh") for arg in hit.split()[:3])
                   for hit in watch.hits), watch.hits

        with CmdlineWatch(password) as watch:
            proc = run_deploy_script("deploy", *remote, "--env-file", str(env_file))
        assert proc.returncode == 0
        assert watch.scans > 50
        assert watch.hits == [], watch.hits
        assert password not in proc.stdout + proc.stderr
        service_env = base / "shared" / "service.env"
        assert stat.S_IMODE(service_env.stat().st_mode) == 0o600
        assert f"PREDICT_DATABASE_URL={url}" in service_env.read_text().splitlines()
    finally:
        stop_everything(base)


def test_unreachable_host_is_refused_clearly(sshd: Sshd, tmp_path: Path) -> None:
    dead_port = free_port()  # nothing listens there
    proc = run_deploy_script("deploy", "root@127.0.0.1", "--ssh-port", str(dead_port),
                      "--identity", str(sshd.key), "--known-hosts", str(sshd.known_hosts),
                      "--path", str(tmp_path / "srv"), timeout=60)
    assert proc.returncode != 0
    assert "无法通过 SSH 登录" in proc.stderr
    assert not (tmp_path / "srv").exists()
