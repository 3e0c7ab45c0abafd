"""The database statements of one allocation-engine batch, alone: wall and CPU per batch.

Usage: python bench/batch_db.py [--quick] [--db sqlite,postgresql] [--hogs 0,1]
                               [--sequence today|folded]

Loads 20,000 nodes, then runs batches of 31 placements' rows (1-4 nodes each, a link
between neighbours, plans of the size the engine writes) through the store in the order
:class:`slicelab.services.booking.AllocationEngine` sends them: booking lock, change log
since, projects with members, slices by name and their slivers (``read_for_allocation``:
one round trip on PostgreSQL), quota, site limits, the change log again, then slivers,
links, leases with bookings, the free-node index, the change log's last id, commit
(``--sequence folded``: the lock and the log in one round trip, all the writes and the last
id in another, ``ChangeLog.lock_since`` and ``LeaseStore.write_batch``).
``--hogs N`` runs N threads of pure Python beside it (the engine shares the
GIL with 64 client threads: every statement's round trip then also waits for the GIL back).
Figures: median ms per batch, wall and the engine thread's CPU, and statements per batch.
"""

from __future__ import annotations

import argparse
import itertools
import random
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from placement import inventory
from placement_db import _engine_slices, database, load
from sqlalchemy import Engine, event, text

from slicelab.domain.calendar import Booking, Window
from slicelab.domain.resources import Resources
from slicelab.store.aggregate import LinkRow, SliverRow
from slicelab.store.allocation_reads import read_for_allocation
from slicelab.store.inventory import CapacityRow
from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWork, unit_of_work_factory

NODES = 20_000
PER_BATCH = 31
_VNI = itertools.count(1)


def _plan(sliver_id: str, node_id: str, client_id: str, port: int) -> dict[str, Any]:
    return {"sliver_id": sliver_id, "node_id": node_id, "urn": f"urn:publicid:IDN+b+sliver+"
            f"{sliver_id}", "slice_urn": "urn:publicid:IDN+bench:bench+slice+x",
            "project": "bench", "slice": "x", "client_id": client_id,
            "hostname": f"{client_id}.x.bench.example.org", "image": "debian-12",
            "cores": 1.0, "memory_mib": 2048, "disk_gib": 10,
            "control": {"first_port": port, "count": 10}, "ssh_keys": ["ssh-ed25519 AAAA b"],
            "manifest": '{"client_id": "n0", "nodes": ["n0", "n1"], "slice": "urn:x"}',
            "interfaces": [{"ifname": "eth1", "link": "l-0", "vni": 4242,
                            "ipv4": "10.0.0.1/24", "mac": "02:00:00:00:00:01"}],
            "installs": [], "expires": "2031-01-01T04:00:00+00:00", "run": "stopped"}


class Rows:
    """One batch's rows."""

    def __init__(self, rng: random.Random, slices: list[tuple[int, str]], hosts: list[Any],
                 now: datetime) -> None:
        self.slivers: list[SliverRow] = []
        self.links: list[LinkRow] = []
        self.leases: list[tuple[LeaseRow, tuple[Booking, ...]]] = []
        touched: dict[str, Any] = {}
        window = Window(now, now + timedelta(hours=4))
        for slice_id, name in slices:
            lease = LeaseRow(f"L-{secrets.token_hex(8)}", slice_id, "bench", name, window,
                             "active", False, now)
            books = []
            ids = []
            for k in range(rng.randint(1, 4)):
                host = hosts[rng.randrange(len(hosts))]
                touched[host.id] = host
                sid = f"s-{secrets.token_hex(8)}"
                ids.append(sid)
                res = Resources.of(cores=rng.choice([1, 2, 4]), memory_mib=2048)
                books.append(Booking(lease.id, host.id, str(slice_id), window, res, False, 0,
                                     sid))
                self.slivers.append(SliverRow(
                    sid, slice_id, "bench", name, host.id, f"n{k}",
                    {"cores": 1.0, "memory_mib": 2048, "disk_gib": 10, "devices": [],
                     "image": "debian-12", "exclusive": False, "component_id": None,
                     "site": None}, _plan(sid, host.id, f"n{k}", 30000 + 10 * k),
                    "geni_allocated", "geni_pending_allocation"))
            for k in range(len(ids) - 1):
                self.links.append(LinkRow(
                    f"l-{secrets.token_hex(8)}", slice_id, f"l{k}", next(_VNI),
                    f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24", 100,
                    {"nodes": [f"n{k}", f"n{k + 1}"], "addresses": [None, None],
                     "capacity_mbps": 100}, (ids[k], ids[k + 1])))
            self.leases.append((lease, tuple(books)))
        self.capacity = [CapacityRow(h.id, 1, True, h.capacity,
                                     h.capacity - Resources.of(cores=2, memory_mib=4096))
                         for h in sorted(touched.values(), key=lambda h: h.id)]


def batch_as_today(uow: UnitOfWork, rows: Rows, keys: list[tuple[str, str]], cursor: int,
                   now: datetime) -> int:
    """The statements the engine sends for one batch (see the module docstring)."""
    changes = uow.leases.changes
    changes.lock()
    changes.since(cursor)
    read_for_allocation(uow.slices.connection, {"bench"}, keys)
    uow.leases.quotas.get("bench")
    uow.leases.site_limits.all()
    changes.since(cursor)
    _mark()
    uow.aggregate.slivers.add_many(rows.slivers, created=now)
    uow.aggregate.links.add_many(rows.links)
    uow.leases.leases.add_many(rows.leases)
    uow.inventory.set_free(rows.capacity)
    last = changes.last()
    _mark()
    uow.commit(again=False)
    return last


_MARKS: list[tuple[float, float]] = []


def _mark() -> None:
    _MARKS.append((time.perf_counter(), time.thread_time()))


def batch_folded(uow: UnitOfWork, rows: Rows, keys: list[tuple[str, str]], cursor: int,
                 now: datetime) -> int:
    """The same batch with the change log read in the lock's round trip and every write in
    one (``ChangeLog.lock_since``, ``LeaseStore.write_batch``)."""
    uow.leases.changes.lock_since(cursor)
    read_for_allocation(uow.slices.connection, {"bench"}, keys)
    uow.leases.quotas.get("bench")
    uow.leases.site_limits.all()
    _mark()
    last = uow.leases.write_batch(slivers=rows.slivers, links=rows.links, leases=rows.leases,
                                  free=rows.capacity, created=now)
    _mark()
    uow.commit(again=False)
    return last


SEQUENCES = {"today": batch_as_today, "folded": batch_folded}


def _hog(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(2000))


def _count(engine: Engine) -> list[int]:
    seen = [0]

    def on(*_: Any) -> None:
        seen[0] += 1
    event.listen(engine, "before_cursor_execute", on)
    return seen


def measure(engine: Engine, batch: Callable[..., int], *, batches: int, hogs: int,
            seed: int) -> tuple[list[float], list[float], float]:
    rng = random.Random(seed)
    factory = unit_of_work_factory(engine)
    names = _engine_slices(engine, batches * PER_BATCH)
    with engine.connect() as conn:
        ids = {r[0]: r[1] for r in conn.execute(text("SELECT name, id FROM slices"))}
    hosts = list(inventory(NODES, random.Random(7)).hosts.values())
    now = datetime.now(UTC)
    work = []
    for b in range(batches):
        group = [(ids[n], n) for n in names[b * PER_BATCH:(b + 1) * PER_BATCH]]
        work.append((Rows(rng, group, hosts, now), [("bench", n) for _, n in group]))
    with engine.connect() as conn:
        cursor = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM booking_changes"))
                     .scalar_one())
    stop = threading.Event()
    threads = [threading.Thread(target=_hog, args=(stop,), daemon=True) for _ in range(hogs)]
    for t in threads:
        t.start()
    seen = _count(engine)
    walls, cpus = [], []
    try:
        for rows, keys in work:
            _MARKS.clear()
            _mark()
            with factory() as uow:
                cursor = batch(uow, rows, keys, cursor, now)
            _mark()
            walls.append([b[0] - a[0] for a, b in itertools.pairwise(_MARKS)])
            cpus.append([b[1] - a[1] for a, b in itertools.pairwise(_MARKS)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    return ([statistics.median(w) * 1000 for w in zip(*walls, strict=True)],
            [statistics.median(c) * 1000 for c in zip(*cpus, strict=True)], seen[0] / len(work))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--hogs", default="0,1")
    parser.add_argument("--sequence", default="today", choices=sorted(SEQUENCES))
    args = parser.parse_args()
    batches = 30 if args.quick else 100
    hosts = list(inventory(NODES, random.Random(7)).hosts.values())
    print(f"{'database':>10} {'hogs':>4} {'statements':>10}  ms per batch: wall / CPU of "
          "reads, writes, commit")
    for kind in args.db.split(","):
        with database(kind) as engine:
            load(engine, hosts)
            for hogs in (int(h) for h in args.hogs.split(",")):
                sequence = SEQUENCES[args.sequence]
                measure(engine, sequence, batches=5, hogs=hogs, seed=10 + hogs)
                wall, cpu, stmts = measure(engine, sequence, batches=batches, hogs=hogs,
                                           seed=20 + hogs)
                parts = "  ".join(f"{w:6.2f} / {c:5.2f}" for w, c in zip(wall, cpu, strict=True))
                print(f"{kind:>10} {hogs:>4} {stmts:>10.1f}  {parts}")


if __name__ == "__main__":
    main()
