"""Resource vectors: CPU, memory, disk, bandwidth and named devices.

CPU is counted in millicores so that arithmetic is exact (``cores=0.5`` is 500 millicores).
Devices are a multiset of names: a node offers an *exclusive* device with capacity 1 (one
sliver at a time may hold it) and a *shared* device with capacity :data:`SHARED_DEVICE_CAPACITY`
(all may use it). A request names the devices it needs, each once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import InvalidResources

__all__ = ["SHARED_DEVICE_CAPACITY", "Device", "DeviceKind", "Resources", "capacity_of_devices"]

SHARED_DEVICE_CAPACITY = 1_000_000


class DeviceKind(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    kind: DeviceKind

    @property
    def capacity(self) -> int:
        return 1 if self.kind is DeviceKind.EXCLUSIVE else SHARED_DEVICE_CAPACITY


def _freeze(devices: Mapping[str, int] | Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    items = devices.items() if isinstance(devices, Mapping) else devices
    merged: dict[str, int] = {}
    for name, count in items:
        if not isinstance(name, str) or not name:
            raise InvalidResources("a device name must be a non-empty string", field="devices")
        merged[name] = merged.get(name, 0) + int(count)
    return tuple(sorted((n, c) for n, c in merged.items() if c != 0))


@dataclass(frozen=True, slots=True)
class Resources:
    """An immutable resource vector. ``+`` and ``-`` are element-wise; so is ``<=``."""

    cpu_milli: int = 0
    memory_mib: int = 0
    disk_gib: int = 0
    bandwidth_mbps: int = 0
    devices: tuple[tuple[str, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.devices.__class__ is not tuple or self.devices:  # () is frozen already
            object.__setattr__(self, "devices", _freeze(self.devices))
        for name in ("cpu_milli", "memory_mib", "disk_gib", "bandwidth_mbps"):
            value = getattr(self, name)
            if value.__class__ is not int and (not isinstance(value, int)
                                               or isinstance(value, bool)):
                raise InvalidResources(f"{name} must be an integer", field=name)

    @classmethod
    def of(cls, *, cores: float = 0, memory_mib: int = 0, disk_gib: int = 0,
           bandwidth_mbps: int = 0, devices: Iterable[str] = ()) -> Resources:
        """A request: ``cores`` may be fractional; every named device is wanted once."""
        res = cls(round(cores * 1000), memory_mib, disk_gib, bandwidth_mbps,
                  tuple((d, 1) for d in devices))
        res.require_non_negative()
        return res

    @property
    def cores(self) -> float:
        return self.cpu_milli / 1000

    @property
    def device_counts(self) -> dict[str, int]:
        return dict(self.devices)

    def __add__(self, other: Resources) -> Resources:
        return _make(self.cpu_milli + other.cpu_milli, self.memory_mib + other.memory_mib,
                     self.disk_gib + other.disk_gib, self.bandwidth_mbps + other.bandwidth_mbps,
                     _merge(self.devices, other.devices, 1))

    def __neg__(self) -> Resources:
        return _make(-self.cpu_milli, -self.memory_mib, -self.disk_gib, -self.bandwidth_mbps,
                     tuple((n, -c) for n, c in self.devices))

    def __sub__(self, other: Resources) -> Resources:
        return _make(self.cpu_milli - other.cpu_milli, self.memory_mib - other.memory_mib,
                     self.disk_gib - other.disk_gib, self.bandwidth_mbps - other.bandwidth_mbps,
                     _merge(self.devices, other.devices, -1))

    def __mul__(self, k: int) -> Resources:
        devices = tuple((n, c * k) for n, c in self.devices)
        if type(k) is not int or k == 0:  # validated: a non-integer, or counts that vanish
            return Resources(self.cpu_milli * k, self.memory_mib * k, self.disk_gib * k,
                             self.bandwidth_mbps * k, devices)
        return _make(self.cpu_milli * k, self.memory_mib * k, self.disk_gib * k,
                     self.bandwidth_mbps * k, devices)

    def __le__(self, other: Resources) -> bool:
        return self.fits_in(other)

    def fits_in(self, capacity: Resources) -> bool:
        """``self <= capacity`` in every dimension (the quick form of ``not shortfall``)."""
        if (self.cpu_milli > capacity.cpu_milli or self.memory_mib > capacity.memory_mib
                or self.disk_gib > capacity.disk_gib
                or self.bandwidth_mbps > capacity.bandwidth_mbps):
            return False
        if not self.devices:
            return True
        theirs = dict(capacity.devices)
        return all(c <= theirs.get(n, 0) for n, c in self.devices)

    def is_zero(self) -> bool:
        return not (self.cpu_milli or self.memory_mib or self.disk_gib or self.bandwidth_mbps
                    or self.devices)

    def is_non_negative(self) -> bool:
        return (self.cpu_milli >= 0 and self.memory_mib >= 0 and self.disk_gib >= 0
                and self.bandwidth_mbps >= 0 and all(c >= 0 for _, c in self.devices))

    def require_non_negative(self) -> None:
        if not self.is_non_negative():
            raise InvalidResources(f"resources may not be negative: {self.describe()}")

    def shortfall(self, capacity: Resources) -> list[str]:
        """What of ``self`` does not fit in ``capacity``, one readable item per dimension."""
        if self.fits_in(capacity):
            return []
        missing = []
        for label, want, have in self._pairs(capacity):
            if want > have:
                missing.append(f"{label}: needs {want}, has {have}")
        return missing

    def _pairs(self, other: Resources) -> list[tuple[str, float, float]]:
        pairs: list[tuple[str, float, float]] = [
            ("cores", self.cores, other.cores),
            ("memory MiB", self.memory_mib, other.memory_mib),
            ("disk GiB", self.disk_gib, other.disk_gib),
            ("bandwidth Mbit/s", self.bandwidth_mbps, other.bandwidth_mbps),
        ]
        theirs = other.device_counts
        pairs += [(f"device {n}", c, theirs.get(n, 0)) for n, c in self.devices]
        return pairs

    def describe(self) -> str:
        parts = [f"{self.cores:g} cores", f"{self.memory_mib} MiB", f"{self.disk_gib} GiB"]
        if self.bandwidth_mbps:
            parts.append(f"{self.bandwidth_mbps} Mbit/s")
        parts += [f"{n}×{c}" if c != 1 else n for n, c in self.devices]
        return ", ".join(parts)


_new = object.__new__
_set = object.__setattr__


def _make(cpu_milli: int, memory_mib: int, disk_gib: int, bandwidth_mbps: int,
          devices: tuple[tuple[str, int], ...]) -> Resources:
    """A vector from parts that are valid already (integers; devices sorted, named, non-zero):
    what arithmetic on valid vectors gives, built without checking it all again."""
    res: Resources = _new(Resources)
    _set(res, "cpu_milli", cpu_milli)
    _set(res, "memory_mib", memory_mib)
    _set(res, "disk_gib", disk_gib)
    _set(res, "bandwidth_mbps", bandwidth_mbps)
    _set(res, "devices", devices)
    return res


def _merge(mine: tuple[tuple[str, int], ...], theirs: tuple[tuple[str, int], ...],
           sign: int) -> tuple[tuple[str, int], ...]:
    """``mine + sign * theirs`` of two frozen device multisets, frozen again."""
    if not theirs:
        return mine
    if not mine and sign == 1:
        return theirs
    merged = dict(mine)
    for name, count in theirs:
        merged[name] = merged.get(name, 0) + sign * count
    return tuple(sorted((n, c) for n, c in merged.items() if c != 0))


def capacity_of_devices(devices: Iterable[Device]) -> tuple[tuple[str, int], ...]:
    """The device part of a node's capacity vector."""
    return _freeze((d.name, d.capacity) for d in devices)
