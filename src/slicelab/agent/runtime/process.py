"""Starting a sliver's init and running commands inside a sliver.

:class:`Launcher` has a small spawner process (:mod:`slicelab.agent.runtime.spawner`)
fork each init's launcher; the launcher waits on a pipe until its pid is in every cgroup
of the sliver, mounts the sliver's overlay root in a mount namespace of its own, joins the
sliver's network namespace (``setns``) and execs
util-linux ``unshare --uts --ipc --pid --fork --root=<rootfs>``, so the sliver's
init (busybox init) is PID 1 of a new pid namespace, chrooted to the overlay root, and
in its cgroups before its first instruction. :func:`run_inside` uses
``nsenter --target <init>`` with every namespace plus ``--root``/``--wd``, through
:mod:`slicelab.agent.runtime.enter` so the process is in the sliver's cgroups first.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slicelab.agent.runtime.errors import KernelError, MissingPackage

__all__ = ["Held", "Launch", "Launcher", "Overlay", "Starter", "alive", "find_init", "init_of",
           "proc_start_time", "run_inside"]

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "dumb"}
_REPLY = 1 << 16
_PER_REQUEST = 64  # descriptors in one message: at most 253 (SCM_MAX_FD)


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


@dataclass(frozen=True)
class Overlay:
    """A sliver's root: the image (read-only), its own upper and work dirs, the mount point."""

    lower: Path
    upper: Path
    work: Path
    root: Path


@dataclass(frozen=True)
class Launch:
    """What one init's launcher needs: the sliver's netns file, root, cgroups and log."""

    netns_path: Path
    overlay: Overlay
    groups: tuple[Path, ...]
    log: Path


@dataclass(frozen=True)
class Held:
    """A launcher waiting at its pipe (in the spawner) until released: its pid."""

    pid: int


class Launcher:
    """Starts sliver inits through :mod:`slicelab.agent.runtime.spawner`, a small process
    started on first use (a fork of it costs far less than a fork of the agent).

    Each init gets its own mount namespace with its overlay root mounted inside (copied
    from the spawner's small namespace, not from the host's with every sliver's mounts),
    so the root goes away with the sliver's last process. The spawner is the parent of the
    ``unshare`` processes and lets the kernel reap them; it ends when this object is
    closed or this process dies, and then every launcher still held exits unreleased.
    """

    def __init__(self, *, detach: Sequence[Path] = ()) -> None:
        self._detach = list(detach)
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def _channel(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-S", str(Path(__file__).with_name("spawner.py")),
                "--socket", str(theirs.fileno())]
        for directory in self._detach:
            argv += ["--detach", str(directory)]
        try:
            self._proc = subprocess.Popen(argv, env=_ENV, pass_fds=[theirs.fileno()],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          start_new_session=True)
        finally:
            theirs.close()
        self._sock = ours
        if not json.loads(ours.recv(_REPLY) or b"{}").get("ready"):
            self.close()
            raise KernelError("the sliver launcher did not start")
        return ours

    def _ask(self, request: dict[str, object], fds: Sequence[int] = ()) -> dict[str, Any]:
        sock = self._channel()
        socket.send_fds(sock, [json.dumps(request).encode()], list(fds))
        data = sock.recv(_REPLY)
        if not data:
            self.close()
            raise KernelError("the sliver launcher ended")
        reply: dict[str, Any] = json.loads(data)
        if "error" in reply:
            raise KernelError(f"the sliver launcher failed: {reply['error']}")
        return reply

    def warm(self) -> None:
        """Start the spawner now if it is not running (else its first use starts it)."""
        self._channel()

    def close(self) -> None:
        """End the spawner (launchers still held exit unreleased)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.wait()
            self._proc = None

    def reap(self) -> None:
        """Nothing to collect here: the spawner's children are reaped by the kernel."""

    def start(self, *, netns_path: Path, overlay: Overlay, groups: Sequence[Path],
              log: Path) -> int:
        """Launch the sliver's init, in ``groups`` from its first instruction.

        Returns the pid of the ``unshare`` process (the init's parent, in the same groups).
        """
        return self.release([self.spawn(netns_path=netns_path, overlay=overlay,
                                        groups=groups, log=log)])[0]

    def spawn(self, *, netns_path: Path, overlay: Overlay, groups: Sequence[Path],
              log: Path) -> Held:
        """Fork the launcher of a sliver's init in the spawner; it waits until
        :meth:`release`."""
        return self.spawn_many([Launch(netns_path, overlay, tuple(groups), log)])[0]

    def spawn_many(self, launches: Sequence[Launch]) -> list[Held]:
        """:meth:`spawn` of many inits, up to 64 in each request to the spawner."""
        if len(launches) > _PER_REQUEST:
            return [held for start in range(0, len(launches), _PER_REQUEST)
                    for held in self.spawn_many(launches[start:start + _PER_REQUEST])]
        if not launches:
            return []
        items = [{"root": str(item.overlay.root), "lower": str(item.overlay.lower),
                  "upper": str(item.overlay.upper), "work": str(item.overlay.work),
                  "groups": [str(g) for g in item.groups], "log": str(item.log)}
                 for item in launches]
        fds: list[int] = []
        try:
            for item in launches:
                fds.append(os.open(item.netns_path, os.O_RDONLY | os.O_CLOEXEC))
            reply = self._ask({"op": "spawn", "unshare": _unshare(),
                               "init": ["/bin/busybox", "init"], "items": items}, fds)
        finally:
            for fd in fds:
                os.close(fd)
        return [Held(int(pid)) for pid in reply["pids"]]

    def abandon(self, held: Sequence[Held]) -> None:
        """Let held launchers go without releasing them: they exit."""
        if held and self._sock is not None:
            self._ask({"op": "abandon", "pids": [child.pid for child in held]})

    def release(self, held: Sequence[Held]) -> list[int]:
        """Put every held launcher in its cgroups (one tight loop in the spawner: cgroup
        migrations back to back share the kernel's grace periods), then let them all
        exec; their pids.

        A launcher that cannot be placed is killed, the others go on, and the first
        failure is raised after all are released.
        """
        failed = self._ask({"op": "release", "pids": [child.pid for child in held]})["failed"]
        if failed:
            pid, error = next(iter(failed.items()))
            raise KernelError(f"cannot put the sliver init {pid} in its cgroups: {error}")
        return [child.pid for child in held]


class Starter:
    """Starts inits in a thread of its own, for one build: each round forks and releases
    every launch handed over since the round before, so the rounds grow when the thread
    falls behind (cgroup migrations back to back share the kernel's grace periods).

    :meth:`put` hands launches over; :meth:`stop` waits for the thread to finish what it
    was given (also on a failure: no launch stays in flight); :meth:`pids` returns the
    launchers' pids in the order given, or raises the first failure.
    """

    def __init__(self, launcher: Launcher) -> None:
        self._launcher = launcher
        self._queue: queue.SimpleQueue[Launch | None] = queue.SimpleQueue()
        self._pids: list[int] = []
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slicelab-launch", daemon=True)
        self._thread.start()

    def put(self, launches: Sequence[Launch]) -> None:
        for launch in launches:
            self._queue.put(launch)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def pids(self) -> list[int]:
        if self._failure is not None:
            raise self._failure
        return list(self._pids)

    def _run(self) -> None:
        try:
            self._launcher.warm()
        except BaseException as exc:  # handed to the building thread by pids()
            self._failure = exc
        ending = False
        while not ending:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            ending = None in batch
            launches = [item for item in batch if item is not None]
            if launches and self._failure is None:
                try:
                    self._pids += self._launcher.release(self._launcher.spawn_many(launches))
                except BaseException as exc:  # handed to the building thread by pids()
                    self._failure = exc


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
    """The host pid of the process that is PID 1 of a child pid namespace, once it is in
    its own root (``unshare --fork --root`` forks that process before it chroots: until
    then its root is the host's, and files written through ``/proc/<pid>/root`` or a
    command run there would land on the host)."""
    for pid in pids:
        ns = _ns_pids(pid)
        if len(ns) >= 2 and ns[-1] == "1" and _rooted(pid):
            return pid
    return None


def _rooted(pid: int) -> bool:
    """Whether the process's root directory is another than this process's."""
    try:
        theirs, ours = os.stat(f"/proc/{pid}/root"), os.stat("/proc/self/root")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)


def init_of(launcher: int) -> int | None:
    """The init started by ``launcher`` (its child, PID 1 of a new pid namespace), if any."""
    try:
        with open(f"/proc/{launcher}/task/{launcher}/children") as children:
            pids = [int(p) for p in children.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return find_init(pids)


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
