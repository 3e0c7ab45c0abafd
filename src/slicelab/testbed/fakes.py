"""In-memory stand-ins for the node agent's edges: a kernel runtime and an aggregate.

:class:`FakeRuntime` keeps slivers and links in dictionaries and records every call, so
reconcile logic can be tested without root. :class:`FakeAggregate` is an
``httpx.MockTransport`` speaking the node channel protocol (``/agent/v1``) and checking
every signature with :func:`slicelab.identity.nodekey.verify`; ``down = True`` makes it
unreachable, as a server restart would. :class:`CutNetwork` puts a network that can go
silent between an agent's channel and a :class:`FakeAggregate`, as a cut cable does.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from slicelab.agent.spec import LinkSpec, LinkStatus, SliverSpec, SliverState, SliverStatus
from slicelab.domain.errors import NotFound
from slicelab.identity.nodekey import NodeAuthenticationFailed, NonceCache, encode_key, verify

__all__ = ["CutNetwork", "FakeAggregate", "FakeLedger", "FakeRuntime", "tar_of"]


@dataclass
class FakeLedger:
    owned: set[str] = field(default_factory=set)

    def owners(self) -> list[str]:
        return sorted(self.owned)


class FakeRuntime:
    """Slivers and links as data; ``calls`` lists every mutating call in order."""

    def __init__(self) -> None:
        self.ledger = FakeLedger()
        self.slivers: dict[str, tuple[SliverSpec, SliverState]] = {}
        self.links: dict[str, LinkSpec] = {}
        self.calls: list[tuple[str, str]] = []
        self.exec_result: tuple[int, str, str] = (0, "ok\n", "")

    def _status(self, sliver_id: str) -> SliverStatus:
        spec, state = self.slivers[sliver_id]
        number = sorted(self.slivers).index(sliver_id) + 2
        return SliverStatus(sliver_id, state, control_ip=f"10.200.0.{number}",
                            ssh_port=spec.ports.first_port)

    def ensure_sliver(self, spec: SliverSpec) -> SliverStatus:
        current = self.slivers.get(spec.sliver_id)
        if current is None or current[0] != spec or current[1] is not SliverState.RUNNING:
            self.calls.append(("ensure_sliver", spec.sliver_id))
            self.slivers[spec.sliver_id] = (spec, SliverState.RUNNING)
            self.ledger.owned.add(f"sliver:{spec.sliver_id}")
        return self._status(spec.sliver_id)

    def ensure_slivers(self, specs: Sequence[SliverSpec]) -> list[SliverStatus]:
        return [self.ensure_sliver(spec) for spec in specs]

    def remove_slivers(self, sliver_ids: Sequence[str]) -> None:
        for sliver_id in sliver_ids:
            self.remove_sliver(sliver_id)

    def remove_links(self, link_ids: Sequence[str]) -> None:
        for link_id in link_ids:
            self.remove_link(link_id)

    def remove_sliver(self, sliver_id: str) -> None:
        self.calls.append(("remove_sliver", sliver_id))
        self.slivers.pop(sliver_id, None)
        self.ledger.owned.discard(f"sliver:{sliver_id}")

    def list_slivers(self) -> list[SliverStatus]:
        return [self._status(s) for s in sorted(self.slivers)]

    def stop(self, sliver_id: str, *, timeout: float | None = None) -> None:
        self.calls.append(("stop", sliver_id))
        spec, _ = self.slivers[sliver_id]
        self.slivers[sliver_id] = (spec, SliverState.STOPPED)

    def restart(self, sliver_id: str) -> None:
        self.calls.append(("restart", sliver_id))
        spec, _ = self.slivers[sliver_id]
        self.slivers[sliver_id] = (spec, SliverState.RUNNING)

    def exec(self, sliver_id: str, argv: Sequence[str], *,
             timeout: float = 30.0) -> tuple[int, str, str]:
        self.calls.append(("exec", f"{sliver_id}:{' '.join(argv)}"))
        if self.slivers.get(sliver_id, (None, None))[1] is not SliverState.RUNNING:
            raise NotFound(f"sliver {sliver_id} is not running")
        return self.exec_result

    def ensure_link(self, spec: LinkSpec) -> LinkStatus:
        if self.links.get(spec.link_id) != spec:
            self.calls.append(("ensure_link", spec.link_id))
            self.links[spec.link_id] = spec
            self.ledger.owned.add(f"link:{spec.link_id}")
        return LinkStatus(spec.link_id, True, bridge=f"b-{spec.link_id}")

    def remove_link(self, link_id: str) -> None:
        self.calls.append(("remove_link", link_id))
        self.links.pop(link_id, None)
        self.ledger.owned.discard(f"link:{link_id}")

    def cleanup_all(self) -> None:
        self.calls.append(("cleanup_all", ""))
        self.slivers.clear()
        self.links.clear()
        self.ledger.owned.clear()


def tar_of(files: dict[str, bytes]) -> bytes:
    """A tar archive holding ``files`` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class FakeAggregate:
    """The server side of the node channel, in memory; use :attr:`transport`."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.key = bytes(range(32))
        self.node_id = "n-1"
        self.tokens = {"tok-1"}
        self.enrolled = False
        self.desired: dict[str, Any] = {"generation": 1, "boot_state": "boot", "slivers": [],
                                        "links": [], "commands": [],
                                        "node": {"id": "n-1", "name": "host1",
                                                 "urn": "urn:publicid:IDN+test+node+host1"}}
        self.reports: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.images: dict[str, bytes] = {}
        self.image_fetches: list[str] = []
        self.failures: list[str] = []
        self.polls: list[int] = []
        self.down = False
        self.nonces = NonceCache()
        self.transport = httpx.MockTransport(self.handle)

    def set_desired(self, **changes: Any) -> None:
        self.desired = {**self.desired, **changes,
                        "generation": self.desired["generation"] + 1}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/agent/v1/enroll":
            return self._enroll(json.loads(request.content))
        try:
            verify(request.headers, request.method, request.url.raw_path.decode(),
                   request.content, key_of=self._key_of, now=self.clock(), nonces=self.nonces)
        except NodeAuthenticationFailed as exc:
            self.failures.append(exc.reason)
            return httpx.Response(401, json={"title": exc.title, "detail": str(exc)})
        return self._route(request, path)

    def _key_of(self, node_id: str) -> bytes | None:
        return self.key if self.enrolled and node_id == self.node_id else None

    def _enroll(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("token") not in self.tokens:
            return httpx.Response(401, json={"detail": "token used or expired"})
        self.tokens.discard(body["token"])
        self.enrolled = True
        return httpx.Response(201, json={"node_id": self.node_id, "node_name": "host1",
                                         "node_urn": "urn:publicid:IDN+test+node+host1",
                                         "node_key": encode_key(self.key)})

    def _route(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/agent/v1/desired":
            after = int(parse_qs(request.url.query.decode())["after"][0])
            self.polls.append(after)
            if self.desired["generation"] > after:
                return httpx.Response(200, json=self.desired)
            return httpx.Response(204)
        if path == "/agent/v1/report":
            self.reports.append(json.loads(request.content))
            return httpx.Response(204)
        if path.startswith("/agent/v1/commands/"):
            self.results[path.split("/")[4]] = json.loads(request.content)
            return httpx.Response(204)
        if path.startswith("/agent/v1/images/"):
            name = path.rsplit("/", 1)[1]
            self.image_fetches.append(name)
            if name not in self.images:
                return httpx.Response(404, json={"detail": f"no image {name}"})
            return httpx.Response(200, content=self.images[name])
        return httpx.Response(404, json={"detail": "no such route"})


class CutNetwork:
    """Connections to a :class:`FakeAggregate` over a network that can go silent.

    :meth:`transport` makes one connection (give it to ``Channel(make_transport=...)``):
    it serves one request at a time, as an HTTP/1.1 connection does. While the network is
    cut (:meth:`cut`, optionally only for some paths), a request on it hangs for its read
    timeout times ``time_scale`` (recorded in :attr:`read_timeouts`, None meaning "would
    hang forever") and then times out; that connection stays dead for good, like a TCP
    connection whose peer vanished, so only a new one gets through after :meth:`restore`.
    """

    def __init__(self, aggregate: FakeAggregate, *, time_scale: float = 0.01) -> None:
        self.aggregate = aggregate
        self.time_scale = time_scale
        self.made: list[_CutConnection] = []
        self.read_timeouts: list[float | None] = []
        self.connect_timeouts: list[float | None] = []
        self._cut_paths: tuple[str, ...] | None = None

    def transport(self) -> httpx.BaseTransport:
        connection = _CutConnection(self)
        self.made.append(connection)
        return connection

    def cut(self, *, paths: tuple[str, ...] = ("",)) -> None:
        self._cut_paths = paths

    def restore(self) -> None:
        self._cut_paths = None

    def silent_for(self, path: str) -> bool:
        return self._cut_paths is not None and path.startswith(self._cut_paths)

    def hang(self, request: httpx.Request) -> None:
        timeouts = request.extensions.get("timeout", {})
        read = timeouts.get("read")
        self.read_timeouts.append(read)
        self.connect_timeouts.append(timeouts.get("connect"))
        limit = 5.0 if read is None else read * self.time_scale
        time.sleep(limit)
        raise httpx.ReadTimeout("the peer went silent", request=request)


class _CutConnection(httpx.BaseTransport):
    def __init__(self, network: CutNetwork) -> None:
        self.network = network
        self.dead = False
        self.closed = False
        self._busy = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._busy:
            if self.closed:
                raise httpx.ConnectError("connection closed", request=request)
            if self.dead or self.network.silent_for(request.url.path):
                self.dead = True
                self.network.hang(request)
            request.read()
            return self.network.aggregate.handle(request)

    def close(self) -> None:
        self.closed = True
