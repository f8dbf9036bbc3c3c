"""The distributed mode's systemd examples (``deploy/distributed/``) are units
systemd accepts, whose commands exist, and whose settings file names only
settings the service knows. (The nginx example runs for real in
``test_distributed.py``.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

from destination_predictor.service.settings import SETTING_NAMES

EXAMPLES = REPO / "deploy" / "distributed"
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("unit", ["predict-api.service", "predict-worker.service"])
def test_the_units_are_valid_for_systemd(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze")
    env = tmp_path / "distributed.env"
    env.write_text((EXAMPLES / "distributed.env.example").read_text())
    text = (EXAMPLES / unit).read_text()
    # The example's install paths, pointed at this checkout and its interpreter.
    text = (text.replace("/opt/prediction-service/current/.venv/bin/", f"{VENV_BIN}/")
            .replace("/opt/prediction-service/current", str(REPO))
            .replace("/opt/prediction-service/shared/distributed.env", str(env))
            .replace("User=prediction", "User=root"))
    path = tmp_path / unit
    path.write_text(text)
    out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                         timeout=60)
    complaints = [ln for ln in (out.stdout + out.stderr).splitlines() if unit in ln]
    assert out.returncode == 0 and complaints == [], out.stderr
    command = re.search(r"^ExecStart=(\S+)\s+(.*)$", text, re.M)
    assert command is not None
    args = command.group(2).split()
    helped = subprocess.run([command.group(1), *args[:2], "--help"] if args[0] == "-m"
                            else [command.group(1), "--version"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr


def test_the_settings_file_names_known_settings_only() -> None:
    names = [ln.split("=", 1)[0] for ln in
             (EXAMPLES / "distributed.env.example").read_text().splitlines()
             if ln and not ln.startswith("#")]
    gunicorn_only = {"PREDICT_HTTP_WORKERS"}  # read by gunicorn.conf.py
    assert set(names) - gunicorn_only <= set(SETTING_NAMES), set(names) - set(SETTING_NAMES)
    assert {"PREDICT_QUEUE_URL", "PREDICT_TASKS_DB_URL", "PREDICT_DATA_DIR"} <= set(names)
