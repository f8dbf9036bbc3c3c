"""The service as operators run it, for the tests that need a real server:
gunicorn with the project's ``gunicorn.conf.py`` (or ``python
async_api_server.py``) on a free loopback port, in its own process group.

The server's environment is this process's minus every inherited
``PREDICT_*`` variable, plus what the test gives: what the developer's shell
happens to export never reaches the server under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest
import requests

from support.paths import REPO

DEPLOY_SCRIPT = REPO / "deploy-async.sh"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(proc: subprocess.Popen[Any], port: int, log: Path, name: str,
                         timeout: float) -> None:
    """Wait for a server process the test started to listen on ``port``; fail with its log."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        assert proc.poll() is None, f"{name} exited: {log.read_text() if log.exists() else ''}"
        assert time.monotonic() < deadline, f"{name} did not listen within {timeout:g} s"
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_deploy_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(DEPLOY_SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    # Shown by pytest when a test fails: what the operator would have seen.
    print(f"$ deploy-async.sh {' '.join(args)}\n{proc.stdout}\n{proc.stderr}\nrc={proc.returncode}")
    return proc


# --- deploy helpers: nginx, the service user, a source checkout ------------------------

SERVICE_USER = "prediction"  # deploy/host.sh's default --user


def nginx_binary() -> str | None:
    """Debian's nginx (``make system-deps``), which the deploy puts in front of gunicorn."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def not_installed(reason: str) -> NoReturn:
    """A real-process test whose program is missing: skipped (with the reason)
    on a developer's machine, failed in CI, where make system-deps installs it."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def need_nginx() -> str:
    """The nginx binary; skipped (with the reason) where it is missing, failed in CI."""
    found = nginx_binary()
    if found is None:
        not_installed("needs Debian's nginx (apt-get install -y nginx, or make system-deps)")
    return found


def others_can_use(path: Path) -> bool:
    """Whether another user -- the deploy's service user -- can reach ``path``
    (every directory above it searchable by others) and read it (and run it,
    when it is executable)."""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    mode = path.stat().st_mode
    wanted = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
    return mode & wanted == wanted


@contextmanager
def reachable_tmp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory the deploy's service user can enter: pytest's own
    (``/tmp/pytest-of-root``) is 0700, so a service running as ``prediction``
    could not reach a deploy path inside it. Removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def service_user_venv(dest: Path) -> Path:
    """A virtualenv for ``--venv-from`` whose interpreter and packages the
    deploy's service user can use, so no package is downloaded.

    The test venv itself when others can use it (or when the deploy does not
    switch users: not root). Otherwise -- a pyenv interpreter under /root, say
    -- a seed venv at ``dest`` from the system's Python of the same version,
    whose .pth adds this venv's site-packages."""
    packages = [Path(p) for p in site.getsitepackages()]
    if os.geteuid() != 0 or (others_can_use(Path(sys.executable))
                             and all(others_can_use(p) for p in packages)):
        return Path(sys.prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    if not system.exists() or not all(others_can_use(p) for p in packages):
        pytest.skip(f"the service user ({SERVICE_USER}) cannot run {sys.executable} and there "
                    f"is no {system} to seed its venv from")
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(dest)], check=True,
                   stdin=subprocess.DEVNULL)
    site_dir = dest / "lib" / f"python{version}" / "site-packages"
    site_dir.joinpath("_test_seed.pth").write_text(
        "".join(f"import site; site.addsitedir({str(p)!r})\n" for p in packages))
    return dest


SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".schemathesis",
    "uploads", "results", "test-artifacts", "bench-out", "node_modules", "*.log", "tasks.sqlite3*")


def source_checkout(dest: Path) -> Path:
    """The working tree as a git checkout of its own, the way operators deploy
    from theirs: every file copied, and what git would track (``.gitignore``
    applies) added to its index -- new modules not yet ``git add``-ed in the
    real checkout included, so the deployed code is the code under test."""
    shutil.copytree(REPO, dest, ignore=SOURCE_IGNORE, symlinks=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return dest


def proc_uid(pid: int) -> int:
    """The real uid of a process (``Uid:`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def kill_leftover(pid_file: Path, must_contain: str) -> None:
    """Teardown safety net: SIGKILL the process a pid file names, only if its
    command line names ``must_contain`` (a deploy path)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return
    if must_contain in cmdline:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            os.kill(pid, signal.SIGKILL)


class LiveServer:
    """One server on a free port; ``start()`` again after a stop or ``kill9()``
    restarts it on the same port and data dir, with a fresh log file.

    Also a context manager: started on entry, stopped on exit.
    """

    def __init__(self, data_dir: Path, *, model_dir: Path, plans_dir: Path, token: str = "",
                 env: dict[str, str] | None = None, script: bool = False,
                 log_dir: Path | None = None, start_timeout: float = 90,
                 stop_timeout: float = 45) -> None:
        self.data_dir = data_dir
        self.model_dir = model_dir
        self.plans_dir = plans_dir
        self.token = token
        self.extra_env = dict(env or {})
        self.script = script
        self.log_dir = log_dir if log_dir is not None else data_dir.parent
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}-{self.starts}.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
        env.update({"PREDICT_HOST": "127.0.0.1", "PREDICT_PORT": str(self.port),
                    "PREDICT_DATA_DIR": str(self.data_dir),
                    "PREDICT_MODEL_DIR": str(self.model_dir),
                    "PREDICT_PLANS_DIR": str(self.plans_dir)})
        if self.token:
            env["PREDICT_API_TOKEN"] = self.token
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        if self.script:
            return [sys.executable, "async_api_server.py", "--host", "127.0.0.1",
                    "--port", str(self.port)]
        # gunicorn.conf.py binds to PREDICT_HOST:PREDICT_PORT.
        return [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                "async_api_server:app"]

    def start(self) -> LiveServer:
        """Start and wait for ``/health`` to answer 200; fails with the log's tail."""
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, env=self.environment(),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + self.start_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output_tail()}")
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server not healthy in {self.start_timeout:g} s:\n"
                             f"{self.output_tail()}")

    def output(self) -> str:
        """The current run's log (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def output_tail(self, chars: int = 5000) -> str:
        return self.output()[-chars:]

    def stop(self) -> None:
        """SIGTERM to this server's own process group (master, worker, job
        processes), SIGKILL if it has not ended in ``stop_timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill9(self) -> int:
        """SIGKILL the master, then the worker; returns the session id."""
        assert self.proc is not None
        worker = requests.get(f"{self.base}/health", timeout=5).json()["data"]["pid"]
        os.kill(self.proc.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        self.proc.wait(10)
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers(), timeout=10, **kw)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
