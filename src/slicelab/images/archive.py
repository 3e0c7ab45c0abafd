"""Deterministic archives: how a directory or a tarball becomes one byte stream.

Members are written in sorted path order as POSIX (pax) tar.  Unless asked to keep
them, owners become 0:0 with empty names and every mtime becomes ``epoch`` (0), so the
same tree always gives the same bytes and a change to one file only changes the bytes
of that member (and so only the chunks around it).
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from slicelab.domain.errors import InvalidInput

__all__ = ["ArchiveOptions", "extract_archive", "normalize_tarball", "write_archive"]

_READ_SIZE = 64 * 1024  # bytes per read while unpacking a stream


@dataclass(frozen=True, slots=True)
class ArchiveOptions:
    """What to keep from the source: owners and mtimes are normalized unless kept."""

    keep_owners: bool = False
    keep_mtimes: bool = False
    epoch: int = 0


def _normalized(info: tarfile.TarInfo, options: ArchiveOptions) -> tarfile.TarInfo:
    if not options.keep_owners:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
    if not options.keep_mtimes:
        info.mtime = options.epoch
    else:
        info.mtime = int(info.mtime)
    info.pax_headers = {}
    return info


def _sorted_paths(root: Path) -> list[Path]:
    """Every path under ``root`` (symlinks not followed), sorted by path components."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        found.extend(base / name for name in dirnames + filenames)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def write_archive(
    source: Path, out: BinaryIO, *, options: ArchiveOptions = ArchiveOptions()
) -> None:
    """Write the tree under ``source`` to ``out`` as a deterministic tar stream."""
    if not source.is_dir():
        raise InvalidInput(f"not a directory: {source}", field="source")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in _sorted_paths(source):
            info = _normalized(
                tar.gettarinfo(str(path), path.relative_to(source).as_posix()), options
            )
            if info.isreg():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def normalize_tarball(
    tarball: BinaryIO, out: BinaryIO, *, options: ArchiveOptions = ArchiveOptions()
) -> None:
    """Rewrite a tar stream (any compression tarfile reads) deterministically to ``out``."""
    with tarfile.open(fileobj=tarball, mode="r:*") as src:
        members = sorted(src.getmembers(), key=lambda m: m.name.strip("/").split("/"))
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst:
            for member in members:
                info = _normalized(member, options)
                data = src.extractfile(member) if member.isreg() else None
                dst.addfile(info, data)


def _rootfs_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The ``tar`` filter's path checks, but keeping setuid/setgid bits (a root fs needs them)."""
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False)


def extract_archive(stream: BinaryIO, dest: Path, *, keep_owners: bool = False) -> None:
    """Unpack a tar stream into ``dest``, refusing paths that leave it.

    With ``keep_owners`` (root building a root filesystem) owners, devices and modes are
    kept; otherwise the ``data`` filter of :mod:`tarfile` applies.
    """
    dest.mkdir(parents=True, exist_ok=True)
    chosen = _rootfs_filter if keep_owners else tarfile.data_filter
    with tarfile.open(fileobj=stream, mode="r|", bufsize=_READ_SIZE) as tar:
        tar.copybufsize = _READ_SIZE  # type: ignore[attr-defined]  # file contents, 64 KiB reads
        try:
            tar.extractall(dest, filter=chosen)
        except tarfile.FilterError as exc:
            raise InvalidInput(f"archive member refused: {exc}", field="archive") from exc
