"""How each kind of ledger record is removed, by its id; all idempotent."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from slicelab.agent.ledger import BulkRemover, Record, Remover
from slicelab.agent.net.nat import Nft
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime import cgroups
from slicelab.agent.runtime.mounts import unmount, unmount_many

__all__ = ["empty_trash", "make_bulk_removers", "make_removers", "stop_groups"]


def stop_groups(groups: list[Path], *, timeout: float) -> None:
    """SIGTERM every process of the groups, then SIGKILL what is left after ``timeout``."""
    for group in groups:
        cgroups.kill_all(group, sig=signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(cgroups.procs(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.02)
    for group in groups:
        cgroups.kill_all(group)


def make_removers(net: Netlink, nft: Nft) -> Mapping[str, Remover]:
    def link(record: Record) -> None:
        ifindex = record.data.get("ifindex")
        if record.parent is not None and ifindex is not None and "ns" not in record.data:
            net.wait_gone(ifindex, record.name)
        net.delete_link(ifindex, record.name, ns=record.data.get("ns"))

    def fdb(record: Record) -> None:
        index = record.data["ifindex"]
        if net.has_link(index, record.data["device"]):
            with contextlib.suppress(NetlinkError):
                net.del_remote(index, record.name)

    def qdisc(record: Record) -> None:
        # a qdisc under a link record goes with that link (unwind removes the link first);
        # without an ifindex it was never made
        if record.parent is None and record.data.get("ifindex") is not None:
            net.unshape(record.data["ifindex"], record.name, ns=record.data.get("ns"))

    def rules(record: Record) -> None:
        table = record.data["table"]
        found = record.data.get("rules") or nft.rule_handles(table, record.name)
        for chain, handle in found:
            nft.delete_rule(table, chain, handle)

    def process(record: Record) -> None:
        # removal needs no grace (stop() gives it): SIGKILL empties the pid namespace
        for group in record.data.get("groups", []):
            cgroups.kill_all(Path(group))

    def sysctl(record: Record) -> None:
        if "previous" in record.data:
            Path(record.name).write_text(record.data["previous"])

    def shared_cgroup(record: Record) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            Path(record.name).rmdir()

    return {
        "netns": lambda r: net.delete_netns(r.name),
        "link": link,
        "fdb": fdb,
        "qdisc": qdisc,
        "nft-table": lambda r: nft.delete_table(r.name, r.data.get("handle")),
        "nft-rules": rules,
        "mount": lambda r: unmount(Path(r.name)),
        "cgroup": lambda r: cgroups.remove_dir(Path(r.name)),
        "shared-cgroup": shared_cgroup,
        "pair": lambda r: None,  # markers: the devices have records of their own
        "tunnel": lambda r: None,
        "process": process,
        "sysctl": sysctl,
        "dir": lambda r: shutil.rmtree(r.name, ignore_errors=True),
        "file": lambda r: Path(r.name).unlink(missing_ok=True) if os.path.lexists(r.name) else None,
    }


def make_bulk_removers(net: Netlink, nft: Nft, *, trash: Path) -> Mapping[str, BulkRemover]:
    """Removers of many records of one kind at once (for :func:`unwind_many`).

    Processes: all killed, then awaited together. Links: deleted in one netlink batch as
    one netdev group. Namespaces and mounts: unmounted in parallel threads. Rules: one
    nft transaction per table. Directories: renamed into ``trash`` (one rename each),
    whose contents :func:`empty_trash` removes later.
    """
    single = make_removers(net, nft)

    def processes(records: Sequence[Record]) -> None:
        cgroups.kill_many([Path(g) for r in records for g in r.data.get("groups", [])])

    def links(records: Sequence[Record]) -> None:
        inside = [r for r in records if r.data.get("ns") is not None]
        for record in inside:
            single["link"](record)
        net.delete_links([(r.data.get("ifindex"), r.name) for r in records
                          if r.data.get("ns") is None])

    def fdbs(records: Sequence[Record]) -> None:
        devices = {(r.data["ifindex"], r.data["device"]) for r in records}
        alive = set(net.present(sorted(devices)))
        for record in records:
            if (record.data["ifindex"], record.data["device"]) in alive:
                single["fdb"](record)

    def rules(records: Sequence[Record]) -> None:
        tables: dict[str, list[tuple[str, int]]] = {}
        unknown: dict[str, set[str]] = {}  # rules made but not recorded: found by comment
        for record in records:
            table = record.data["table"]
            found = record.data.get("rules")
            if found is None:
                unknown.setdefault(table, set()).add(record.name)
            tables.setdefault(table, []).extend((chain, handle) for chain, handle in found or [])
        for table, comments in unknown.items():
            tables[table] += nft.rules_with_comments(table, comments)
        for table, handles in tables.items():
            nft.delete_rules(table, handles)

    def dirs(records: Sequence[Record]) -> None:
        for record in records:
            _to_trash(Path(record.name), trash)

    return {
        "process": processes,
        "link": links,
        "fdb": fdbs,
        "nft-rules": rules,
        "netns": lambda records: net.delete_netns_many([r.name for r in records]),
        "mount": lambda records: unmount_many([Path(r.name) for r in records]),
        "dir": dirs,
    }


def _to_trash(path: Path, trash: Path) -> None:
    """Move ``path`` into ``trash`` with one rename (removed there later); gone is fine."""
    trash.mkdir(parents=True, exist_ok=True)
    try:
        path.rename(trash / f"{path.name}.{secrets.token_hex(6)}")
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def empty_trash(trash: Path) -> None:
    """Remove everything in ``trash`` (until it stays empty); a missing trash is fine."""
    while True:
        try:
            entries = list(trash.iterdir())
        except FileNotFoundError:
            return
        if not entries:
            return
        for entry in entries:
            shutil.rmtree(entry, ignore_errors=True)
