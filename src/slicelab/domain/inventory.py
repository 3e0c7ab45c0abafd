"""What an aggregate has to give: its physical hosts and the sites they stand at.

A :class:`Host` is one physical node with a capacity vector (see :mod:`.resources`), the
hardware types it can be requested as, and the bandwidth of its uplink that experiment links
between hosts may use. A :class:`Site` carries the policy flags and limits its operator set.
An :class:`Inventory` is one immutable snapshot of both, with the look-ups placement needs:
by id, and by what a request may name in ``component_id`` (the host's URN, name or id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from .errors import InvalidInput, NotFound
from .resources import Resources

__all__ = ["Host", "Inventory", "Site", "SiteLimits"]


@dataclass(frozen=True, slots=True)
class Host:
    """One physical node. ``uplink_mbps=None`` means the uplink is not metered."""

    id: str
    name: str
    site: str
    capacity: Resources
    available: bool = True  # booted fine and not taken out of service
    hardware_types: frozenset[str] = frozenset()
    uplink_mbps: int | None = None
    urn: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.id or not self.name or not self.site:
            raise InvalidInput("a host needs an id, a name and a site", field="host")
        self.capacity.require_non_negative()
        if self.uplink_mbps is not None and self.uplink_mbps < 0:
            raise InvalidInput(f"host {self.name!r}: uplink_mbps may not be negative",
                               field="uplink_mbps")
        object.__setattr__(self, "hardware_types", frozenset(self.hardware_types))

    def attribute(self, key: str) -> str | None:
        return dict(self.attributes).get(key)


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Limits a site's operator sets on every slice; ``None`` is no limit."""

    slivers_per_slice: int | None = None
    cores_per_sliver: float | None = None
    memory_mib_per_sliver: int | None = None
    longest_lease: timedelta | None = None
    book_ahead: timedelta | None = None  # how far ahead of now a lease may start


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    one_sliver_per_slice_per_node: bool = False
    limits: SiteLimits = field(default_factory=SiteLimits)


class Inventory:
    """An immutable snapshot of hosts and sites. Sites not listed get default policy."""

    __slots__ = ("_by_binding", "_defaults", "_hosts", "_sites")

    def __init__(self, hosts: Iterable[Host], sites: Iterable[Site] = ()) -> None:
        self._hosts: dict[str, Host] = {}
        self._by_binding: dict[str, str] = {}
        for host in hosts:
            self._add(host)
        self._sites: dict[str, Site] = {s.name: s for s in sites}
        self._defaults: dict[str, Site] = {}  # the default-policy Site of each unlisted name

    def _add(self, host: Host) -> None:
        if host.id in self._hosts:
            raise InvalidInput(f"duplicate host id {host.id!r}", field="hosts")
        self._hosts[host.id] = host
        for key in (host.urn, host.name, host.id):
            if key is not None:
                self._by_binding.setdefault(key, host.id)

    @property
    def hosts(self) -> Mapping[str, Host]:
        return self._hosts

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._hosts

    def host(self, host_id: str) -> Host:
        try:
            return self._hosts[host_id]
        except KeyError:
            raise NotFound(f"no host with id {host_id!r}", field="host_id") from None

    def resolve(self, component_id: str) -> Host:
        """The host a request binds to: by URN first, then by name, then by id."""
        host_id = self._by_binding.get(component_id)
        if host_id is None:
            raise NotFound(f"no host {component_id!r} in this aggregate", field="component_id")
        return self._hosts[host_id]

    def site(self, name: str) -> Site:
        found = self._sites.get(name) or self._defaults.get(name)
        if found is None:
            found = self._defaults[name] = Site(name)
        return found

    @property
    def sites(self) -> Mapping[str, Site]:
        return self._sites
