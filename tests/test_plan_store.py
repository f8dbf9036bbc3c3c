"""``service.plan_store``: versions, rollback, the effective dir and the bundled fallback
(the check itself is replaced by a stub here; tests/test_plans_api.py runs the real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.paths import PLANS_DIR
from support.plans import MAJOR, plan_bytes

from destination_predictor.engine.plans import find_plans
from destination_predictor.service.errors import ServiceError
from destination_predictor.service.plan_store import PlanCheckFailed, PlanStore

YEAR = 2023


def passing(path: Path, year: int, major: str) -> dict[str, Any]:
    return {"ok": True, "courses": 1, "problems": []}


def put(store: PlanStore, tmp_path: Path, content: bytes, major: str = MAJOR, **kw: Any) -> dict:
    f = tmp_path / "upload.xlsx"
    f.write_bytes(content)
    return store.upload(f, original="u.xlsx", sha256="0", size=len(content), year=YEAR,
                        major=major, code=kw.get("code"))


def effective(store: PlanStore, major: str = MAJOR) -> bytes | None:
    path = find_plans(store.effective_dir, YEAR).get(major)
    return path.read_bytes() if path else None


def test_fresh_store_serves_the_bundled_plans(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "plans", PLANS_DIR, passing)
    assert set(find_plans(store.effective_dir, YEAR)) == set(find_plans(PLANS_DIR, YEAR))
    assert store.versions_in_use(YEAR, MAJOR) == {MAJOR: "bundled"}
    assert store.effective_dir.is_symlink()


def test_versions_rollback_and_fallback(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "plans", PLANS_DIR, passing)
    bundled = effective(store)
    a, b = plan_bytes(YEAR, drop="劳动教育"), plan_bytes(YEAR, drop="毕业设计")
    put(store, tmp_path, a)
    put(store, tmp_path, b)
    assert effective(store) == b and store.versions_in_use(YEAR, MAJOR) == {MAJOR: "v2"}
    assert store.rollback(YEAR, MAJOR)["version"] == "v1" and effective(store) == a
    assert store.rollback(YEAR, MAJOR, 2)["version"] == "v2"
    # Delete: the bundled plan takes over; again: hidden; a rollback brings v2 back.
    assert store.delete(YEAR, MAJOR)["version"] == "bundled" and effective(store) == bundled
    assert store.delete(YEAR, MAJOR)["version"] is None and effective(store) is None
    assert store.versions_in_use(YEAR, None).get(MAJOR) is None
    assert store.rollback(YEAR, MAJOR)["version"] == "v2" and effective(store) == b
    # A new store over the same data dir (a restart) keeps everything.
    again = PlanStore(tmp_path / "plans", PLANS_DIR, passing)
    assert effective(again) == b and [v["version"] for v in again.describe(YEAR, MAJOR)[
        "versions"]] == [1, 2]


def test_a_failed_check_changes_nothing(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "plans", PLANS_DIR,
                      lambda p, y, m: {"ok": False, "problems": ["学分不是数字"]})
    before = effective(store)
    with pytest.raises(PlanCheckFailed) as info:
        put(store, tmp_path, plan_bytes(YEAR))
    assert "学分不是数字" in info.value.message
    assert effective(store) == before and store.describe(YEAR, MAJOR)["versions"] == []


def test_a_new_major_with_its_code(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "plans", PLANS_DIR, passing)
    put(store, tmp_path, plan_bytes(YEAR), major="数据科学", code="ds")
    assert store.describe(YEAR, "数据科学")["code"] == "ds"
    assert store.resolve(YEAR, "ds") == "数据科学"
    with pytest.raises(ServiceError) as info:
        put(store, tmp_path, plan_bytes(YEAR), major="其他", code="ds")
    assert info.value.code == "PLAN_CODE_TAKEN"
