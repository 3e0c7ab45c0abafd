"""Images and files at the aggregate: register, build, list, resolve, deprecate, collect.

Both live in one content-addressed :class:`~slicelab.images.store.ImageStore` under the
aggregate's data dir; a file (a data set, a tool tarball) is an image of kind ``file``.
A version is named by its content (the first 12 hex digits of the BLAKE3 of its byte
stream), so importing the same tree twice is one version and a changed tree a new one.
The *current* version of a name is the newest registered one that is not deprecated.

Who may do what (checked by :func:`authorize_images`):

* read (list, show, manifests, chunks): every signed-in member and every enrolled node;
* write (upload, build, deprecate, remove): admins, operators and PIs (members who may
  lead projects).

``rm`` deprecates every version of a name; a deprecated version is deleted (and its
chunks collected) once no live sliver uses the name: at once when none does, else by
:meth:`ImageService.collect` (run on every ``rm`` and by the sweeper).  The sweeper's
collection also forgets uploads that made no progress for :data:`UPLOAD_TTL` seconds.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from slicelab.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from slicelab.domain.roles import Caller, Role, Scope, roles_of
from slicelab.images.manifest import Manifest
from slicelab.images.store import CatalogEntry, ImageStore, UploadStatus, atomic_write
from slicelab.images.upload import add_directory
from slicelab.store.uow import UnitOfWork

__all__ = [
    "BUILDERS",
    "KINDS",
    "UPLOAD_TTL",
    "ImageInfo",
    "ImageService",
    "authorize_images",
    "content_version",
    "image_resolver",
    "images_in_use",
    "service_at",
]

Kind = Literal["image", "file"]
KINDS: tuple[Kind, ...] = ("image", "file")
_WRITERS = frozenset({Role.ADMIN, Role.OPERATOR, Role.PI})
_READERS = _WRITERS | {Role.MEMBER, Role.NODE}
UPLOAD_TTL = 24 * 3600.0


def authorize_images(caller: Caller, *, write: bool) -> None:
    """Raise unless ``caller`` may read (members, nodes) or write (admins, operators, PIs)."""
    held = roles_of(caller, Scope.PLATFORM)
    if (_WRITERS if write else _READERS) & held:
        return
    if caller.member is None and not caller.is_node:
        from slicelab.domain.errors import AuthenticationFailed

        raise AuthenticationFailed(
            "no credentials: send 'Authorization: Bearer <token>'", field="Authorization"
        )
    raise PermissionDenied(
        f"images: {caller.name!r} may not "
        f"{'change' if write else 'read'} images; admits "
        f"{', '.join(sorted(_WRITERS if write else _READERS))}"
    )


def content_version(manifest: Manifest) -> Manifest:
    """``manifest`` renamed to the version its content gives (12 hex digits of its hash)."""
    return replace(manifest, version=manifest.hash[:12])


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One version of an image or file as the aggregate lists it."""

    name: str
    version: str
    manifest: str
    kind: str
    deprecated: bool
    current: bool
    size: int
    chunks: int
    registered: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "manifest": self.manifest,
            "kind": self.kind,
            "deprecated": self.deprecated,
            "current": self.current,
            "size": self.size,
            "chunks": self.chunks,
            "registered": datetime.fromtimestamp(self.registered).astimezone().isoformat(),
        }


class _Meta:
    """Per version: its kind and when it was registered (``meta.json`` beside the catalog)."""

    def __init__(self, path: Path, *, tmp_dir: Path) -> None:
        self._path, self._tmp = path, tmp_dir
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, Any]]] = (
            json.loads(path.read_bytes()) if path.exists() else {}
        )

    def get(self, name: str, version: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._data.get(name, {}).get(version, {"kind": "image", "registered": 0.0}))

    def kind_of(self, name: str) -> str | None:
        with self._lock:
            kinds = {v["kind"] for v in self._data.get(name, {}).values()}
        return kinds.pop() if kinds else None

    def note(self, name: str, version: str, *, kind: str, when: float) -> None:
        with self._lock:
            versions = self._data.setdefault(name, {})
            if version not in versions:
                versions[version] = {"kind": kind, "registered": when}
                self._save()

    def forget(self, name: str, version: str) -> None:
        with self._lock:
            self._data.get(name, {}).pop(version, None)
            if not self._data.get(name, True):
                del self._data[name]
            self._save()

    def _save(self) -> None:
        raw = json.dumps(self._data, sort_keys=True, indent=1).encode()
        atomic_write(self._path, raw, tmp_dir=self._tmp)


class ImageService:
    """The aggregate's images and files over one :class:`ImageStore` at ``root``."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.store = ImageStore(root)
        self._meta = _Meta(root / "meta.json", tmp_dir=self.store.chunks.tmp)
        self._clock = clock

    # -- reading --------------------------------------------------------------------------
    def _info(self, entry: CatalogEntry, *, current: str | None) -> ImageInfo:
        meta = self._meta.get(entry.name, entry.version)
        manifest = self.store.chunks.get_manifest(entry.manifest)
        return ImageInfo(
            name=entry.name,
            version=entry.version,
            manifest=entry.manifest,
            kind=str(meta["kind"]),
            deprecated=entry.deprecated,
            current=entry.manifest == current,
            size=manifest.size,
            chunks=len(manifest.chunks),
            registered=float(meta["registered"]),
        )

    def _ordered(self, name: str) -> list[CatalogEntry]:
        """Versions of ``name``, oldest registered first."""
        entries = self.store.catalog.versions(name)
        return sorted(
            entries, key=lambda e: (self._meta.get(name, e.version)["registered"], e.version)
        )

    def versions(self, name: str) -> list[ImageInfo]:
        current = self.resolve(name)
        return [self._info(e, current=current) for e in self._ordered(name)]

    def entries(self, *, kind: str | None = None) -> list[ImageInfo]:
        names = sorted({e.name for e in self.store.catalog.entries()})
        found = [i for n in names for i in self.versions(n)]
        return [i for i in found if kind is None or i.kind == kind]

    def show(self, name: str, version: str | None = None) -> ImageInfo:
        """One version (default: the current one)."""
        wanted = version or self.resolve(name)
        for info in self.versions(name):
            if info.version == wanted or info.manifest == wanted:
                return info
        raise NotFound(f"no version {version!r} of {name!r}", field="version")

    def resolve(self, name: str) -> str | None:
        """The manifest id ``name`` stands for: the newest version not deprecated, else the
        newest deprecated one still kept (slivers using it keep running), else None."""
        try:
            entries = self._ordered(name)
        except NotFound:
            return None
        live = [e for e in entries if not e.deprecated]
        chosen = (live or entries)[-1] if entries else None
        return chosen.manifest if chosen else None

    def tar_stream(self, name: str) -> Iterator[bytes]:
        """The current version of image ``name`` as its (tar) byte stream, verified."""
        manifest = self.resolve(name)
        if manifest is None:
            raise NotFound(f"no image {name!r} at this aggregate", field="name")
        return self.store.chunks.read_stream(self.store.chunks.get_manifest(manifest))

    # -- writing --------------------------------------------------------------------------
    def begin_upload(self, raw: bytes, *, kind: str = "image") -> UploadStatus:
        """Start (or resume) an upload; the version is noted with its kind at once."""
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        manifest = Manifest.from_json(raw)
        held = self._meta.kind_of(manifest.name)
        if held is not None and held != kind:
            raise Conflict(
                f"{manifest.name!r} is registered as a {held}, not a {kind}", field="name"
            )
        self._meta.note(manifest.name, manifest.version, kind=kind, when=self._clock())
        return self.store.begin_upload(raw)

    def register_tree(self, name: str, tree: Path) -> ImageInfo:
        """Archive, chunk and register a directory as image ``name`` (server side)."""
        with tempfile.TemporaryDirectory(dir=self.store.chunks.tmp.parent) as work:
            manifest = add_directory(
                self.store.chunks, tree, name=name, version="build", work=Path(work)
            )
        final = content_version(manifest)
        self.store.chunks.put_manifest(final)
        self.store.chunks.delete_manifest(manifest.id)
        self._meta.note(name, final.version, kind="image", when=self._clock())
        self.store.catalog.register(name, final.version, final.id)
        return self.show(name, final.version)

    def build(self, recipe: str, *, name: str | None = None) -> ImageInfo:
        """Build image ``recipe`` (see :data:`BUILDERS`) and register it as ``name``."""
        builder = BUILDERS.get(recipe)
        if builder is None:
            raise NotFound(
                f"no recipe {recipe!r}; known: {', '.join(sorted(BUILDERS))}", field="recipe"
            )
        with tempfile.TemporaryDirectory(
            prefix=f"build-{recipe}-", dir=self.store.chunks.tmp.parent
        ) as work:
            tree = builder(Path(work) / "root")
            return self.register_tree(name or recipe, tree)

    def remove(self, name: str, *, in_use: Collection[str]) -> list[ImageInfo]:
        """Deprecate every version of ``name``; delete them now if no live sliver uses it.
        Returns the versions still kept (deprecated, in use)."""
        for entry in self.store.catalog.versions(name):
            self.store.catalog.set_deprecated(name, entry.version, deprecated=True)
        self.collect(in_use=in_use)
        try:
            return self.versions(name)
        except NotFound:
            return []

    def collect(self, *, in_use: Collection[str], upload_ttl: float | None = None) -> int:
        """Delete deprecated versions of names no live sliver uses and, with ``upload_ttl``,
        uploads idle that long; then the chunks nothing uses (returns how many)."""
        deleted = 0
        for entry in self.store.catalog.entries():
            if entry.deprecated and entry.name not in in_use:
                self.store.delete_image(entry.name, entry.version)
                self._meta.forget(entry.name, entry.version)
                deleted += 1
        if upload_ttl is not None:
            deleted += len(self.store.expire_uploads(before=self._clock() - upload_ttl))
        return self.store.collect_garbage() if deleted or upload_ttl is None else 0


def images_in_use(uow: UnitOfWork, *, now: datetime) -> set[str]:
    """Names of images and files that live slivers use (their plans name them)."""
    used: set[str] = set()
    for row in uow.aggregate.slivers.live(now):
        used.add(str(row.plan.get("image", "")))
        used.update(str(i.get("url", "")) for i in row.plan.get("install", ()))
    return used


_SERVICES: dict[Path, ImageService] = {}
_SERVICES_LOCK = threading.Lock()


def service_at(root: Path) -> ImageService:
    """The one :class:`ImageService` of a store directory in this process (made on first use)."""
    key = root.resolve()
    with _SERVICES_LOCK:
        if key not in _SERVICES:
            _SERVICES[key] = ImageService(key)
        return _SERVICES[key]


def image_resolver(root: Path) -> Callable[[str], str | None]:
    """Name -> current manifest id, for desired state documents; touches no disk until used."""

    def resolve(name: str) -> str | None:
        return service_at(root).resolve(name)

    return resolve


# -- builders -----------------------------------------------------------------------------


def _minimal(dest: Path) -> Path:
    from slicelab.images.rootfs import build_minimal  # needs Debian packages only when used

    return build_minimal(dest)


def _debian(dest: Path) -> Path:
    from slicelab.images.rootfs import build_debian  # debootstrap, root and the mirror

    return build_debian(dest)


BUILDERS: dict[str, Callable[[Path], Path]] = {"minimal": _minimal, "debian": _debian}
