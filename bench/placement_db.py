"""The database part of bench/placement.py (see its docstring); not run on its own."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from placement import (
    BACKENDS,
    NOW,
    inventory,
    query_latency,
    request,
)
from sqlalchemy import Engine, create_engine, text

from slicelab.domain.calendar import Calendar, Window
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.placement import FreeHosts, PlacementFailed
from slicelab.services.booking import BookingRequest, GroupBooker
from slicelab.services.heartbeats import HeartbeatBatcher, SqlHeartbeatSink
from slicelab.services.inventory import SqlFreeHosts, index_nodes
from slicelab.services.leases import book_lease
from slicelab.store.engine import make_engine
from slicelab.store.leases import LeaseRow
from slicelab.store.migrate import upgrade
from slicelab.store.uow import unit_of_work_factory

PG_URL = os.environ.get("SLICELAB_TEST_POSTGRES",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/slicelab_test")
RATES = {"sqlite": 50_000, "postgresql": 20_000}
HB_SECONDS = 50
HB_PERIOD = 0.1  # the batcher's flush period in the bench (the server's default is 0.2 s)
CLIENTS = 64  # concurrent allocation requests (threads) for the group-commit figure
PRODUCT_CLIENTS = 8  # concurrent clients (threads) of the product path, one slice each


@contextmanager
def database(kind: str) -> Iterator[Engine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{tmp}/bench.db")
            upgrade(engine)
            yield engine
            engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(PG_URL, schema=schema)
        upgrade(engine)
        yield engine
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- bulk load ------------------------------------------------------------------------------------

def _rows(hosts: list[Host], site_ids: dict[str, int]) -> tuple[list[tuple[Any, ...]], ...]:
    created = NOW.replace(tzinfo=None).isoformat(sep=" ")
    nodes, caps, devs = [], [], []
    for h in hosts:
        c = h.capacity
        inv = json.dumps({"cores": c.cpu_milli // 1000, "memory_mib": c.memory_mib,
                          "disk_gib": c.disk_gib, "devices": [], "interfaces": []})
        nodes.append((h.id, h.id, site_ids[h.site], f"urn:publicid:IDN+bench+node+{h.id}",
                      "boot", inv, None, None, 0, "-", created))
        caps.append((h.id, site_ids[h.site], True, c.cpu_milli, c.memory_mib, c.disk_gib,
                     c.cpu_milli, c.memory_mib, c.disk_gib))
        devs += [(h.id, name, count) for name, count in c.devices]
    return nodes, caps, devs


_COLS = {"nodes": "id, name, site_id, urn, boot_state, inventory, host_ip, last_seen, "
                  "auth_failures, sealed_key, created",
         "node_capacity": "node_id, site_id, available, cpu_milli, memory_mib, disk_gib, "
                          "free_cpu_milli, free_memory_mib, free_disk_gib",
         "node_devices": "node_id, device, free"}


def _sites(engine: Engine, names: list[str]) -> dict[str, int]:
    with engine.begin() as conn:
        have = {r[0]: r[1] for r in conn.execute(text("SELECT name, id FROM sites"))}
        for name in names:
            if name not in have:
                conn.execute(text("INSERT INTO sites (name, urn, created) VALUES "
                                  "(:n, :u, :c)"), {"n": name, "u": f"urn:x+{name}",
                                                    "c": NOW.replace(tzinfo=None)})
        return {r[0]: r[1] for r in conn.execute(text("SELECT name, id FROM sites"))}


def load(engine: Engine, hosts: list[Host]) -> float:
    """Insert ``hosts`` into nodes, node_capacity, node_devices; return the seconds taken."""
    start = time.perf_counter()
    site_ids = _sites(engine, sorted({h.site for h in hosts}))
    tables = dict(zip(_COLS, _rows(hosts, site_ids), strict=True))
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for table, rows in tables.items():
            if engine.dialect.name == "postgresql":
                with raw.cursor() as cur, cur.copy(
                        f"COPY {table} ({_COLS[table]}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * len(_COLS[table].split(",")))
                raw.executemany(f"INSERT INTO {table} ({_COLS[table]}) VALUES ({marks})", rows)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - start


# -- placements against the database --------------------------------------------------------------

def _slice(engine: Engine) -> int:
    now = NOW.replace(tzinfo=None)
    with engine.begin() as conn:
        found = conn.execute(text("SELECT id FROM slices")).scalar()
        if found is not None:
            return int(found)
        conn.execute(text("INSERT INTO members (name, email, can_lead, roles, created) "
                          "VALUES ('bench', 'b@example.org', true, '[]', :c)"), {"c": now})
        conn.execute(text("INSERT INTO projects (name, description, created) "
                          "VALUES ('bench', '', :c)"), {"c": now})
        conn.execute(text("INSERT INTO slices (project_id, name, urn, created, expires, "
                          "creator_id) SELECT p.id, 'bench', 'urn:x+slice+bench', :c, :e, m.id "
                          "FROM projects p, members m"),
                     {"c": now, "e": now + timedelta(days=30)})
        return int(conn.execute(text("SELECT id FROM slices")).scalar_one())


def placements(booker: GroupBooker, slice_id: int, count: int, rng: random.Random, *,
               clients: int) -> tuple[float, float]:
    """``count`` requests of 1-4 nodes from ``clients`` threads through ``booker`` (the
    snapshot in memory, one transaction per batch): (placements/s, mean batch size)."""
    window = Window.of(NOW, timedelta(hours=4))
    tag = uuid.uuid4().hex[:8]
    reqs = [BookingRequest(lease=LeaseRow(f"L{tag}-{i}", slice_id, "bench", "bench", window,
                                          "active", True, NOW), topology=request(rng, i))
            for i in range(count)]
    batches = booker.batches
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda k: _client(booker, reqs[k::clients]), range(clients)))
    elapsed = time.perf_counter() - start
    return count / elapsed, count / max(1, booker.batches - batches)


def _booker(engine: Engine, inv: Inventory) -> GroupBooker:
    """One booker for every group-commit run: its snapshot must hold all the bookings it
    did not write itself (it assumes it is the only writer)."""
    with engine.connect() as conn:
        site_ids = {r[0]: r[1] for r in conn.execute(text("SELECT name, id FROM sites"))}
    return GroupBooker(unit_of_work_factory(engine), Calendar(inv), site_ids=site_ids,
                       clock=lambda: NOW)


def _bench_slices(engine: Engine, count: int) -> list[str]:
    """``count`` slices ``b0``.. in project ``bench`` (one slice per product-path client:
    bookings of one slice are serialized by design)."""
    _slice(engine)
    now = NOW.replace(tzinfo=None)
    names = [f"b{k}" for k in range(count)]
    with engine.begin() as conn:
        have = set(conn.execute(text("SELECT name FROM slices")).scalars())
        for name in names:
            if name not in have:
                conn.execute(text(
                    "INSERT INTO slices (project_id, name, urn, created, expires, creator_id) "
                    "SELECT p.id, :n, :u, :c, :e, m.id FROM projects p, members m"),
                    {"n": name, "u": f"urn:publicid:IDN+bench:bench+slice+{name}", "c": now,
                     "e": now + timedelta(days=30)})
    return names


def product_placements(engine: Engine, count: int, rng: random.Random, *,
                       clients: int) -> float:
    """``count`` requests of 1-4 nodes from ``clients`` threads through the product path
    (``services.leases.book_lease`` on hosts claimed from the index, then the index rows of
    the booked hosts rewritten, one transaction each): placements/s."""
    names = _bench_slices(engine, clients)
    factory = unit_of_work_factory(engine)
    topologies = [request(rng, i) for i in range(count)]
    window = Window.of(NOW, timedelta(hours=4))

    def client(k: int) -> None:
        with factory() as uow:
            item = uow.slices.get("bench", names[k])
        for topo in topologies[k::clients]:
            ids = {n.client_id: f"s-{uuid.uuid4().hex[:16]}" for n in topo.nodes}
            with factory() as uow:
                try:
                    _, placed = book_lease(uow, item, topo, window, sliver_ids=ids, now=NOW)
                except PlacementFailed:
                    continue
                index_nodes(uow, {a.host_id for a in placed.assignments}, now=NOW)
                uow.commit()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return count / (time.perf_counter() - start)


def _client(booker: GroupBooker, reqs: list[BookingRequest]) -> None:
    for req in reqs:
        try:
            booker.book(req)
        except PlacementFailed:
            continue


# -- heartbeats -----------------------------------------------------------------------------------

def _sender(conn: Connection, ids: list[str], rate: int, seconds: float) -> None:
    """The nodes' side, in a process of its own: every 5 ms, the heartbeats due by then."""
    start, sent = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(rate * elapsed) - sent
        if due:
            conn.send([ids[k % len(ids)] for k in range(sent, sent + due)])
            sent += due
        time.sleep(0.005)
    conn.send(None)


def heartbeats(engine: Engine, ids: list[str], *, rate: int, seconds: float
               ) -> tuple[float, float, float]:
    """Offered ``rate``/s for ``seconds`` by a sender process: (written/s, p99 lag ms,
    capacity rows/s)."""
    sink = SqlHeartbeatSink(unit_of_work_factory(engine))
    seen = datetime.now(UTC)
    batch = [(ids[i], seen) for i in range(min(100_000, len(ids)))]
    t = time.perf_counter()
    sink.write(batch)
    capacity = len(batch) / (time.perf_counter() - t)
    batcher = HeartbeatBatcher(sink, period=HB_PERIOD)
    ours, theirs = multiprocessing.Pipe(duplex=False)
    sender = multiprocessing.get_context("fork").Process(
        target=_sender, args=(theirs, ids, rate, seconds))
    batcher.start()
    start = time.perf_counter()
    sender.start()
    try:
        while (chunk := ours.recv()) is not None:
            now = datetime.now(UTC)
            for node_id in chunk:
                batcher.record(node_id, now)
    finally:
        sender.join()
        batcher.stop()
    total = time.perf_counter() - start
    return batcher.stats.written / total, batcher.stats.quantile(0.99) * 1000, capacity


# -- the run --------------------------------------------------------------------------------------

def _backend(engine: Engine) -> Any:
    def make(inv: Inventory, _cal: Calendar) -> FreeHosts:
        with engine.connect() as conn:
            site_ids = {r[0]: r[1] for r in conn.execute(text("SELECT name, id FROM sites"))}
        return SqlFreeHosts(unit_of_work_factory(engine), inv.host, site_ids)
    return make


def run_one(kind: str, *, quick: bool) -> dict[str, float]:
    big = 100_000 if quick else 1_000_000
    rng = random.Random(7)
    inv_big = inventory(big, rng)
    hosts = list(inv_big.hosts.values())
    gc.freeze()  # a million long-lived hosts: keep the collector from rescanning them
    out: dict[str, float] = {}
    with database(kind) as engine:
        out["load_100k_s"] = load(engine, hosts[:100_000])
        inv_100k = Inventory(hosts[:100_000], inv_big.sites.values())
        n = 2000 if quick else 5000
        booker, slice_id = _booker(engine, inv_100k), _slice(engine)
        booker.start()
        out["placements_1c"], _ = placements(booker, slice_id, n // 4, rng, clients=1)
        out["placements_100k"], out["batch"] = placements(booker, slice_id, n, rng,
                                                          clients=CLIENTS)
        booker.stop()
        out["product_1c"] = product_placements(engine, n // 8, rng, clients=1)
        out["product_100k"] = product_placements(engine, n // 2, rng, clients=PRODUCT_CLIENTS)
        out["load_s"] = out["load_100k_s"]
        if big > 100_000:
            out["load_s"] += load(engine, hosts[100_000:])
        BACKENDS[kind] = _backend(engine)
        sites = sorted({h.site for h in hosts})
        p50, p99 = query_latency(BACKENDS[kind](inv_big, Calendar(inv_big)), rng,
                                 300 if quick else 2000, sites)
        out["query_p50_ms"], out["query_p99_ms"] = p50 / 1000, p99 / 1000
        rate, lag, capacity = heartbeats(engine, [h.id for h in hosts], rate=RATES[kind],
                                         seconds=5 if quick else HB_SECONDS)
        out["hb_rate"], out["hb_lag_ms"], out["hb_capacity"] = rate, lag, capacity
    out["nodes"] = big
    return out


def run_databases(kinds: list[str], *, quick: bool) -> list[str]:
    results = {kind: run_one(kind, quick=quick) for kind in kinds}
    print(f"\n{'database':>10} {'nodes':>9} {'load s':>7} {'booker/s':>9} {'product/s':>9} "
          f"{'query p50 ms':>12} {'query p99 ms':>12} {'beats/s':>9} {'lag p99 ms':>10} "
          f"{'write cap/s':>11}")
    for kind, r in results.items():
        print(f"{kind:>10} {int(r['nodes']):>9} {r['load_s']:>7.1f} "
              f"{r['placements_100k']:>9.0f} {r['product_100k']:>9.0f} "
              f"{r['query_p50_ms']:>12.2f} "
              f"{r['query_p99_ms']:>12.2f} {r['hb_rate']:>9.0f} {r['hb_lag_ms']:>10.0f} "
              f"{r['hb_capacity']:>11.0f}")
    figures = []
    for kind, r in results.items():
        k = f"{int(r['nodes']) // 1000}k"
        figures += [f"db_{kind}_placement_100k_nodes: {r['placements_100k']:.0f} placements/s",
                    f"db_{kind}_placement_100k_nodes_1_client: {r['placements_1c']:.0f} "
                    "placements/s",
                    f"db_{kind}_placement_mean_batch: {r['batch']:.1f} placements",
                    f"db_{kind}_product_placement_100k_nodes: {r['product_100k']:.0f} "
                    "placements/s",
                    f"db_{kind}_product_placement_100k_nodes_1_client: {r['product_1c']:.0f} "
                    "placements/s",
                    f"db_{kind}_bulk_load_{k}_nodes: {r['load_s']:.1f} s",
                    f"db_{kind}_free_node_query_{k}_nodes_p50: {r['query_p50_ms']:.2f} ms",
                    f"db_{kind}_free_node_query_{k}_nodes_p99: {r['query_p99_ms']:.2f} ms",
                    f"db_{kind}_heartbeats_{k}_nodes: {r['hb_rate']:.0f} heartbeats/s",
                    f"db_{kind}_heartbeat_lag_{k}_nodes_p99: {r['hb_lag_ms']:.0f} ms",
                    f"db_{kind}_heartbeat_write_capacity: {r['hb_capacity']:.0f} rows/s"]
    return figures
