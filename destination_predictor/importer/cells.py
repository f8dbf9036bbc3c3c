"""Workbook cells as the values of database columns.

Every column has a kind (text, integer, real, boolean, any): a new column gets
the kind its table asks for, an existing one the kind of its own type. Every
cell is converted to its column's kind before anything is written, so a value
the column cannot take refuses the import with the database unchanged.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa

# Column kinds: how a cell is converted before it is written.
TEXT, INTEGER, REAL, BOOLEAN, ANY = "text", "integer", "real", "boolean", "any"
_KIND_NAMES = {TEXT: "文本", INTEGER: "整数", REAL: "数值", BOOLEAN: "布尔", ANY: "任意"}
_NEW_COLUMN_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    TEXT: sa.Text(), INTEGER: sa.BigInteger(), REAL: sa.Double(),
}
_INT64 = 2**63


class _BadValue(ValueError):
    pass


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise _BadValue
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            raise _BadValue from None
        if not math.isfinite(x):
            raise _BadValue
        return x
    raise _BadValue


def _convert(v: Any, kind: str, length: int | None) -> Any:
    """The cell as the column's Python type; ``_BadValue`` when it cannot be."""
    if _blank(v):
        return None
    if kind == TEXT:
        if isinstance(v, float) and v.is_integer():
            text = str(int(v))           # ids read back as 3322100012.0
        elif isinstance(v, (datetime, date, time)):
            text = v.isoformat()
        else:
            text = str(v)
        if length is not None and len(text) > length:
            raise _BadValue
        return text
    if kind == INTEGER:
        x = _number(v)
        if not x.is_integer() or not -_INT64 <= x < _INT64:
            raise _BadValue
        return int(x)
    if kind == REAL:
        return _number(v)
    if kind == BOOLEAN:
        if isinstance(v, bool):
            return v
        x = _number(v)
        if x not in (0.0, 1.0):
            raise _BadValue
        return bool(x)
    if isinstance(v, (datetime, date, time, str, int, float)):
        return v
    return str(v)


def _kind_of(t: sa.types.TypeEngine[Any]) -> tuple[str, int | None]:
    """The kind (and for text the maximum length) of an existing column's type."""
    if isinstance(t, sa.Boolean):
        return BOOLEAN, None
    if isinstance(t, sa.Integer):
        return INTEGER, None
    if isinstance(t, (sa.Float, sa.Numeric)):
        return REAL, None
    if isinstance(t, sa.String):
        return TEXT, t.length
    return ANY, None
