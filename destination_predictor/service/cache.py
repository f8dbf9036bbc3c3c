"""The result cache: identical work is done once.

Two tasks are identical when the uploaded bytes, year, major, config and the
engine's inputs (engine version, model, category map, the plans' content) are
the same. A new identical task completes at once with its own
copies of the earlier task's files (hard links where the file system allows,
server-side copies in an object store: ``Storage.copy``), named under its own
task id, so expiry and downloads stay per task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from .logging_setup import log_event
from .storage import RESULTS, Storage, StorageUnavailable
from .store import BaseTaskStore
from .task import InvalidTransition, Task, complete


def cache_key(file_sha256: str, year: int, major: str | None, config: dict[str, Any],
              fingerprint: str) -> str:
    """``fingerprint`` is ``Engine.fingerprint``: engine version, model, category
    map and the plans the run reads, so editing a plan invalidates its results."""
    canonical = json.dumps(
        {"file": file_sha256, "year": year, "major": major, "config": config,
         "inputs": fingerprint},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResultCache:
    def __init__(self, store: BaseTaskStore, storage: Storage, logger: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.storage = storage
        self.log = logger
        self.clock = clock

    def complete_from_cache(self, task: Task) -> Task | None:
        """Complete ``task`` with an identical task's results, if there is one.

        Used when a task is accepted and again when it leaves the queue (the
        twin may have finished while it waited). Returns the completed task,
        or None when there is nothing to reuse -- or when the task was
        cancelled meanwhile (its copies are removed; the caller does nothing).
        """
        try:
            source = self.find(task)
            files = self.copy_results(source, task.id) if source is not None else None
        except StorageUnavailable as exc:  # the task simply runs
            log_event(self.log, "cache.unavailable", task.id, logging.WARNING, detail=exc.detail)
            return None
        if source is None or files is None:
            return None
        try:
            done = self.store.update(task.id, lambda t: complete(
                t, self.clock(), files, source.summary, list(source.warnings),
                cached_from=source.id, model_version=source.model_version))
        except InvalidTransition:
            self.storage.remove(RESULTS, files)
            return None
        log_event(self.log, "task.completed", task.id, cached_from=source.id, files=len(files),
                  duration_s=0)
        return done

    def find(self, task: Task) -> Task | None:
        """A completed, unexpired twin whose files are all still stored."""
        for other in self.store.completed_with_key(task.cache_key):
            if other.id == task.id or not other.result_files:
                continue
            if all(self.storage.exists(RESULTS, name) for name in other.result_files):
                return other
        return None

    def copy_results(self, source: Task, task_id: str) -> list[str] | None:
        """The source's files under ``{task_id}_...``; None (and nothing left
        behind) when a file vanished meanwhile, e.g. removed by the cleaner."""
        made: list[str] = []
        prefix = f"{source.id}_"
        try:
            for name in source.result_files:
                target = f"{task_id}_{name.removeprefix(prefix)}"
                self.storage.copy(RESULTS, name, target)
                made.append(target)
        except FileNotFoundError:
            self.storage.remove(RESULTS, made)
            return None
        return made

