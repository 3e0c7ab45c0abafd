"""The channel across network cuts: bounded long-polls, fresh connections after a failure,
separate connections for polls and reports, and a quick catch-up when the network returns."""

from __future__ import annotations

import random
import threading
import time

import pytest
from channel_support import enrolled

from slicelab.agent.channel import (
    CONNECT_TIMEOUT,
    LONG_POLL_MARGIN,
    RECONNECT_CAP,
    Backoff,
    Channel,
    Poller,
)
from slicelab.agent.state import AgentFiles
from slicelab.domain.errors import Unavailable
from slicelab.testbed.fakes import CutNetwork, FakeAggregate


@pytest.fixture
def network(aggregate: FakeAggregate) -> CutNetwork:
    return CutNetwork(aggregate, time_scale=0.01)


@pytest.fixture
def channel(network: CutNetwork, files: AgentFiles) -> Channel:
    return enrolled(Channel("http://aggregate:8470", make_transport=network.transport), files)


def test_a_long_poll_on_a_silent_network_gives_up_a_little_after_wait(
    network: CutNetwork, channel: Channel
) -> None:
    network.cut()
    with pytest.raises(Unavailable, match="poll"):
        channel.desired(after=1, wait=25)
    assert network.read_timeouts == [25 + LONG_POLL_MARGIN]
    assert network.connect_timeouts == [CONNECT_TIMEOUT]


def test_short_calls_are_bounded_too(network: CutNetwork, channel: Channel) -> None:
    network.cut()
    with pytest.raises(Unavailable):
        channel.report({"generation_applied": 1})
    assert network.read_timeouts == [10.0]


def test_after_a_failure_the_next_call_opens_a_fresh_connection(
    network: CutNetwork, channel: Channel, aggregate: FakeAggregate
) -> None:
    assert channel.desired(after=0, wait=0) == aggregate.desired
    network.cut()
    with pytest.raises(Unavailable):
        channel.desired(after=1, wait=0)
    network.restore()
    broken = [c for c in network.made if c.dead]
    assert len(broken) == 1 and broken[0].closed  # the dead connection's pool was closed
    aggregate.set_desired(boot_state="debug")
    assert channel.desired(after=1, wait=0) == aggregate.desired
    assert channel.lanes["poll"].resets == 1


def test_a_hanging_poll_does_not_hold_up_reports(
    network: CutNetwork, channel: Channel, aggregate: FakeAggregate
) -> None:
    network.time_scale = 0.03  # the poll hangs about 1 s
    network.cut(paths=("/agent/v1/desired",))
    outcome: list[BaseException] = []

    def poll() -> None:
        try:
            channel.desired(after=1, wait=25)
        except Unavailable as exc:
            outcome.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.1)
    began = time.monotonic()
    channel.report({"generation_applied": 1})
    channel.post_result("c-1", {"exit_code": 0, "stdout": "", "stderr": ""})
    took = time.monotonic() - began
    assert poller.is_alive(), "the poll should still hang"
    poller.join(timeout=10)
    assert took < 1.0 and aggregate.reports == [{"generation_applied": 1}]
    assert len(outcome) == 1


def test_backoff_is_capped_at_a_few_seconds() -> None:
    backoff = Backoff(rng=random.Random(3))
    delays = [backoff.next() for _ in range(50)]
    assert max(delays) <= RECONNECT_CAP <= 5.0
    assert max(delays[10:]) > RECONNECT_CAP / 2


def test_the_poller_catches_up_within_seconds_after_a_cut(
    network: CutNetwork, channel: Channel, files: AgentFiles, aggregate: FakeAggregate
) -> None:
    received = threading.Event()
    seen: list[int] = []

    def changed(doc: dict[str, object]) -> None:
        seen.append(int(str(doc["generation"])))
        received.set()

    poller = Poller(channel, files, on_change=changed, wait=25)
    poller.step()
    received.clear()
    network.cut()
    thread = poller.start()
    try:
        time.sleep(1.0)  # hung polls and backoffs
        assert not poller.connected and poller.last_error
        aggregate.set_desired(boot_state="debug")
        network.restore()
        ended = time.monotonic()
        assert received.wait(RECONNECT_CAP + 2.0), "no catch-up"
        assert time.monotonic() - ended <= RECONNECT_CAP + 1.0
    finally:
        poller.stop.set()
        thread.join(timeout=10)
    assert seen == [1, 2] and files.desired() == aggregate.desired and poller.connected


def test_a_closed_channel_refuses_calls(channel: Channel) -> None:
    channel.close()
    with pytest.raises(Unavailable, match="closed"):
        channel.report({})
