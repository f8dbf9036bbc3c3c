"""Managed education plans shared through the object store (issue 12).

With ``PREDICT_STORAGE_URL=s3://...`` every API instance and worker machine
keeps its own ``<data_dir>/plans`` (``service.plan_store``), and a plan
uploaded through one instance must be what every other instance lists and
every worker computes with. The managed *state* -- ``versions/`` (the
uploaded files, never changed once written, and each plan's ``meta.json``)
and ``majors.json`` -- is mirrored as objects under ``{prefix}plans/state/``;
``{prefix}plans/REVISION`` names the state's latest revision and is written
last, so a reader that sees a new revision finds every object of it (S3 reads
are strongly consistent after a write). Each machine rebuilds its effective
plans from the state and the bundled plans of its own release, as the
embedded service always did.

Changes are made by one instance at a time (``PlanStore``'s shared lock, the
task records' advisory lock): pull, change, push.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from .storage import S3Storage

STATE = "plans/state/"
REVISION = "plans/REVISION"
LOCAL_REVISION = ".revision"
# Files of the state that change in place; every other one is written once.
MUTABLE = ("meta.json", "majors.json")


class PlanSync:
    def __init__(self, storage: S3Storage, root: Path) -> None:
        self.storage = storage
        self.root = root

    def _local_revision(self) -> str | None:
        path = self.root / LOCAL_REVISION
        return path.read_text("utf-8").strip() if path.is_file() else None

    def _set_local_revision(self, revision: str) -> None:
        tmp = self.root / f".revision.{uuid.uuid4().hex}.tmp"
        tmp.write_text(revision, "utf-8")
        tmp.replace(self.root / LOCAL_REVISION)

    def pull(self) -> bool:
        """Bring the local state to the shared revision; True when it changed
        (the caller rebuilds). Nothing shared yet: nothing to do."""
        try:
            revision = self.storage.get_bytes(REVISION).decode("utf-8").strip()
        except FileNotFoundError:
            return False
        if revision == self._local_revision():
            return False
        for rel, size in sorted(self.storage.list_under(STATE).items()):
            target = self.root / rel
            if not _safe(rel):
                continue
            try:
                same = target.stat().st_size == size
            except FileNotFoundError:
                same = False
            if not same or rel.endswith(MUTABLE):
                self.storage.get_path(STATE + rel, target)
        self._set_local_revision(revision)
        return True

    def push(self, changed: list[Path]) -> None:
        """Put the changed state files, then a new revision (the commit point)."""
        for path in dict.fromkeys(changed):
            rel = path.relative_to(self.root).as_posix()
            self.storage.put_path(STATE + rel, path)
        revision = uuid.uuid4().hex
        self.storage.put_bytes(REVISION, revision.encode("utf-8"))
        self._set_local_revision(revision)


def _safe(rel: str) -> bool:
    """Only the state's own shape: versions/{year}/{major}/{file} or majors.json."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return False
    return rel == "majors.json" or (len(parts) == 4 and parts[0] == "versions")
