"""The agent's images: sliver root filesystems and installed files from the chunk cache.

:class:`SliverImages` sits between the reconciler and :class:`~slicelab.images.cache.ImageCache`.
Each sliver of the desired state names its image's manifest id (``image_id``) and the files
to install (``install``: ``{url, path, manifest}``).  A background thread fetches what is
missing, in order of need (the sliver whose lease starts soonest first; without a start
time, in document order), over the signed node channel (``/agent/v1/store``), with the
cache's bounded parallelism and the configured bandwidth cap.  Until an image is there,
:meth:`SliverImages.ensure_for` raises :class:`ImageFetching` carrying "fetching image 63%".

A sliver stays bound to the manifest it was first built from (``bound.json``), so a new
version of its image never rebuilds a running sliver; bound images and every image a
desired sliver names are pinned against garbage collection.  When a sliver installs
files, its lower directory is a composed tree: the image's tree hard-linked, plus the
files (a tar or tar.gz is unpacked at ``path``, anything else placed there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx

from slicelab.agent.channel import Channel
from slicelab.agent.config import AgentConfig
from slicelab.agent.state import AgentFiles, NodeIdentity
from slicelab.domain.errors import InvalidInput, SlicelabError, Unavailable
from slicelab.identity.nodekey import sign
from slicelab.images.cache import ImageCache, Quota
from slicelab.images.chunker import is_hash
from slicelab.images.fetch import FetchOptions, Progress, large_read_transport
from slicelab.images.store import atomic_write

__all__ = [
    "CACHE_MIB_ENV",
    "STORE_PATH",
    "ImageFetching",
    "SigningTransport",
    "SliverImages",
    "Want",
    "agent_images",
    "cache_quota",
]

log = logging.getLogger(__name__)
STORE_PATH = "/agent/v1/store"
_RETRY = 2.0
CACHE_MIB_ENV = "SLICELAB_IMAGE_CACHE_MIB"


class ImageFetching(Unavailable):
    """The sliver's image (or a file it installs) is still being fetched."""

    title = "Image not here yet"


class SigningTransport(httpx.AsyncBaseTransport):
    """Signs every request with the node key (the node channel's HMAC headers)."""

    def __init__(
        self,
        identity: Callable[[], NodeIdentity | None],
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._identity, self._clock = identity, clock
        self._inner = inner or large_read_transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        who = self._identity()
        if who is None:
            raise Unavailable("the node is not enrolled (no node key)")
        body = await request.aread()
        request.headers.update(
            sign(
                who.key,
                request.method,
                request.url.raw_path.decode(),
                body,
                node_id=who.node_id,
                now=self._clock(),
            )
        )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Clients come and go over this transport (a fetch, a report): closing one must
        not close the connections the others are using, so this keeps the pool."""

    async def shutdown(self) -> None:
        """Close the pooled connections (when the fetching loop ends)."""
        await self._inner.aclose()


@dataclass(frozen=True, slots=True)
class Want:
    """One manifest to have: when it is needed and whether it unpacks (an image)."""

    manifest: str
    need_at: float
    unpack: bool


def _start_of(sliver: dict[str, Any], *, now: float, index: int) -> float:
    value = sliver.get("starts") or sliver.get("start")
    if value is None:
        return now + index * 1e-3
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def wants_of(doc: dict[str, Any], *, now: float) -> list[Want]:
    """What the slivers of ``doc`` need, soonest first (a manifest once, at its soonest)."""
    found: dict[str, Want] = {}
    for index, sliver in enumerate(doc.get("slivers", [])):
        at = _start_of(sliver, now=now, index=index)
        items = [(sliver.get("image_id"), True)]
        items += [(i.get("manifest"), False) for i in sliver.get("install", ())]
        for manifest, unpack in items:
            if isinstance(manifest, str) and is_hash(manifest):
                old = found.get(manifest)
                if old is None or at < old.need_at:
                    found[manifest] = Want(manifest, at, unpack or bool(old and old.unpack))
    return sorted(found.values(), key=lambda w: (w.need_at, w.manifest))


class _Bindings:
    """sliver id -> manifest id it was built from, in ``bound.json``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.data: dict[str, str] = json.loads(path.read_bytes()) if path.exists() else {}

    def bind(self, sliver_id: str, manifest: str) -> bool:
        """Bind ``sliver_id``; whether that changed anything."""
        if self.data.get(sliver_id) == manifest:
            return False
        self.data[sliver_id] = manifest
        self._save()
        return True

    def keep_only(self, sliver_ids: set[str]) -> None:
        gone = [s for s in self.data if s not in sliver_ids]
        for sliver_id in gone:
            del self.data[sliver_id]
        if gone:
            self._save()

    def _save(self) -> None:
        atomic_write(
            self._path,
            json.dumps(self.data, sort_keys=True).encode(),
            tmp_dir=self._path.parent / "store" / "tmp",
            durable=True,
        )


class SliverImages:
    """Images for slivers: background fetching in order of need, trees, installs, report."""

    def __init__(
        self,
        root: Path,
        *,
        server: str,
        quota: Quota,
        identity: Callable[[], NodeIdentity | None],
        options: FetchOptions | None = None,
        wake: Callable[[], None] = lambda: None,
        transport: httpx.AsyncBaseTransport | None = None,
        report_every: float = 1.0,
        legacy: Callable[[str], Path] | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._server = server.rstrip("/")
        self._signing = SigningTransport(identity, inner=transport)
        self.cache = ImageCache(
            root,
            base_url=server.rstrip("/") + STORE_PATH,
            quota=quota,
            options=options or FetchOptions(),
            transport=self._signing,
        )
        self._bound = _Bindings(root / "bound.json")
        self._wake = wake
        self._legacy = legacy  # for slivers without ``image_id``: an older aggregate's tar
        self._lock = threading.Lock()
        self._wants: list[Want] = []
        self.progress: dict[str, Progress] = {}
        self.errors: dict[str, str] = {}
        self._ready: set[str] = set()
        self._changed = threading.Event()
        self._report_now = asyncio.Event()  # made again for each run of the fetching thread
        self._failed_since_report = False
        self._fetch_loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._report_every = report_every
        self._reports: httpx.AsyncClient  # made for each run of the fetching thread
        self._thread: threading.Thread | None = None

    # -- the reconciler's side ------------------------------------------------------------
    def plan(self, doc: dict[str, Any], *, now: float) -> None:
        """Take the slivers of ``doc``: queue what they miss, drop bindings of gone ones."""
        ids = {str(s["sliver_id"]) for s in doc.get("slivers", []) if "sliver_id" in s}
        self._bound.keep_only(ids)
        bound = dict(self._bound.data)
        wants = [Want(m, now - 1, True) for m in sorted(set(bound.values()))]
        with self._lock:
            self._wants = _merge(wants, wants_of(doc, now=now))
        self._changed.set()
        if self._wants:
            self.start()

    def ensure_for(self, sliver: dict[str, Any]) -> Path:
        """The lower directory for ``sliver``; raises :class:`ImageFetching` until it is here."""
        sliver_id = str(sliver["sliver_id"])
        manifest = self._bound.data.get(sliver_id) or sliver.get("image_id")
        if manifest is None and self._legacy is not None:
            return self._legacy(str(sliver.get("image", "")))
        if not isinstance(manifest, str) or not is_hash(manifest):
            raise InvalidInput(
                f"image {sliver.get('image')!r} is not registered at the aggregate", field="image"
            )
        tree = self._tree(manifest)
        installs = [dict(i) for i in sliver.get("install", ())]
        lower = self._composed(tree, installs) if installs else tree
        if self._bound.bind(sliver_id, manifest):
            self._report_soon()
        return lower

    def _tree(self, manifest: str) -> Path:
        tree = self.cache.tree_path(manifest)
        if (tree / ".slicelab-image").exists():
            return tree
        self._raise_waiting(manifest, what="image")

    def _raise_waiting(self, manifest: str, *, what: str) -> NoReturn:
        with self._lock:
            error = self.errors.get(manifest)
            progress = self.progress.get(manifest)
        if error is not None:
            raise SlicelabError(error)
        fraction = progress.fraction if progress else 0.0
        raise ImageFetching(f"fetching {what} {fraction:.0%}")

    # -- installs -------------------------------------------------------------------------
    def _composed(self, tree: Path, installs: list[dict[str, Any]]) -> Path:
        for item in installs:
            manifest = item.get("manifest")
            if not isinstance(manifest, str) or not is_hash(manifest):
                raise InvalidInput(
                    f"file {item.get('url')!r} is not registered at the aggregate", field="install"
                )
            if manifest not in self._ready:
                self._raise_waiting(manifest, what="file")
        key = hashlib.sha256(json.dumps([tree.name, installs], sort_keys=True).encode())
        target = self.root / "composed" / key.hexdigest()[:32]
        if (target / ".slicelab-image").exists():
            return target
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        try:
            _link_tree(tree, staging)
            for item in installs:
                self._install(staging, item)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def _install(self, root: Path, item: dict[str, Any]) -> None:
        path = str(item.get("path") or "/")
        target = root / path.lstrip("/")
        if root.resolve() not in (target.resolve(), *target.resolve().parents):
            raise InvalidInput(f"install path {path!r} leaves the sliver", field="install")
        manifest = self.cache.store.get_manifest(str(item["manifest"]))
        blob = root.parent / f".{uuid.uuid4().hex}.part"
        try:
            with blob.open("wb") as out:
                for part in self.cache.store.read_stream(manifest):
                    out.write(part)
            _place(
                blob,
                target,
                name=str(item.get("url", manifest.name)).rsplit("/", 1)[-1],
                is_dir=path.endswith("/"),
            )
        finally:
            blob.unlink(missing_ok=True)

    # -- the fetching thread --------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="image-fetch", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        self._report_now = asyncio.Event()
        self._fetch_loop = asyncio.get_running_loop()
        self._reports = httpx.AsyncClient(transport=self._signing, timeout=10.0)
        reporter = asyncio.create_task(self._reporter())
        try:
            while not self._stop.is_set():
                want = self._next()
                if want is None:
                    await asyncio.to_thread(self._changed.wait, 5.0)
                    self._changed.clear()
                    continue
                await self._get(want)
        finally:
            reporter.cancel()
            await self._post_report()
            await self._reports.aclose()
            await self._signing.shutdown()

    async def _reporter(self) -> None:
        """Post the cache report while anything changes; wake the reconciler while fetching
        so the slivers' progress reaches the slice status.  A failed fetch is reported at
        once, and only then is the reconciler woken, so the node's cache shows the error by
        the time its slivers are reported failed."""
        last: dict[str, Any] | None = None
        posted = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self._report_every)
            asked = self._report_now.is_set()
            failed, self._failed_since_report = self._failed_since_report, False
            self._report_now.clear()
            current = await asyncio.to_thread(self.report)
            if current != last and (asked or _worth_posting(current, last, posted)):
                last, posted = current, time.monotonic()
                await self._post_report(current)
                if current["downloads"]:
                    self._wake()
            if failed:
                self._wake()

    async def _post_report(self, current: dict[str, Any] | None = None) -> None:
        body = json.dumps(current if current is not None else self.report()).encode()
        try:
            await self._reports.post(
                self._server + STORE_PATH + "/cache",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.info("cache report not sent: %r", exc)

    def _next(self) -> Want | None:
        with self._lock:
            for want in self._wants:
                if want.manifest not in self._ready and want.manifest not in self.errors:
                    return want
        return None

    def pins(self) -> set[str]:
        with self._lock:
            return {w.manifest for w in self._wants} | set(self._bound.data.values())

    async def _get(self, want: Want) -> None:
        def progress(p: Progress) -> None:
            with self._lock:
                self.progress[want.manifest] = p

        try:
            if want.unpack:
                await self.cache.materialize(
                    want.manifest, pins=self.pins(), keep_owners=True, progress=progress
                )
            else:
                await self.cache.fetch(want.manifest, pins=self.pins(), progress=progress)
        except (SlicelabError, OSError, httpx.HTTPError) as exc:
            self._failed(want, exc)
            return
        with self._lock:
            self._ready.add(want.manifest)
        self._wake()

    def _report_soon(self) -> None:
        """Post the report now rather than at the next tick (from any thread)."""
        loop = self._fetch_loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(self._report_now.set)

    def _failed(self, want: Want, exc: BaseException) -> None:
        text = f"image {want.manifest[:12]}: {exc}"
        log.warning("%s", text)
        with self._lock:
            self.errors[want.manifest] = text
        self._failed_since_report = True  # the reporter posts the error, then wakes the
        self._report_now.set()  # reconciler
        timer = threading.Timer(_RETRY, self._forget_error, args=(want.manifest,))
        timer.daemon = True
        timer.start()

    def _forget_error(self, manifest: str) -> None:
        with self._lock:
            self.errors.pop(manifest, None)
        self._changed.set()

    # -- the report -----------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The cache for ``slicelab node show``: images, sizes, pins, downloads, errors."""
        pins = self.pins()
        with self._lock:
            progress = dict(self.progress)
            errors = dict(self.errors)
            ready = set(self._ready)
        images = [
            {
                "id": r.id,
                "tree_bytes": r.tree_bytes,
                "last_used": r.last_used,
                "pinned": r.id in pins,
            }
            for r in self.cache.images()
        ]
        downloads = {
            m: {"done": p.done, "total": p.total, "percent": round(100 * p.fraction)}
            for m, p in progress.items()
            if m not in ready
        }
        return {
            "quota": self.cache.quota.limit,
            "usage": self.cache.usage(fresh=False),
            "images": images,
            "downloads": downloads,
            "errors": errors,
            "bound": dict(self._bound.data),
        }


PROGRESS_EVERY = 5.0  # seconds between reports that only move a download's progress


def _worth_posting(current: dict[str, Any], last: dict[str, Any] | None, posted: float) -> bool:
    """Whether a changed report goes out now: anything but progress at once (a download
    begun, ended or failed, an image, a binding), progress alone every few seconds."""
    if last is None or time.monotonic() - posted >= PROGRESS_EVERY:
        return True
    same = ("usage", "downloads")
    if {k: v for k, v in current.items() if k not in same} != {
        k: v for k, v in last.items() if k not in same
    }:
        return True
    return set(current["downloads"]) != set(last["downloads"])


def _merge(first: list[Want], second: list[Want]) -> list[Want]:
    found: dict[str, Want] = {}
    for want in [*first, *second]:
        old = found.get(want.manifest)
        if old is None or want.need_at < old.need_at:
            found[want.manifest] = Want(
                want.manifest, want.need_at, want.unpack or bool(old and old.unpack)
            )
    return sorted(found.values(), key=lambda w: (w.need_at, w.manifest))


def _link_tree(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` with regular files hard-linked (cheap, same file system)."""
    shutil.copytree(source, dest, symlinks=True, copy_function=os.link)


def _place(blob: Path, target: Path, *, name: str, is_dir: bool) -> None:
    """Unpack a tar (any compression) at ``target``; place anything else there as a file."""
    if tarfile.is_tarfile(blob):
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(blob, mode="r:*") as tar:
            for member in tar.getmembers():  # never write through a link into the cache
                existing = target / member.name
                if existing.is_file() and not existing.is_symlink():
                    existing.unlink()
            tar.extractall(target, filter="data")
        return
    if is_dir or target.is_dir():
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    shutil.copyfile(blob, target)
    target.chmod(0o644)


def cache_quota(config: AgentConfig) -> Quota:
    """``$SLICELAB_IMAGE_CACHE_MIB``, else the config's ``image_cache_mib``, else 80 % of
    the disk space free at start."""
    given = os.environ.get(CACHE_MIB_ENV)
    if given:
        return Quota(int(float(given) * (1 << 20)))
    if config.image_cache_mib is not None:
        return Quota(int(config.image_cache_mib * (1 << 20)))
    config.state_dir.mkdir(parents=True, exist_ok=True)
    return Quota(max(1 << 20, int(shutil.disk_usage(config.state_dir).free * 0.8)))


def agent_images(
    config: AgentConfig, files: AgentFiles, channel: Channel, *, wake: Callable[[], None]
) -> SliverImages:
    """The agent's :class:`SliverImages`: under ``<state_dir>/imagecache``, the bandwidth cap
    from the config (``bandwidth_cap_mbps``), four parallel requests."""
    from slicelab.agent.reconcile import ImageCache  # the tar path of older aggregates

    cap = config.bandwidth_cap_mbps
    options = FetchOptions(parallel=4, rate=cap * 125_000 if cap else None)
    legacy = ImageCache(files.images, fetch=channel.fetch_image)
    return SliverImages(
        config.state_dir / "imagecache",
        server=config.server,
        quota=cache_quota(config),
        identity=lambda: channel.identity,
        options=options,
        wake=wake,
        legacy=legacy.ensure,
    )
