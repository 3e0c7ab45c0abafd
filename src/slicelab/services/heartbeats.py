"""Node heartbeats, ingested in batches, and the health they give.

Every signed request of a node's agent is a heartbeat (its long-poll at least every
``DEFAULT_WAIT`` seconds). Writing each one in its own transaction costs a commit per request;
at a million nodes polling every 20 s that is 50,000 commits a second. Instead the API hands
each heartbeat to a :class:`HeartbeatBatcher`, which keeps the newest time per node in memory
(a node polling twice before a flush costs one row) and a background thread writes them all
every ``period`` (200 ms) through a :class:`HeartbeatSink` in one statement and one
transaction. A heartbeat is therefore in the database at most about one period plus one write
after it arrived; :class:`HeartbeatStats` keeps the lags to show it.

When a write fails (database unreachable), the batch goes back to the buffer, merged with
what arrived since, and is tried again at the next flush: nothing is lost while the process
runs, and memory stays bounded by the number of nodes.

Health: a node seen within ``missed`` heartbeat intervals is ``up``; seen before that,
``down``; never seen, ``unknown`` (:func:`health_of`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from slicelab.domain.errors import InvalidInput
from slicelab.store.uow import UnitOfWorkFactory

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MISSED",
    "FLUSH_PERIOD",
    "Beat",
    "HeartbeatBatcher",
    "HeartbeatSink",
    "HeartbeatStats",
    "Health",
    "SqlHeartbeatSink",
    "health_of",
]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(seconds=30)  # an agent's long-poll lasts at most 25 s by default
DEFAULT_MISSED = 3
FLUSH_PERIOD = 0.2
Beat = tuple[str, datetime]  # node id, when it was seen


class Health(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


def health_of(last_seen: datetime | None, now: datetime, *,
              interval: timedelta = DEFAULT_INTERVAL, missed: int = DEFAULT_MISSED) -> Health:
    """``up`` when seen within ``missed`` intervals of ``now``, ``down`` before, else unknown."""
    if last_seen is None:
        return Health.UNKNOWN
    return Health.UP if now - last_seen <= interval * missed else Health.DOWN


class HeartbeatSink(Protocol):
    """Where batches go: one call writes them all, or raises and writes none."""

    def write(self, beats: Sequence[Beat]) -> None: ...


class SqlHeartbeatSink:
    """Writes a batch to ``nodes.last_seen`` in one transaction, in chunks of ``chunk``."""

    def __init__(self, uow_factory: UnitOfWorkFactory, *, chunk: int = 50_000) -> None:
        self._uow_factory = uow_factory
        self._chunk = chunk

    def write(self, beats: Sequence[Beat]) -> None:
        with self._uow_factory() as uow:
            for start in range(0, len(beats), self._chunk):
                uow.heartbeats.touch(beats[start:start + self._chunk])
            uow.commit()


@dataclass(slots=True)
class HeartbeatStats:
    """Written heartbeats, failed flushes, and the last ``keep`` lags (arrival to commit)."""

    written: int = 0
    failed_flushes: int = 0
    keep: int = 200_000
    lags: deque[float] = field(default_factory=deque)

    def add(self, lags: Sequence[float]) -> None:
        self.written += len(lags)
        self.lags.extend(lags)
        while len(self.lags) > self.keep:
            self.lags.popleft()

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the kept lags in seconds (0 when there are none)."""
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HeartbeatBatcher:
    """Coalesces heartbeats in memory; :meth:`flush` (or the thread of :meth:`start`) writes."""

    def __init__(self, sink: HeartbeatSink, *, period: float = FLUSH_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if period <= 0:
            raise InvalidInput("the flush period must be positive", field="period")
        self._sink, self._period, self._clock = sink, period, clock
        self._pending: dict[str, tuple[datetime, float]] = {}  # node -> (seen, arrived)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = HeartbeatStats()

    def record(self, node_id: str, seen: datetime) -> None:
        """Note that ``node_id`` was seen at ``seen``; cheap, never touches the database."""
        arrived = self._clock()
        with self._lock:
            old = self._pending.get(node_id)
            if old is None:
                self._pending[node_id] = (seen, arrived)
            elif seen > old[0]:
                self._pending[node_id] = (seen, old[1])

    def pending(self, node_id: str) -> datetime | None:
        """The newest time ``node_id`` was seen that is not written yet."""
        with self._lock:
            found = self._pending.get(node_id)
        return found[0] if found else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write everything buffered now; return how many nodes were written."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                self._sink.write([(node, seen) for node, (seen, _) in batch.items()])
            except BaseException:
                self._requeue(batch)
                self.stats.failed_flushes += 1
                raise
            done = self._clock()
            self.stats.add([done - arrived for _, arrived in batch.values()])
            return len(batch)

    def _requeue(self, batch: dict[str, tuple[datetime, float]]) -> None:
        with self._lock:
            for node, (seen, arrived) in batch.items():
                newer = self._pending.get(node)
                if newer is None or newer[0] <= seen:
                    self._pending[node] = (seen, arrived)
                else:
                    self._pending[node] = (newer[0], arrived)

    # -- the background thread ----------------------------------------------------------------

    def start(self) -> None:
        """Flush every ``period`` seconds on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is left (raises if that last write fails)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.flush()
            except Exception:  # the thread's edge: keep the beats, log, try again
                log.exception("writing %d heartbeats failed; retrying", len(self))
