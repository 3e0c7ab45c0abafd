"""Mounts through mount(2)/umount2(2) by ctypes (Python 3.11 has no binding)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from slicelab.agent.net.namespaces import in_parallel
from slicelab.agent.runtime.errors import KernelError

__all__ = ["is_mounted", "mount_overlay", "unmount", "unmount_many"]

_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def is_mounted(target: Path) -> bool:
    """True if a file system other than its parent's is mounted on ``target``.

    Compares device numbers (as ``mountpoint`` does) instead of reading mountinfo, whose
    length grows with every sliver; right for the overlays the runtime mounts.
    """
    try:
        here, parent = os.stat(target), os.stat(os.path.join(target, ".."))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return here.st_dev != parent.st_dev or here.st_ino == parent.st_ino


def mount_overlay(*, lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of ``lower`` (read-only image) and ``upper`` on ``target``."""
    if is_mounted(target):
        return
    for path in (upper, work, target):
        path.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options) != 0:
        code = ctypes.get_errno()
        raise KernelError(f"cannot mount overlay on {target}: {os.strerror(code)}")


def unmount(target: Path) -> None:
    """Detach the mount on ``target``; not mounted (or gone) is fine."""
    while is_mounted(target):
        if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:
            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOENT):
                return
            raise KernelError(f"cannot unmount {target}: {os.strerror(code)}")


def unmount_many(targets: Sequence[Path]) -> None:
    """:func:`unmount` of many targets in parallel threads (their waits overlap); only
    those mounted here get a thread (sliver roots are mounted in the slivers' own mount
    namespaces and go with them)."""
    in_parallel(unmount, [target for target in targets if is_mounted(target)])
