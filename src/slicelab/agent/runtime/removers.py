"""How each kind of ledger record is removed, by its id; all idempotent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from slicelab.agent.ledger import Record, Remover
from slicelab.agent.net.nat import Nft
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime import cgroups
from slicelab.agent.runtime.mounts import unmount

__all__ = ["Deferred", "make_removers", "stop_groups"]


@dataclass
class Deferred:
    """While ``active``, veth ends inside a removed namespace are not waited for one by one.

    Their (ifindex, name) are collected in ``links``; :meth:`settle` then waits for all of
    them at once (the kernel frees namespaces in batches) and deletes any still there.
    """

    active: bool = False
    links: list[tuple[int, str]] = field(default_factory=list)

    def settle(self, net: Netlink) -> None:
        links, self.links = self.links, []
        for ifindex, name in links:
            if not net.wait_gone(ifindex, name):
                net.delete_link(ifindex, name)


def stop_groups(groups: list[Path], *, timeout: float) -> None:
    """SIGTERM every process of the groups, then SIGKILL what is left after ``timeout``."""
    for group in groups:
        cgroups.kill_all(group, sig=signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(cgroups.procs(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.02)
    for group in groups:
        cgroups.kill_all(group)


def make_removers(net: Netlink, nft: Nft,
                  deferred: Deferred | None = None) -> Mapping[str, Remover]:
    def link(record: Record) -> None:
        ifindex = record.data.get("ifindex")
        if record.parent is not None and ifindex is not None:
            if deferred is not None and deferred.active:
                deferred.links.append((ifindex, record.name))
                return
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
        "process": process,
        "sysctl": sysctl,
        "dir": lambda r: shutil.rmtree(r.name, ignore_errors=True),
        "file": lambda r: Path(r.name).unlink(missing_ok=True) if os.path.lexists(r.name) else None,
    }
