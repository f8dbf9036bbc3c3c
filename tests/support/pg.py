"""A throw-away PostgreSQL server for tests: ``initdb`` in a temp dir, ``pg_ctl
start`` on a free loopback port with its socket in the same dir, and a stop
that always runs.

Why its own server: the importer's promises (transactional DDL, rollback when
the connection is killed, readers seeing old rows) are PostgreSQL behaviour
that a mock or SQLite cannot show. PostgreSQL refuses to run as root, so when
the tests run as root (CI does) the server runs as the ``postgres`` user
through ``runuser``. Authentication is scram with a password, so tests can
also check that the password never leaks into messages.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support.live_server import free_port

PASSWORD = "s3cret-Pw_for-tests"
USER = "importer"


def find_pg_bin() -> Path | None:
    """Debian puts the server binaries outside PATH."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PgServer:
    root: Path
    port: int
    bin_dir: Path
    prefix: list[str]

    def url(self, dbname: str = "postgres", *, password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pause(self) -> None:
        """Stop the server, keeping its data (``resume`` starts it again on the same port)."""
        subprocess.run([*self.prefix, str(self.bin_dir / "pg_ctl"), "stop", "-D",
                        str(self.root / "data"), "-m", "fast", "-w"],
                       capture_output=True, timeout=60, check=True)

    def resume(self) -> None:
        subprocess.run([*self.prefix, str(self.bin_dir / "pg_ctl"), "start", "-D",
                        str(self.root / "data"), "-o", _options(self.root, self.port),
                        "-l", str(self.root / "server.log"), "-w", "-t", "60"],
                       capture_output=True, timeout=90, check=True)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bin_dir / "pg_ctl"), "stop", "-D",
                        str(self.root / "data"), "-m", "immediate", "-w"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PgServer:
    """Start a private server; raise RuntimeError with its log if it cannot."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o700)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", USER,
                    "--pwfile", str(pwfile), "--auth", "scram-sha-256", "-E", "UTF8",
                    "--locale", "C.UTF-8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    last_error = ""
    for _ in range(5):
        port = free_port()
        opts = _options(root, port)
        proc = subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "start", "-D", str(root / "data"),
                               "-o", opts, "-l", str(root / "server.log"), "-w", "-t", "60"],
                              capture_output=True, text=True, timeout=90, check=False)
        if proc.returncode == 0:
            return PgServer(root, port, bin_dir, prefix)
        last_error = proc.stderr + (root / "server.log").read_text(errors="replace")[-2000:]
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL: {last_error}")


def _options(root: Path, port: int) -> str:
    return (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40")


_database_numbers = iter(range(1, 1_000_000))


def next_database_name(prefix: str = "imp") -> str:
    """A database name not used before in this test session."""
    return f"{prefix}{next(_database_numbers)}"
