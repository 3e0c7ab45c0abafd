"""Allocators for experimental addresses, control ports, VNIs and MAC addresses.

Every allocator is a pure function over the values already in use, so the caller decides the
scope (all live slices for subnets and VNIs, one node for ports) and keeps the transaction.

* Experimental subnets come from :data:`EXPERIMENT_POOL`, one /24 per link unless asked
  otherwise. Addresses a request names are honoured when their subnet overlaps no subnet of
  another link; so two slices never overlap.
* Each sliver gets a block of :data:`PORTS_PER_SLIVER` forwarded control ports on its node.
* Each link gets a VXLAN network identifier in ``[VNI_FIRST, VNI_LAST]``.
* MACs are locally administered unicast (``02:..``), derived from the ids they belong to.
"""

from __future__ import annotations

import hashlib
import ipaddress
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Sequence

from .errors import Conflict, InsufficientResources, InvalidTopology

__all__ = [
    "CONTROL_PORT_FIRST",
    "CONTROL_PORT_LAST",
    "EXPERIMENT_POOL",
    "LINK_PREFIX",
    "PORTS_PER_SLIVER",
    "SubnetsInUse",
    "VNI_FIRST",
    "VNI_LAST",
    "allocate_ports",
    "allocate_subnet",
    "allocate_vni",
    "assign_link_addresses",
    "fresh_link_addresses",
    "mac_address",
]

IPv4Network = ipaddress.IPv4Network
IPv4Interface = ipaddress.IPv4Interface

EXPERIMENT_POOL = IPv4Network("10.128.0.0/9")
LINK_PREFIX = 24
CONTROL_PORT_FIRST = 20000
CONTROL_PORT_LAST = 59999
PORTS_PER_SLIVER = 10
VNI_FIRST = 4096
VNI_LAST = 2**24 - 1


class SubnetsInUse:
    """Subnets in use as sorted, disjoint address ranges, adjacent ones merged: for allocating
    from many subnets (every slice's links) often. Adding one and finding the first free
    subnet take a binary search, where a list of networks is walked whole."""

    def __init__(self, nets: Iterable[IPv4Network] = ()) -> None:
        self._starts: list[int] = []  # range i is [_starts[i], _ends[i])
        self._ends: list[int] = []
        for net in nets:
            self.add(net)

    def add(self, net: IPv4Network) -> None:
        start = int(net.network_address)
        end = start + net.num_addresses
        first = bisect_left(self._ends, start)  # ranges that touch or overlap [start, end)
        last = bisect_right(self._starts, end)
        if first < last:
            start, end = min(start, self._starts[first]), max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def overlapping(self, net: IPv4Network) -> IPv4Network | None:
        """A network in use that overlaps ``net`` (a CIDR block of the merged range)."""
        start = int(net.network_address)
        end = start + net.num_addresses
        i = bisect_right(self._ends, start)
        if i == len(self._starts) or self._starts[i] >= end:
            return None
        blocks = ipaddress.summarize_address_range(ipaddress.IPv4Address(self._starts[i]),
                                                   ipaddress.IPv4Address(self._ends[i] - 1))
        return next(b for b in blocks if b.overlaps(net))

    def first_free(self, pool: IPv4Network, prefix: int) -> int | None:
        """The first address of the first free ``/prefix`` in ``pool``, or None."""
        size = 2 ** (32 - prefix)
        candidate = int(pool.network_address)
        i = bisect_right(self._ends, candidate)
        while i < len(self._starts) and self._starts[i] < candidate + size:
            candidate = max(candidate, -(-self._ends[i] // size) * size)
            i += 1
        return candidate if candidate + size <= int(pool.broadcast_address) + 1 else None


Used = Collection[IPv4Network] | SubnetsInUse


def _overlaps(net: IPv4Network, used: Used) -> IPv4Network | None:
    if isinstance(used, SubnetsInUse):
        return used.overlapping(net)
    return next((u for u in used if net.overlaps(u)), None)


def allocate_subnet(used: Used, *, pool: IPv4Network = EXPERIMENT_POOL,
                    prefix: int = LINK_PREFIX) -> IPv4Network:
    """The first ``/prefix`` of ``pool`` that overlaps nothing in ``used``."""
    if isinstance(used, SubnetsInUse):
        found = used.first_free(pool, prefix)
        if found is None:
            raise InsufficientResources(f"the experimental address pool {pool} is exhausted",
                                        field="addresses")
        return IPv4Network((found, prefix))
    inside = sorted((u for u in used if u.overlaps(pool)), key=lambda n: int(n.network_address))
    candidate = int(pool.network_address)
    size = 2 ** (32 - prefix)
    end = int(pool.broadcast_address) + 1
    for net in inside:
        if candidate + size <= int(net.network_address):
            break
        last = int(net.broadcast_address) + 1
        candidate = max(candidate, -(-last // size) * size)
    if candidate + size > end:
        raise InsufficientResources(f"the experimental address pool {pool} is exhausted",
                                    field="addresses")
    return IPv4Network((candidate, prefix))


def _requested_network(link: str, requested: Sequence[str | None]) -> IPv4Network | None:
    nets = {IPv4Interface(r).network for r in requested if r}
    if len(nets) > 1:
        shown = ", ".join(sorted(str(n) for n in nets))
        raise InvalidTopology(f"link {link!r} names addresses in different subnets: {shown}",
                              field="links")
    return nets.pop() if nets else None


def _check_named(link: str, requested: Sequence[str | None], net: IPv4Network) -> set[int]:
    taken: set[int] = set()
    for text in requested:
        if not text:
            continue
        ip = IPv4Interface(text).ip
        if ip in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
            raise InvalidTopology(f"link {link!r}: {text} is not a host address", field="links")
        if int(ip) in taken:
            raise InvalidTopology(f"link {link!r}: {ip} is named twice", field="links")
        taken.add(int(ip))
    return taken


def assign_link_addresses(link: str, requested: Sequence[str | None],
                          used: Used) -> list[IPv4Interface]:
    """One address per interface of ``link``: the named ones kept, the rest filled in.

    ``used`` are the subnets of every other link. A named subnet that overlaps one of them
    raises :class:`Conflict`; without named addresses a fresh /24 comes from the pool.
    """
    net = _requested_network(link, requested)
    if net is None:
        net = allocate_subnet(used)
    elif (clash := _overlaps(net, used)) is not None:
        raise Conflict(f"link {link!r}: subnet {net} overlaps {clash}, which is in use",
                       field="addresses")
    taken = _check_named(link, requested, net)
    hosts = (int(h) for h in net.hosts())
    result: list[IPv4Interface] = []
    for text in requested:
        if text:
            result.append(IPv4Interface(text))
            continue
        ip = next((h for h in hosts if h not in taken), None)
        if ip is None:
            raise InsufficientResources(f"link {link!r}: subnet {net} has too few addresses",
                                        field="addresses")
        taken.add(ip)
        result.append(IPv4Interface((ip, net.prefixlen)))
    return result


def fresh_link_addresses(link: str, count: int, used: Used) -> tuple[IPv4Network, list[str]]:
    """A fresh subnet from the pool and its first ``count`` host addresses ("a.b.c.d/p"): what
    :func:`assign_link_addresses` gives a link that names no address, without building an
    address object per interface."""
    net = allocate_subnet(used)
    if count > max(2 ** (32 - net.prefixlen) - 2, 0):  # (num_addresses is a slow property)
        raise InsufficientResources(f"link {link!r}: subnet {net} has too few addresses",
                                    field="addresses")
    base, suffix = int(net.network_address), f"/{net.prefixlen}"
    return net, [_dotted(base + 1 + k) + suffix for k in range(count)]


def _dotted(address: int) -> str:
    return f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"


def allocate_ports(used_first_ports: Collection[int], *, count: int = PORTS_PER_SLIVER,
                   low: int = CONTROL_PORT_FIRST, high: int = CONTROL_PORT_LAST) -> int:
    """The first port of a free block of ``count`` ports in ``[low, high]`` (blocks aligned)."""
    taken = set(used_first_ports)
    for first in range(low, high - count + 2, count):
        if first not in taken:
            return first
    raise InsufficientResources(f"no free block of {count} control ports in {low}..{high}",
                                field="control")


def allocate_vni(used: Collection[int]) -> int:
    """The lowest VXLAN network identifier in ``[VNI_FIRST, VNI_LAST]`` not in ``used``."""
    taken = set(used)
    vni = VNI_FIRST
    while vni in taken:
        vni += 1
    if vni > VNI_LAST:
        raise InsufficientResources("no free VXLAN network identifier", field="vni")
    return vni


def mac_address(*parts: str, used: Collection[str] = ()) -> str:
    """A locally administered unicast MAC derived from ``parts``, avoiding ``used``."""
    for attempt in range(1000):
        digest = hashlib.sha256("\0".join((*parts, str(attempt))).encode()).digest()
        mac = "02:" + digest[:5].hex(":")
        if mac not in used:
            return mac
    raise InsufficientResources("no free MAC address", field="mac")
