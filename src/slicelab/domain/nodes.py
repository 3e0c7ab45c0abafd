"""Sites and physical nodes, with the node boot states as a transition table.

A node is enrolled at a site in boot state ``new``. Its first contact moves it to ``install``;
once its agent has applied that state it is ``boot`` and may hold slivers. Operators may ask
for ``reinstall``, ``debug`` or ``disabled`` and bring a node back to ``boot``; repeated
authentication failures put it into ``debug``. A move that is not in the table raises
:class:`IllegalTransition`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from .errors import IllegalTransition, InvalidInput
from .members import require_utc
from .names import NODE_NAME, SITE_NAME, check_name
from .resources import Device, DeviceKind, Resources, capacity_of_devices
from .transitions import move
from .urn import URN

__all__ = [
    "AUTH_FAILURE_LIMIT",
    "BOOT_TRANSITIONS",
    "OPERATOR_EVENTS",
    "BootEvent",
    "BootState",
    "Inventory",
    "Node",
    "Site",
    "next_boot_state",
    "node_urn",
    "operator_event",
    "site_urn",
]

AUTH_FAILURE_LIMIT = 5


class BootState(StrEnum):
    NEW = "new"
    INSTALL = "install"
    BOOT = "boot"
    REINSTALL = "reinstall"
    DEBUG = "debug"
    DISABLED = "disabled"


class BootEvent(StrEnum):
    CONTACT = "contact"  # the agent polled for the first time
    INSTALLED = "installed"  # the agent applied an install or reinstall
    REINSTALL = "reinstall"  # an operator asked for a reinstall
    DEBUG = "debug"  # an operator asked for debug
    AUTH_FAILURES = "auth_failures"  # too many failed signatures in a row
    DISABLE = "disable"  # an operator took the node out of service
    ENABLE = "enable"  # an operator put it back into service


B, E = BootState, BootEvent

BOOT_TRANSITIONS: dict[tuple[BootState, BootEvent], BootState] = {
    (B.NEW, E.CONTACT): B.INSTALL,
    (B.INSTALL, E.INSTALLED): B.BOOT,
    (B.REINSTALL, E.INSTALLED): B.BOOT,
    (B.BOOT, E.REINSTALL): B.REINSTALL,
    (B.DEBUG, E.REINSTALL): B.REINSTALL,
    (B.DISABLED, E.REINSTALL): B.REINSTALL,
    **{(s, E.DEBUG): B.DEBUG for s in (B.INSTALL, B.BOOT, B.REINSTALL, B.DISABLED)},
    **{(s, E.AUTH_FAILURES): B.DEBUG for s in (B.NEW, B.INSTALL, B.BOOT, B.REINSTALL)},
    **{(s, E.DISABLE): B.DISABLED for s in (B.NEW, B.INSTALL, B.BOOT, B.REINSTALL, B.DEBUG)},
    (B.DEBUG, E.ENABLE): B.BOOT,
    (B.DISABLED, E.ENABLE): B.BOOT,
}

# The state an operator names in ``node set-state`` and the event that asks for it.
OPERATOR_EVENTS: dict[BootState, BootEvent] = {
    B.BOOT: E.ENABLE,
    B.REINSTALL: E.REINSTALL,
    B.DEBUG: E.DEBUG,
    B.DISABLED: E.DISABLE,
}


def next_boot_state(state: BootState, event: BootEvent) -> BootState:
    return move(BOOT_TRANSITIONS, state, event, what="a node in boot state", field="boot_state")


def operator_event(target: str) -> BootEvent:
    """The event for an operator's ``set-state`` to ``target``; raise if operators cannot."""
    try:
        return OPERATOR_EVENTS[BootState(target)]
    except (ValueError, KeyError):
        allowed = ", ".join(s.value for s in OPERATOR_EVENTS)
        raise IllegalTransition(
            f"operators may set a node to {allowed}, not {target!r}", field="state"
        ) from None


def site_urn(authority: str, name: str) -> URN:
    return URN(authority=authority, type="site", name=check_name(SITE_NAME, name))


def node_urn(authority: str, name: str) -> URN:
    return URN(authority=authority, type="node", name=check_name(NODE_NAME, name))


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    urn: URN
    created: datetime
    id: int | None = None

    def __post_init__(self) -> None:
        check_name(SITE_NAME, self.name)
        require_utc(self.created, field="created")


@dataclass(frozen=True, slots=True)
class Inventory:
    """What a node reports it has; ``interfaces`` are kept as the agent sent them."""

    cores: float = 0
    memory_mib: int = 0
    disk_gib: int = 0
    devices: tuple[Device, ...] = ()
    interfaces: tuple[dict[str, str | None], ...] = ()
    host_ip: str | None = None

    @classmethod
    def from_json(cls, data: object) -> Inventory:
        if not isinstance(data, dict):
            raise InvalidInput("inventory must be an object", field="inventory")
        try:
            devices = tuple(
                Device(str(d["name"]), DeviceKind(d.get("kind", "shared")))
                for d in data.get("devices", ())
            )
            return cls(
                cores=float(data.get("cores", 0)),
                memory_mib=int(data.get("memory_mib", 0)),
                disk_gib=int(data.get("disk_gib", 0)),
                devices=devices,
                interfaces=tuple(dict(i) for i in data.get("interfaces", ())),
                host_ip=data.get("host_ip"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"inventory is malformed: {exc}", field="inventory") from None

    def to_json(self) -> dict[str, object]:
        return {
            "cores": self.cores,
            "memory_mib": self.memory_mib,
            "disk_gib": self.disk_gib,
            "devices": [{"name": d.name, "kind": d.kind.value} for d in self.devices],
            "interfaces": [dict(i) for i in self.interfaces],
            "host_ip": self.host_ip,
        }

    def capacity(self) -> Resources:
        return Resources(
            round(self.cores * 1000),
            self.memory_mib,
            self.disk_gib,
            0,
            capacity_of_devices(self.devices),
        )


@dataclass(frozen=True, slots=True)
class Node:
    """A physical node. ``id`` is the opaque id its agent signs with (``n-<hex>``)."""

    id: str
    name: str
    site: str
    urn: URN
    boot_state: BootState = BootState.NEW
    inventory: Inventory = field(default_factory=Inventory)
    host_ip: str | None = None
    last_seen: datetime | None = None
    auth_failures: int = 0

    def __post_init__(self) -> None:
        check_name(NODE_NAME, self.name)
        check_name(SITE_NAME, self.site, field="site")

    def on(self, event: BootEvent) -> Node:
        return replace(self, boot_state=next_boot_state(self.boot_state, event))

    def seen(self, now: datetime) -> Node:
        """A good request: heartbeat, failure count reset, first contact moves ``new`` on."""
        node = replace(self, last_seen=require_utc(now, field="now"), auth_failures=0)
        if node.boot_state is BootState.NEW:
            node = node.on(BootEvent.CONTACT)
        return node

    def auth_failed(self, *, limit: int = AUTH_FAILURE_LIMIT) -> Node:
        """One more failure in a row; at ``limit`` the node goes into ``debug`` (once)."""
        node = replace(self, auth_failures=self.auth_failures + 1)
        if (
            node.auth_failures >= limit
            and (node.boot_state, BootEvent.AUTH_FAILURES) in BOOT_TRANSITIONS
        ):
            node = node.on(BootEvent.AUTH_FAILURES)
        return node

    def applied(self) -> Node:
        """The agent applied the current desired state: an install is then done."""
        if self.boot_state in (BootState.INSTALL, BootState.REINSTALL):
            return self.on(BootEvent.INSTALLED)
        return self

    def capacity(self) -> Resources:
        return self.inventory.capacity()

    @property
    def accepts_slivers(self) -> bool:
        return self.boot_state is BootState.BOOT
