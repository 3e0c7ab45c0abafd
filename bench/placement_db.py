"""The database part of bench/placement.py (see its docstring); not run on its own."""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import random
import statistics
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
    run,
)
from sqlalchemy import Engine, create_engine, text

from slicelab.domain.calendar import Calendar
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.placement import FreeHosts, PlacementFailed
from slicelab.domain.roles import Caller
from slicelab.services.allocation import allocate
from slicelab.services.booking import engine_for, stop_engines
from slicelab.services.heartbeats import HeartbeatBatcher, SqlHeartbeatSink
from slicelab.services.inventory import SqlFreeHosts
from slicelab.services.leases import LeaseWindow
from slicelab.services.provisioning import AggregateContext, KeyBox
from slicelab.store.engine import make_engine
from slicelab.store.migrate import upgrade
from slicelab.store.uow import read_only, unit_of_work_factory

PG_URL = os.environ.get("SLICELAB_TEST_POSTGRES",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/slicelab_test")
# heartbeats offered per second: 10% above each goal (50,000 and 20,000/s), so that what is
# written shows whether the goal is met (offered exactly, a run's ramp-up left it just under)
RATES = {"sqlite": 55_000, "postgresql": 22_000}
HB_SECONDS = 50
HB_PERIOD = 0.1  # the batcher's flush period in the bench (the server's default is 0.2 s)
CLIENTS = 128  # concurrent allocation requests (threads), one fresh slice per request (each
# waits for its batch to be written before it asks again: at 64 the engine waited for
# requests a fifth of its time on PostgreSQL; at 128 batches are twice as large)
FEWER_CLIENTS = 64  # the same, from fewer clients (the figure of earlier sessions)


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


def _engine_slices(engine: Engine, count: int) -> list[str]:
    """``count`` fresh slices in project ``bench`` (an allocation needs a slice without
    slivers), the bench member made an admin."""
    _slice(engine)
    now = NOW.replace(tzinfo=None)
    tag = uuid.uuid4().hex[:6]
    names = [f"e{tag}{k}" for k in range(count)]
    with engine.begin() as conn:
        conn.execute(text("UPDATE members SET roles = '[\"admin\"]' WHERE name = 'bench'"))
        conn.execute(text(
            "INSERT INTO slices (project_id, name, urn, created, expires, creator_id) "
            "SELECT p.id, :n, :u, :c, :e, m.id FROM projects p, members m"),
            [{"n": n, "u": f"urn:publicid:IDN+bench:bench+slice+{n}", "c": now,
              "e": datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30)}
             for n in names])
    if engine.dialect.name == "postgresql":  # as autovacuum would have on a running aggregate
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return names


def _topology_json(topo: Any) -> dict[str, Any]:
    nodes = [{"name": n.client_id, "cores": n.resources.cores,
              "memory": n.resources.memory_mib} for n in topo.nodes]
    ifaces = {i.client_id: i.node for i in topo.interfaces}
    links = [{"name": lk.client_id, "members": [ifaces[i] for i in lk.interfaces],
              "capacity": lk.capacity_mbps} for lk in topo.links]
    return {"nodes": nodes, "links": links}


def engine_placements(engine: Engine, count: int, rng: random.Random, *,
                      clients: int) -> tuple[float, float, int, dict[str, float]]:
    """``count`` requests of 1-4 linked nodes from ``clients`` threads through
    ``services.allocation.allocate`` (what REST allocate runs: the allocation engine of this
    process, slivers and links written in its batch): (placements/s, mean batch, refused,
    ms per batch in each part of the engine's batch, see ``Timings``, and each request's
    latency: ``latency_p50`` and ``latency_p99`` in ms)."""
    names = _engine_slices(engine, count)
    factory = unit_of_work_factory(engine)
    ctx = AggregateContext(authority="bench", keybox=KeyBox(b"k" * 32))
    with factory() as uow:
        caller = Caller(member=uow.members.get("bench"))
        booker = engine_for(uow)
    booker.warm()
    bodies = [_topology_json(request(rng, i)) for i in range(count)]
    when = LeaseWindow(duration=timedelta(hours=4))
    refused: list[int] = []
    latencies: list[float] = []

    def client(k: int) -> None:
        for i in range(k, count, clients):
            start = time.perf_counter()
            try:
                with read_only(factory) as uow:  # as REST allocate: the engine writes
                    allocate(uow, ctx, caller, "bench", names[i], bodies[i], when=when)
            except PlacementFailed:
                refused.append(i)
            latencies.append(time.perf_counter() - start)

    batches, jobs, before = booker.batches, booker.jobs, booker.timings.parts()
    ahead, again = booker.ahead, booker.again
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - start
    done = max(1, booker.batches - batches)
    parts = {k: (v - before[k]) * 1000 / done for k, v in booker.timings.parts().items()}
    parts["ahead_share"] = (booker.ahead - ahead) / done  # batches placed ahead (PostgreSQL)
    parts["again"] = booker.again - again  # of those, placed again (another writer between)
    cuts = statistics.quantiles(latencies, n=100)
    parts["latency_p50"], parts["latency_p99"] = cuts[49] * 1000, cuts[98] * 1000
    return count / elapsed, (booker.jobs - jobs) / done, len(refused), parts


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


def run_one(kind: str, *, quick: bool, placement_only: bool = False) -> dict[str, float]:
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
        del inv_100k
        out["placements_1c"], _, _, _ = engine_placements(engine, n // 8, rng, clients=1)
        out["placements_fewer"], _, _, _ = engine_placements(engine, n, rng,
                                                             clients=FEWER_CLIENTS)
        out["placements_100k"], out["batch"], out["refused"], parts = engine_placements(
            engine, n, rng, clients=CLIENTS)
        out.update({f"ms_{k}": v for k, v in parts.items()})
        stop_engines(engine)
        if placement_only:
            out["nodes"] = 100_000
            return out
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


def placement_figures(kinds: list[str], *, quick: bool) -> list[str]:
    """Only the placements at 100k nodes (no 1M load, queries or heartbeats), each database
    beside the pure in-memory placement at 100k hosts in the same run, as a measure of what
    the shared machine gave the run (the ratio is steadier than either figure)."""
    figures = []
    for kind in kinds:
        reference = run(100_000, placements_n=2000, queries_n=10)["placements_per_s"]
        r = run_one(kind, quick=quick, placement_only=True)
        figures += [f"pure_placement_100k_hosts_before_{kind}: {reference:.0f} placements/s",
                    f"db_{kind}_placement_vs_pure: {r['placements_100k'] / reference:.3f} x",
                    *_placement_lines(kind, r),
                    f"db_{kind}_placement_refused: {r['refused']:.0f} requests",
                    f"db_{kind}_batches_placed_ahead: {100 * r['ms_ahead_share']:.0f} %",
                    f"db_{kind}_batches_placed_again: {r['ms_again']:.0f} batches",
                    f"db_{kind}_batch_ms: {_breakdown(r)}"]
    return figures


def _placement_lines(kind: str, r: dict[str, float]) -> list[str]:
    """The placement figures of one database's run (both run modes print them)."""
    return [f"db_{kind}_placement_100k_nodes: {r['placements_100k']:.0f} placements/s",
            f"db_{kind}_placement_100k_nodes_{FEWER_CLIENTS}_clients: "
            f"{r['placements_fewer']:.0f} placements/s",
            f"db_{kind}_placement_100k_nodes_1_client: {r['placements_1c']:.0f} "
            "placements/s",
            f"db_{kind}_placement_mean_batch: {r['batch']:.1f} placements",
            f"db_{kind}_placement_latency_p50: {r['ms_latency_p50']:.0f} ms",
            f"db_{kind}_placement_latency_p99: {r['ms_latency_p99']:.0f} ms"]


def _breakdown(r: dict[str, float]) -> str:
    """ms per batch (``CLIENTS`` clients) in each part of the engine's batch transaction."""
    parts = ["catch_up", "placing", "writes", "commit"]
    return ", ".join(f"{p} {r[f'ms_{p}']:.1f}" for p in parts) + \
        f" (per placement {sum(r[f'ms_{p}'] for p in parts) / max(1.0, r['batch']):.2f})"


def run_databases(kinds: list[str], *, quick: bool) -> list[str]:
    results = {kind: run_one(kind, quick=quick) for kind in kinds}
    print(f"\n{'database':>10} {'nodes':>9} {'load s':>7} {'engine/s':>9} "
          f"{f'{FEWER_CLIENTS} clients/s':>12} {'1 client/s':>10} "
          f"{'query p50 ms':>12} {'query p99 ms':>12} {'beats/s':>9} {'lag p99 ms':>10} "
          f"{'write cap/s':>11}")
    for kind, r in results.items():
        print(f"{kind:>10} {int(r['nodes']):>9} {r['load_s']:>7.1f} "
              f"{r['placements_100k']:>9.0f} {r['placements_fewer']:>12.0f} "
              f"{r['placements_1c']:>10.0f} "
              f"{r['query_p50_ms']:>12.2f} "
              f"{r['query_p99_ms']:>12.2f} {r['hb_rate']:>9.0f} {r['hb_lag_ms']:>10.0f} "
              f"{r['hb_capacity']:>11.0f}")
    figures = []
    for kind, r in results.items():
        k = f"{int(r['nodes']) // 1000}k"
        figures += [*_placement_lines(kind, r),
                    f"db_{kind}_bulk_load_{k}_nodes: {r['load_s']:.1f} s",
                    f"db_{kind}_free_node_query_{k}_nodes_p50: {r['query_p50_ms']:.2f} ms",
                    f"db_{kind}_free_node_query_{k}_nodes_p99: {r['query_p99_ms']:.2f} ms",
                    f"db_{kind}_heartbeats_{k}_nodes: {r['hb_rate']:.0f} heartbeats/s",
                    f"db_{kind}_heartbeat_lag_{k}_nodes_p99: {r['hb_lag_ms']:.0f} ms",
                    f"db_{kind}_heartbeat_write_capacity: {r['hb_capacity']:.0f} rows/s"]
    return figures
