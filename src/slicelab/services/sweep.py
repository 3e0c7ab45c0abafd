"""The sweep: what time does to leases, run every few seconds by the server.

One pass (:func:`sweep`, with the time passed in so that tests drive it):

* leases that have ended are torn down: their bookings released, their slivers and links
  removed from the nodes' desired state (agents also stop a sliver at its ``expires``);
* leases allocated but never provisioned for :attr:`SweepPolicy.unprovisioned_ttl` expire;
* advance reservations whose provision was asked for are provisioned and started at their
  start, so they appear in desired state from then on;
* relayed commands nobody answered for :attr:`SweepPolicy.command_ttl` are abandoned;
* with an image service, deprecated images no live sliver uses any more are deleted,
  uploads idle for :attr:`SweepPolicy.upload_ttl` forgotten, and unused chunks collected
  (:func:`collect_images`).

:class:`Sweeper` runs passes on an interval in a thread of its own; ``stop`` ends it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory

from .audit import utcnow
from .images import UPLOAD_TTL, ImageService, images_in_use
from .inventory import index_nodes
from .lifecycle import provision_rows
from .provisioning import AggregateContext, abandon_command, refresh_desired

__all__ = ["SweepPolicy", "SweepReport", "Sweeper", "collect_images", "end_lease", "sweep"]

log = logging.getLogger(__name__)
CHANGES_KEPT = 100_000  # booking changes kept for allocation engines that fell behind


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPolicy:
    unprovisioned_ttl: timedelta = timedelta(minutes=10)
    command_ttl: timedelta = timedelta(minutes=15)
    upload_ttl: timedelta = timedelta(seconds=UPLOAD_TTL)


@dataclass(slots=True)
class SweepReport:
    ended: list[str] = field(default_factory=list)
    unprovisioned: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    chunks_collected: int = 0


def end_lease(uow: UnitOfWork, lease: LeaseRow) -> set[str]:
    """Remove the lease's slivers and their links and end it; return the nodes touched."""
    booked = uow.leases.leases.bookings_of([lease.id])
    sliver_ids = {b.sliver for b in booked if b.sliver}
    rows = uow.aggregate.slivers.by_ids(sliver_ids)
    links = [lk.id for lk in uow.aggregate.links.of_slice(lease.slice_id)
             if sliver_ids & set(lk.sliver_ids)]
    uow.aggregate.links.delete(links)
    uow.aggregate.slivers.delete([r.id for r in rows])
    uow.leases.leases.end(lease.id)
    index_nodes(uow, {b.host_id for b in booked})
    return {r.node_id for r in rows}


def _start(uow: UnitOfWork, lease: LeaseRow) -> set[str]:
    sliver_ids = {b.sliver for b in uow.leases.leases.bookings_of([lease.id]) if b.sliver}
    rows = [r for r in uow.aggregate.slivers.by_ids(sliver_ids)
            if r.allocation_state == "geni_allocated"]
    provision_rows(uow, rows, start=True)
    return {r.node_id for r in rows}


def _leases(uow: UnitOfWork, now: datetime, policy: SweepPolicy,
            report: SweepReport) -> set[str]:
    touched: set[str] = set()
    for lease in uow.leases.leases.active():
        if lease.window.end <= now:
            touched |= end_lease(uow, lease)
            report.ended.append(lease.id)
        elif not lease.provision and lease.created + policy.unprovisioned_ttl <= now:
            touched |= end_lease(uow, lease)
            report.unprovisioned.append(lease.id)
        elif lease.provision and lease.window.start <= now:
            nodes = _start(uow, lease)
            if nodes:
                report.started.append(lease.id)
            touched |= nodes
    return touched


def sweep(uow: UnitOfWork, ctx: AggregateContext, *, now: datetime | None = None,
          policy: SweepPolicy | None = None) -> SweepReport:
    """One pass over leases and commands at time ``now``; commits and notifies."""
    now = now or utcnow()
    policy = policy or SweepPolicy()
    report = SweepReport()
    uow.leases.changes.lock()  # before any other lock, as every writer of bookings
    uow.leases.changes.prune(keep=CHANGES_KEPT)
    touched = _leases(uow, now, policy, report)
    changed = refresh_desired(uow, ctx, touched, now=now) if touched else []
    uow.commit()
    ctx.notify(changed)
    for command_id in uow.leases.leases.stale_commands(now - policy.command_ttl):
        abandon_command(uow, ctx, command_id)
        report.commands.append(command_id)
    return report


def collect_images(uow: UnitOfWork, images: ImageService, *, now: datetime,
                   policy: SweepPolicy | None = None) -> int:
    """Delete what no live sliver needs from the image store; returns chunks collected."""
    policy = policy or SweepPolicy()
    return images.collect(in_use=images_in_use(uow, now=now),
                          upload_ttl=policy.upload_ttl.total_seconds())


class Sweeper:
    """Runs :func:`sweep` (and :func:`collect_images` when given ``images``) every
    ``interval`` seconds in a daemon thread until stopped."""

    def __init__(self, uow_factory: UnitOfWorkFactory, ctx: AggregateContext, *,
                 interval: float, policy: SweepPolicy | None = None,
                 images: ImageService | None = None) -> None:
        self._uow_factory, self._ctx, self._interval = uow_factory, ctx, interval
        self._policy = policy or SweepPolicy()
        self._images = images
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slicelab-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def once(self) -> SweepReport:
        with self._uow_factory() as uow:
            report = sweep(uow, self._ctx, policy=self._policy)
        if self._images is not None:
            with self._uow_factory() as uow:
                report.chunks_collected = collect_images(uow, self._images, now=utcnow(),
                                                         policy=self._policy)
        return report

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.once()
            except Exception:  # the edge of the sweep thread: log and go on
                log.exception("lease sweep failed")
