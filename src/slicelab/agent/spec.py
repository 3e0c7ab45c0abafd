"""What the node agent's kernel layer is asked to build: slivers, links, and their status.

Pure, frozen dataclasses. A spec is data; :class:`slicelab.agent.runtime.NodeRuntime`
realizes it. Values are checked on construction and a bad one raises
:class:`~slicelab.domain.errors.InvalidInput` naming the field.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from slicelab.domain.errors import InvalidInput

__all__ = [
    "IDENTITY_FILES",
    "InterfaceSpec",
    "LinkSpec",
    "LinkStatus",
    "PortRange",
    "SliverSpec",
    "SliverState",
    "SliverStatus",
    "spec_digest",
]

IDENTITY_FILES = frozenset({"slice.urn", "node.urn", "manifest"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check(ok: bool, message: str, field_name: str) -> None:
    if not ok:
        raise InvalidInput(message, field=field_name)


def _check_id(value: str, field_name: str) -> None:
    _check(bool(_ID.match(value)), f"{field_name} {value!r} is not a valid id", field_name)


def _check_capacity(capacity_mbps: float | None) -> None:
    _check(
        capacity_mbps is None or capacity_mbps > 0,
        "capacity_mbps must be positive",
        "capacity_mbps",
    )


def _refusal(parse: Callable[[str], object], value: str) -> str | None:
    """Why ``parse`` refuses ``value`` (an address), or None when it takes it."""
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class PortRange:
    """Host ports ``[first_port, first_port + count)`` forwarded to the sliver.

    ``first_port`` reaches the sliver's SSH server on port 22; ``first_port + i`` (i >= 1)
    reaches the same port number inside the sliver, TCP and UDP.
    """

    first_port: int
    count: int

    def __post_init__(self) -> None:
        _check(1024 <= self.first_port <= 65535, "first_port must be in 1024..65535", "ports")
        _check(self.count >= 1, "count must be at least 1", "ports.count")
        _check(self.first_port + self.count <= 65536, "port range passes 65535", "ports")


@dataclass(frozen=True)
class InterfaceSpec:
    """One experimental interface of a sliver, on link ``link_id``."""

    link_id: str
    ifname: str
    mac: str | None = None
    ipv4: str | None = None
    capacity_mbps: float | None = None

    def __post_init__(self) -> None:
        _check_id(self.link_id, "link_id")
        _check(
            bool(_IFNAME.match(self.ifname)) and self.ifname not in ("eth0", "lo"),
            f"ifname {self.ifname!r} is not usable (eth0 is the control interface)",
            "ifname",
        )
        _check(self.mac is None or bool(_MAC.match(self.mac)), "mac must be lower-case", "mac")
        if self.ipv4 is not None:
            reason = _refusal(ipaddress.IPv4Interface, self.ipv4)
            _check(reason is None, f"ipv4 {self.ipv4!r}: {reason}", "ipv4")
        _check_capacity(self.capacity_mbps)


@dataclass(frozen=True)
class SliverSpec:
    """A container sliver: limits, image, identity, keys, ports and interfaces."""

    sliver_id: str
    hostname: str
    cores: float
    memory_mib: int
    pids_max: int
    image_dir: Path
    ports: PortRange
    files: tuple[tuple[str, str], ...] = ()
    ssh_authorized_keys: tuple[str, ...] = ()
    interfaces: tuple[InterfaceSpec, ...] = ()

    def __post_init__(self) -> None:
        _check_id(self.sliver_id, "sliver_id")
        _check(
            bool(_HOSTNAME.match(self.hostname)) and len(self.hostname) <= 253,
            f"hostname {self.hostname!r} is not valid",
            "hostname",
        )
        _check(0 < self.cores <= 1024, "cores must be in (0, 1024]", "cores")
        _check(self.memory_mib >= 16, "memory_mib must be at least 16", "memory_mib")
        _check(self.pids_max >= 8, "pids_max must be at least 8", "pids_max")
        for name, _ in self.files:
            _check(name in IDENTITY_FILES, f"file {name!r} is not an identity file", "files")
        names = [i.ifname for i in self.interfaces]
        _check(len(set(names)) == len(names), "interface names repeat", "interfaces")
        links = [i.link_id for i in self.interfaces]
        _check(len(set(links)) == len(links), "one interface per link", "interfaces")


@dataclass(frozen=True)
class LinkSpec:
    """A virtual L2 link: a bridge on this host, VXLAN ``vni`` to ``remotes`` if any.

    ``members`` are the ids of the local slivers on the link. ``local_ip`` is this host's
    address for VXLAN (the kernel picks one when None).
    """

    link_id: str
    vni: int
    capacity_mbps: float | None = None
    members: tuple[str, ...] = ()
    remotes: tuple[str, ...] = ()
    local_ip: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.link_id, "link_id")
        _check(1 <= self.vni < 2**24, "vni must be in 1..2^24-1", "vni")
        _check_capacity(self.capacity_mbps)
        for address in (*self.remotes, *([self.local_ip] if self.local_ip else [])):
            _check(
                _refusal(ipaddress.IPv4Address, address) is None,
                f"{address!r} is not an IPv4 address",
                "remotes",
            )


class SliverState(enum.Enum):
    ABSENT = "absent"
    RUNNING = "running"
    STOPPED = "stopped"
    BROKEN = "broken"


@dataclass(frozen=True)
class SliverStatus:
    sliver_id: str
    state: SliverState
    init_pid: int | None = None
    control_ip: str | None = None
    netns: str | None = None
    ssh_port: int | None = None
    interfaces: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class LinkStatus:
    link_id: str
    present: bool
    bridge: str | None = None
    vxlan: str | None = None


def spec_digest(spec: SliverSpec | LinkSpec) -> str:
    """A stable digest of a spec: equal specs, equal digests (the JSON of its fields, as
    ``dataclasses.asdict`` gives them, without asdict's deep copies)."""
    data = json.dumps(_plain(spec), sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
