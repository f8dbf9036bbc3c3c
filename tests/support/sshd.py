"""A private sshd for the deploy tests that drive ``deploy-async.sh`` over real
SSH: its own host key and authorized_keys on a free loopback port, key-only
login as root, and what a deploy from this machine needs next to it -- a
source checkout and a seed venv the deploy's service user can use.

Needs root and openssh-server/openssh-client/rsync/nginx (``make
system-deps``); skipped, with the reason, where they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.live_server import (
    free_port,
    need_nginx,
    service_user_venv,
    source_checkout,
    wait_until_listening,
)

SSHD = Path("/usr/sbin/sshd")


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    work: Path  # reachable by the deploy's service user: deploy paths, the source, the seed venv
    source: Path
    venv: Path

    def ssh_args(self) -> list[str]:
        """deploy-async.sh's options for this server (any number of targets go before them)."""
        return ["--ssh-port", str(self.port), "--identity", str(self.key),
                "--known-hosts", str(self.known_hosts)]

    def target_args(self) -> list[str]:
        return ["root@127.0.0.1", *self.ssh_args()]


@contextmanager
def running_sshd(config_dir: Path, work: Path) -> Iterator[Sshd]:
    """sshd on 127.0.0.1 with its keys in ``config_dir``; the source checkout and
    the seed venv go to ``work`` (which the service user must be able to enter)."""
    if os.geteuid() != 0:
        pytest.skip("sshd for root@127.0.0.1 needs root")
    missing = [t for t in ("ssh", "ssh-keygen", "rsync") if shutil.which(t) is None]
    if not SSHD.exists() or missing:
        pytest.skip(f"needs openssh-server, openssh-client and rsync (missing: {missing or 'sshd'})")
    if sys.prefix == sys.base_prefix:
        pytest.skip("run the tests from a virtualenv: it seeds the deployed venv (--venv-from)")
    need_nginx()
    d = config_dir
    host_key, key = d / "host_ed25519", d / "id_ed25519"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True, stdin=subprocess.DEVNULL)
    authorized = d / "authorized_keys"
    shutil.copy(key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation dir
    port = free_port()
    log = d / "sshd.log"
    source = source_checkout(work / "source")
    venv = service_user_venv(work / "seed")
    proc = subprocess.Popen([
        str(SSHD), "-D", "-p", str(port), "-o", "ListenAddress=127.0.0.1", "-h", str(host_key),
        "-o", f"AuthorizedKeysFile={authorized}", "-o", f"PidFile={d / 'sshd.pid'}",
        "-o", "StrictModes=no", "-o", "PermitRootLogin=yes", "-o", "PasswordAuthentication=no",
        "-E", str(log),
    ], stdin=subprocess.DEVNULL)
    try:
        wait_until_listening(proc, port, log, "sshd", 15)
        yield Sshd(port=port, key=key, known_hosts=d / "known_hosts", work=work, source=source,
                   venv=venv)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
