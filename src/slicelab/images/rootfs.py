"""Sliver images built on this machine: ``minimal`` and ``debian``.

``build_minimal(dest)``: busybox (static), dropbear and iperf3 with their shared libraries,
copied from this machine; needs the Debian packages ``busybox-static``, ``dropbear-bin`` and
``iperf3``.

``build_debian(dest)``: Debian (bookworm, ``--variant=minbase``) by ``debootstrap`` from a
Debian mirror (``$SLICELAB_DEBIAN_MIRROR``, default :data:`DEBIAN_MIRROR`), with only
:data:`DEBIAN_PACKAGES` added: ``busybox-static`` for init and ``dropbear-bin`` for SSH.
Nothing but the mirror is reached. apt's package lists and downloaded archives are removed,
and so are documentation, manual pages and translations (dpkg is told to skip them in
later installs too, as Debian's slim images do); ``apt-get update`` inside a sliver brings
the lists back.

Both boot with busybox init (``/etc/inittab``): ``/etc/init.d/rcS`` mounts /proc, a small
/dev and /tmp and sets the hostname from /etc/hostname; then dropbear runs on port 22,
making its host keys at first boot (so every sliver has its own).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

from slicelab.agent.runtime.errors import KernelError, MissingPackage
from slicelab.domain.errors import InvalidInput, PermissionDenied, Unavailable

__all__ = [
    "DEBIAN_MIRROR",
    "DEBIAN_MIRROR_ENV",
    "DEBIAN_PACKAGES",
    "DEBIAN_SUITE",
    "IMAGE_VERSION",
    "build_debian",
    "build_minimal",
    "debian_mirror",
    "debootstrap_argv",
    "shared_libraries",
]

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
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 3:
            return Path(data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode())
    raise KernelError(f"{binary} is statically linked")


def shared_libraries(binary: Path) -> list[Path]:
    """The loader and every shared library ``binary`` needs (``ld.so --list``)."""
    loader = elf_interpreter(binary)
    done = subprocess.run(
        [str(loader), "--list", str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
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
    listing = subprocess.run(
        [str(_BUSYBOX), "--list-full"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
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
    for name in (
        "proc",
        "sys",
        "dev",
        "tmp",
        "root/.ssh",
        "var/run",
        "var/log",
        "etc/slicelab",
        "etc/init.d",
    ):
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


# -- debian ---------------------------------------------------------------------------------

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_MIRROR_ENV = "SLICELAB_DEBIAN_MIRROR"
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("busybox-static", "dropbear-bin")
_DEBOOTSTRAP_TIMEOUT = 1800.0
_BOOT_FILES = ("etc/inittab", "etc/init.d/rcS")
_SLIM = """\
# Set by slicelab's debian image: no documentation, manual pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_EMPTIED = ("var/lib/apt/lists", "var/cache/apt", "usr/share/man", "usr/share/info")


def debian_mirror(environ: Mapping[str, str] | None = None) -> str:
    """``$SLICELAB_DEBIAN_MIRROR`` if set, else :data:`DEBIAN_MIRROR`."""
    found = (os.environ if environ is None else environ).get(DEBIAN_MIRROR_ENV, "").strip()
    if found and not found.startswith(("http://", "https://", "file:/")):
        raise InvalidInput(
            f"{DEBIAN_MIRROR_ENV}={found!r} is not an http(s) or file: URL", field=DEBIAN_MIRROR_ENV
        )
    return found.rstrip("/") if found else DEBIAN_MIRROR


def debootstrap_argv(
    dest: Path,
    *,
    mirror: str,
    suite: str = DEBIAN_SUITE,
    packages: tuple[str, ...] = DEBIAN_PACKAGES,
) -> list[str]:
    """The debootstrap command line: minbase, ``packages`` added, main only."""
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        "--components=main",
        suite,
        str(dest),
        mirror,
    ]


def _debootstrap(dest: Path, *, mirror: str) -> None:
    if shutil.which("debootstrap") is None:
        raise MissingPackage("debootstrap", needed_for="the debian sliver image")
    if os.geteuid() != 0:
        raise PermissionDenied(
            "the debian image is built by debootstrap, which needs root: "
            "run the slicelab server as root to build it"
        )
    done = subprocess.run(
        debootstrap_argv(dest, mirror=mirror),
        capture_output=True,
        text=True,
        check=False,
        timeout=_DEBOOTSTRAP_TIMEOUT,
    )
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-600:]
        raise Unavailable(f"debootstrap from {mirror} failed (exit {done.returncode}): {output}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _children(dest: Path, name: str) -> list[Path]:
    """The entries of directory ``dest/name``, if it lies inside ``dest`` (never following a
    symbolic link out of the tree being built)."""
    directory = dest / name
    if directory.is_symlink() or not directory.is_dir():
        return []
    if not directory.resolve().is_relative_to(dest.resolve()):
        return []
    return list(directory.iterdir())


def _slim(dest: Path) -> None:
    """Drop what a running sliver does not need (see the module's docstring)."""
    config = dest / "etc/dpkg/dpkg.cfg.d/slicelab-slim"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_SLIM)
    for name in _EMPTIED:
        for child in _children(dest, name):
            _remove(child)
    for package in _children(dest, "usr/share/doc"):
        relative = package.relative_to(dest)
        for item in _children(dest, str(relative)):
            if item.name != "copyright":
                _remove(item)
    for locale in _children(dest, "usr/share/locale"):
        if locale.name != "locale.alias":
            _remove(locale)
    for name in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
        (dest / name).mkdir(parents=True, exist_ok=True)


def _boot(dest: Path) -> None:
    """busybox init and dropbear, as in the minimal image."""
    for name in _BOOT_FILES:
        text, mode = _FILES[name]
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
        os.chmod(dest / name, mode)
    (dest / "etc/dropbear").mkdir(parents=True, exist_ok=True)
    for name in ("etc/slicelab", "root/.ssh"):
        (dest / name).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "root/.ssh", 0o700)


def build_debian(dest: Path, *, mirror: str | None = None) -> Path:
    """Debian (minbase) in ``dest`` (which must not exist or be empty); returns ``dest``.

    Needs root, the package ``debootstrap`` and the mirror (``mirror``, else
    :func:`debian_mirror`)."""
    source = mirror or debian_mirror()
    _debootstrap(dest, mirror=source)
    for binary in (Path("bin/busybox"), Path("usr/sbin/dropbear")):
        if not (dest / binary).exists():
            raise Unavailable(f"debootstrap from {source} made no /{binary}")
    _slim(dest)
    _boot(dest)
    return dest
