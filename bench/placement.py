"""Placement and free-host query speed over synthetic in-memory inventories.

Usage: python bench/placement.py [--quick]

For each inventory size: build the host index, then place and book requests of 1-4 linked
nodes (placements/s, including the booking that keeps the index current), then time the
free-host query (cores, memory, site, device) for p50/p99 latency. The query goes through
the ``FreeHosts`` seam (``BACKENDS``).

The database part (``--db sqlite,postgresql``; both by default, PostgreSQL from
``$SLICELAB_TEST_POSTGRES`` in a scratch schema that is dropped afterwards) loads the same
synthetic hosts into the aggregate's tables with bulk inserts (COPY on PostgreSQL), then:

* placements/s at 100k nodes through the aggregate's own allocation path
  (``services.allocation.allocate``, what REST allocate runs): requests of 1-4 linked
  nodes, each in a fresh slice, from 128 client threads (and before that from one and from
  64: with fewer clients the engine waits for requests part of the time; each request's
  latency p50/p99 is printed), handed to this process's allocation engine
  (``services.booking``), which places each batch on its snapshot and writes leases,
  bookings, slivers, links and the free-node index in one transaction; ``--placement-only``
  runs just this part;
* the free-node query (cores, memory, site, device) through ``SqlFreeHosts`` at the largest
  size (1M nodes; 100k with ``--quick``): p50/p99;
* heartbeats at that size: a producer offers heartbeats of distinct nodes 10% above the
  target rate (the targets: 50,000/s on SQLite, 20,000/s on PostgreSQL, a million nodes every
  20 s; offered 55,000 and 22,000/s for 50 s) to a ``HeartbeatBatcher`` flushing every
  100 ms; the figures are heartbeats written per second
  and the p99 lag from arrival to commit; plus the write capacity (one batch of 100,000).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from slicelab.domain.calendar import Calendar, Window
from slicelab.domain.inventory import Host, Inventory, Site
from slicelab.domain.placement import FreeHosts, HostIndex, PlacementFailed, place
from slicelab.domain.resources import Resources
from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology

NOW = datetime(2031, 1, 1, tzinfo=UTC)
SHAPES = [(8, 32768, ()), (16, 65536, ()), (32, 131072, ()), (64, 262144, (("gpu", 1),))]


def inventory(size: int, rng: random.Random) -> Inventory:
    sites = [f"site{i:02}" for i in range(max(1, size // 1000))]
    hosts = []
    for i in range(size):
        cores, mem, devices = SHAPES[rng.randrange(len(SHAPES))]
        hosts.append(Host(f"h{i:07}", f"pc{i}", sites[i % len(sites)],
                          Resources(cores * 1000, mem, 500, 10000, devices),
                          hardware_types=frozenset({"pc"}), uplink_mbps=10000))
    return Inventory(hosts, [Site(sites[0], one_sliver_per_slice_per_node=True)])


def request(rng: random.Random, n: int) -> Topology:
    nodes = tuple(NodeRequest(f"n{i}", Resources.of(cores=rng.choice([1, 2, 4]),
                                                    memory_mib=rng.choice([2048, 4096, 8192])))
                  for i in range(rng.randint(1, 4)))
    ifaces = tuple(InterfaceRequest(f"i{i}{s}", f"n{i + (s == 'b')}")
                   for i in range(len(nodes) - 1) for s in "ab")
    links = tuple(LinkRequest(f"l{i}", (f"i{i}a", f"i{i}b"), capacity_mbps=100)
                  for i in range(len(nodes) - 1))
    return Topology(nodes, ifaces, links)


def placements(index: HostIndex, cal: Calendar, rng: random.Random, count: int) -> float:
    reqs = [request(rng, i) for i in range(count)]
    window = Window.of(NOW, timedelta(hours=4))
    start = time.perf_counter()
    for i, topo in enumerate(reqs):
        try:
            p = place(topo, index, cal, window, slice_id=f"p/s{i}")
        except PlacementFailed:
            continue
        cal.book(p.bookings(lease_id=f"L{i}"), now=NOW)
    return count / (time.perf_counter() - start)


def query_latency(backend: FreeHosts, rng: random.Random, count: int,
                  sites: list[str]) -> tuple[float, float]:
    times = []
    for _ in range(count):
        need = Resources.of(cores=rng.choice([1, 4, 16, 48]),
                            memory_mib=rng.choice([1024, 16384, 131072]),
                            devices=["gpu"] if rng.random() < 0.2 else [])
        site = rng.choice(sites) if rng.random() < 0.5 else None
        window = Window.of(NOW + timedelta(hours=rng.randint(0, 8)), timedelta(hours=2))
        t = time.perf_counter()
        backend.free_hosts(need, window, site=site, limit=10)
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99) - 1] * 1e6


def memory_backend(inv: Inventory, cal: Calendar) -> FreeHosts:
    return HostIndex(inv, cal, follow=False)


BACKENDS: dict[str, Callable[[Inventory, Calendar], FreeHosts]] = {"memory": memory_backend}


def run(size: int, *, placements_n: int, queries_n: int,
        backend: str = "memory") -> dict[str, float]:
    rng = random.Random(size)
    inv = inventory(size, rng)
    cal = Calendar(inv)
    t = time.perf_counter()
    index = HostIndex(inv, cal)
    build = time.perf_counter() - t
    rate = placements(index, cal, rng, placements_n)
    sites = sorted({h.site for h in inv.hosts.values()})
    p50, p99 = query_latency(BACKENDS[backend](inv, cal), rng, queries_n, sites)
    return {"hosts": size, "build_s": build, "placements_per_s": rate, "query_p50_us": p50,
            "query_p99_us": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests per size")
    parser.add_argument("--placement-only", action="store_true",
                        help="only the database placements at 100k nodes")
    parser.add_argument("--db", default="sqlite,postgresql",
                        help="databases for the DB part (comma-separated; 'none' skips it)")
    args = parser.parse_args()
    if args.placement_only:
        from placement_db import placement_figures

        kinds = [k for k in args.db.split(",") if k and k != "none"]
        print("\n".join(placement_figures(kinds, quick=args.quick)))
        return
    figures = pure(quick=args.quick)
    kinds = [k for k in args.db.split(",") if k and k != "none"]
    if kinds:
        from placement_db import run_databases

        figures += run_databases(kinds, quick=args.quick)
    print("\n".join(figures))


def pure(*, quick: bool) -> list[str]:
    sizes = [10_000, 100_000, 1_000_000]
    n_place, n_query = (1000, 500) if quick else (5000, 3000)
    rows = [run(size, placements_n=n_place, queries_n=n_query) for size in sizes]
    print(f"{'hosts':>10} {'index build s':>14} {'placements/s':>13} {'query p50 µs':>13} "
          f"{'query p99 µs':>13}")
    for r in rows:
        print(f"{int(r['hosts']):>10} {r['build_s']:>14.2f} {r['placements_per_s']:>13.0f} "
              f"{r['query_p50_us']:>13.0f} {r['query_p99_us']:>13.0f}")
    figures = []
    for r in rows:
        k = f"{int(r['hosts']) // 1000}k"
        figures += [f"placement_{k}_hosts: {r['placements_per_s']:.0f} placements/s",
                    f"free_host_query_{k}_hosts_p50: {r['query_p50_us']:.0f} us",
                    f"free_host_query_{k}_hosts_p99: {r['query_p99_us']:.0f} us",
                    f"index_build_{k}_hosts: {r['build_s']:.2f} s"]
    return figures


if __name__ == "__main__":
    main()
