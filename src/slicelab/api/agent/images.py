"""The images an aggregate serves to its nodes: one directory per image under its data dir.

For now an image is a plain root file system tree, streamed to agents as a tar; later it is
replaced by content-addressed chunks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from slicelab.domain.errors import InvalidInput, NotFound
from slicelab.images.archive import write_archive

__all__ = ["BUILDERS", "ImageInfo", "ImageRegistry"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_CHUNK = 1 << 16


def _minimal(dest: Path) -> Path:
    from slicelab.images.rootfs import build_minimal  # needs Debian packages only when used

    return build_minimal(dest)


BUILDERS: dict[str, Callable[[Path], Path]] = {"minimal": _minimal}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    name: str
    files: int
    bytes: int


class _Pipe:
    """A file-like sink that hands written blocks to a generator."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.blocks.append(bytes(data))
        return len(data)


class ImageRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise InvalidInput(f"image name {name!r} is not valid", field="name")
        found = self.root / name
        if not found.is_dir():
            raise NotFound(f"no image {name!r} at this aggregate", field="name")
        return found

    def build(self, name: str) -> ImageInfo:
        """Build image ``name`` with its registered builder (idempotent)."""
        builder = BUILDERS.get(name)
        if builder is None:
            raise NotFound(f"no builder for image {name!r}; known: {', '.join(BUILDERS)}",
                           field="name")
        with self._lock:
            builder(self.root / name)
        return self.info(name)

    def info(self, name: str) -> ImageInfo:
        files = [p for p in self.path(name).rglob("*") if p.is_file() and not p.is_symlink()]
        return ImageInfo(name, len(files), sum(p.stat().st_size for p in files))

    def list(self) -> list[ImageInfo]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))
        return [self.info(n) for n in names]

    def tar_stream(self, name: str) -> Iterator[bytes]:
        """The image as a tar, in blocks (written whole first: images are small for now)."""
        source = self.path(name)
        pipe = _Pipe()
        write_archive(source, pipe)  # type: ignore[arg-type]
        for block in pipe.blocks:
            yield from (block[i:i + _CHUNK] for i in range(0, len(block), _CHUNK))
