"""Heartbeat batching with a fake sink: coalescing, lag, requeue on failure, health."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.errors import InvalidInput, Unavailable
from slicelab.services.heartbeats import Beat, Health, HeartbeatBatcher, health_of

T0 = datetime(2031, 1, 1, tzinfo=UTC)


class FakeSink:
    def __init__(self) -> None:
        self.batches: list[list[Beat]] = []
        self.fail = False
        self.written = threading.Event()

    def write(self, beats: Sequence[Beat]) -> None:
        if self.fail:
            raise Unavailable("database down")
        self.batches.append(sorted(beats))
        self.written.set()


def test_flush_writes_the_newest_time_per_node_once() -> None:
    sink = FakeSink()
    batcher = HeartbeatBatcher(sink)
    batcher.record("a", T0)
    batcher.record("a", T0 + timedelta(seconds=5))
    batcher.record("a", T0 + timedelta(seconds=2))  # late arrival does not go back
    batcher.record("b", T0)
    assert batcher.pending("a") == T0 + timedelta(seconds=5) and len(batcher) == 2
    assert batcher.flush() == 2
    assert sink.batches == [[("a", T0 + timedelta(seconds=5)), ("b", T0)]]
    assert batcher.flush() == 0 and len(sink.batches) == 1
    assert batcher.stats.written == 2


def test_a_failed_write_keeps_the_beats_for_the_next_flush() -> None:
    sink = FakeSink()
    batcher = HeartbeatBatcher(sink)
    batcher.record("a", T0)
    sink.fail = True
    with pytest.raises(Unavailable):
        batcher.flush()
    batcher.record("a", T0 + timedelta(seconds=1))
    batcher.record("b", T0)
    sink.fail = False
    assert batcher.flush() == 2
    assert sink.batches == [[("a", T0 + timedelta(seconds=1)), ("b", T0)]]
    assert batcher.stats.failed_flushes == 1


def test_the_thread_writes_within_a_period_and_stop_flushes_the_rest() -> None:
    sink = FakeSink()
    batcher = HeartbeatBatcher(sink, period=0.05)
    batcher.start()
    try:
        start = time.monotonic()
        batcher.record("a", T0)
        assert sink.written.wait(2)
        assert time.monotonic() - start < 0.5
        assert batcher.stats.quantile(0.99) < 0.5
        sink.fail = True  # the thread logs and retries; nothing is lost
        batcher.record("b", T0)
        time.sleep(0.15)
        sink.fail = False
    finally:
        batcher.stop()
    assert ("b", T0) in [beat for batch in sink.batches for beat in batch]
    assert len(batcher) == 0


def test_lag_is_measured_from_arrival_to_write() -> None:
    clock = iter([10.0, 10.3]).__next__
    batcher = HeartbeatBatcher(FakeSink(), clock=clock)
    batcher.record("a", T0)
    batcher.flush()
    assert batcher.stats.quantile(0.5) == pytest.approx(0.3)
    with pytest.raises(InvalidInput):
        HeartbeatBatcher(FakeSink(), period=0)


@pytest.mark.parametrize(("age", "health"), [(0, Health.UP), (89, Health.UP),
                                             (91, Health.DOWN), (None, Health.UNKNOWN)])
def test_health_is_seen_within_missed_intervals(age: int | None, health: Health) -> None:
    seen = None if age is None else T0 - timedelta(seconds=age)
    assert health_of(seen, T0, interval=timedelta(seconds=30), missed=3) is health
