"""Starting a sliver's init and running commands inside a sliver.

Namespaces are entered with util-linux: ``nsenter --net=<netns>`` then
``unshare --mount --uts --ipc --pid --fork --root=<rootfs>``, so the sliver's init
(busybox init) is PID 1 of a new pid namespace, chrooted to the overlay root, in the
network namespace made beforehand. :func:`run_inside` uses ``nsenter --target <init>``
with every namespace plus ``--root``/``--wd``. Both go through
:mod:`slicelab.agent.runtime.enter` so the process is in the sliver's cgroups first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from slicelab.agent.runtime.errors import KernelError

__all__ = ["find_init", "proc_start_time", "run_inside", "start_init"]

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "dumb"}


def _enter(groups: Sequence[Path], *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "slicelab.agent.runtime.enter", *extra]
    for group in groups:
        argv += ["--cgroup", str(group)]
    return [*argv, "--"]


def start_init(*, netns_path: Path, rootfs: Path, groups: Sequence[Path], log: Path) -> None:
    """Launch the sliver's init detached; it lands in ``groups`` before anything runs."""
    argv = [*_enter(groups, "--detach", "--log", str(log)),
            "nsenter", f"--net={netns_path}", "--",
            "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--propagation=private",
            f"--root={rootfs}", "--", "/bin/busybox", "init"]
    done = subprocess.run(argv, env=_ENV, capture_output=True, text=True, check=False,
                          timeout=30)
    if done.returncode != 0:
        raise KernelError(f"cannot start sliver init: {done.stderr.strip()}")


def _ns_pids(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return line.split()[1:]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return []


def find_init(pids: Sequence[int]) -> int | None:
    """The host pid of the process that is PID 1 of a child pid namespace."""
    for pid in pids:
        ns = _ns_pids(pid)
        if len(ns) >= 2 and ns[-1] == "1":
            return pid
    return None


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def run_inside(*, init_pid: int, groups: Sequence[Path], argv: Sequence[str],
               timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` in every namespace and the root of the sliver whose init is ``init_pid``."""
    command = [*_enter(groups), "nsenter", f"--target={init_pid}", "--mount", "--uts",
               "--ipc", "--net", "--pid", "--root", "--wd", "--", *argv]
    proc = subprocess.Popen(command, env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise KernelError(f"command {list(argv)!r} timed out after {timeout} s") from exc
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
