"""``POST /api/task/validate``: the check before a run, answered at once.

The upload is checked like a task's (extension, content, size, zip bomb) into
a temporary file, then ``engine.check.check_workbook`` reads it in a child
process under the job memory limit -- the same isolation a task's run gets,
because this route parses untrusted workbooks while the service holds the
queue. Nothing is kept and no task is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from ..engine.check import CheckReport
from ..engine.errors import PredictionError
from ..engine.excel import WorkbookTooLarge, check_extent, too_large_message
from ..engine.options import PredictConfig
from .isolation import run_isolated
from .settings import Settings
from .uploads import check_content, extension_of, receive

# A 5,000-student export is checked in about 2 s; far beyond that something is wrong.
CHECK_TIMEOUT_S = 120.0


def _check_in_child(path: str, year: int, major: str | None, plans_dir: str,
                    category_map: str | None, max_cells: int | None,
                    legacy: bool) -> dict[str, Any]:
    from ..engine.categories import load_category_map
    from ..engine.check import check_workbook

    report = check_workbook(path, year, plans_dir=plans_dir,
                            categories=load_category_map(category_map), major=major,
                            max_cells=max_cells, legacy_columns=legacy)
    return report.to_dict()


def validate_upload(stream: BinaryIO, filename: str, *, year: int, major: str | None,
                    config: PredictConfig, settings: Settings,
                    demo_model: bool) -> dict[str, Any]:
    """The check report of one upload (``engine.check.CheckReport.to_dict()`` plus
    the file name and whether the demo model would predict it)."""
    tmp, original, _sha, size = receive(stream, filename, staging_dir=settings.staging_dir,
                                        max_bytes=settings.max_upload_bytes,
                                        max_unzipped_bytes=settings.max_unzipped_bytes,
                                        check=False, durable=False)
    try:
        report = _run_isolated(tmp, year, major, config, settings)
    finally:
        tmp.unlink(missing_ok=True)
    report.update(file_name=original, bytes=size, demo_model=demo_model)
    return report


def _run_isolated(path: Path, year: int, major: str | None, config: PredictConfig,
                  settings: Settings) -> dict[str, Any]:
    """The child reads at once; meanwhile this thread checks the upload as a
    task's is checked (content, zip bomb) and measures the sheet's extent, both
    streamed with bounded memory -- the check answers in the time of the read.
    A refusal here kills the child, which may be inflating or allocating the
    file under its memory limit: a bad upload is refused (400) as at a start,
    a sheet too large as a run would refuse it."""
    def measure() -> None:
        check_content(path, extension_of(path.name), settings.max_unzipped_bytes)
        check_extent(path, settings.max_cells)

    try:
        return run_isolated(_check_in_child, str(path), year, major, str(settings.plans_dir),
                            str(settings.category_map) if settings.category_map else None,
                            None, config.legacy_columns, memory_mb=settings.job_memory_mb,
                            what="检查", timeout_s=CHECK_TIMEOUT_S, alongside=measure)
    except WorkbookTooLarge as exc:
        report = CheckReport(year=year, major=major)
        report.refuse(PredictionError("WORKBOOK_TOO_LARGE", too_large_message(exc)))
        return report.to_dict()
