"""Where uploads and results live (``PREDICT_STORAGE_URL``, issue 12).

A job always reads and writes local files -- calamine reads a path, the
writer fills a directory -- so every machine has its ``uploads/`` and
``results/`` directories. What differs is whether those directories are the
storage itself or a cache of it:

- ``DirStorage`` (default: the data dir; or ``file:///mnt/shared``, e.g. an
  NFS mount every instance sees): the directories *are* the storage;
  publishing is a no-op, fetching checks the file is there.
- ``S3Storage`` (``s3://bucket/prefix``, boto3; ``PREDICT_S3_ENDPOINT_URL`` for
  Aliyun OSS, MinIO or any S3-compatible store): the objects are the truth and
  the directories this machine's cache. An upload is put once accepted, a
  result once its task completes (never half a set: a failed run publishes
  nothing); a worker, a download, a what-if fetch what the cache lacks.
  Objects are immutable -- a name is never reused for other content -- so a
  cached copy is valid while its object exists.

Names are the base names the rest of the service already uses (an upload's
``stored_name``, ``{task_id}_Cohort...xlsx``); a name never holds a ``/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import ServiceError
from .settings import Settings, parse_storage_url
from .uploads import CONTENT_DIR

UPLOADS = "uploads"
RESULTS = "results"
AREAS = (UPLOADS, RESULTS)
# A what-if or a job touches its cached copy when it uses it; copies unused
# for longer than a task may run plus this margin are dropped from the cache.
CACHE_MARGIN_S = 3600.0
# How long a reachability check of the object store is believed (/health is
# polled by load balancers every few seconds).
PROBE_CACHE_S = 5.0


class StorageUnavailable(ServiceError):
    """The object store cannot be reached (or refuses us): 503, try again later."""

    def __init__(self, detail: str) -> None:
        super().__init__("STORAGE_UNAVAILABLE", "文件存储（对象存储）暂时无法访问，请稍后再试",
                         {"Retry-After": "30"})
        self.detail = detail


@dataclass(frozen=True)
class StoredFile:
    """A local copy of a stored file, and the tag that names its content
    across instances (None: let the web layer derive one from the file)."""

    path: Path
    etag: str | None = None


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise FileNotFoundError(name)
    return name


class DirStorage:
    """Uploads and results as files under one root (the data dir by default)."""

    shared_cache = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_dir(self, area: str) -> Path:
        return self.root / area

    def local_path(self, area: str, name: str) -> Path:
        return self.local_dir(area) / _check_name(name)

    def after_fork(self) -> None:
        """Nothing to reopen: no connections."""

    def problem(self) -> str | None:
        return None

    def publish(self, area: str, name: str) -> None:
        """The file is stored where it was written."""

    def fetch(self, area: str, name: str) -> StoredFile:
        """The file itself; FileNotFoundError when it is gone."""
        path = self.local_path(area, name)
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return StoredFile(path)

    def exists(self, area: str, name: str) -> bool:
        return self.local_path(area, name).is_file()

    def copy(self, area: str, src: str, dst: str) -> None:
        """A hard link where the filesystem allows (results are never modified
        in place), else a copy; FileNotFoundError when ``src`` is gone."""
        link_or_copy(self.local_path(area, src), self.local_path(area, dst))

    def remove(self, area: str, names: Iterable[str]) -> int:
        removed = 0
        for name in dict.fromkeys(names):
            path = self.local_path(area, name)
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def remove_prefix(self, area: str, prefix: str) -> int:
        """Every file whose name starts with ``prefix`` (one task's results)."""
        return self.remove(area, self.names(area, prefix))

    def names(self, area: str, prefix: str) -> set[str]:
        return {p.name for p in self.local_dir(area).glob(f"{prefix}*") if p.is_file()}

    def sweep(self, area: str, keep: set[str], cutoff: float) -> int:
        """Entries older than ``cutoff`` (mtime) that no task keeps: left by a
        crash or a refused start. Dot entries other than ``keep`` go too --
        ``.content`` (uploads' content store) is kept by the caller."""
        return remove_old_entries(self.local_dir(area), keep, cutoff)

    def prune_cache(self, keep: set[str], cutoff: float) -> int:
        """No cache: the files are the storage."""
        return 0

    def drop_cached(self, area: str, names: Iterable[str] = (), prefix: str | None = None) -> int:
        """No cache: the files are the storage."""
        return 0

    def usage(self, area: str) -> tuple[int, int]:
        return dir_size(self.local_dir(area))


class S3Storage:
    """Uploads and results as objects ``{prefix}{area}/{name}`` in one bucket;
    the local directories (under the data dir) are this machine's cache.

    The boto3 client is made per process (``after_fork``, and checked by pid):
    a client's connection pool must not be shared by a forked work horse."""

    shared_cache = True

    def __init__(self, bucket: str, prefix: str, cache_root: Path, *,
                 endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.cache_root = cache_root
        self.endpoint_url = endpoint_url
        self._session: Any = None
        self._client: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()
        self._probe: tuple[float, str | None] | None = None

    # --- plumbing -----------------------------------------------------------

    @property
    def client(self) -> Any:
        """This process's client. The session (credentials, the loaded service
        model: 50 ms to build) outlives a fork; the client's sockets do not
        (5 ms to make from the session)."""
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session()
                self._client = self._session.client(
                    "s3", endpoint_url=self.endpoint_url,
                    config=Config(connect_timeout=5, read_timeout=60,
                                  retries={"max_attempts": 4, "mode": "standard"}))
                self._client_pid = os.getpid()
            return self._client

    def after_fork(self) -> None:
        with self._lock:
            self._client = None

    def key(self, area: str, name: str) -> str:
        return f"{self.prefix}{area}/{_check_name(name)}"

    def local_dir(self, area: str) -> Path:
        return self.cache_root / area

    def local_path(self, area: str, name: str) -> Path:
        return self.local_dir(area) / _check_name(name)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call: a missing object as FileNotFoundError, any other failure
        (after botocore's retries) as StorageUnavailable."""
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(kwargs.get("Key", what)) from None
            raise StorageUnavailable(f"{what}: {code or exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageUnavailable(f"{what}: {type(exc).__name__}") from exc

    # --- the interface ------------------------------------------------------

    def problem(self) -> str | None:
        """Why the bucket cannot be used now (None: it can); believed PROBE_CACHE_S."""
        now = time.monotonic()
        cached = self._probe
        if cached is not None and now - cached[0] < PROBE_CACHE_S:
            return cached[1]
        try:
            self._call("head_bucket", self.client.head_bucket, Bucket=self.bucket)
            found = None
        except (StorageUnavailable, FileNotFoundError) as exc:
            found = getattr(exc, "detail", None) or f"bucket {self.bucket} not found"
        self._probe = (now, found)
        return found

    def publish(self, area: str, name: str) -> None:
        """Put the local file: one PUT (uploads are at most PREDICT_MAX_UPLOAD_MB,
        results tens of MB; S3 takes 5 GB in one)."""
        path = self.local_path(area, name)
        with path.open("rb") as fh:
            self._call("put", self.client.put_object, Bucket=self.bucket,
                       Key=self.key(area, name), Body=fh)

    def fetch(self, area: str, name: str) -> StoredFile:
        """The object's content in the local cache, downloaded when missing or of
        another size; FileNotFoundError when there is no such object."""
        key = self.key(area, name)
        head = self._call("head", self.client.head_object, Bucket=self.bucket, Key=key)
        etag = str(head.get("ETag", "")).strip('"') or None
        path = self.local_path(area, name)
        try:
            have = path.stat().st_size
        except FileNotFoundError:
            have = -1
        if have != int(head["ContentLength"]):
            self.get_path(f"{area}/{name}", path)
        else:
            os.utime(path)  # in use: kept by prune_cache for a while
        return StoredFile(path, etag)

    def _download(self, key: str, target: str) -> None:
        answer = self._call("get", self.client.get_object, Bucket=self.bucket, Key=key)
        try:
            with open(target, "wb") as out:
                for chunk in answer["Body"].iter_chunks(1024 * 1024):
                    out.write(chunk)
        except BotoCoreError as exc:  # the connection broke mid-body
            raise StorageUnavailable(f"get: {type(exc).__name__}") from exc
        finally:
            answer["Body"].close()

    def exists(self, area: str, name: str) -> bool:
        try:
            self._call("head", self.client.head_object, Bucket=self.bucket,
                       Key=self.key(area, name))
        except FileNotFoundError:
            return False
        return True

    def copy(self, area: str, src: str, dst: str) -> None:
        """Server-side copy; FileNotFoundError when ``src`` is gone."""
        self._call("copy", self.client.copy_object, Bucket=self.bucket,
                   Key=self.key(area, dst),
                   CopySource={"Bucket": self.bucket, "Key": self.key(area, src)})

    def remove(self, area: str, names: Iterable[str]) -> int:
        """The objects and this machine's cached copies."""
        unique = list(dict.fromkeys(names))
        self.drop_cached(area, unique)
        removed = 0
        for i in range(0, len(unique), 1000):  # DeleteObjects takes 1,000 keys
            batch = unique[i:i + 1000]
            answer = self._call("delete", self.client.delete_objects, Bucket=self.bucket,
                                Delete={"Objects": [{"Key": self.key(area, n)} for n in batch],
                                        "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                raise StorageUnavailable(f"delete: {errors[0].get('Code')}")
            removed += len(batch)
        return removed

    def remove_prefix(self, area: str, prefix: str) -> int:
        """One task's results: the objects, and whatever this machine holds
        (a run's local files that were never published)."""
        local = {p.name for p in self.local_dir(area).glob(f"{prefix}*")}
        self.drop_cached(area, local)
        stored = self.names(area, prefix)
        return self.remove(area, stored) + len(local - stored)

    def _objects(self, area: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}{area}/{prefix}")
        start = len(self.prefix) + len(area) + 1
        try:
            for page in pages:
                for obj in page.get("Contents") or []:
                    name = obj["Key"][start:]
                    if name and "/" not in name:
                        yield {"name": name, "size": int(obj["Size"]),
                               "mtime": obj["LastModified"].timestamp()}
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageUnavailable(f"list: {type(exc).__name__}") from exc

    def names(self, area: str, prefix: str) -> set[str]:
        return {o["name"] for o in self._objects(area, prefix)}

    def sweep(self, area: str, keep: set[str], cutoff: float) -> int:
        """Objects older than ``cutoff`` that no task keeps, and the same in
        this machine's cache."""
        old = [o["name"] for o in self._objects(area)
               if o["name"] not in keep and o["mtime"] < cutoff]
        removed = self.remove(area, old) if old else 0
        return removed + remove_old_entries(self.local_dir(area), keep, cutoff)

    def prune_cache(self, keep: set[str], cutoff: float) -> int:
        """Cached copies unused since ``cutoff`` (``fetch`` touches them), except
        ``keep`` (the files of tasks running here). Run by every instance and
        worker: each has its own cache."""
        removed = 0
        for area in AREAS:
            removed += remove_old_entries(self.local_dir(area), keep, cutoff,
                                          skip={CONTENT_DIR})
        return removed + remove_unlinked_content(self.local_dir(UPLOADS) / CONTENT_DIR, cutoff)

    def drop_cached(self, area: str, names: Iterable[str] = (), prefix: str | None = None) -> int:
        """This machine's copies of ``names`` and of the names starting with
        ``prefix`` (the objects stay): what a worker machine fetched or wrote for
        a job that has ended, which nothing here reads again."""
        targets = {self.local_path(area, n) for n in names}
        if prefix is not None:
            targets.update(self.local_dir(area).glob(f"{prefix}*"))
        dropped = 0
        for path in targets:
            if path.is_file():
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def usage(self, area: str) -> tuple[int, int]:
        sizes = [o["size"] for o in self._objects(area)]
        return sum(sizes), len(sizes)

    # --- any key under the prefix (service.plan_sync) ---------------------------------

    def put_bytes(self, rel: str, data: bytes) -> None:
        self._call("put", self.client.put_object, Bucket=self.bucket, Key=self.prefix + rel,
                   Body=data)

    def get_bytes(self, rel: str) -> bytes:
        """The object's content; FileNotFoundError when there is none."""
        answer = self._call("get", self.client.get_object, Bucket=self.bucket,
                            Key=self.prefix + rel)
        try:
            return bytes(answer["Body"].read())
        except BotoCoreError as exc:
            raise StorageUnavailable(f"get: {type(exc).__name__}") from exc
        finally:
            answer["Body"].close()

    def put_path(self, rel: str, path: Path) -> None:
        with path.open("rb") as fh:
            self._call("put", self.client.put_object, Bucket=self.bucket, Key=self.prefix + rel,
                       Body=fh)

    def get_path(self, rel: str, path: Path) -> None:
        """Download to ``path`` atomically (temp file beside it, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            self._download(self.prefix + rel, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def list_under(self, rel: str) -> dict[str, int]:
        """{key relative to ``rel``: size} of every object under ``rel``."""
        start = len(self.prefix) + len(rel)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + rel)
        try:
            return {o["Key"][start:]: int(o["Size"])
                    for page in pages for o in page.get("Contents") or []}
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageUnavailable(f"list: {type(exc).__name__}") from exc


Storage = DirStorage | S3Storage


def open_storage(settings: Settings) -> Storage:
    """The storage ``PREDICT_STORAGE_URL`` names (already validated by the settings):
    an object store caches in the data dir, a directory is the files root."""
    kind, location, prefix = parse_storage_url(settings.storage_url)
    if kind == "s3":
        return S3Storage(location, prefix, settings.data_dir,
                         endpoint_url=settings.s3_endpoint_url)
    return DirStorage(settings.files_root)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` with ``src``'s content: a hard link when possible, else an atomic copy."""
    try:
        os.link(src, dst)
        return
    except FileNotFoundError:
        raise
    except FileExistsError:
        dst.unlink()
        os.link(src, dst)
        return
    except OSError:
        pass  # no hard links here (or cross-device): fall back to a copy
    fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_old_entries(directory: Path, keep: set[str], cutoff: float,
                       skip: set[str] | None = None) -> int:
    """Entries of ``directory`` not in ``keep`` (nor ``skip``, nor ``.gitkeep``)
    whose mtime is before ``cutoff``; a directory goes whole."""
    removed = 0
    if not directory.is_dir():
        return 0
    for p in directory.iterdir():
        if p.name in keep or p.name == ".gitkeep" or (skip and p.name in skip):
            continue
        try:
            mtime = p.lstat().st_mtime
        except FileNotFoundError:
            continue
        if mtime >= cutoff:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_unlinked_content(content: Path, cutoff: float) -> int:
    """Stored upload contents (``uploads/.content``) no task's upload links to
    any more (link count 1), left alone until ``cutoff`` after their last use so
    a new upload can still link them."""
    removed = 0
    if not content.is_dir():
        return 0
    for blob in content.iterdir():
        try:
            st = blob.lstat()
        except FileNotFoundError:
            continue
        if st.st_nlink <= 1 and st.st_mtime < cutoff:
            blob.unlink(missing_ok=True)
            removed += 1
    return removed


def dir_size(root: Path) -> tuple[int, int]:
    """(bytes, files) of one data directory as the monitor shows them.

    Files: the task files directly in ``root`` (one upload or one result per
    name); dot files are not tasks' -- the repository's ``.gitkeep``, a copy in
    progress (``.name.part``). Bytes: what those files and the content store
    under ``root`` (``uploads/.content``: each distinct upload once, a hard link
    per task) take on disk, each inode counted once. Files vanishing meanwhile
    (the cleaner runs concurrently) are simply not counted."""
    sizes: dict[tuple[int, int], int] = {}
    count = 0
    pending: list[tuple[str, bool]] = [(str(root), True)]
    while pending:
        directory, top = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, False))
                    continue
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            sizes[(st.st_dev, st.st_ino)] = st.st_size
            count += top
    return sum(sizes.values()), count
