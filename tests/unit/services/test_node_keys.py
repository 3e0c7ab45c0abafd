"""The in-memory table of node keys and the long-poll's record of unchanged checks."""

from __future__ import annotations

import asyncio

from slicelab.api.agent.notify import Checked
from slicelab.domain.nodes import BootState, Node, node_urn
from slicelab.services.nodes import NodeKeys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _node(name: str = "host1") -> Node:
    return Node(
        id=f"n-{name}", name=name, site="lab", urn=node_urn("t", name), boot_state=BootState.BOOT
    )


def test_an_entry_is_trusted_for_its_ttl_then_read_again() -> None:
    clock = Clock()
    keys = NodeKeys(ttl=5, grace=1, clock=clock)
    keys.put(_node(), sealed="s1", key=b"k" * 32, epoch=keys.epoch)
    found = keys.get("n-host1")
    assert found is not None and found.key == b"k" * 32
    clock.now += 5.5
    assert keys.get("n-host1") is None  # this request reads the database again
    assert keys.get("n-host1") is not None  # the node's others meanwhile: within the grace
    clock.now += 1.5
    assert keys.get("n-host1") is None
    assert keys.key("n-host1", "s1") == b"k" * 32  # the opened key is reused while sealed same
    assert keys.key("n-host1", "s2") is None  # a rotated key is opened again


def test_forget_drops_and_a_read_from_before_it_is_not_stored() -> None:
    keys = NodeKeys(ttl=5, clock=Clock())
    before = keys.epoch
    keys.put(_node(), sealed="s", key=b"k" * 32, epoch=before)
    keys.forget(["n-host1"])
    assert keys.get("n-host1") is None
    keys.put(_node(), sealed="s", key=b"k" * 32, epoch=before)  # read before the forget
    assert keys.get("n-host1") is None
    keys.put(_node(), sealed="s", key=b"k" * 32, epoch=keys.epoch)
    assert keys.get("n-host1") is not None


def test_capacity_drops_the_oldest_entries() -> None:
    keys = NodeKeys(capacity=2, clock=Clock())
    for name in ("a1", "a2", "a3"):
        keys.put(_node(name), sealed="s", key=b"k" * 32, epoch=keys.epoch)
    assert len(keys) == 2 and keys.get("n-a1") is None and keys.get("n-a3") is not None


def test_a_check_stands_until_a_notification_a_newer_after_or_its_age() -> None:
    clock = Clock()
    checked = Checked(fresh=30, clock=clock)
    event, other = asyncio.Event(), asyncio.Event()
    assert not checked.unchanged("n-1", event, 3)
    checked.record("n-1", event, 3)
    assert checked.unchanged("n-1", event, 3)
    assert not checked.unchanged("n-1", event, 2)  # the node is behind: answer it
    assert not checked.unchanged("n-1", other, 3)  # a notification came in between
    clock.now += 31
    assert not checked.unchanged("n-1", event, 3)
    clock.now -= 31
    event.set()
    assert not checked.unchanged("n-1", event, 3)
