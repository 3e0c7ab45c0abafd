"""Nodes: enrollment with a one-time token, signed-request authentication with failure
counting, the operators' list, show and set-state.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from slicelab.domain.errors import AuthenticationFailed, Conflict
from slicelab.domain.names import NODE_NAME, check_name
from slicelab.domain.nodes import BootState, Inventory, Node, node_urn, operator_event
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.identity.nodekey import NodeAuthenticationFailed, NonceCache, new_key, verify
from slicelab.identity.tokens import hash_token
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, read_only

from .audit import utcnow
from .inventory import index_nodes
from .provisioning import AggregateContext, refresh_desired

__all__ = [
    "authenticate",
    "enroll",
    "get_node",
    "list_nodes",
    "name_from_hostname",
    "set_node_state",
]

OP = Operation


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
        raise AuthenticationFailed(f"this enrollment token expired at {row.expires.isoformat()}",
                                   field="token")
    return row.id, row.site, row.node_name


def enroll(uow: UnitOfWork, ctx: AggregateContext, *, token: str, hostname: str,
           inventory: Mapping[str, Any]) -> tuple[Node, bytes]:
    """Make the node a used token stands for; return it with its new key (shown once)."""
    now = utcnow()
    token_id, site, wanted = _use_token(uow, token, now)
    name = wanted or name_from_hostname(hostname)
    if uow.aggregate.nodes.name_taken(name):
        raise Conflict(f"node {name!r} exists already", field="hostname")
    inv = Inventory.from_json(dict(inventory))
    node = Node(id=f"n-{secrets.token_hex(8)}", name=name, site=site,
                urn=node_urn(ctx.authority, name), inventory=inv, host_ip=inv.host_ip)
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


def authenticate(uow_factory: UnitOfWorkFactory, ctx: AggregateContext, nonces: NonceCache, *,
                 headers: Mapping[str, str], method: str, path: str, body: bytes,
                 now: float) -> Node:
    """The node that signed this request, after a heartbeat; count and raise on failure.

    The check and a steady node's heartbeat (batched) only read: they run in a read-only unit
    of work, which on SQLite takes no write lock; a heartbeat that changes the node is written
    in a unit of work of its own.
    """
    failure: NodeAuthenticationFailed | None = None
    with read_only(uow_factory) as uow:
        def key_of(node_id: str) -> bytes | None:
            sealed = uow.aggregate.nodes.sealed_key(node_id)
            return ctx.keybox.open(sealed) if sealed is not None else None

        try:
            node_id = verify(headers, method, path, body, key_of=key_of, now=now, nonces=nonces)
        except NodeAuthenticationFailed as exc:
            failure = exc
        else:
            steady = _steady_beat(uow, ctx, node_id)
            if steady is not None:
                return steady
    if failure is None:
        with uow_factory() as writing:
            return _write_beat(writing, ctx, node_id)
    if failure.node_id is not None and failure.reason != "unknown":
        _count_failure(uow_factory, ctx, failure.node_id)
    raise failure


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


def set_node_state(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, name: str, *,
                   state: str) -> Node:
    """An operator's move of ``name`` to boot state ``state`` (the table decides)."""
    authorize(OP.NODE_SET_STATE, caller)
    node = uow.aggregate.nodes.by_name(name, lock=True)
    moved = node.on(operator_event(state))
    moved = replace(moved, auth_failures=0)
    uow.aggregate.nodes.save(moved)
    changed = refresh_desired(uow, ctx, [node.id])
    index_nodes(uow, [node.id])
    uow.commit()
    if changed:
        ctx.notify(changed)
    return moved
