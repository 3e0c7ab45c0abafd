"""Boot states as a table, failure counting, inventory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slicelab.domain.errors import IllegalTransition, InvalidInput
from slicelab.domain.nodes import (
    BOOT_TRANSITIONS,
    BootEvent,
    BootState,
    Inventory,
    Node,
    next_boot_state,
    node_urn,
    operator_event,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _node(state: BootState = BootState.NEW) -> Node:
    return Node(id="n-1", name="host1", site="lab", urn=node_urn("sl.test", "host1"),
                boot_state=state)


def test_enrolled_node_installs_then_boots() -> None:
    node = _node().seen(NOW)
    assert node.boot_state is BootState.INSTALL and node.last_seen == NOW
    node = node.applied()
    assert node.boot_state is BootState.BOOT and node.accepts_slivers
    assert node.applied().boot_state is BootState.BOOT  # no further move


def test_every_operator_move_follows_the_table() -> None:
    node = _node(BootState.BOOT).on(operator_event("reinstall"))
    assert node.boot_state is BootState.REINSTALL
    assert node.applied().boot_state is BootState.BOOT
    assert _node(BootState.BOOT).on(operator_event("disabled")).boot_state is BootState.DISABLED
    assert _node(BootState.DISABLED).on(operator_event("boot")).boot_state is BootState.BOOT
    assert _node(BootState.DEBUG).on(operator_event("boot")).boot_state is BootState.BOOT


@pytest.mark.parametrize(("state", "event"), [
    (BootState.NEW, BootEvent.ENABLE),
    (BootState.BOOT, BootEvent.ENABLE),
    (BootState.BOOT, BootEvent.INSTALLED),
    (BootState.DISABLED, BootEvent.AUTH_FAILURES),
    (BootState.DEBUG, BootEvent.CONTACT),
])
def test_moves_outside_the_table_raise(state: BootState, event: BootEvent) -> None:
    assert (state, event) not in BOOT_TRANSITIONS
    with pytest.raises(IllegalTransition, match=event.value):
        next_boot_state(state, event)


@pytest.mark.parametrize("target", ["new", "install", "bogus"])
def test_operators_cannot_pick_system_states(target: str) -> None:
    with pytest.raises(IllegalTransition):
        operator_event(target)


def test_failures_in_a_row_put_the_node_into_debug_and_a_good_request_resets() -> None:
    node = _node(BootState.BOOT)
    for _ in range(4):
        node = node.auth_failed(limit=5)
    assert node.boot_state is BootState.BOOT and node.auth_failures == 4
    assert node.seen(NOW).auth_failures == 0
    node = node.auth_failed(limit=5)
    assert node.boot_state is BootState.DEBUG
    assert node.auth_failed(limit=5).boot_state is BootState.DEBUG  # stays, no error


def test_inventory_round_trip_and_capacity() -> None:
    data = {"cores": 2, "memory_mib": 4096, "disk_gib": 80, "host_ip": "172.31.250.2",
            "devices": [{"name": "wifi0", "kind": "exclusive"}, {"name": "gps", "kind": "shared"}],
            "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "ipv4": None}]}
    inv = Inventory.from_json(data)
    assert Inventory.from_json(inv.to_json()) == inv
    cap = inv.capacity()
    assert (cap.cpu_milli, cap.memory_mib, cap.disk_gib) == (2000, 4096, 80)
    assert cap.device_counts["wifi0"] == 1 and cap.device_counts["gps"] > 1


def test_malformed_inventory_names_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        Inventory.from_json({"cores": "many"})
    assert caught.value.field == "inventory"
