"""Cgroup limits for slivers, on cgroup v1 or v2.

v1: ``<root>/{cpu,memory,pids}/slicelab/<prefix>/<sliver>``; v2: one directory
``<v2 root>/slicelab/<prefix>/<sliver>``. :func:`select_driver` picks v2 when it offers the
cpu, memory and pids controllers, else v1; ``mode`` forces either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from slicelab.agent.runtime.errors import KernelError

__all__ = ["CgroupDriver", "CgroupV1", "CgroupV2", "Limits", "kill_all", "kill_many", "procs",
           "remove_dir", "select_driver", "signal_all"]

_PERIOD_US = 100_000
_CONTROLLERS = ("cpu", "memory", "pids")


@dataclass(frozen=True)
class Limits:
    cores: float
    memory_bytes: int
    pids_max: int


class CgroupDriver(Protocol):
    version: int

    def parents(self) -> list[Path]: ...
    def dirs(self, sliver_id: str) -> list[Path]: ...
    def apply(self, sliver_id: str, limits: Limits) -> None: ...


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise KernelError(f"cannot write {value!r} to {path}: {exc}") from exc


class CgroupV1:
    version = 1

    def __init__(self, *, prefix: str, root: Path = Path("/sys/fs/cgroup")) -> None:
        self._base = [root / c / "slicelab" / prefix for c in _CONTROLLERS]

    def parents(self) -> list[Path]:
        return [p for b in self._base for p in (b.parent, b)]

    def dirs(self, sliver_id: str) -> list[Path]:
        return [b / sliver_id for b in self._base]

    def apply(self, sliver_id: str, limits: Limits) -> None:
        cpu, memory, pids = self.dirs(sliver_id)
        _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(int(limits.cores * _PERIOD_US)))
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        _write(pids / "pids.max", str(limits.pids_max))


class CgroupV2:
    version = 2

    def __init__(self, *, prefix: str, root: Path = Path("/sys/fs/cgroup/unified")) -> None:
        self._root = root
        self._base = root / "slicelab" / prefix

    def parents(self) -> list[Path]:
        return [self._base.parent, self._base]

    def dirs(self, sliver_id: str) -> list[Path]:
        return [self._base / sliver_id]

    def missing_controllers(self) -> list[str]:
        offered = (self._root / "cgroup.controllers").read_text().split()
        return [c for c in _CONTROLLERS if c not in offered]

    def delegate(self) -> None:
        """Enable cpu, memory and pids for the children of each parent."""
        missing = self.missing_controllers()
        if missing:
            raise KernelError(f"cgroup v2 at {self._root} offers no {', '.join(missing)} "
                              "controller (bound to cgroup v1 here); use cgroup v1")
        for parent in (self._root, *self.parents()):
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in _CONTROLLERS))

    def apply(self, sliver_id: str, limits: Limits) -> None:
        (group,) = self.dirs(sliver_id)
        _write(group / "cpu.max", f"{int(limits.cores * _PERIOD_US)} {_PERIOD_US}")
        _write(group / "memory.max", str(limits.memory_bytes))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        _write(group / "pids.max", str(limits.pids_max))


def select_driver(*, prefix: str, mode: Literal["auto", "v1", "v2"] = "auto",
                  root: Path = Path("/sys/fs/cgroup")) -> CgroupV1 | CgroupV2:
    v2 = CgroupV2(prefix=prefix, root=_v2_root(root))
    if mode == "v2" or (mode == "auto" and not v2.missing_controllers()):
        return v2
    return CgroupV1(prefix=prefix, root=root)


def _v2_root(root: Path) -> Path:
    return root / "unified" if (root / "unified" / "cgroup.procs").exists() else root


def procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def signal_all(group: Path, *, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to every process in ``group`` once, without waiting."""
    for pid in procs(group):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_all(group: Path, *, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
    """Signal every process in ``group`` until it is empty (SIGKILL) or once (others)."""
    deadline = time.monotonic() + timeout
    while pids := procs(group):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig != signal.SIGKILL:
            return
        if time.monotonic() > deadline:
            raise KernelError(f"processes {pids} in {group} survive SIGKILL")
        time.sleep(0.001)


def kill_many(groups: Sequence[Path], *, patience: float = 5.0) -> None:
    """SIGKILL every process of every group, then wait until all the groups are empty.

    Fails when no group has emptied for ``patience`` seconds (many pid namespaces dying
    at once on a loaded machine take a while together).
    """
    deadline = time.monotonic() + patience
    left = list(groups)
    while left:
        for group in left:
            signal_all(group)
        still = [group for group in left if procs(group)]
        if len(still) < len(left):
            deadline = time.monotonic() + patience
        elif time.monotonic() > deadline:
            raise KernelError(f"processes in {still[0]} survive SIGKILL")
        left = still
        if left:
            time.sleep(min(0.01, 0.0002 * len(left)))


def remove_dir(group: Path, *, timeout: float = 5.0) -> None:
    """Kill what is left in ``group`` and remove it; already gone is fine."""
    deadline = time.monotonic() + timeout
    while True:
        kill_all(group)
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise KernelError(f"cannot remove cgroup {group}: {exc}") from exc
            time.sleep(0.002)
