"""The result cache: identical work is done once.

Two tasks are identical when the uploaded bytes, year, major, config and the
engine's inputs (engine version, model, category map, the plans' content) are
the same. A new identical task completes at once with its own
copies of the earlier task's files (hard links where the file system allows),
named under its own task id, so expiry and downloads stay per task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .logging_setup import log_event
from .store import TaskStore
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
    def __init__(self, store: TaskStore, results_dir: Path, logger: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.results_dir = results_dir
        self.log = logger
        self.clock = clock

    def complete_from_cache(self, task: Task) -> Task | None:
        """Complete ``task`` with an identical task's results, if there is one.

        Used when a task is accepted and again when it leaves the queue (the
        twin may have finished while it waited). Returns the completed task,
        or None when there is nothing to reuse -- or when the task was
        cancelled meanwhile (its copies are removed; the caller does nothing).
        """
        source = self.find(task)
        if source is None:
            return None
        files = self.copy_results(source, task.id)
        if files is None:
            return None
        try:
            done = self.store.update(task.id, lambda t: complete(
                t, self.clock(), files, source.summary, list(source.warnings),
                cached_from=source.id, model_version=source.model_version))
        except InvalidTransition:
            for name in files:
                (self.results_dir / name).unlink(missing_ok=True)
            return None
        log_event(self.log, "task.completed", task.id, cached_from=source.id, files=len(files),
                  duration_s=0)
        return done

    def find(self, task: Task) -> Task | None:
        """A completed, unexpired twin whose files are all still on disk."""
        for other in self.store.completed_with_key(task.cache_key):
            if other.id == task.id or not other.result_files:
                continue
            if all((self.results_dir / name).is_file() for name in other.result_files):
                return other
        return None

    def copy_results(self, source: Task, task_id: str) -> list[str] | None:
        """The source's files under ``{task_id}_...``; None (and nothing left
        behind) when a file vanished meanwhile, e.g. removed by the cleaner."""
        made: list[Path] = []
        prefix = f"{source.id}_"
        try:
            for name in source.result_files:
                target = self.results_dir / f"{task_id}_{name.removeprefix(prefix)}"
                _link_or_copy(self.results_dir / name, target)
                made.append(target)
        except FileNotFoundError:
            for p in made:
                p.unlink(missing_ok=True)
            return None
        return [p.name for p in made]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
        return
    except FileNotFoundError:
        raise
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
