"""Quantities with units as people write them in topology files: "100Mbit", "2GiB", "10ms"."""

from __future__ import annotations

import math
import re

from slicelab.domain.errors import InvalidTopology

__all__ = ["fraction", "megabits", "milliseconds", "size"]

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z/%]*)\s*$")
_RATE = {"": 1.0, "k": 1e-3, "m": 1.0, "g": 1e3, "t": 1e6}
_RATE_SUFFIXES = ("bit/s", "bits", "bit", "bps", "b/s", "b", "")
_SIZE = {"": 1.0, "k": 2.0**-10, "m": 1.0, "g": 2.0**10, "t": 2.0**20}
_SIZE_SUFFIXES = ("ib", "b", "")
_TIME = {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3}


def _split(value: object, where: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise InvalidTopology(f"{where}: {value!r} is not a quantity", field=where)
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = _QUANTITY.match(str(value))
        if not match:
            raise InvalidTopology(f"{where}: {value!r} is not a quantity", field=where)
        number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number) or number < 0:
        raise InvalidTopology(f"{where}: {value!r} must be a non-negative number", field=where)
    return number, unit


def _scaled(number: float, unit: str, table: dict[str, float], suffixes: tuple[str, ...],
            where: str, value: object) -> float:
    for suffix in suffixes:
        if unit.endswith(suffix) and unit[: len(unit) - len(suffix)] in table:
            return number * table[unit[: len(unit) - len(suffix)]]
    raise InvalidTopology(f"{where}: unknown unit in {value!r}", field=where)


def _whole(amount: float, where: str, value: object, unit: str) -> int:
    if amount != int(amount):
        raise InvalidTopology(f"{where}: {value!r} is not a whole number of {unit}",
                              field=where)
    return int(amount)


def megabits(value: object, *, where: str) -> int:
    """A rate in whole Mbit/s; bare numbers are Mbit/s ("1Gbit" -> 1000)."""
    if type(value) is int and value >= 0:
        return value
    number, unit = _split(value, where)
    mbps = _scaled(number, unit, _RATE, _RATE_SUFFIXES, where, value)
    return _whole(round(mbps, 6), where, value, "Mbit/s")


def size(value: object, *, unit: str, where: str) -> int:
    """A size in whole MiB (``unit="m"``) or GiB (``unit="g"``); bare numbers are in that unit."""
    if type(value) is int and value >= 0:
        return value
    number, given = _split(value, where)
    mib = _scaled(number, given or unit, _SIZE, _SIZE_SUFFIXES, where, value)
    return _whole(round(mib / _SIZE[unit], 6), where, value, f"{unit.upper()}iB")


def milliseconds(value: object, *, where: str) -> float:
    number, unit = _split(value, where)
    if unit not in _TIME:
        raise InvalidTopology(f"{where}: unknown unit in {value!r}", field=where)
    return number * _TIME[unit]


def fraction(value: object, *, where: str) -> float:
    """0.01 or "1%"."""
    number, unit = _split(value, where)
    if unit not in ("", "%"):
        raise InvalidTopology(f"{where}: unknown unit in {value!r}", field=where)
    result = number / 100 if unit == "%" else number
    if result > 1:
        raise InvalidTopology(f"{where}: {value!r} is more than 100%", field=where)
    return result
