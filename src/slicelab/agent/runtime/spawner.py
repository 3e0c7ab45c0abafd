"""The launcher of sliver inits: a small process, in a small mount namespace of its own.

``python -I -S spawner.py --socket FD [--detach DIR]...`` (standard library only, so its
address space stays small and a fork of it costs a fraction of a fork of the agent).

At start it unshares its mount namespace, makes every mount private and detaches the
mounts below each ``--detach`` directory (the agent's named network namespaces, the
slivers' directories). A sliver's mount namespace is a copy of this one, so it copies a few
dozen mounts instead of two per sliver on the node, and holds no other namespace alive.

Requests come as JSON datagrams on a ``SOCK_SEQPACKET`` socket, one reply each:

* ``spawn`` (with the sliver's network namespace as one ``SCM_RIGHTS`` descriptor): fork a
  child held at a pipe; reply its pid;
* ``release`` pids: write each held child's pid into its cgroups (one tight loop), then
  let them all go on; reply the pids that could not be placed (those are killed);
* ``abandon`` pids: let held children go without releasing them (they exit).

A released child unshares its mount namespace, mounts the sliver's overlay root there
(the mount goes with the namespace: nothing to unmount on the host), joins the network
namespace, and execs util-linux ``unshare --uts --ipc --pid --fork --root=<root>`` with the
sliver's init. End of file on the socket (the agent is gone) ends this process, and every
held child reads end of file at its pipe and exits without running anything.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

_CLONE_NEWNS, _CLONE_NEWNET = 0x00020000, 0x40000000
_MS_REC, _MS_PRIVATE, _MNT_DETACH = 0x4000, 1 << 18, 2
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "dumb"}
_MAX = 1 << 20  # a request of 64 launches with long paths stays far below
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@dataclass
class _Held:
    pid: int
    groups: list[str]
    go: int


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _isolate(detach: list[str]) -> None:
    """A private mount namespace without the mounts below the ``detach`` directories."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "cannot unshare the mount namespace")
    if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot make the mounts private")
    roots = [os.path.realpath(d).rstrip("/") + "/" for d in detach]
    with open("/proc/self/mountinfo") as info:
        points = [_unescape(line.split()[4]) for line in info]
    for point in sorted(points, key=len, reverse=True):
        if any(point.startswith(root) for root in roots):
            _libc.umount2(os.fsencode(point), _MNT_DETACH)  # gone already is fine


def _child(request: dict[str, Any], netns: int, go_r: int) -> None:  # pragma: no cover
    """In the forked child: wait for the go, then mount, enter and exec; never returns."""
    try:
        os.setsid()
        if os.read(go_r, 1) != b"1":
            os._exit(1)  # abandoned, or the launcher died: never run outside the cgroups
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if _libc.unshare(_CLONE_NEWNS) != 0:
            os._exit(3)
        root = request["root"]
        options = (
            f"lowerdir={request['lower']},upperdir={request['upper']},workdir={request['work']}"
        )
        if _libc.mount(b"overlay", os.fsencode(root), b"overlay", 0, options.encode()) != 0:
            os._exit(4)
        if _libc.setns(netns, _CLONE_NEWNET) != 0:
            os._exit(2)
        os.close(netns)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for target, fd in ((0, null), (1, log), (2, log)):
            os.dup2(fd, target)
        argv = [
            request["unshare"],
            "--uts",
            "--ipc",
            "--pid",
            "--fork",
            f"--root={root}",
            "--",
            *request["init"],
        ]
        os.execve(argv[0], argv, _ENV)
    finally:
        os._exit(127)


class _Spawner:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.held: dict[int, _Held] = {}

    def spawn(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """Fork one held child per item (its network namespace is the fd of its index)."""
        pids = []
        try:
            for item, netns in zip(request["items"], fds, strict=True):
                pids.append(self._fork({**request, **item}, netns))
        except BaseException:
            self.abandon(pids)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return {"pids": pids}

    def _fork(self, request: dict[str, Any], netns: int) -> int:
        go_r, go_w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child execs or exits
                self.sock.close()
                for other in self.held.values():
                    os.close(other.go)
                os.close(go_w)
                _child(request, netns, go_r)
        except BaseException:
            os.close(go_w)
            raise
        finally:
            os.close(go_r)
        self.held[pid] = _Held(pid, list(request["groups"]), go_w)
        return pid

    def release(self, pids: list[int]) -> dict[str, Any]:
        held = [self.held.pop(pid) for pid in pids if pid in self.held]
        failed: dict[str, str] = {}
        for child in held:
            try:
                for group in child.groups:
                    with open(os.path.join(group, "cgroup.procs"), "w") as procs:
                        procs.write(str(child.pid))
            except OSError as exc:
                failed[str(child.pid)] = str(exc)
                os.kill(child.pid, signal.SIGKILL)
        for child in held:
            try:
                if str(child.pid) not in failed:
                    os.write(child.go, b"1")
            finally:
                os.close(child.go)
        return {"failed": failed}

    def abandon(self, pids: list[int]) -> dict[str, Any]:
        for pid in pids:
            child = self.held.pop(pid, None)
            if child is not None:
                os.close(child.go)
        return {}

    def serve(self) -> None:
        while True:
            data, fds, _, _ = socket.recv_fds(self.sock, _MAX, 256)
            if not data:
                return
            for fd in fds:
                os.set_inheritable(fd, False)  # no init inherits another's namespace
            request = json.loads(data)
            try:
                reply = self.handle(request, fds)
            except OSError as exc:
                reply = {"error": str(exc)}
            self.sock.send(json.dumps(reply).encode())

    def handle(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if request["op"] == "spawn":
            return self.spawn(request, fds)
        for fd in fds:
            os.close(fd)
        if request["op"] == "release":
            return self.release(request["pids"])
        return self.abandon(request["pids"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="slicelab-spawner")
    parser.add_argument("--socket", type=int, required=True)
    parser.add_argument("--detach", action="append", default=[])
    args = parser.parse_args()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps ended launchers
    _isolate(args.detach)
    sock = socket.socket(fileno=args.socket)
    sock.send(b'{"ready": true}')
    _Spawner(sock).serve()


if __name__ == "__main__":
    main()
