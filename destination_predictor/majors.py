"""Major names, their file codes and the order the deployed system used."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
