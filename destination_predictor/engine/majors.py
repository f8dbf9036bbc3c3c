"""Major names, their file codes and the order the deployed system used."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import PredictionError
from .plans import find_plans, plan_years

MAJOR_CODES: dict[str, str] = {
    "智能科学与技术": "ai",
    "物联网工程": "iot",
    "电信工程及管理": "tewm",
    "电子信息工程": "ee",
    "电子商务及法律": "ecwl",
}
# Processing order of the deployed system; the summary workbook follows it.
MAJOR_ORDER: tuple[str, ...] = ("电信工程及管理", "物联网工程", "智能科学与技术", "电子信息工程")

_SAFE = re.compile(r"[^0-9A-Za-z_\u4e00-\u9fff-]+")


def major_codes(plans_dir: str | Path | None = None) -> dict[str, str]:
    """Built-in codes, extended by an optional ``majors.json`` beside the plans."""
    codes = dict(MAJOR_CODES)
    if plans_dir is not None:
        extra = Path(plans_dir) / "majors.json"
        if extra.is_file():
            data = json.loads(extra.read_text(encoding="utf-8"))
            codes.update({str(k): _SAFE.sub("_", str(v)) for k, v in data.items()})
    return codes


def code_for(major: str, codes: dict[str, str]) -> str:
    """A file-safe code; a major without one keeps its (sanitised) name."""
    return codes.get(major) or _SAFE.sub("_", major)


def ordered(majors: list[str], codes: dict[str, str]) -> list[str]:
    """Known order first, then any other major by code."""
    first = [m for m in MAJOR_ORDER if m in majors]
    rest = sorted((m for m in majors if m not in MAJOR_ORDER), key=lambda m: code_for(m, codes))
    return first + rest


def catalogue(plans_dir: str | Path) -> dict[int, list[dict[str, str]]]:
    """Every year with plans -> its majors ``[{"name", "code"}]`` in processing order."""
    codes = major_codes(plans_dir)
    out: dict[int, list[dict[str, str]]] = {}
    for year in plan_years(plans_dir):
        names = ordered(list(find_plans(plans_dir, year)), codes)
        out[year] = [{"name": m, "code": code_for(m, codes)} for m in names]
    return out


def resolve(plans_dir: str | Path, year: int, major: str | None) -> str | None:
    """The plan name meant by ``major`` (a name or a file code) in ``year``.

    ``None`` stays ``None`` (every major of the year). The one place where a
    user's choice of year and major is checked, for the CLI, the engine and
    the service alike: ``UNKNOWN_YEAR`` when no plan exists for the year,
    ``UNKNOWN_MAJOR`` when the year has no plan for the major.
    """
    plans = find_plans(plans_dir, year)
    if not plans:
        known = "、".join(str(y) for y in plan_years(plans_dir)) or "无"
        raise PredictionError("UNKNOWN_YEAR", f"没有 {year} 级的培养方案（可选年级：{known}）")
    if major is None or major in plans:
        return major
    codes = major_codes(plans_dir)
    by_code = {code_for(m, codes): m for m in plans}
    if major in by_code:
        return by_code[major]
    names = "、".join(ordered(list(plans), codes))
    raise PredictionError("UNKNOWN_MAJOR", f"{year} 级没有专业“{major}”的培养方案（可选：{names}）")
