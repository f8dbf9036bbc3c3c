"""The distributed mode's deploy files. The systemd units are the ones
``deploy/host.sh unit`` prints for each role -- what a deploy installs, the
one source of them -- and systemd accepts them, their commands exist and the
workers' unit is hardened like the API's. The cluster example
(``deploy/distributed/distributed.env.example``) is an ``--env-file`` the
deploy accepts, naming only settings the service knows. (The nginx upstream
example runs for real in ``test_distributed.py``; a deploy of both roles in
``test_deploy_roles.py``.)"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

from destination_predictor.service.settings import SETTING_NAMES

EXAMPLES = REPO / "deploy" / "distributed"
ENV_EXAMPLE = EXAMPLES / "distributed.env.example"
HOST_SH = REPO / "deploy" / "host.sh"
NAME = "prediction-service-8080"


def host_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(HOST_SH), *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def units(base: Path, *args: str) -> dict[str, str]:
    """``host.sh unit BASE ARGS``, split into its units by their file names."""
    proc = host_sh("unit", str(base), *args)
    assert proc.returncode == 0, proc.stderr
    parts = re.split(r"^# ---- /etc/systemd/system/(\S+) ----\n", proc.stdout, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(("role", "expected"), [
    ("api", [f"{NAME}.service", f"{NAME}-nginx.service"]),
    ("worker", [f"{NAME}-worker.service"]),
    ("all", [f"{NAME}.service", f"{NAME}-nginx.service", f"{NAME}-worker.service"]),
])
def test_the_units_of_each_role_are_valid_for_systemd(role: str, expected: list[str],
                                                      tmp_path: Path) -> None:
    base = tmp_path / "srv"
    base.mkdir()
    (base / "current").symlink_to(REPO)  # so ExecStart's runner exists
    # The cluster's settings: `all` runs the workers too, once PREDICT_QUEUE_URL is set.
    got = units(base, "--role", role, "--env-file", str(ENV_EXAMPLE))
    assert sorted(got) == sorted(expected)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze")
    paths = []
    for name, text in got.items():
        try:
            pwd.getpwnam("prediction")
        except KeyError:  # created by the first deploy; verify would not know it
            text = text.replace("User=prediction", "User=root")
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    out = subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True, text=True,
                         timeout=60)
    complaints = [ln for ln in (out.stdout + out.stderr).splitlines()
                  if any(name in ln for name in got)]
    assert out.returncode == 0 and complaints == [], out.stdout + out.stderr


def test_the_worker_unit_runs_the_worker_command_hardened_like_the_api(tmp_path: Path) -> None:
    base = tmp_path / "srv"
    data = tmp_path / "nfs" / "data"
    got = units(base, "--role", "all", "--memory-max", "3G",
                "--env", "PREDICT_QUEUE_URL=redis://10.0.0.5:6379/0",
                "--env", f"PREDICT_DATA_DIR={data}")
    worker = got[f"{NAME}-worker.service"].splitlines()
    api = got[f"{NAME}.service"].splitlines()
    assert f"ExecStart={base}/current/deploy/run-service.sh {base} worker" in worker
    assert f"ReadWritePaths={base}/shared {data}" in worker  # the shared data dir too
    # A file:// storage's directory (the example's) is writable as well.
    with_storage = units(base, "--role", "worker", "--env-file", str(ENV_EXAMPLE))
    assert f"ReadWritePaths={base}/shared /srv/prediction-files" in \
        with_storage[f"{NAME}-worker.service"].splitlines()
    hardening = [ln for ln in api if re.match(
        r"(NoNewPrivileges|Protect\w+|PrivateTmp|CapabilityBoundingSet|Restrict\w+|"
        r"LockPersonality|UMask|ReadWritePaths|MemoryMax|User)=", ln)]
    assert len(hardening) >= 15
    assert [ln for ln in hardening if ln not in worker] == []
    assert "MemoryMax=3G" in worker
    # The command run-service.sh execs for it exists (in this checkout's venv).
    assert "-m destination_predictor.worker\n" in (REPO / "deploy" / "run-service.sh").read_text()
    out = subprocess.run([sys.executable, "-m", "destination_predictor.worker", "--help"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_worker_unit_without_redis_is_still_printed_but_not_deployed(tmp_path: Path) -> None:
    """``unit`` only prints; ``preflight`` (what deploy runs first) refuses."""
    base = tmp_path / "srv"
    assert f"{NAME}-worker.service" in units(base, "--role", "worker")
    refused = host_sh("preflight", str(base), "--role", "worker")
    assert refused.returncode == 1
    assert "PREDICT_QUEUE_URL" in refused.stderr
    assert not base.exists()
    accepted = host_sh("preflight", str(base), "--role", "worker", "--env-file", str(ENV_EXAMPLE))
    assert accepted.returncode == 0, accepted.stderr


def test_the_settings_file_names_known_settings_only() -> None:
    names = [ln.split("=", 1)[0] for ln in ENV_EXAMPLE.read_text().splitlines()
             if ln and not ln.startswith("#")]
    gunicorn_only = {"PREDICT_HTTP_WORKERS"}  # read by gunicorn.conf.py
    assert set(names) - gunicorn_only <= set(SETTING_NAMES), set(names) - set(SETTING_NAMES)
    assert {"PREDICT_QUEUE_URL", "PREDICT_TASKS_DB_URL", "PREDICT_STORAGE_URL"} <= set(names)
    # Accepted by the deploy as it is (host.sh vets an --env-file before anything).
    checked = host_sh("check", "/opt/prediction-service", "--env-file", str(ENV_EXAMPLE))
    assert checked.returncode == 0, checked.stderr
