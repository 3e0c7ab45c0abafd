"""Starting a sliver's init and running commands inside a sliver.

:class:`Launcher` forks once, without starting a Python interpreter: the child waits on a
pipe until the parent has written its pid into every cgroup of the sliver, joins the
sliver's network namespace (``setns``) and execs
util-linux ``unshare --mount --uts --ipc --pid --fork --root=<rootfs>``, so the sliver's
init (busybox init) is PID 1 of a new pid namespace, chrooted to the overlay root, and
in its cgroups before its first instruction. :func:`run_inside` uses
``nsenter --target <init>`` with every namespace plus ``--root``/``--wd``, through
:mod:`slicelab.agent.runtime.enter` so the process is in the sliver's cgroups first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from slicelab.agent.runtime.errors import KernelError, MissingPackage

__all__ = ["Launcher", "alive", "find_init", "proc_start_time", "run_inside"]

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "dumb"}
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _enter(groups: Sequence[Path], *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "slicelab.agent.runtime.enter", *extra]
    for group in groups:
        argv += ["--cgroup", str(group)]
    return [*argv, "--"]


def _unshare() -> str:
    found = shutil.which("unshare", path=_ENV["PATH"])
    if found is None:
        raise MissingPackage("util-linux", needed_for="starting sliver inits")
    return found


class Launcher:
    """Starts sliver inits with one fork each (no interpreter) and reaps what it started.

    The launched ``unshare`` process is a child of this process; when it ends (the sliver
    stopped) :meth:`reap` collects it, so no zombie outlives the next call. A restarted
    agent is no parent of the old inits; init (pid 1) reaps those.
    """

    def __init__(self) -> None:
        self._children: set[int] = set()

    def reap(self) -> None:
        for pid in list(self._children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._children.discard(pid)

    def start(self, *, netns_path: Path, rootfs: Path, groups: Sequence[Path],
              log: Path) -> int:
        """Launch the sliver's init, in ``groups`` from its first instruction.

        Returns the pid of the ``unshare`` process (the init's parent, in the same groups).
        """
        argv = [_unshare(), "--mount", "--uts", "--ipc", "--pid", "--fork",
                "--propagation=private", f"--root={rootfs}", "--", "/bin/busybox", "init"]
        fds = {"ns": os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC),
               "log": os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                              0o600),
               "null": os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)}
        go_r, go_w = os.pipe()
        try:
            child = os.fork()
            if child == 0:  # pragma: no cover - the forked child execs or exits
                _launcher(argv, fds, go_r=go_r, go_w=go_w)
            self._children.add(child)
            os.close(go_r)
            return _release(child, groups, go_w)
        finally:
            for fd in (*fds.values(), go_w):
                os.close(fd)


def _release(pid: int, groups: Sequence[Path], go_w: int) -> int:
    """Put ``pid`` in its groups, then let it exec; kill it if that fails."""
    try:
        for group in groups:
            (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        os.kill(pid, signal.SIGKILL)
        raise KernelError(f"cannot put the sliver init in its cgroups: {exc}") from exc
    os.write(go_w, b"1")
    return pid


def _launcher(argv: list[str], fds: dict[str, int], *, go_r: int,
              go_w: int) -> None:  # pragma: no cover - forked child
    """Wait until in the cgroups, join the netns, exec ``unshare`` (a new session)."""
    try:
        os.close(go_w)
        os.setsid()
        if os.read(go_r, 1) != b"1":
            os._exit(1)  # the parent gave up (or died): never run outside the cgroups
        if _libc.setns(fds["ns"], _CLONE_NEWNET) != 0:
            os._exit(2)
        os.dup2(fds["null"], 0)
        os.dup2(fds["log"], 1)
        os.dup2(fds["log"], 2)
        os.execve(argv[0], argv, _ENV)
    finally:
        os._exit(127)


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


def alive(pid: int) -> bool:
    """True while ``pid`` exists (a zombie too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
