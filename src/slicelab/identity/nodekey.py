"""Node request signing: HMAC-SHA256 with the node key, shared by the agent and the server.

Every node request but enrollment carries four headers::

    X-Slicelab-Node:      <node_id>
    X-Slicelab-Timestamp: <unix time, integer seconds>
    X-Slicelab-Nonce:     <32 hex chars, random>
    X-Slicelab-Signature: hex(HMAC-SHA256(node_key, METHOD "\\n" PATH_WITH_QUERY "\\n"
                                          sha256_hex(body) "\\n" TIMESTAMP "\\n" NONCE))

``PATH_WITH_QUERY`` is the request target exactly as sent (``/agent/v1/desired?after=3``).
:func:`verify` checks, in order: a known node (``unknown``), the signature (``forged``), the
timestamp within ``window`` seconds (``stale``) and a nonce not seen within the window
(``replayed``); a failure raises :class:`NodeAuthenticationFailed` naming the reason.

    SlicelabError
    └── AuthenticationFailed
        └── NodeAuthenticationFailed   (401) a node request failed; ``reason`` says why
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Literal

from slicelab.domain.errors import AuthenticationFailed, InvalidInput, Unavailable

__all__ = [
    "HEADER_NODE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "KEY_BYTES",
    "WINDOW",
    "NodeAuthenticationFailed",
    "NonceCache",
    "Reason",
    "decode_key",
    "encode_key",
    "new_key",
    "new_nonce",
    "sign",
    "signature",
    "verify",
]

HEADER_NODE = "X-Slicelab-Node"
HEADER_TIMESTAMP = "X-Slicelab-Timestamp"
HEADER_NONCE = "X-Slicelab-Nonce"
HEADER_SIGNATURE = "X-Slicelab-Signature"
KEY_BYTES = 32
WINDOW = 60
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")

Reason = Literal["unknown", "forged", "stale", "replayed"]


class NodeAuthenticationFailed(AuthenticationFailed):
    """A signed node request was refused; ``reason`` is unknown, forged, stale or replayed."""

    title = "Node authentication failed"

    def __init__(self, reason: Reason, message: str, *, node_id: str | None = None) -> None:
        super().__init__(f"{reason}: {message}", field="headers")
        self.reason: Reason = reason
        self.node_id = node_id


def new_key() -> bytes:
    """A fresh random node key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """The key from its base64 form; raises InvalidInput unless it is 32 bytes."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise InvalidInput("node key is not base64", field="node_key") from exc
    if len(key) != KEY_BYTES:
        raise InvalidInput(f"node key must be {KEY_BYTES} bytes", field="node_key")
    return key


def new_nonce() -> str:
    return secrets.token_hex(16)


def signature(key: bytes, method: str, path: str, body: bytes, *, timestamp: int,
              nonce: str) -> str:
    """The hex HMAC-SHA256 over the canonical request string."""
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join((method.upper(), path, digest, str(timestamp), nonce))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, body: bytes, *, node_id: str, now: float,
         nonce: str | None = None) -> dict[str, str]:
    """The four headers that sign one request (a fresh random nonce unless given)."""
    timestamp = int(now)
    chosen = nonce if nonce is not None else new_nonce()
    return {
        HEADER_NODE: node_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: chosen,
        HEADER_SIGNATURE: signature(key, method, path, body, timestamp=timestamp, nonce=chosen),
    }


class NonceCache:
    """Nonces seen per node, each remembered until its timestamp leaves the window.

    Memory is bounded by ``capacity``: expired entries go first, and when the cache is
    full of live ones it refuses (Unavailable) rather than forget a nonce that could be
    replayed. Only requests with a good signature reach it, so only nodes can fill it.
    """

    def __init__(self, *, window: int = WINDOW, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._expiry: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, node_id: str, nonce: str, *, timestamp: int, now: float) -> bool:
        """Remember the nonce; False if it is already remembered (a replay)."""
        key = (node_id, nonce)
        with self._lock:
            self._expire(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self.capacity:
                raise Unavailable("too many signed requests in the replay window; retry later")
            self._expiry[key] = max(float(timestamp), now) + self.window
            return True

    def _expire(self, now: float) -> None:
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                return
            del self._expiry[key]


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    if value is None:
        raise NodeAuthenticationFailed("forged", f"missing header {name}")
    return value


def verify(headers: Mapping[str, str], method: str, path: str, body: bytes, *,
           key_of: Callable[[str], bytes | None], now: float, nonces: NonceCache,
           window: int = WINDOW) -> str:
    """Check a signed request; return its node id or raise NodeAuthenticationFailed."""
    node_id = _header(headers, HEADER_NODE)
    key = key_of(node_id)
    if key is None:
        raise NodeAuthenticationFailed("unknown", "no such node", node_id=node_id)
    stamp, nonce = _header(headers, HEADER_TIMESTAMP), _header(headers, HEADER_NONCE)
    given = _header(headers, HEADER_SIGNATURE).lower()
    if not (stamp.isdigit() and _NONCE.match(nonce) and _SIGNATURE.match(given)):
        raise NodeAuthenticationFailed("forged", "malformed signature headers", node_id=node_id)
    timestamp = int(stamp)
    expected = signature(key, method, path, body, timestamp=timestamp, nonce=nonce)
    if not hmac.compare_digest(expected, given):
        raise NodeAuthenticationFailed("forged", "bad signature", node_id=node_id)
    if abs(now - timestamp) > window:
        raise NodeAuthenticationFailed("stale", f"timestamp more than {window} s off",
                                       node_id=node_id)
    if not nonces.add(node_id, nonce, timestamp=timestamp, now=now):
        raise NodeAuthenticationFailed("replayed", "nonce already used", node_id=node_id)
    return node_id
