"""A crash-safe record of every kernel object the agent makes.

Write-ahead: :meth:`Ledger.step` records the intent (a committed SQLite row) *before* the
object is made, and marks it done with its id (ifindex, handle, pid) after. A ``kill -9``
at any moment therefore leaves only objects whose intent is recorded; one whose id is not
yet written is named well enough by its record (agent-prefixed name, mount point, cgroup
path or rule comment) for :func:`unwind` to find and remove it.

Grouping: inside :meth:`Ledger.transaction` the rows of many ``begin``/``finish`` calls are
committed together when the block ends. A caller that makes objects in bulk records all
their intents in one transaction, commits it, makes the objects, then marks them done in a
second one; nothing is made while an intent is still uncommitted, so the write-ahead rule
holds.

Durability trade-off: the file is in WAL mode with ``synchronous=NORMAL``, so a commit is
a write into the WAL without an fsync. That is durable across a crash of the agent process
(``kill -9``, an exception, OOM), which is the failure the ledger is for: the data is in
the kernel's page cache. After a power loss or kernel crash the last commits may be lost;
then the kernel objects are gone too (network namespaces, links, qdiscs, nft rules,
cgroups and mounts do not survive a reboot), and what does survive (files under the state
dir) is found by its prefixed name on the next cleanup.

Objects belong to an owner (``sliver:<id>``, ``link:<id>``, ``agent``). :func:`unwind`
removes an owner's objects in reverse order of creation. A record whose ``parent`` is
removed in the same unwind (a veth end inside a network namespace) is removed after its
parent, so that the parent takes it with it and the child's remover only confirms.
:func:`unwind_many` removes many owners' objects together, one kind at a time (all
processes, then all cgroups, ...), so that kinds with a bulk remover cost one call for
all of them; it forgets the records only when every removal has returned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicelab.domain.errors import InsufficientResources

__all__ = ["BulkRemover", "Ledger", "Record", "Remover", "unwind", "unwind_many"]

_CHUNK = 500  # owners per query (SQLite's limit on parameters is far above)
_SELECT = "SELECT id, owner, kind, name, parent, data, done FROM objects"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    parent INTEGER,
    data TEXT NOT NULL DEFAULT '{}',
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS objects_owner ON objects (owner);
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS addresses (
    owner TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE
);
"""


def _record(row: Any) -> Record:
    return Record(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), bool(row[6]))


@dataclass
class Record:
    """One kernel object: ``kind`` says which remover handles it."""

    id: int
    owner: str
    kind: str
    name: str
    parent: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    done: bool = False


Remover = Callable[[Record], None]
BulkRemover = Callable[[Sequence[Record]], None]


class Ledger:
    """The SQLite file ``<state_dir>/ledger.sqlite3`` (WAL, synchronous=NORMAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group every write in the block into one commit (nested blocks join the outer).

        The block's rows are committed even when it raises: a recorded intent is never
        harmful (its remover tolerates an object that was never made).
        """
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def begin(self, owner: str, kind: str, name: str, *, parent: int | None = None,
              data: Mapping[str, Any] | None = None) -> Record:
        """Record the intent to make an object; durable when this returns (or, inside
        :meth:`transaction`, when the transaction ends)."""
        payload = dict(data or {})
        cur = self._db.execute(
            "INSERT INTO objects (owner, kind, name, parent, data) VALUES (?, ?, ?, ?, ?)",
            (owner, kind, name, parent, json.dumps(payload)),
        )
        assert cur.lastrowid is not None
        return Record(cur.lastrowid, owner, kind, name, parent, payload)

    def finish(self, record: Record) -> None:
        """Mark the object made, with the ids now in ``record.data``."""
        record.done = True
        self._db.execute("UPDATE objects SET data = ?, done = 1 WHERE id = ?",
                         (json.dumps(record.data), record.id))

    @contextmanager
    def step(self, owner: str, kind: str, name: str, *, parent: int | None = None,
             data: Mapping[str, Any] | None = None) -> Iterator[Record]:
        """``begin``, run the body (which makes the object and fills ids), ``finish``."""
        record = self.begin(owner, kind, name, parent=parent, data=data)
        yield record
        self.finish(record)

    def forget(self, record: Record) -> None:
        self._db.execute("DELETE FROM objects WHERE id = ?", (record.id,))

    def forget_all(self, records: Sequence[Record]) -> None:
        """Forget many records in one transaction."""
        with self.transaction():
            self._db.executemany("DELETE FROM objects WHERE id = ?",
                                 [(record.id,) for record in records])

    def records(self, owner: str | None = None) -> list[Record]:
        if owner is not None:
            return self.records_of([owner])[owner]
        rows = self._db.execute(f"{_SELECT} ORDER BY id")
        return [_record(r) for r in rows]

    def records_of(self, owners: Sequence[str]) -> dict[str, list[Record]]:
        """The records of each of ``owners`` (in id order), read in a few queries."""
        found: dict[str, list[Record]] = {owner: [] for owner in owners}
        for start in range(0, len(owners), _CHUNK):
            chunk = owners[start:start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for r in self._db.execute(f"{_SELECT} WHERE owner IN ({marks}) ORDER BY id", chunk):
                found[r[1]].append(_record(r))
        return found

    def owner_facts(self, owners: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """``(digest if complete, address)`` of each of ``owners``, in a few queries."""
        facts: dict[str, tuple[str | None, str | None]] = dict.fromkeys(owners, (None, None))
        for start in range(0, len(owners), _CHUNK):
            chunk = owners[start:start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for owner, digest, complete in self._db.execute(
                    f"SELECT owner, digest, complete FROM owners WHERE owner IN ({marks})",
                    chunk):
                facts[owner] = (str(digest) if complete else None, None)
            for owner, address in self._db.execute(
                    f"SELECT owner, address FROM addresses WHERE owner IN ({marks})", chunk):
                facts[owner] = (facts[owner][0], str(address))
        return facts

    def find(self, owner: str, kind: str, name: str) -> Record | None:
        for record in self.records(owner):
            if record.kind == kind and record.name == name:
                return record
        return None

    def owners(self) -> list[str]:
        rows = self._db.execute(
            "SELECT owner FROM objects UNION SELECT owner FROM owners "
            "UNION SELECT owner FROM addresses")
        return sorted(r[0] for r in rows)

    def mark_owner(self, owner: str, *, digest: str, complete: bool) -> None:
        self._db.execute(
            "INSERT INTO owners (owner, digest, complete) VALUES (?, ?, ?) ON CONFLICT(owner) "
            "DO UPDATE SET digest = excluded.digest, complete = excluded.complete",
            (owner, digest, int(complete)))

    def owner_digest(self, owner: str) -> str | None:
        """The digest of the spec the owner was completely built from, else None."""
        row = self._db.execute("SELECT digest, complete FROM owners WHERE owner = ?",
                               (owner,)).fetchone()
        return str(row[0]) if row and row[1] else None

    def drop_owner(self, owner: str) -> None:
        self._db.execute("DELETE FROM owners WHERE owner = ?", (owner,))
        self._db.execute("DELETE FROM addresses WHERE owner = ?", (owner,))

    def address_of(self, owner: str) -> str | None:
        row = self._db.execute("SELECT address FROM addresses WHERE owner = ?",
                               (owner,)).fetchone()
        return str(row[0]) if row else None

    def take_address(self, owner: str, candidates: Iterator[str]) -> str:
        """The owner's address, or the first free one among ``candidates`` (recorded).

        ``candidates`` may be shared by many calls (it is consumed as far as needed); an
        address already taken is skipped by the table's unique constraint.
        """
        current = self.address_of(owner)
        if current is not None:
            return current
        for address in candidates:
            try:
                self._db.execute("INSERT INTO addresses (owner, address) VALUES (?, ?)",
                                 (owner, address))
            except sqlite3.IntegrityError:
                continue
            return address
        raise InsufficientResources("no free address in the control subnet")

    def used_addresses(self) -> set[str]:
        return {str(r[0]) for r in self._db.execute("SELECT address FROM addresses")}


def unwind(ledger: Ledger, owner: str, removers: Mapping[str, Remover]) -> None:
    """Remove the owner's objects, newest first, each by its id; forget each record.

    Every remover must be idempotent (an object already gone is fine). A record whose
    parent is in this owner is removed right after that parent.
    """
    with ledger.transaction():  # removals are idempotent: losing the forgets is harmless
        records = ledger.records(owner)
        ids = {r.id for r in records}
        children: dict[int, list[Record]] = {}
        for record in records:
            if record.parent in ids:
                children.setdefault(record.parent, []).append(record)
        for record in reversed(records):
            if record.parent in ids:
                continue
            _remove_tree(ledger, record, children, removers)


def _remove_tree(ledger: Ledger, record: Record, children: Mapping[int, list[Record]],
                 removers: Mapping[str, Remover]) -> None:
    removers[record.kind](record)
    ledger.forget(record)
    for child in reversed(children.get(record.id, [])):
        _remove_tree(ledger, child, children, removers)


def unwind_many(ledger: Ledger, owners: Sequence[str], removers: Mapping[str, Remover],
                bulk: Mapping[str, BulkRemover], *, order: Sequence[str]) -> None:
    """Remove the objects of many owners together, one kind at a time.

    First the records whose parent is not among them, then their children, and so on.
    Within such a level, kinds go in ``order`` (others after it, newest first); a kind with
    a ``bulk`` remover is removed by one call for every owner, the others record by record.
    ``order`` must respect each owner's dependencies (processes before their cgroups, a
    mount before its directory). Every record is forgotten, in one transaction, only after
    every removal returned: a crash leaves them all recorded, and the next unwind removes
    what is left (every remover is idempotent).
    """
    records = [record for owner in owners for record in ledger.records(owner)]
    ids = {record.id for record in records}
    level = [record for record in records if record.parent not in ids]
    while level:
        _remove_level(level, removers, bulk, order)
        above = {record.id for record in level}
        level = [record for record in records if record.parent in above]
    ledger.forget_all(records)


def _remove_level(level: Sequence[Record], removers: Mapping[str, Remover],
                  bulk: Mapping[str, BulkRemover], order: Sequence[str]) -> None:
    by_kind: dict[str, list[Record]] = {}
    for record in sorted(level, key=lambda r: -r.id):
        by_kind.setdefault(record.kind, []).append(record)
    rank = {kind: index for index, kind in enumerate(order)}
    for kind in sorted(by_kind, key=lambda k: (rank.get(k, len(rank)), -by_kind[k][0].id)):
        if kind in bulk:
            bulk[kind](by_kind[kind])
        else:
            for record in by_kind[kind]:
                removers[kind](record)
