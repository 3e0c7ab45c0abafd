"""The agent's side of the node channel: signed HTTP calls and the long-poll loop.

:class:`Channel` makes one call each (enroll, desired, report, result, image), signing
every request but enrollment with :func:`slicelab.identity.nodekey.sign`. Errors are
raised: :class:`~slicelab.domain.errors.AuthenticationFailed` for 401,
:class:`~slicelab.domain.errors.Unavailable` when the server cannot be reached or fails.

The channel survives network cuts without an operator:

* each kind of call has its own HTTP client (a :class:`Lane`): the long-poll, the short
  calls (enrollment, reports, command results) and image downloads never queue behind
  each other;
* after any transport error a lane closes its whole connection pool, so the next call
  opens a fresh connection instead of reusing one that may be half dead;
* a long-poll may read for ``wait`` + :data:`LONG_POLL_MARGIN` seconds, no longer; every
  connect gives up after :data:`CONNECT_TIMEOUT` seconds;
* connections use TCP keepalive and ``TCP_USER_TIMEOUT`` (:data:`KEEPALIVE`), so the
  kernel itself drops a connection whose peer stopped answering.

:class:`Poller` long-polls ``GET /agent/v1/desired`` forever, caching every new document
on disk before handing it on, and waits with jittered exponential backoff capped at a few
seconds (:data:`RECONNECT_CAP`) after an error, so it is back within seconds of the
network or the server returning.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import httpx

from slicelab import __version__
from slicelab.agent.state import AgentFiles, NodeIdentity
from slicelab.domain.errors import AuthenticationFailed, SlicelabError, Unavailable
from slicelab.identity.nodekey import decode_key, sign

__all__ = [
    "AGENT_PREFIX",
    "CONNECT_TIMEOUT",
    "KEEPALIVE",
    "LONG_POLL_MARGIN",
    "RECONNECT_CAP",
    "Backoff",
    "Channel",
    "Lane",
    "Poller",
    "keepalive_transport",
]

log = logging.getLogger(__name__)

AGENT_PREFIX = "/agent/v1"
LONG_POLL_MARGIN = 10.0
CONNECT_TIMEOUT = 5.0
RECONNECT_CAP = 4.0
_IMAGE_READ_TIMEOUT = 60.0

KEEPALIVE: tuple[tuple[int, int, int], ...] = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
    (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 20_000),
)
"""Probe an idle connection after 10 s, every 5 s; give up on a peer that leaves data or
probes unacknowledged for 20 s."""


def keepalive_transport() -> httpx.BaseTransport:
    """A fresh HTTP transport whose sockets use :data:`KEEPALIVE`."""
    return httpx.HTTPTransport(socket_options=list(KEEPALIVE), retries=0)


class Backoff:
    """Exponential backoff with jitter: a delay in ``[base / 2, min(cap, base * 2^n)]``.

    Random over the whole range, so agents cut off together do not return together; the
    floor ``base / 2`` keeps a flapping server from being hammered.
    """

    def __init__(self, *, base: float = 0.5, cap: float = RECONNECT_CAP,
                 rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return self._rng.uniform(min(self.base / 2, ceiling), ceiling)

    def reset(self) -> None:
        self.failures = 0


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    detail = _detail(response)
    if response.status_code == 401:
        raise AuthenticationFailed(f"{what} refused: {detail}")
    error = SlicelabError if 400 <= response.status_code < 500 else Unavailable
    raise error(f"{what} failed with HTTP {response.status_code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or response.reason_phrase)
    return response.reason_phrase


class Lane:
    """One HTTP client for one kind of call, thrown away (pool and all) after any failure.

    ``make_transport`` gives the transport of each new client; with ``owns_transport``
    False (a transport injected by a test) the old transport is not closed.
    """

    def __init__(self, name: str, base_url: str, *,
                 make_transport: Callable[[], httpx.BaseTransport],
                 owns_transport: bool = True, timeout: httpx.Timeout) -> None:
        self.name, self.base_url = name, base_url
        self._make, self._owns = make_transport, owns_transport
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._closed = False
        self.resets = 0

    def client(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise Unavailable("the node channel is closed")
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url, transport=self._make(), timeout=self._timeout,
                    headers={"User-Agent": f"slicelab-agent/{__version__}"})
            return self._client

    def send(self, request: httpx.Request, *, client: httpx.Client,
             stream: bool = False) -> httpx.Response:
        """Send on ``client`` (from :meth:`client`); on any failure reset and raise
        :class:`~slicelab.domain.errors.Unavailable`."""
        try:
            return client.send(request, stream=stream)
        except (httpx.TransportError, RuntimeError) as exc:  # RuntimeError: closed meanwhile
            self.reset(client)
            raise Unavailable(f"cannot reach the aggregate ({self.name}): {exc!r}") from exc

    def reset(self, client: httpx.Client) -> None:
        """Forget ``client`` (if still current) and close its connections."""
        with self._lock:
            if self._client is not client:
                return
            self._client = None
            self.resets += 1
        self._dispose(client)

    def close(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            self._dispose(client)

    def _dispose(self, client: httpx.Client) -> None:
        if self._owns:
            client.close()


class Channel:
    """HTTP calls to one aggregate for one node.

    ``transport`` (tests) is used by every lane and never closed by the channel; without
    it each lane makes its own from ``make_transport``.
    """

    def __init__(self, server: str, *, identity: NodeIdentity | None = None,
                 transport: httpx.BaseTransport | None = None,
                 make_transport: Callable[[], httpx.BaseTransport] = keepalive_transport,
                 clock: Callable[[], float] = time.time, timeout: float = 10.0) -> None:
        self.identity = identity
        self._clock = clock
        self._seconds = timeout
        self._timeout = self._read_for(timeout)
        base = server.rstrip("/")
        factory = make_transport if transport is None else (lambda: transport)
        self.lanes = {name: Lane(name, base, make_transport=factory,
                                 owns_transport=transport is None, timeout=self._timeout)
                      for name in ("poll", "calls", "images")}

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()

    def _read_for(self, seconds: float) -> httpx.Timeout:
        """Connect within :data:`CONNECT_TIMEOUT`; wait up to ``seconds`` for each read."""
        return httpx.Timeout(self._seconds, connect=min(self._seconds, CONNECT_TIMEOUT),
                             read=seconds)

    def _send(self, lane: str, method: str, path: str, *, body: Any = None,
              params: dict[str, int] | None = None, timeout: httpx.Timeout | None = None,
              stream: bool = False, signed: bool = True) -> httpx.Response:
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        chosen = self.lanes[lane]
        client = chosen.client()
        request = client.build_request(method, AGENT_PREFIX + path, params=params,
                                       content=content, headers=headers,
                                       timeout=timeout or self._timeout)
        if signed:
            request.headers.update(self._signature(method, request.url.raw_path, content))
        return chosen.send(request, client=client, stream=stream)

    def _signature(self, method: str, raw_path: bytes, content: bytes) -> dict[str, str]:
        if self.identity is None:
            raise AuthenticationFailed("the node is not enrolled (no node key)")
        return sign(self.identity.key, method, raw_path.decode("ascii"), content,
                    node_id=self.identity.node_id, now=self._clock())

    def enroll(self, token: str, *, hostname: str, inventory: dict[str, Any]) -> NodeIdentity:
        """Trade a one-time token for the node's id and key (the only unsigned call)."""
        body = {"token": token, "hostname": hostname, "inventory": inventory}
        response = self._send("calls", "POST", "/enroll", body=body, signed=False)
        _raise_for(response, "enrollment")
        data = response.json()
        self.identity = NodeIdentity(str(data["node_id"]), str(data["node_name"]),
                                     str(data["node_urn"]), decode_key(data["node_key"]))
        return self.identity

    def desired(self, *, after: int, wait: int) -> dict[str, Any] | None:
        """The desired state once its generation passes ``after``; None if ``wait`` passes.

        The read gives up ``LONG_POLL_MARGIN`` seconds after ``wait``: a connection that
        went silent (a network cut) costs at most that, never a hang."""
        timeout = self._read_for(wait + LONG_POLL_MARGIN)
        response = self._send("poll", "GET", "/desired", params={"after": after, "wait": wait},
                              timeout=timeout)
        _raise_for(response, "desired state poll")
        if response.status_code == 204:
            return None
        doc = response.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("generation"), int):
            raise Unavailable("the desired state document has no generation")
        return doc

    def report(self, actual: dict[str, Any]) -> None:
        _raise_for(self._send("calls", "POST", "/report", body=actual), "report")

    def post_result(self, command_id: str, result: dict[str, Any]) -> None:
        response = self._send("calls", "POST", f"/commands/{command_id}/result", body=result)
        _raise_for(response, f"result of command {command_id}")

    def fetch_image(self, name: str, sink: IO[bytes]) -> None:
        """Stream the image tar into ``sink``."""
        timeout = self._read_for(_IMAGE_READ_TIMEOUT)
        lane = self.lanes["images"]
        client = lane.client()
        response = self._send("images", "GET", f"/images/{name}", stream=True, timeout=timeout)
        try:
            if response.status_code >= 400:
                response.read()
            _raise_for(response, f"image {name}")
            for chunk in response.iter_bytes():
                sink.write(chunk)
        except httpx.TransportError as exc:
            lane.reset(client)
            raise Unavailable(f"image {name} download cut: {exc!r}") from exc
        finally:
            response.close()


class Poller:
    """Long-polls for desired state; caches each new document, then calls ``on_change``."""

    def __init__(self, channel: Channel, files: AgentFiles, *,
                 on_change: Callable[[dict[str, Any]], None], wait: int = 25,
                 backoff: Backoff | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.channel, self.files = channel, files
        self.on_change = on_change
        self.wait = wait
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self._clock = clock
        cached = files.desired()
        self.generation: int = int(cached["generation"]) if cached else 0
        self.connected = False
        self.last_error: str | None = None
        self._lost_at: float | None = None

    def step(self) -> float:
        """One poll; returns how long to wait before the next one."""
        try:
            doc = self.channel.desired(after=self.generation, wait=self.wait)
        except SlicelabError as exc:
            self._lost(str(exc))
            return self.backoff.next()
        self._back()
        if doc is not None and doc["generation"] != self.generation:
            self.files.save_desired(doc)
            self.generation = int(doc["generation"])
            self.on_change(doc)
        return 0.0

    def _lost(self, error: str) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock()
            log.warning("lost the aggregate: %s", error)
        self.connected, self.last_error = False, error

    def _back(self) -> None:
        if self._lost_at is not None:
            log.info("aggregate reachable again after %.1f s", self._clock() - self._lost_at)
            self._lost_at = None
        self.backoff.reset()
        self.connected, self.last_error = True, None

    def run(self) -> None:
        while not self.stop.is_set():
            delay = self.step()
            if delay:
                self.stop.wait(delay)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="slicelab-poller", daemon=True)
        thread.start()
        return thread
