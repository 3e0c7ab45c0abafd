"""Reading attribute values of RSpec elements: numbers, booleans, IPv4 addresses.

Each reader names the element and line of a malformed value in the error it raises.
"""

from __future__ import annotations

import ipaddress
import math

from .document import Element, describe
from .errors import InvalidRSpec, NotOffered
from .notes import Notes

__all__ = ["boolean", "decimal", "ipv4", "text"]

_TRUE = {"true": True, "1": True, "false": False, "0": False}


def _fail(el: Element, message: str, *, prefix: str = "") -> InvalidRSpec:
    return InvalidRSpec(message, element=describe(el, prefix=prefix), line=el.sourceline)


def text(el: Element, attr: str, *, notes: Notes | None = None) -> str | None:
    """An attribute with surrounding white space removed (noted when there was some)."""
    raw = el.get(attr)
    if raw is None:
        return None
    value = str(raw).strip()
    if value != raw and notes is not None:
        notes.add(f"line {el.sourceline}: white space around {attr}={raw!r} removed")
    return value


def boolean(el: Element, attr: str) -> bool | None:
    raw = el.get(attr)
    if raw is None:
        return None
    value = _TRUE.get(raw.strip().lower())
    if value is None:
        raise _fail(el, f"{attr}={raw!r} is not a boolean (true or false)")
    return value


def decimal(el: Element, attr: str, *, prefix: str = "", minimum: float = 0.0,
            maximum: float = math.inf, integer: bool = False) -> float | None:
    """A plain decimal number in ``[minimum, maximum]`` (no units), or None if absent."""
    raw = el.get(attr)
    if raw is None:
        return None
    try:
        value = int(raw.strip()) if integer else float(raw.strip())
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise _fail(el, f"{attr}={raw!r} is not {kind}", prefix=prefix) from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise _fail(el, f"{attr}={raw!r} is out of range [{minimum:g}, {maximum:g}]",
                    prefix=prefix)
    return value


def ipv4(ip: Element, notes: Notes) -> str:
    """``<ip address= netmask= type=>`` as ``"10.0.0.1/24"``."""
    kind = text(ip, "type", notes=notes)
    if kind and kind.lower() != "ipv4":
        raise NotOffered(f"address type {kind!r} is not offered; interfaces get IPv4 only",
                         element=describe(ip), line=ip.sourceline)
    address = text(ip, "address", notes=notes) or ""
    mask = text(ip, "netmask", notes=notes)
    address, mask = _split_prefix(ip, address, mask)
    if not mask:
        notes.add(f"line {ip.sourceline}: address {address} has no netmask; /24 assumed")
        mask = "24"
    try:
        return str(ipaddress.IPv4Interface(f"{address}/{mask}"))
    except ValueError as exc:
        raise _fail(ip, f"address {address!r} netmask {mask!r} is not usable IPv4: {exc}") \
            from None


def _split_prefix(ip: Element, address: str, mask: str | None) -> tuple[str, str | None]:
    if "/" not in address:
        return address, mask
    address, prefix = address.split("/", 1)
    if mask and _prefix_of(mask) != _prefix_of(prefix):
        raise _fail(ip, f"address prefix /{prefix} and netmask {mask!r} disagree")
    return address, prefix


def _prefix_of(mask: str) -> int | None:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None
