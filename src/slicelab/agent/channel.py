"""The agent's side of the node channel: signed HTTP calls and the long-poll loop.

:class:`Channel` makes one call each (enroll, desired, report, result, image), signing
every request but enrollment with :func:`slicelab.identity.nodekey.sign`. Errors are
raised: :class:`~slicelab.domain.errors.AuthenticationFailed` for 401,
:class:`~slicelab.domain.errors.Unavailable` when the server cannot be reached or fails.

:class:`Poller` long-polls ``GET /agent/v1/desired`` forever, caching every new document
on disk before handing it on, and waits with exponential backoff and full jitter after
an error, so a server restart or a network cut needs no operator.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import httpx

from slicelab import __version__
from slicelab.agent.state import AgentFiles, NodeIdentity
from slicelab.domain.errors import AuthenticationFailed, SlicelabError, Unavailable
from slicelab.identity.nodekey import decode_key, sign

__all__ = ["AGENT_PREFIX", "Backoff", "Channel", "Poller"]

AGENT_PREFIX = "/agent/v1"
_LONG_POLL_MARGIN = 15.0


class Backoff:
    """Exponential backoff with jitter: a delay in ``[base / 2, min(cap, base * 2^n)]``.

    Random over the whole range, so agents cut off together do not return together; the
    floor ``base / 2`` keeps a flapping server from being hammered.
    """

    def __init__(self, *, base: float = 0.5, cap: float = 30.0,
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


class Channel:
    """HTTP calls to one aggregate for one node; ``transport`` is injectable for tests."""

    def __init__(self, server: str, *, identity: NodeIdentity | None = None,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.time, timeout: float = 10.0) -> None:
        self.identity = identity
        self._clock = clock
        self._timeout = timeout
        self._http = httpx.Client(base_url=server.rstrip("/"), transport=transport,
                                  timeout=timeout,
                                  headers={"User-Agent": f"slicelab-agent/{__version__}"})

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, body: Any = None,
              params: dict[str, int] | None = None, timeout: float | None = None,
              stream: bool = False, signed: bool = True) -> httpx.Response:
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        request = self._http.build_request(method, AGENT_PREFIX + path, params=params,
                                           content=content, headers=headers,
                                           timeout=timeout or self._timeout)
        if signed:
            request.headers.update(self._signature(method, request.url.raw_path, content))
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the aggregate: {exc!r}") from exc

    def _signature(self, method: str, raw_path: bytes, content: bytes) -> dict[str, str]:
        if self.identity is None:
            raise AuthenticationFailed("the node is not enrolled (no node key)")
        return sign(self.identity.key, method, raw_path.decode("ascii"), content,
                    node_id=self.identity.node_id, now=self._clock())

    def enroll(self, token: str, *, hostname: str, inventory: dict[str, Any]) -> NodeIdentity:
        """Trade a one-time token for the node's id and key (the only unsigned call)."""
        body = {"token": token, "hostname": hostname, "inventory": inventory}
        response = self._send("POST", "/enroll", body=body, signed=False)
        _raise_for(response, "enrollment")
        data = response.json()
        self.identity = NodeIdentity(str(data["node_id"]), str(data["node_name"]),
                                     str(data["node_urn"]), decode_key(data["node_key"]))
        return self.identity

    def desired(self, *, after: int, wait: int) -> dict[str, Any] | None:
        """The desired state once its generation passes ``after``; None if ``wait`` passes."""
        response = self._send("GET", "/desired", params={"after": after, "wait": wait},
                              timeout=wait + _LONG_POLL_MARGIN)
        _raise_for(response, "desired state poll")
        if response.status_code == 204:
            return None
        doc = response.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("generation"), int):
            raise Unavailable("the desired state document has no generation")
        return doc

    def report(self, actual: dict[str, Any]) -> None:
        _raise_for(self._send("POST", "/report", body=actual), "report")

    def post_result(self, command_id: str, result: dict[str, Any]) -> None:
        response = self._send("POST", f"/commands/{command_id}/result", body=result)
        _raise_for(response, f"result of command {command_id}")

    def fetch_image(self, name: str, sink: IO[bytes]) -> None:
        """Stream the image tar into ``sink``."""
        response = self._send("GET", f"/images/{name}", stream=True, timeout=300.0)
        try:
            if response.status_code >= 400:
                response.read()
            _raise_for(response, f"image {name}")
            for chunk in response.iter_bytes():
                sink.write(chunk)
        except httpx.TransportError as exc:
            raise Unavailable(f"image {name} download cut: {exc!r}") from exc
        finally:
            response.close()


class Poller:
    """Long-polls for desired state; caches each new document, then calls ``on_change``."""

    def __init__(self, channel: Channel, files: AgentFiles, *,
                 on_change: Callable[[dict[str, Any]], None], wait: int = 25,
                 backoff: Backoff | None = None, stop: threading.Event | None = None) -> None:
        self.channel, self.files = channel, files
        self.on_change = on_change
        self.wait = wait
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        cached = files.desired()
        self.generation: int = int(cached["generation"]) if cached else 0
        self.connected = False
        self.last_error: str | None = None

    def step(self) -> float:
        """One poll; returns how long to wait before the next one."""
        try:
            doc = self.channel.desired(after=self.generation, wait=self.wait)
        except SlicelabError as exc:
            self.connected, self.last_error = False, str(exc)
            return self.backoff.next()
        self.backoff.reset()
        self.connected, self.last_error = True, None
        if doc is not None and doc["generation"] != self.generation:
            self.files.save_desired(doc)
            self.generation = int(doc["generation"])
            self.on_change(doc)
        return 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            delay = self.step()
            if delay:
                self.stop.wait(delay)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="slicelab-poller", daemon=True)
        thread.start()
        return thread

