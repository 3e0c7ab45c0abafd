"""Named network namespaces without helper processes (``/var/run/netns/<name>``).

pyroute2 forks a helper process to create a namespace or to open a socket inside one;
that costs ~20 ms each. Here a short-lived *thread* does it: ``unshare(CLONE_NEWNET)`` or
``setns`` change only the calling thread's namespace, so the thread makes the namespace
(bind-mounting its ``/proc/thread-self/ns/net`` like ``ip netns add``) or opens a netlink
socket inside it, and ends. A socket stays in the namespace it was made in, whatever
thread uses it later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from slicelab.agent.runtime.errors import KernelError

__all__ = ["NETNS_DIR", "create", "exists", "in_parallel", "open_fd", "path_of", "remove",
           "remove_many", "route_socket", "run_in"]

NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
_MS_BIND, _MS_REC, _MS_SHARED, _MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
_NETLINK_ROUTE = 0
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_shared_dir = threading.Lock()
T = TypeVar("T")
_PARALLEL = 32


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(code)}")


def path_of(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path_of(name).exists()


def open_fd(name: str) -> int:
    """An O_RDONLY descriptor of the namespace (the caller closes it)."""
    try:
        return os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise KernelError(f"no network namespace {name}") from exc


def run_in(name: str | None, work: Callable[[], T], *, new: bool = False) -> T:
    """Run ``work`` in a thread that is in namespace ``name`` (a new one when ``new``)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            if new:
                _check(_libc.unshare(CLONE_NEWNET), "cannot make a network namespace")
            elif name is not None:
                _enter(name)
            result.append(work())
        except BaseException as exc:  # handed to the calling thread, which raises it
            failure.append(exc)

    thread = threading.Thread(target=body, name="slicelab-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _enter(name: str) -> None:
    fd = open_fd(name)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"cannot enter network namespace {name}")
    finally:
        os.close(fd)


def route_socket() -> socket.socket:
    """A bound NETLINK_ROUTE socket in the calling thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    return sock


def create(name: str) -> socket.socket:
    """Make namespace ``name`` (which must not exist); a route socket inside it."""
    _share_dir()
    target = path_of(name)
    try:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError as exc:
        raise KernelError(f"network namespace {name} exists already") from exc

    def make() -> socket.socket:
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
        _check(_libc.mount(source, bytes(target), b"none", _MS_BIND, None),
               f"cannot bind network namespace {name}")
        return route_socket()

    try:
        return run_in(None, make, new=True)
    except KernelError:
        target.unlink(missing_ok=True)
        raise


def remove(name: str) -> None:
    """Unmount and unlink the namespace's file; gone already is fine.

    The kernel frees the namespace (and the veth ends inside it) once nothing holds it.
    """
    target = path_of(name)
    if _libc.umount2(bytes(target), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise KernelError(f"cannot unmount network namespace {name}: {os.strerror(code)}")
    target.unlink(missing_ok=True)


def remove_many(names: Sequence[str]) -> None:
    """:func:`remove` of many namespaces, in parallel threads.

    Each unmount waits for an RCU grace period; threads let those waits overlap.
    """
    in_parallel(remove, names)


def in_parallel(work: Callable[[T], object], items: Iterable[T]) -> None:
    """Run ``work`` on every item in up to 32 threads; the first failure is raised."""
    todo = list(items)
    if len(todo) <= 1:
        for item in todo:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(todo)),
                            thread_name_prefix="slicelab-remove") as pool:
        for future in [pool.submit(work, item) for item in todo]:
            future.result()


def _share_dir() -> None:
    """Make ``/var/run/netns`` a shared mount point once (as ``ip netns add`` does)."""
    with _shared_dir:
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        directory = bytes(NETNS_DIR)
        if _libc.mount(b"", directory, b"none", _MS_SHARED | _MS_REC, None) == 0:
            return
        _check(_libc.mount(directory, directory, b"none", _MS_BIND | _MS_REC, None),
               f"cannot bind-mount {NETNS_DIR}")
        _check(_libc.mount(b"", directory, b"none", _MS_SHARED | _MS_REC, None),
               f"cannot share {NETNS_DIR}")
