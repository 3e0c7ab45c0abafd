"""The minimal sliver image: busybox (static), dropbear and iperf3 with their shared libraries.

``build_minimal(dest)`` needs the Debian packages ``busybox-static``, ``dropbear-bin`` and
``iperf3``.
The image boots with busybox init (``/etc/inittab``): ``/etc/init.d/rcS`` mounts /proc,
a small /dev and /tmp and sets the hostname from /etc/hostname; then dropbear runs on
port 22, making its host keys at first boot (so every sliver has its own).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from slicelab.agent.runtime.errors import KernelError, MissingPackage

__all__ = ["IMAGE_VERSION", "build_minimal", "shared_libraries"]

IMAGE_VERSION = "minimal-2"
_BUSYBOX = Path("/bin/busybox")
_DROPBEAR = (Path("/usr/sbin/dropbear"), Path("/usr/bin/dropbearkey"))
_IPERF3 = Path("/usr/bin/iperf3")
_MARKER = ".slicelab-image"

_INITTAB = """\
::sysinit:/etc/init.d/rcS
::respawn:/usr/sbin/dropbear -F -E -R -p 22
::shutdown:/bin/umount -a -r
"""

_RCS = """\
#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs -o mode=755,size=256k tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname -F /etc/hostname
"""

_FILES = {
    "etc/inittab": (_INITTAB, 0o644),
    "etc/init.d/rcS": (_RCS, 0o755),
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\n", 0o600),
    "etc/group": ("root:x:0:\n", 0o644),
    "etc/shells": ("/bin/sh\n", 0o644),
    "etc/hostname": ("sliver\n", 0o644),
    "etc/hosts": ("127.0.0.1 localhost\n", 0o644),
}


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise MissingPackage(package, needed_for=f"the minimal sliver image ({path})")


def elf_interpreter(binary: Path) -> Path:
    """The ELF loader named in ``binary``'s PT_INTERP header (64-bit little-endian)."""
    data = binary.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        raise KernelError(f"{binary} is not a 64-bit ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data,
                                                                 phoff + i * phentsize)
        if p_type == 3:
            return Path(data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode())
    raise KernelError(f"{binary} is statically linked")


def shared_libraries(binary: Path) -> list[Path]:
    """The loader and every shared library ``binary`` needs (``ld.so --list``)."""
    loader = elf_interpreter(binary)
    done = subprocess.run([str(loader), "--list", str(binary)], capture_output=True,
                          text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise KernelError(f"cannot list the libraries of {binary}: {done.stderr.strip()}")
    found = [loader]
    for line in done.stdout.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/") and Path(path) != loader:
            found.append(Path(path))
    return found


def _copy(source: Path, dest: Path, relative: Path, mode: int | None = None) -> None:
    target = dest / relative.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    shutil.copyfile(source, target)
    os.chmod(target, mode if mode is not None else 0o755)


def _busybox(dest: Path) -> None:
    _copy(_BUSYBOX, dest, Path("/bin/busybox"))
    listing = subprocess.run([str(_BUSYBOX), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in listing:
        link = dest / applet
        if applet in ("bin/busybox", "linuxrc") or link.is_symlink() or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _carry(dest: Path, binary: Path) -> None:
    """Copy a dynamically linked binary and every shared library it needs."""
    _copy(binary, dest, binary)
    for library in shared_libraries(binary):
        _copy(library.resolve(), dest, library, 0o755)


def _dropbear(dest: Path) -> None:
    for binary in _DROPBEAR:
        _carry(dest, binary)
    (dest / "etc/dropbear").mkdir(parents=True, exist_ok=True)


def _layout(dest: Path) -> None:
    for name in ("proc", "sys", "dev", "tmp", "root/.ssh", "var/run", "var/log",
                 "etc/slicelab", "etc/init.d"):
        (dest / name).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "root", 0o700)
    os.chmod(dest / "root/.ssh", 0o700)
    os.chmod(dest / "tmp", 0o1777)
    for name, (text, mode) in _FILES.items():
        (dest / name).write_text(text)
        os.chmod(dest / name, mode)


def build_minimal(dest: Path) -> Path:
    """Make (or keep) the minimal image in ``dest``; returns ``dest``. Idempotent."""
    marker = dest / _MARKER
    if marker.exists() and marker.read_text() == IMAGE_VERSION:
        return dest
    _require(_BUSYBOX, "busybox-static")
    for binary in _DROPBEAR:
        _require(binary, "dropbear-bin")
    _require(_IPERF3, "iperf3")
    dest.mkdir(parents=True, exist_ok=True)
    _layout(dest)
    _busybox(dest)
    _dropbear(dest)
    _carry(dest, _IPERF3)
    marker.write_text(IMAGE_VERSION)
    return dest
