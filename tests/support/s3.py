"""A local S3-protocol server for the object-storage tests: moto's server mode
(``moto_server``, from ``requirements-dev.txt``) in its own process, started
by the tests and stopped by its pid. No object store server is installable
here as a package; moto answers the S3 API over HTTP as a real store would
(boto3 cannot tell the difference), with its data in memory.

Credentials and region come from the standard AWS variables, set once for the
test process (and inherited by the service processes tests start).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.live_server import free_port, not_installed, wait_until_listening

AWS_ENV = {"AWS_ACCESS_KEY_ID": "predict-test", "AWS_SECRET_ACCESS_KEY": "predict-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
_buckets = itertools.count(1)
# ``PREDICT_TEST_STORAGE=s3``: the apps the suite builds keep uploads and
# results in an object store (see conftest.app_config).
ON_S3 = os.environ.get("PREDICT_TEST_STORAGE") == "s3"
dir_storage_only = pytest.mark.skipif(
    ON_S3, reason="writes or removes files in the data dir's uploads/ or results/ directly "
                  "(with an object store they are only a cache)")


def moto_command() -> list[str]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        not_installed("needs moto's server mode (pip install 'moto[server]', requirements-dev.txt)")
    return [sys.executable, "-m", "moto.server"]


class S3Server:
    """One moto server on a fixed port; ``stop()`` then ``start()`` keeps the
    port (and, moto keeping its data in memory, loses the objects)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        os.environ.update(AWS_ENV)

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "moto.log").open("ab")
        self.proc = subprocess.Popen(
            [*moto_command(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **AWS_ENV})
        wait_until_listening(self.proc, self.port, self.root / "moto.log", "moto server", 30)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        """A fresh, empty bucket (one per test keeps tests apart)."""
        name = f"predict-test-{os.getpid()}-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents") or [])
