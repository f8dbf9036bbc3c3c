"""Education plans owned by the service: uploaded, checked, versioned, rolled back.

Plans are the engine's input, so they live in the data dir -- or the shared
directory of ``PREDICT_STORAGE_URL=file://...`` -- never in the release folder
a deploy replaces. With an object store every machine keeps its own copy and
the state (``versions/``, ``majors.json``) is shared through the store
(``service.plan_sync``); one instance changes plans at a time (``exclusive``)::

    <data_dir>/plans/versions/{year}/{major}/v{n}.xlsx   every accepted upload, kept
    <data_dir>/plans/versions/{year}/{major}/meta.json   versions, the one in use, hidden
    <data_dir>/plans/majors.json                         codes given with uploads
    <data_dir>/plans/builds/<id>/                        effective plans, one build per change
    <data_dir>/plans/current -> builds/<id>              what the engine reads

``current`` is laid out exactly like the bundled ``plans/`` directory
(``education-plan{YEAR}/{YEAR}级{专业}培养方案.xlsx`` plus ``majors.json``): the
bundled plans (``PREDICT_PLANS_DIR``, the fallback of a fresh install)
overlaid by the managed version in use of each plan. It is rebuilt into a new
directory and switched by renaming a symlink -- atomic for a reader -- at
start-up and after every upload, rollback and delete; a job process that
started on the previous build keeps reading it (the last builds are kept).

Which plan a (year, major) uses:

- a managed version is in use (``current``): that version;
- otherwise the bundled plan, if any ("bundled");
- ``hidden``: none (a tombstone -- deleting a plan that only the bundled dir has).

``DELETE`` of a plan whose managed version is in use stops using the managed
versions: the bundled plan takes over if there is one, otherwise the plan is
gone. ``DELETE`` of a plan served from the bundled dir hides it. Versions are
never removed; an upload or a rollback brings a plan back.

An upload is checked by ``engine.plans.check_plan`` in a child process (the
file is untrusted Excel, like a grade workbook in ``service.validate``); a
failed check leaves everything as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..engine.categories import load_category_map
from ..engine.errors import PredictionError
from ..engine.majors import MAJOR_CODES, code_for, major_codes
from ..engine.plans import find_plans, plan_years, read_plan
from .errors import ServiceError
from .isolation import run_isolated
from .plan_sync import PlanSync
from .storage import StorageUnavailable

BUNDLED = "bundled"
CHECK_TIMEOUT_S = 60.0
KEEP_BUILDS = 3
# Reads take in other instances' plan changes at most this late (object store only).
PULL_EVERY_S = 1.0
# How long a change waits while another instance changes plans.
EXCLUSIVE_WAIT_S = 10.0
# A major name becomes a directory and a file name: no separators, no dots first.
_MAJOR_RE = re.compile(r"^[0-9A-Za-z\u4e00-\u9fff（）()·_\-]{1,40}$")
_CODE_RE = re.compile(r"^[0-9A-Za-z_-]{1,20}$")

Checker = Callable[[Path, int, str], dict[str, Any]]


class PlanCheckFailed(ServiceError):
    """An upload refused by the plan check; ``report`` is ``PlanCheck.to_dict()``."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__("PLAN_CHECK_FAILED",
                         "培养方案未通过检查：" + "；".join(report.get("problems") or ["未知原因"]))
        self.report = report


def _check_in_child(path: str, year: int, major: str, category_map: str | None,
                    max_cells: int) -> dict[str, Any]:
    from ..engine.categories import load_category_map
    from ..engine.plans import check_plan

    return check_plan(path, year, major, load_category_map(category_map),
                      max_cells=max_cells).to_dict()


def isolated_checker(category_map: Path | None, max_cells: int, memory_mb: int) -> Checker:
    """``check_plan`` in a child process under the job memory limit."""

    def check(path: Path, year: int, major: str) -> dict[str, Any]:
        return run_isolated(_check_in_child, str(path), year, major,
                            str(category_map) if category_map else None, max_cells,
                            memory_mb=memory_mb, what="检查", timeout_s=CHECK_TIMEOUT_S)

    return check


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


class PlanStore:
    """The managed plans under ``<data_dir>/plans`` over the bundled ``bundled_dir``."""

    def __init__(self, root: Path, bundled_dir: Path, checker: Checker,
                 clock: Callable[[], float] = time.time, *, sync: PlanSync | None = None,
                 exclusive: Callable[[], AbstractContextManager[bool]] | None = None) -> None:
        """``sync``: the state shared through an object store (``service.plan_sync``);
        ``exclusive``: one instance changing plans at a time (the task records'
        advisory lock, ``BaseTaskStore.alone``)."""
        self.root = Path(root)
        self.bundled_dir = Path(bundled_dir)
        self.checker = checker
        self.clock = clock
        self.sync = sync
        self.exclusive = exclusive
        self.versions_dir = self.root / "versions"
        self.builds_dir = self.root / "builds"
        self.current = self.root / "current"
        self._lock = threading.RLock()
        self._counts: dict[tuple[str, int], int | None] = {}
        self._changed: list[Path] = []
        self._pulled_at = -PULL_EVERY_S
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.builds_dir.mkdir(parents=True, exist_ok=True)
        if sync is not None:
            try:
                sync.pull()
                self._pulled_at = time.monotonic()
            except StorageUnavailable:
                pass  # the last state this machine had; pulled again on the next read
        self.rebuild()

    # --- shared with other machines (object store) ------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Take in changes other instances made (no-op without an object store);
        at most every PULL_EVERY_S for reads, always before a change and a job."""
        if self.sync is None:
            return
        now = time.monotonic()
        if not force and now - self._pulled_at < PULL_EVERY_S:
            return
        with self._lock:
            if self.sync.pull():
                self.rebuild()
            self._pulled_at = now

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """One change: alone among the instances, on the latest shared state, and
        shared once made (``_changed`` lists the files it wrote)."""
        with self._exclusively(), self._lock:
            self.refresh(force=True)
            self._changed = []
            try:
                yield
                if self.sync is not None and self._changed:
                    self.sync.push(self._changed)
            except BaseException:
                if self.sync is not None and self._changed:
                    # Not shared: the next pull puts the shared state back here.
                    (self.root / ".revision").unlink(missing_ok=True)
                    self._pulled_at = -PULL_EVERY_S
                raise
            finally:
                self._changed = []

    @contextmanager
    def _exclusively(self) -> Iterator[None]:
        if self.exclusive is None:
            yield
            return
        deadline = time.monotonic() + EXCLUSIVE_WAIT_S
        while True:
            with self.exclusive() as mine:
                if mine:
                    yield
                    return
            if time.monotonic() > deadline:
                raise ServiceError("PLANS_BUSY", "另一个实例正在修改培养方案，请稍后重试")
            time.sleep(0.2)

    @property
    def effective_dir(self) -> Path:
        """The plans directory the engine reads (a symlink switched atomically)."""
        return self.current

    # --- metadata --------------------------------------------------------------------

    def _plan_dir(self, year: int, major: str) -> Path:
        return self.versions_dir / str(year) / major

    def _meta(self, year: int, major: str) -> dict[str, Any] | None:
        path = self._plan_dir(year, major) / "meta.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text("utf-8"))

    def _write_meta(self, meta: dict[str, Any]) -> None:
        d = self._plan_dir(meta["year"], meta["major"])
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".meta.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, d / "meta.json")
        self._changed.append(d / "meta.json")

    def _all_meta(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.versions_dir.glob("*/*/meta.json")):
            out.append(json.loads(path.read_text("utf-8")))
        return out

    def _codes_file(self) -> Path:
        return self.root / "majors.json"

    def _managed_codes(self) -> dict[str, str]:
        p = self._codes_file()
        return json.loads(p.read_text("utf-8")) if p.is_file() else {}

    # --- what is in use ---------------------------------------------------------------

    def _sources(self) -> dict[tuple[int, str], tuple[Path, str]]:
        """(year, major) -> (file, version) for every plan in use."""
        out: dict[tuple[int, str], tuple[Path, str]] = {}
        for year in plan_years(self.bundled_dir):
            for major, path in find_plans(self.bundled_dir, year).items():
                out[(year, major)] = (path, BUNDLED)
        for meta in self._all_meta():
            key = (int(meta["year"]), meta["major"])
            if meta.get("hidden"):
                out.pop(key, None)
            elif meta.get("current") is not None:
                v = self._version(meta, meta["current"])
                out[key] = (self._plan_dir(*key) / v["file"], f"v{v['version']}")
        return out

    def versions_in_use(self, year: int, major: str | None) -> dict[str, str]:
        """{major: version} of the plans a run of ``year`` (one major or all) reads."""
        self.refresh()
        sources = self._sources()
        return {m: v for (y, m), (_p, v) in sorted(sources.items())
                if y == year and (major is None or m == major)}

    def rebuild(self) -> Path:
        """Materialise the effective dir in a new build and switch ``current`` to it."""
        with self._lock:
            build = self.builds_dir / f"{int(self.clock() * 1000):015d}-{uuid.uuid4().hex[:8]}"
            build.mkdir(parents=True)
            for (year, major), (src, version) in self._sources().items():
                d = build / f"education-plan{year}"
                d.mkdir(exist_ok=True)
                target = d / f"{year}级{major}培养方案{src.suffix}"
                if version == BUNDLED:
                    # A link: a bundled plan edited in place is read as edited (and
                    # the start-up rebuild follows a new release's bundled dir).
                    target.symlink_to(src.resolve())
                else:
                    shutil.copyfile(src, target)
            codes: dict[str, str] = {}
            bundled_codes = self.bundled_dir / "majors.json"
            if bundled_codes.is_file():
                codes.update(json.loads(bundled_codes.read_text("utf-8")))
            codes.update(self._managed_codes())
            if codes:
                (build / "majors.json").write_text(
                    json.dumps(codes, ensure_ascii=False, indent=1), "utf-8")
            link = self.root / f".current.{uuid.uuid4().hex}"
            link.symlink_to(Path("builds") / build.name)
            os.replace(link, self.current)
            self._prune(build)
            return build

    def _prune(self, keep: Path) -> None:
        builds = sorted(p for p in self.builds_dir.iterdir() if p.is_dir())
        for old in builds[:-KEEP_BUILDS]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    # --- listing ----------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every plan known (in use, or with managed versions), by year then code."""
        self.refresh()
        sources = self._sources()
        metas = {(int(m["year"]), m["major"]): m for m in self._all_meta()}
        bundled = {(y, m) for y in plan_years(self.bundled_dir)
                   for m in find_plans(self.bundled_dir, y)}
        codes = major_codes(self.current)
        out = []
        for key in sorted(set(sources) | set(metas), key=lambda k: (k[0], code_for(k[1], codes))):
            year, major = key
            meta = metas.get(key) or {}
            in_use = sources.get(key)
            version = in_use[1] if in_use else None
            current = (self._version(meta, meta["current"])
                       if meta.get("current") is not None else None)
            out.append({
                "year": year, "major": major, "code": code_for(major, codes),
                "version": version,
                "source": None if in_use is None else ("bundled" if version == BUNDLED
                                                       else "managed"),
                "hidden": bool(meta.get("hidden")),
                "bundled_available": key in bundled,
                "uploaded_at": current["uploaded_at"] if current else None,
                "file_name": current["file_name"] if current else None,
                "courses": current["courses"] if current else self._bundled_courses(in_use),
                "check": current["check"] if current else None,
                "versions": [self._public_version(v, meta) for v in meta.get("versions", [])],
            })
        return out

    def _bundled_courses(self, in_use: tuple[Path, str] | None) -> int | None:
        """Required courses of a bundled plan (trusted files, read here, remembered)."""
        if in_use is None:
            return None
        path = in_use[0]
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._counts:
            try:
                self._counts[key] = len(read_plan(path, 0, "", load_category_map(None)).courses)
            except PredictionError:
                self._counts[key] = None
        return self._counts[key]

    @staticmethod
    def _public_version(v: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"version": v["version"], "uploaded_at": v["uploaded_at"],
                "file_name": v["file_name"], "sha256": v["sha256"], "bytes": v["bytes"],
                "courses": v["courses"], "in_use": meta.get("current") == v["version"]
                and not meta.get("hidden")}

    @staticmethod
    def _version(meta: dict[str, Any], number: int) -> dict[str, Any]:
        for v in meta.get("versions", []):
            if v["version"] == number:
                return v
        raise ServiceError("PLAN_VERSION_NOT_FOUND", f"培养方案没有版本 v{number}")

    # --- changes ----------------------------------------------------------------------

    def upload(self, tmp: Path, *, original: str, sha256: str, size: int, year: int,
               major: str, code: str | None) -> dict[str, Any]:
        """Check ``tmp`` (owned by the caller) and, if it passes, keep it as the next
        version and use it. ``PlanCheckFailed`` leaves everything as it was."""
        major = check_major_name(major)
        if code is not None and not _CODE_RE.fullmatch(code):
            raise ServiceError("BAD_PLAN_CODE", "专业代码只能由字母、数字、下划线或连字符组成（1–20 个字符）")
        report = self.checker(tmp, year, major)
        if not report.get("ok"):
            raise PlanCheckFailed(report)
        with self._changing():
            codes = major_codes(self.current)
            if code is not None:
                owner = {c: m for m, c in codes.items()}.get(code)
                if owner is not None and owner != major:
                    raise ServiceError("PLAN_CODE_TAKEN", f"专业代码“{code}”已用于专业“{owner}”")
            meta = self._meta(year, major) or {"year": year, "major": major, "versions": [],
                                                "current": None, "hidden": False}
            number = max((v["version"] for v in meta["versions"]), default=0) + 1
            d = self._plan_dir(year, major)
            d.mkdir(parents=True, exist_ok=True)
            name = f"v{number}{tmp.suffix if tmp.suffix in ('.xlsx', '.xls') else '.xlsx'}"
            shutil.copyfile(tmp, d / name)
            self._changed.append(d / name)
            meta["versions"].append({
                "version": number, "file": name, "file_name": original, "sha256": sha256,
                "bytes": size, "uploaded_at": _iso(self.clock()),
                "courses": report.get("courses"), "check": report})
            meta.update(current=number, hidden=False)
            self._write_meta(meta)
            if code is not None and MAJOR_CODES.get(major) != code:
                managed = self._managed_codes()
                managed[major] = code
                tmp_codes = self.root / f".majors.{uuid.uuid4().hex}.tmp"
                tmp_codes.write_text(json.dumps(managed, ensure_ascii=False, indent=1), "utf-8")
                os.replace(tmp_codes, self._codes_file())
                self._changed.append(self._codes_file())
            self.rebuild()
            return self.describe(year, major)

    def rollback(self, year: int, major: str, version: int | None = None) -> dict[str, Any]:
        """Use ``version`` (default: the one before the version in use) again."""
        with self._changing():
            meta = self._known(year, major)
            numbers = [v["version"] for v in meta["versions"]]
            if not numbers:
                raise ServiceError("PLAN_NO_VERSIONS", f"{year} 级{major}没有上传过的版本，无法回滚")
            if version is None:
                current = meta.get("current")
                if current is None or meta.get("hidden"):
                    version = numbers[-1]
                else:
                    older = [n for n in numbers if n < current]
                    if not older:
                        raise ServiceError("PLAN_NO_OLDER_VERSION",
                                           f"{year} 级{major}当前已是最早的版本 v{current}，没有可回滚的版本")
                    version = older[-1]
            self._version(meta, version)
            meta.update(current=version, hidden=False)
            self._write_meta(meta)
            self.rebuild()
            return self.describe(year, major)

    def delete(self, year: int, major: str) -> dict[str, Any]:
        """Stop using the managed versions (the bundled plan takes over if any);
        a plan served from the bundled dir is hidden. Versions are kept."""
        with self._changing():
            sources = self._sources()
            in_use = sources.get((year, major))
            if in_use is None:
                raise ServiceError("PLAN_NOT_FOUND", f"{year} 级{major}没有正在使用的培养方案")
            meta = self._meta(year, major) or {"year": year, "major": major, "versions": [],
                                                "current": None, "hidden": False}
            if in_use[1] == BUNDLED:
                meta["hidden"] = True
            else:
                meta["current"] = None
            self._write_meta(meta)
            self.rebuild()
            described = self.describe(year, major)
            now = described["version"]
            described["message"] = (
                f"已删除 {year} 级{major}的上传版本，改用自带的培养方案" if now == BUNDLED
                else f"已删除 {year} 级{major}的培养方案（历史版本仍保留，可回滚恢复）")
            return described

    def _known(self, year: int, major: str) -> dict[str, Any]:
        meta = self._meta(year, major)
        if meta is None:
            raise ServiceError("PLAN_NO_VERSIONS", f"{year} 级{major}没有上传过的版本，无法回滚")
        return meta

    def describe(self, year: int, major: str) -> dict[str, Any]:
        for item in self.list():
            if item["year"] == year and item["major"] == major:
                return item
        raise ServiceError("PLAN_NOT_FOUND", f"没有 {year} 级{major}的培养方案")

    def resolve(self, year: int, major: str) -> str:
        """The plan name meant by ``major`` (a name or a code) among the known plans of ``year``."""
        items = [i for i in self.list() if i["year"] == year]
        for i in items:
            if major in (i["major"], i["code"]):
                return i["major"]
        raise ServiceError("PLAN_NOT_FOUND", f"没有 {year} 级专业“{major}”的培养方案")


def check_major_name(major: str) -> str:
    major = major.strip()
    if not _MAJOR_RE.fullmatch(major):
        raise ServiceError("BAD_MAJOR", "专业名称只能包含汉字、字母、数字、括号、下划线或连字符（1–40 个字符）")
    return major

