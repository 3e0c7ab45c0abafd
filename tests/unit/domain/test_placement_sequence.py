"""A pinned, seeded sequence of placements, bookings, renewals, releases and queries.

The same requests must get the same hosts (and the same failure messages) whatever is done to
make placement or the calendar faster. The expected lines are in
``data/placement_sequence.txt``; after a change that is *meant* to alter results, rewrite
it with ``SLICELAB_WRITE_GOLDEN=1 pytest tests/unit/domain/test_placement_sequence.py`` and
review the diff.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slicelab.domain.calendar import Booking, Calendar, Usage, Window
from slicelab.domain.errors import InsufficientResources, SlicelabError
from slicelab.domain.inventory import Host, Inventory, Site
from slicelab.domain.placement import HostIndex, PlacementPolicy, find_slot, place
from slicelab.domain.resources import SHARED_DEVICE_CAPACITY, Resources
from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology

GOLDEN = Path(__file__).parent / "data" / "placement_sequence.txt"
T0 = datetime(2031, 5, 1, tzinfo=UTC)
SITES = [f"s{i}" for i in range(5)]
TIGHT = PlacementPolicy(candidates_per_node=2, max_steps=12)


def _devices(rng: random.Random) -> tuple[tuple[str, int], ...]:
    roll = rng.random()
    if roll < 0.15:
        return (("gpu", rng.choice([1, 2])),)
    if roll < 0.25:
        return (("fpga", 1), ("nic", SHARED_DEVICE_CAPACITY))
    return ()


def _inventory(rng: random.Random, count: int) -> Inventory:
    hosts = []
    for i in range(count):
        cores = rng.choice([2, 4, 8, 16, 32])
        hosts.append(Host(f"h{i:04}", f"pc{i}", rng.choice(SITES),
                          Resources(cores * 1000, cores * rng.choice([2048, 4096]),
                                    rng.choice([100, 500]), rng.choice([0, 1000, 10000]),
                                    _devices(rng)),
                          available=rng.random() > 0.05,
                          hardware_types=frozenset(rng.choice([("pc",), ("pc", "d430")])),
                          uplink_mbps=rng.choice([None, 300, 1000, 10000]),
                          urn=f"urn:publicid:IDN+lab.example+node+pc{i}"))
    return Inventory(hosts, [Site("s0", one_sliver_per_slice_per_node=True)])


def _node(rng: random.Random, name: str, inv: Inventory) -> NodeRequest:
    devices = rng.choice([[], [], [], [], ["gpu"], ["nic"], ["fpga", "nic"]])
    bound = f"pc{rng.randrange(len(inv))}" if rng.random() < 0.05 else None
    return NodeRequest(name, Resources.of(cores=rng.choice([0.5, 1, 2, 4, 8, 24]),
                                          memory_mib=rng.choice([512, 2048, 8192, 40000]),
                                          disk_gib=rng.choice([0, 10, 200]),
                                          bandwidth_mbps=rng.choice([0, 0, 100]),
                                          devices=devices),
                       exclusive=rng.random() < 0.06, component_id=bound,
                       hardware_type="d430" if rng.random() < 0.1 else None,
                       site=rng.choice(SITES) if rng.random() < 0.2 else None)


def _topology(rng: random.Random, inv: Inventory) -> Topology:
    nodes = tuple(_node(rng, f"n{i}", inv) for i in range(rng.randint(1, 5)))
    ifaces: list[InterfaceRequest] = []
    links: list[LinkRequest] = []
    for i in range(len(nodes) - 1):
        members = [i, i + 1] if rng.random() < 0.8 else list(range(len(nodes)))
        names = [f"i{i}.{m}" for m in members]
        ifaces += [InterfaceRequest(n, f"n{m}") for n, m in zip(names, members, strict=True)]
        links.append(LinkRequest(f"l{i}", tuple(names),
                                 capacity_mbps=rng.choice([None, 100, 250, 800])))
    return Topology(nodes, tuple(ifaces), tuple(links))


def _window(rng: random.Random, now: datetime) -> Window:
    return Window.of(now + timedelta(minutes=15 * rng.randint(0, 40)),
                     timedelta(hours=rng.choice([1, 2, 4, 12])))


class _Run:
    def __init__(self, seed: int, hosts: int) -> None:
        self.rng = random.Random(seed)
        self.inv = _inventory(self.rng, hosts)
        self.cal = Calendar(self.inv)
        self.index = HostIndex(self.inv, self.cal)
        self.now = T0
        self.leases: list[str] = []
        self.lines: list[str] = []

    def step(self, i: int) -> None:
        self.now += timedelta(minutes=3)
        roll = self.rng.random()
        try:
            if roll < 0.62:
                self._place(i)
            elif roll < 0.70:
                self._release()
            elif roll < 0.78:
                self._renew()
            elif roll < 0.83:
                self._find_slot(i)
            elif roll < 0.90:
                self._free_hosts()
            elif roll < 0.96:
                self._book_by_hand(i)
            else:
                gone = self.cal.expire(self.now)
                self.lines.append(f"expire {sorted({b.lease_id for b in gone})}")
        except SlicelabError as exc:
            self.lines.append(f"{type(exc).__name__}: {exc}")

    def _place(self, i: int) -> None:
        topology, window = _topology(self.rng, self.inv), _window(self.rng, self.now)
        policy = TIGHT if self.rng.random() < 0.2 else None
        p = place(topology, self.index, self.cal, window, slice_id=f"p/s{i % 7}", policy=policy)
        self._book(p.bookings(lease_id=f"L{i}"), f"place {window}")

    def _book(self, bookings: tuple[Booking, ...], what: str) -> None:
        self.cal.book(bookings, now=self.now)
        self.leases.append(bookings[0].lease_id)
        shares = " ".join(f"{b.sliver}={b.host_id}/{b.uplink_mbps}" for b in bookings)
        self.lines.append(f"{what} {bookings[0].lease_id}: {shares}")

    def _release(self) -> None:
        if self.leases:
            lease = self.leases.pop(self.rng.randrange(len(self.leases)))
            self.lines.append(f"release {lease}: {len(self.cal.release(lease))}")

    def _renew(self) -> None:
        if self.leases:
            lease = self.rng.choice(self.leases)
            end = self.cal.lease(lease)[0].window.end + timedelta(hours=self.rng.randint(1, 9))
            got = self.cal.renew(lease, end=end, now=self.now, partial=self.rng.random() < 0.5)
            self.lines.append(f"renew {lease}: {got}")

    def _find_slot(self, i: int) -> None:
        topology = _topology(self.rng, self.inv)
        p = find_slot(topology, self.index, self.cal, duration=timedelta(hours=3),
                      earliest=self.now, horizon=self.now + timedelta(hours=8),
                      slice_id=f"p/s{i % 7}")
        self._book(p.bookings(lease_id=f"L{i}"), f"slot {p.window}")

    def _free_hosts(self) -> None:
        need = Resources.of(cores=self.rng.choice([1, 4, 16]),
                            memory_mib=self.rng.choice([1024, 16384]),
                            devices=["gpu"] if self.rng.random() < 0.2 else [])
        site = self.rng.choice([None, *SITES])
        found = self.index.free_hosts(need, _window(self.rng, self.now), site=site, limit=5)
        usage = [_usage(self.cal.peak(h.id)) for h in found[:2]]
        self.lines.append(f"free {[h.id for h in found]} {usage}")

    def _book_by_hand(self, i: int) -> None:
        host = self.inv.hosts[f"h{self.rng.randrange(len(self.inv)):04}"]
        window = _window(self.rng, self.now)
        share = Resources(self.rng.choice([500, 2000, 8000]), self.rng.choice([512, 8192]),
                          0, 0, (("gpu", 1),) if self.rng.random() < 0.3 else ())
        booking = Booking(f"L{i}", host.id, "q/t", window, share, self.rng.random() < 0.1,
                          self.rng.choice([0, 200]), "x")
        free = self.cal.free(host.id, window)
        self.lines.append(f"free {host.id} {window}: {free.describe()}")
        try:
            self._book((booking,), "hand")
        except InsufficientResources as exc:
            self.lines.append(f"refused: {exc}")


def _usage(u: Usage) -> str:
    return (f"{u.resources} up={u.uplink_mbps} n={u.bookings} x={u.exclusive} "
            f"{sorted(u.slices)}")


def run_sequence(seed: int = 20310501, hosts: int = 300, steps: int = 700) -> list[str]:
    run = _Run(seed, hosts)
    for i in range(steps):
        run.step(i)
    return run.lines


def test_a_seeded_sequence_gives_the_pinned_hosts_and_messages() -> None:
    lines = run_sequence()
    if os.environ.get("SLICELAB_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8").splitlines()
    for n, (got, want) in enumerate(zip(lines, expected, strict=False)):
        assert got == want, f"line {n + 1} differs"
    assert len(lines) == len(expected)
