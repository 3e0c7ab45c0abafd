"""Nodes: enrollment with a one-time token, signed-request authentication with failure
counting, the operators' list, show and set-state.

Signed requests are checked against :class:`NodeKeys`, an in-memory table of nodes and their
opened keys: a steady node's request (known, not new, no failures to reset) needs no database
at all, and its heartbeat goes to the batcher. A miss, an expired entry, a node whose
heartbeat must be written, or any failure takes the database path, which fills the table.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from slicelab.domain.errors import AuthenticationFailed, Conflict
from slicelab.domain.names import NODE_NAME, check_name
from slicelab.domain.nodes import BootState, Inventory, Node, node_urn, operator_event
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.identity.nodekey import NodeAuthenticationFailed, NonceCache, new_key, verify
from slicelab.identity.tokens import hash_token
from slicelab.services.ids import new_id
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, read_only

from .audit import utcnow
from .inventory import index_nodes
from .provisioning import AggregateContext, refresh_desired

__all__ = [
    "KEY_TTL",
    "NodeKeys",
    "authenticate",
    "authenticate_known",
    "enroll",
    "get_node",
    "list_nodes",
    "name_from_hostname",
    "set_node_state",
]

OP = Operation
KEY_TTL = 5.0  # seconds an entry of NodeKeys is trusted without reading the database again


@dataclass(frozen=True, slots=True)
class _Known:
    node: Node
    sealed: str
    key: bytes
    loaded: float
    reloading: float | None = None  # when a request went to read it again


class NodeKeys:
    """Nodes and their opened keys by id, so that a signed request needs no database read.

    An entry is trusted for ``ttl`` seconds after it was read: a key rotated, or a node
    disabled or deleted, by another server process takes effect here within that bound (plus
    ``grace``: the first request after ``ttl`` reads the database, the node's other requests
    meanwhile still use the entry, for at most ``grace`` seconds). Writers in this process
    call :meth:`forget` (the aggregate's change notification does), so their changes take
    effect at once. An entry read before a :meth:`forget` is not stored (:attr:`epoch`), so
    a slow reader never puts back what a writer just dropped.
    """

    def __init__(
        self,
        *,
        ttl: float = KEY_TTL,
        grace: float = 1.0,
        capacity: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.grace, self.capacity, self._clock = ttl, grace, capacity, clock
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._known)

    def get(self, node_id: str) -> _Known | None:
        """The entry of ``node_id`` if it may be used; None: read the database (unknown here,
        or older than ``ttl`` and this is the first request to see it so)."""
        found = self._known.get(node_id)
        if found is None:
            return None
        now = self._clock()
        if now - found.loaded <= self.ttl:
            return found
        if found.reloading is not None:
            return found if now - found.reloading <= self.grace else None
        with self._lock:
            if self._known.get(node_id) is found:
                self._known[node_id] = replace(found, reloading=now)
        return None

    def key(self, node_id: str, sealed: str) -> bytes | None:
        """The opened key of ``node_id`` if its sealed form is still ``sealed``."""
        found = self._known.get(node_id)
        return found.key if found is not None and found.sealed == sealed else None

    def put(self, node: Node, *, sealed: str, key: bytes, epoch: int) -> None:
        """Remember ``node`` (read when :attr:`epoch` was ``epoch``) and its key."""
        with self._lock:
            if epoch != self.epoch:
                return
            self._known.pop(node.id, None)
            while len(self._known) >= self.capacity:
                del self._known[next(iter(self._known))]
            self._known[node.id] = _Known(node, sealed, key, self._clock())

    def forget(self, node_ids: Collection[str]) -> None:
        """Drop these nodes: their next request reads the database again."""
        if not node_ids:
            return
        with self._lock:
            self.epoch += 1
            for node_id in node_ids:
                self._known.pop(node_id, None)


def name_from_hostname(hostname: str) -> str:
    """A node name from a host name: its first label, lowercased, other characters as '-'."""
    label = hostname.strip().split(".")[0].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", label).strip("-")
    if not label or not label[0].isalpha():
        label = f"node-{label}" if label else "node"
    return check_name(NODE_NAME, label[:63].rstrip("-"), field="hostname")


def _use_token(uow: UnitOfWork, token: str, now: datetime) -> tuple[int, str, str | None]:
    row = uow.aggregate.enrollments.by_hash(hash_token(token))
    if row is None:
        raise AuthenticationFailed("unknown enrollment token", field="token")
    if row.used is not None:
        raise AuthenticationFailed("this enrollment token was used already", field="token")
    if now >= row.expires:
        raise AuthenticationFailed(
            f"this enrollment token expired at {row.expires.isoformat()}", field="token"
        )
    return row.id, row.site, row.node_name


def enroll(
    uow: UnitOfWork,
    ctx: AggregateContext,
    *,
    token: str,
    hostname: str,
    inventory: Mapping[str, Any],
) -> tuple[Node, bytes]:
    """Make the node a used token stands for; return it with its new key (shown once)."""
    now = utcnow()
    token_id, site, wanted = _use_token(uow, token, now)
    name = wanted or name_from_hostname(hostname)
    if uow.aggregate.nodes.name_taken(name):
        raise Conflict(f"node {name!r} exists already", field="hostname")
    inv = Inventory.from_json(dict(inventory))
    node = Node(
        id=new_id("n-"),
        name=name,
        site=site,
        urn=node_urn(ctx.authority, name),
        inventory=inv,
        host_ip=inv.host_ip,
    )
    key = new_key()
    if not uow.aggregate.enrollments.use(token_id, now):
        raise AuthenticationFailed("this enrollment token was used already", field="token")
    uow.aggregate.nodes.add(node, sealed_key=ctx.keybox.seal(key), created=now)
    refresh_desired(uow, ctx, [node.id], now=now)
    index_nodes(uow, [node.id], now=now)
    uow.commit()
    return node, key


def _count_failure(uow_factory: UnitOfWorkFactory, ctx: AggregateContext, node_id: str) -> None:
    with uow_factory() as uow:
        node = uow.aggregate.nodes.find(node_id, lock=True)
        if node is None:
            return
        failed = node.auth_failed(limit=ctx.failure_limit)
        uow.aggregate.nodes.save(failed)
        changed = []
        if failed.boot_state != node.boot_state:
            changed = refresh_desired(uow, ctx, None)
            index_nodes(uow, [node_id])
        uow.commit()
    if changed:
        ctx.notify(changed)


def authenticate_known(
    known: NodeKeys,
    ctx: AggregateContext,
    nonces: NonceCache,
    *,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float,
) -> Node | None:
    """The steady node that signed this request, from ``known`` alone (no database, no
    waiting: fit for the event loop); None when :func:`authenticate` must decide (unknown
    here, not steady, or the check failed, which it counts)."""
    if ctx.heartbeats is None:
        return None
    found: list[_Known] = []

    def key_of(node_id: str) -> bytes | None:
        entry = known.get(node_id)
        if entry is None or not _steady(entry.node):
            return None
        found.append(entry)
        return entry.key

    try:
        verify(headers, method, path, body, key_of=key_of, now=now, nonces=nonces)
    except NodeAuthenticationFailed:
        return None
    seen = utcnow()
    ctx.heartbeats.record(found[0].node.id, seen)
    return replace(found[0].node, last_seen=seen)


def authenticate(
    uow_factory: UnitOfWorkFactory,
    ctx: AggregateContext,
    nonces: NonceCache,
    *,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float,
    known: NodeKeys | None = None,
) -> Node:
    """The node that signed this request, after a heartbeat; count and raise on failure.

    The check and a steady node's heartbeat (batched) only read: they run in a read-only unit
    of work, which on SQLite takes no write lock; a heartbeat that changes the node is written
    in a unit of work of its own. With ``known``, a good node is remembered there and a failed
    one forgotten.
    """
    known = known if known is not None else NodeKeys(ttl=0)
    epoch, keys = known.epoch, _KeyReader(ctx, known)
    failure: NodeAuthenticationFailed | None = None
    with read_only(uow_factory) as uow:
        try:
            node_id = verify(
                headers, method, path, body, key_of=keys.reader(uow), now=now, nonces=nonces
            )
        except NodeAuthenticationFailed as exc:
            failure = exc
        else:
            steady = _steady_beat(uow, ctx, node_id)
            if steady is not None:
                return keys.remember(steady, epoch)
    if failure is None:
        with uow_factory() as writing:
            return keys.remember(_write_beat(writing, ctx, node_id), epoch)
    if failure.node_id is not None:
        known.forget([failure.node_id])
        if failure.reason != "unknown":
            _count_failure(uow_factory, ctx, failure.node_id)
    raise failure


class _KeyReader:
    """Reads a node's sealed key in a unit of work; opens it (or reuses the opened one)."""

    def __init__(self, ctx: AggregateContext, known: NodeKeys) -> None:
        self._ctx, self._known = ctx, known
        self._sealed: str | None = None
        self._key: bytes | None = None

    def reader(self, uow: UnitOfWork) -> Callable[[str], bytes | None]:
        def key_of(node_id: str) -> bytes | None:
            self._sealed = uow.aggregate.nodes.sealed_key(node_id)
            if self._sealed is None:
                return None
            self._key = self._known.key(node_id, self._sealed) or self._ctx.keybox.open(
                self._sealed
            )
            return self._key

        return key_of

    def remember(self, node: Node, epoch: int) -> Node:
        if self._sealed is not None and self._key is not None:
            self._known.put(node, sealed=self._sealed, key=self._key, epoch=epoch)
        return node


def _steady(node: Node) -> bool:
    """A heartbeat changes nothing but ``last_seen``: not new, no failures to reset."""
    return node.boot_state is not BootState.NEW and node.auth_failures == 0


def _steady_beat(uow: UnitOfWork, ctx: AggregateContext, node_id: str) -> Node | None:
    """A steady node's heartbeat, handed to the batcher; None when it must be written here."""
    if ctx.heartbeats is None:
        return None
    node = uow.aggregate.nodes.find(node_id)
    if node is None or not _steady(node):
        return None
    now = utcnow()
    ctx.heartbeats.record(node_id, now)
    return replace(node, last_seen=now)


def _heartbeat(uow: UnitOfWork, ctx: AggregateContext, node_id: str) -> Node:
    """Note that the node was seen: batched for a steady node, else written here (its boot
    state or failure count changes with it)."""
    return _steady_beat(uow, ctx, node_id) or _write_beat(uow, ctx, node_id)


def _write_beat(uow: UnitOfWork, ctx: AggregateContext, node_id: str) -> Node:
    """Note that the node was seen, written in ``uow`` (committed)."""
    now = utcnow()
    node = uow.aggregate.nodes.find(node_id, lock=True)
    if node is None:
        raise NodeAuthenticationFailed("unknown", "no such node", node_id=node_id)
    seen = node.seen(now)
    uow.aggregate.nodes.save(seen)
    changed = []
    if seen.boot_state != node.boot_state:
        changed = refresh_desired(uow, ctx, [node_id])
        index_nodes(uow, [node_id], now=now)
    uow.commit()
    if changed:
        ctx.notify(changed)
    return seen


def list_nodes(uow: UnitOfWork, caller: Caller) -> list[Node]:
    authorize(OP.NODE_LIST, caller)
    return uow.aggregate.nodes.list()


def get_node(uow: UnitOfWork, caller: Caller, name: str) -> Node:
    authorize(OP.NODE_READ, caller)
    return uow.aggregate.nodes.by_name(name)


def set_node_state(
    uow: UnitOfWork, ctx: AggregateContext, caller: Caller, name: str, *, state: str
) -> Node:
    """An operator's move of ``name`` to boot state ``state`` (the table decides)."""
    authorize(OP.NODE_SET_STATE, caller)
    node = uow.aggregate.nodes.by_name(name, lock=True)
    moved = node.on(operator_event(state))
    moved = replace(moved, auth_failures=0)
    uow.aggregate.nodes.save(moved)
    changed = refresh_desired(uow, ctx, [node.id])
    index_nodes(uow, [node.id])
    uow.commit()
    ctx.notify(sorted({*changed, node.id}))  # the node itself always: its cached entry goes
    return moved
