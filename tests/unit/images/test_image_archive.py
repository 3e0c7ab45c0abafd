from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import pytest

from slicelab.domain.errors import InvalidInput
from slicelab.images.archive import (
    ArchiveOptions,
    extract_archive,
    normalize_tarball,
    write_archive,
)
from slicelab.images.chunker import chunk_bytes


def _tree(root: Path) -> Path:
    rng = random.Random(5)
    for i in range(40):
        sub = root / f"dir{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:02d}.bin").write_bytes(rng.randbytes(rng.randint(1000, 60_000)))
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("sliver\n")
    os.symlink("etc/hostname", root / "link")
    return root


def _archive(root: Path, options: ArchiveOptions | None = None) -> bytes:
    out = io.BytesIO()
    write_archive(root, out, options=options or ArchiveOptions())
    return out.getvalue()


def test_archive_is_deterministic_despite_mtimes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    first = _archive(root)
    os.utime(root / "dir1" / "file01.bin", (12345, 12345))
    assert _archive(root) == first
    assert _archive(root, ArchiveOptions(keep_mtimes=True)) != first


def test_members_are_sorted_and_owners_normalized(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    with tarfile.open(fileobj=io.BytesIO(_archive(root))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "", 0)}


def test_one_changed_file_changes_only_nearby_chunks(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    before = {p.hash for p in chunk_bytes(_archive(root))}
    target = root / "dir2" / "file22.bin"
    content = bytearray(target.read_bytes())
    content[100:110] = b"0123456789"
    target.write_bytes(bytes(content))
    after = {p.hash for p in chunk_bytes(_archive(root))}
    assert 1 <= len(after - before) <= 2
    assert len(before & after) >= len(before) - 2


def test_extract_round_trip(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    dest = tmp_path / "out"
    extract_archive(io.BytesIO(_archive(root)), dest)
    assert (dest / "etc" / "hostname").read_text() == "sliver\n"
    assert os.readlink(dest / "link") == "etc/hostname"
    for path in root.rglob("*.bin"):
        assert (dest / path.relative_to(root)).read_bytes() == path.read_bytes()


def test_normalized_tarball_equals_archive_of_the_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    messy = io.BytesIO()
    with tarfile.open(fileobj=messy, mode="w:gz") as tar:
        for path in sorted(root.rglob("*"), reverse=True):
            tar.add(path, path.relative_to(root).as_posix(), recursive=False)
    messy.seek(0)
    out = io.BytesIO()
    normalize_tarball(messy, out)
    assert out.getvalue() == _archive(root)


def test_extract_refuses_paths_outside(tmp_path: Path) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    evil.seek(0)
    with pytest.raises(InvalidInput):
        extract_archive(evil, tmp_path / "dest")
    assert not (tmp_path / "escape").exists()
