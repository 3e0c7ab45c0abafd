"""What a local testbed made, by the ids it recorded, and which of those objects still exist.

:func:`recorded` reads the testbed's state file and every agent's ledger: network
namespaces, links (by namespace, ifindex and name), cgroups, mounts, nft tables and
processes (pid and start time). Take it while the objects exist (a teardown forgets each
record as it removes the object) and join several with :meth:`Recorded.merge`.
:func:`leftovers` then names every recorded object that is still there.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS, netns

from slicelab.testbed import processes
from slicelab.testbed.record import TestbedRecord

__all__ = ["Recorded", "host_owners", "leftovers", "recorded"]

_STATE = "testbed.json"


@dataclass(frozen=True)
class Recorded:
    """Kernel objects and processes, each by the id it was recorded with."""

    netns: frozenset[str] = field(default=frozenset())
    links: frozenset[tuple[str, int, str]] = field(default=frozenset())  # (netns, index, name)
    cgroups: frozenset[str] = field(default=frozenset())
    mounts: frozenset[str] = field(default=frozenset())
    nft_tables: frozenset[tuple[str, str]] = field(default=frozenset())  # (netns, table)
    processes: frozenset[tuple[int, int]] = field(default=frozenset())  # (pid, start)
    shared_cgroups: frozenset[str] = field(default=frozenset())  # left while others use them

    def merge(self, other: Recorded) -> Recorded:
        return Recorded(self.netns | other.netns, self.links | other.links,
                        self.cgroups | other.cgroups, self.mounts | other.mounts,
                        self.nft_tables | other.nft_tables, self.processes | other.processes,
                        self.shared_cgroups | other.shared_cgroups)

    def count(self) -> int:
        return sum(len(getattr(self, name)) for name in
                   ("netns", "links", "cgroups", "mounts", "nft_tables", "processes"))


def _ledger_rows(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT kind, name, data FROM objects ORDER BY id").fetchall()
    finally:
        db.close()
    return [(str(k), str(n), json.loads(d)) for k, n, d in rows]


def _in_use(shared: Path) -> bool:
    """A shared parent cgroup (``.../slicelab``) that other agents' slivers still use
    (the last agent out removes it)."""
    return shared.is_dir() and any(p.is_dir() for p in shared.iterdir())


def _from_ledger(path: Path, host_ns: str) -> Recorded:
    found: dict[str, set[Any]] = {k: set() for k in
                                  ("netns", "links", "cgroups", "mounts", "nft", "procs",
                                            "shared")}
    for kind, name, data in _ledger_rows(path):
        if kind == "netns":
            found["netns"].add(name)
        elif kind == "link" and "ifindex" in data:
            found["links"].add((data.get("ns") or host_ns, int(data["ifindex"]), name))
        elif kind == "cgroup":
            found["cgroups"].add(name)
        elif kind == "shared-cgroup":
            found["shared"].add(name)
        elif kind == "mount":
            found["mounts"].add(name)
        elif kind == "nft-table":
            found["nft"].add((host_ns, name))
        elif kind == "process" and "pid" in data:
            found["procs"].add((int(data["pid"]), int(data.get("start") or 0)))
    return Recorded(frozenset(found["netns"]), frozenset(found["links"]),
                    frozenset(found["cgroups"]), frozenset(found["mounts"]),
                    frozenset(found["nft"]), frozenset(found["procs"]),
                    frozenset(found["shared"]))


def recorded(base_dir: Path) -> Recorded:
    """Everything the testbed at ``base_dir`` and its agents have recorded right now."""
    record = TestbedRecord.load(base_dir / _STATE)
    if record is None:
        return Recorded()
    result = Recorded()
    for item in record.items:
        data = item.data
        if item.kind == "netns":
            result = result.merge(Recorded(netns=frozenset({item.name})))
        elif item.kind in ("bridge", "veth") and "ifindex" in data:
            result = result.merge(Recorded(links=frozenset({("", int(data["ifindex"]),
                                                              item.name)})))
        if "pid" in data and data.get("start") is not None:
            result = result.merge(Recorded(processes=frozenset({(int(data["pid"]),
                                                                  int(data["start"]))})))
        if item.kind == "agent":
            ledger = Path(data["home"]) / "state" / "ledger.sqlite3"
            result = result.merge(_from_ledger(ledger, str(data["ns"])))
    return result


def host_owners(base_dir: Path) -> dict[str, list[str]]:
    """Per testbed host, the owners (``sliver:<id>``, ``link:<id>``) in its agent's ledger."""
    record = TestbedRecord.load(base_dir / _STATE)
    owners: dict[str, list[str]] = {}
    for item in record.of_kind("agent") if record else []:
        path = Path(item.data["home"]) / "state" / "ledger.sqlite3"
        owners[item.name] = sorted(set(_owner_rows(path)) - {"agent"})
    return owners


def _owner_rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [str(r[0]) for r in db.execute("SELECT owner FROM objects")]
    finally:
        db.close()


def _links_present(ns: str, wanted: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    if ns and ns not in netns.listnetns():
        return set()
    with NetNS(ns) if ns else IPRoute() as ipr:
        present = {(int(m["index"]), str(m.get_attr("IFLA_IFNAME"))) for m in ipr.get_links()}
    return present & set(wanted)


def _tables(ns: str) -> set[str]:
    if ns and ns not in netns.listnetns():
        return set()
    argv = ["nft", "list", "tables"]
    if ns:
        argv = ["nsenter", f"--net=/var/run/netns/{ns}", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}


def _mount_points() -> set[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return {line.split()[4] for line in lines}


def leftovers(what: Recorded) -> list[str]:
    """Each recorded object that still exists, as ``kind name``; empty when all are gone."""
    found = [f"netns {n}" for n in sorted(what.netns & set(netns.listnetns()))]
    by_ns: dict[str, set[tuple[int, str]]] = {}
    for ns, index, name in what.links:
        by_ns.setdefault(ns, set()).add((index, name))
    for ns, wanted in sorted(by_ns.items()):
        found += [f"link {name} (ifindex {i}, netns {ns or '-'})"
                  for i, name in sorted(_links_present(ns, wanted))]
    found += [f"cgroup {c}" for c in sorted(what.cgroups) if Path(c).exists()]
    found += [f"cgroup {c} (empty)" for c in sorted(what.shared_cgroups)
              if Path(c).is_dir() and not _in_use(Path(c))]
    found += [f"mount {m}" for m in sorted(what.mounts & _mount_points())]
    for ns, table in sorted(what.nft_tables):
        if table in _tables(ns):
            found.append(f"nft table {table} (netns {ns or '-'})")
    found += [f"process {pid}" for pid, start in sorted(what.processes)
              if processes.alive(pid, start)]
    return found
