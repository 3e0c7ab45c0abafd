"""What this physical node has: cores, memory, disk, interfaces, devices and its address.

:func:`collect` reads the system (``/proc``, ``statvfs``, netlink through pyroute2) and
returns the ``inventory`` part of the actual state document as plain JSON data.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyroute2 import IPRoute, NetlinkError

from slicelab.agent.config import AgentConfig, Device

__all__ = ["collect", "cores", "disk_gib", "host_ip", "interfaces", "memory_mib"]

_GIB = 1024**3


def cores() -> int:
    return len(os.sched_getaffinity(0))


def memory_mib(*, meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def disk_gib(path: Path) -> int:
    """Free space under ``path`` (its nearest existing ancestor), whole GiB."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free // _GIB


def interfaces() -> list[dict[str, Any]]:
    """Every non-loopback interface with its MAC and first IPv4 address (or None)."""
    with IPRoute() as ipr:
        links = [(m["index"], m.get("ifname"), m.get("address")) for m in ipr.get_links()]
        addresses: dict[int, str] = {}
        for msg in ipr.get_addr(family=2):
            addresses.setdefault(msg["index"], f"{msg.get('address')}/{msg['prefixlen']}")
    return [{"name": name, "mac": mac, "ipv4": addresses.get(index)}
            for index, name, mac in links if name != "lo"]


def _route_source(destination: str) -> str | None:
    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=destination)
        except NetlinkError:  # no route to that host
            return None
    source = routes[0].get("prefsrc") if routes else None
    return str(source) if source else None


def host_ip(server: str, *, given: str | None = None,
            known: Iterable[dict[str, Any]] = ()) -> str | None:
    """The address other hosts reach this one on: given, else the source towards the server."""
    if given:
        return given
    hostname = urlsplit(server).hostname or ""
    try:
        target = str(ipaddress.IPv4Address(hostname))
    except ValueError:
        target = "192.0.2.1"
    source = _route_source(target)
    if source and not ipaddress.IPv4Address(source).is_loopback:
        return source
    for item in known:
        if item.get("ipv4"):
            return str(item["ipv4"]).split("/")[0]
    return source


def _device(device: Device) -> dict[str, str]:
    return {"name": device.name, "kind": device.kind}


def collect(config: AgentConfig) -> dict[str, Any]:
    """The inventory section of the actual state document."""
    found = interfaces()
    return {
        "cores": cores(),
        "memory_mib": memory_mib(),
        "disk_gib": disk_gib(config.state_dir),
        "interfaces": found,
        "devices": [_device(d) for d in config.devices],
        "host_ip": host_ip(config.server, given=config.host_ip, known=found),
        "bandwidth_cap_mbps": config.bandwidth_cap_mbps,
    }
