"""Group commit of placements: many concurrent booking requests, one transaction per batch.

A :class:`GroupBooker` keeps the placement snapshot in memory between requests (inventory,
calendar and the host index the calendar keeps current) and owns two threads. Clients call
:meth:`GroupBooker.book` from any thread; the placer takes every request waiting (up to
``max_batch``) and places each on the snapshot in arrival order (each placement sees those
before it, so two requests never count the same free capacity); the writer writes each
placed batch in one transaction while the placer goes on with the next: the hosts' rows
locked in id order (PostgreSQL), every lease and every booking inserted with one statement
each, the free-node index rows of the touched hosts updated, one commit. Each request is
still all-or-nothing: one that does not fit is refused alone with its diagnosis; when the
transaction fails, every booking of the batch is taken back out of the snapshot and every
request of the batch gets the error (a batch placed meanwhile only saw less room than there
was: never a double booking).

The snapshot is the truth for this process, so the booker must be the only writer of
bookings in its database. The aggregate's own path (REST allocate, slice apply) does not use
it: it books with :func:`slicelab.services.leases.book_lease`, which re-reads the calendar
under row locks and is safe with any number of server processes. ``bench/placement.py``
measures both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from slicelab.domain.calendar import ALL_TIME, Booking, Calendar, Window
from slicelab.domain.errors import InvalidInput, Unavailable
from slicelab.domain.placement import HostIndex, Placement, place
from slicelab.domain.resources import Resources
from slicelab.domain.topology import Topology
from slicelab.store.inventory import CapacityRow
from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWorkFactory

from .audit import utcnow

__all__ = ["BookingRequest", "GroupBooker"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingRequest:
    """Place ``topology`` for ``lease`` (its window, slice and id) and book it."""

    lease: LeaseRow
    topology: Topology


@dataclass(slots=True)
class _Pending:
    request: BookingRequest
    done: Future[Placement]


_Placed = list[tuple[_Pending, Placement, tuple[Booking, ...]]]


class GroupBooker:
    """Books placements in batches; see the module docstring."""

    def __init__(self, uow_factory: UnitOfWorkFactory, calendar: Calendar, *,
                 site_ids: Mapping[str, int], clock: Callable[[], datetime] = utcnow,
                 max_batch: int = 256) -> None:
        if max_batch < 1:
            raise InvalidInput("a batch holds at least one request", field="max_batch")
        self._uow_factory, self._calendar, self._site_ids = uow_factory, calendar, site_ids
        self._index = HostIndex(calendar.inventory, calendar)
        self._clock, self._max_batch = clock, max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._placed: queue.Queue[_Placed | None] = queue.Queue(maxsize=1)
        self._snapshot = threading.Lock()  # the calendar and index change under it
        self._threads: list[threading.Thread] = []
        self.batches = 0

    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=run, name=name, daemon=True)
                             for run, name in ((self._run, "booker-placer"),
                                               (self._write_loop, "booker-writer"))]
            for thread in self._threads:
                thread.start()

    def stop(self) -> None:
        """Finish what was asked, then end both threads."""
        threads, self._threads = self._threads, []
        if threads:
            self._queue.put(None)
            for thread in threads:
                thread.join()

    def submit(self, request: BookingRequest) -> Future[Placement]:
        if not self._threads:
            raise Unavailable("the booker is not running; start it first")
        pending = _Pending(request, Future())
        self._queue.put(pending)
        return pending.done

    def book(self, request: BookingRequest, *, timeout: float | None = None) -> Placement:
        """Place and book ``request``; its placement, or the error (PlacementFailed...)."""
        return self.submit(request).result(timeout)

    # -- the placer and the writer -------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            placed = [(p, *found) for p in batch if (found := self._place(p)) is not None]
            if placed:
                self._placed.put(placed)
            if stop:
                self._placed.put(None)
                return

    def _write_loop(self) -> None:
        while (placed := self._placed.get()) is not None:
            self._process(placed)

    def _take(self) -> tuple[list[_Pending], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _process(self, placed: _Placed) -> None:
        try:
            self._write([(p.request.lease, booked) for p, _, booked in placed])
        except Exception as exc:  # the writer thread's edge: every waiting client gets it
            with self._snapshot:
                for p, _, _ in placed:
                    self._calendar.release(p.request.lease.id)
            for p, _, _ in placed:
                p.done.set_exception(exc)
            return
        self.batches += 1
        for p, placement, _ in placed:
            p.done.set_result(placement)

    def _place(self, pending: _Pending) -> tuple[Placement, tuple[Booking, ...]] | None:
        """Place and book into the snapshot; None (the client told why) when it does not."""
        lease = pending.request.lease
        try:
            with self._snapshot:
                placement = place(pending.request.topology, self._index, self._calendar,
                                  lease.window, slice_id=str(lease.slice_id))
                booked = placement.bookings(lease_id=lease.id)
                self._calendar.book(booked, now=min(self._clock(), lease.window.start))
        except Exception as exc:  # the placer thread's edge: the waiting client gets it
            pending.done.set_exception(exc)
            return None
        return placement, booked

    def _write(self, groups: Sequence[tuple[LeaseRow, tuple[Booking, ...]]]) -> None:
        hosts = sorted({b.host_id for _, group in groups for b in group})
        now = self._clock()
        with self._snapshot:
            free = [self._headroom(h, now) for h in hosts]
        with self._uow_factory() as uow:
            uow.leases.leases.lock_hosts(hosts)
            uow.leases.leases.add_many(groups)
            uow.inventory.set_free(free)
            uow.commit()

    def _headroom(self, host_id: str, now: datetime) -> CapacityRow:
        host = self._calendar.inventory.host(host_id)
        usage = self._calendar.peak(host_id, Window(now, ALL_TIME.end))
        free = Resources() if usage.exclusive else host.capacity - usage.resources
        return CapacityRow(host_id, self._site_ids[host.site], host.available, host.capacity,
                           free)
