"""How each kind of ledger record is removed, by its id; all idempotent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from slicelab.agent.ledger import Record, Remover
from slicelab.agent.net.nat import Nft
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime import cgroups
from slicelab.agent.runtime.mounts import unmount

__all__ = ["make_removers", "stop_groups"]


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
        if record.parent is not None and ifindex is not None:
            net.wait_gone(ifindex, record.name)
        net.delete_link(ifindex, record.name, ns=record.data.get("ns"))

    def fdb(record: Record) -> None:
        index = record.data["ifindex"]
        if net.has_link(index, record.data["device"]):
            with contextlib.suppress(NetlinkError):
                net.del_remote(index, record.name)

    def qdisc(record: Record) -> None:
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
