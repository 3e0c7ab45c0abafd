"""Desired state per node, what agents report, and commands relayed to them.

After every change that can touch a node's desired state, :func:`refresh_desired` rebuilds the
documents of the affected nodes from all live slices and bumps a node's generation exactly when
its document changed; the caller commits, then tells :attr:`AggregateContext.notify` so that
waiting long-polls answer at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from slicelab.domain.desired import (
    CommandPlan,
    InstallPlan,
    LinkPlan,
    SliverInterface,
    SliverPlan,
    desired_document,
    next_generation,
)
from slicelab.domain.errors import InvalidInput, NotFound, SlicelabError
from slicelab.domain.nodes import AUTH_FAILURE_LIMIT, Inventory, Node
from slicelab.domain.slivers import AllocationState, OperationalState
from slicelab.store.aggregate import CommandRow, DesiredRow, SliverRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .heartbeats import HeartbeatBatcher
from .inventory import index_nodes

__all__ = [
    "REPORTED_OPERATIONAL",
    "AggregateContext",
    "KeyBox",
    "abandon_command",
    "command_row",
    "current_desired",
    "desired_for",
    "finish_command",
    "plan_from_row",
    "record_report",
    "refresh_desired",
]

Notify = Callable[[Collection[str]], None]
ResolveImage = Callable[[str], str | None]


class KeyBox:
    """Seals node keys for the database with a server secret (Fernet: AES-CBC + HMAC).

    The secret is read (or made) on first use, so an aggregate that never sees a node never
    touches its data directory.
    """

    def __init__(self, secret: bytes | Callable[[], bytes]) -> None:
        self._secret = secret
        self._fernet: Fernet | None = None

    @classmethod
    def from_file(cls, path: Path) -> KeyBox:
        """The box whose secret is in ``path``, made (mode 0600) on first use."""
        return cls(lambda: _secret_file(path))

    def _box(self) -> Fernet:
        if self._fernet is None:
            secret = self._secret() if callable(self._secret) else self._secret
            if len(secret) < 16:
                raise InvalidInput("the aggregate secret must be at least 16 bytes", field="secret")
            self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret).digest()))
        return self._fernet

    def seal(self, key: bytes) -> str:
        return self._box().encrypt(key).decode("ascii")

    def open(self, sealed: str) -> bytes:
        try:
            return self._box().decrypt(sealed.encode("ascii"))
        except InvalidToken:
            raise SlicelabError("a node key does not open with this aggregate's secret") from None


def _secret_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
    return path.read_bytes()


def _ignore(_ids: Collection[str]) -> None:
    return None


def _unresolved(_name: str) -> str | None:
    return None


@dataclass(frozen=True, kw_only=True)
class AggregateContext:
    """What the aggregate's services share: names, the key box, the change notifier and the
    heartbeat batcher (None: every heartbeat is written in its request's transaction)."""

    authority: str
    keybox: KeyBox
    domain: str = "slicelab.test"
    notify: Notify = field(default=_ignore)
    failure_limit: int = AUTH_FAILURE_LIMIT
    resolve_image: ResolveImage = field(default=_unresolved)  # image/file name -> manifest id
    heartbeats: HeartbeatBatcher | None = None  # steady nodes' heartbeats go here, batched


def plan_from_row(row: SliverRow) -> SliverPlan:
    p = row.plan
    interfaces = tuple(
        SliverInterface(i["link_id"], i["ifname"], i.get("ipv4"), i["mac"], i.get("capacity_mbps"))
        for i in p.get("interfaces", ())
    )
    return SliverPlan(
        sliver_id=row.id,
        node_id=row.node_id,
        urn=p["urn"],
        slice_urn=p["slice_urn"],
        project=p["project"],
        slice=p["slice"],
        client_id=p["client_id"],
        hostname=p["hostname"],
        image=p["image"],
        cores=p["cores"],
        memory_mib=p["memory_mib"],
        disk_gib=p["disk_gib"],
        first_port=p["control"]["first_port"],
        port_count=p["control"]["count"],
        pids_max=p["pids_max"],
        run=p["run"],
        restart_seq=p["restart_seq"],
        ssh_keys=tuple(p["ssh_keys"]),
        manifest=p["manifest"],
        interfaces=interfaces,
        expires=p.get("expires"),
        installs=tuple(InstallPlan(i["url"], i["path"]) for i in p.get("install", ())),
    )


def _with_images(ctx: AggregateContext, plan: SliverPlan) -> SliverPlan:
    """``plan`` with the manifest ids its image and installed files stand for right now."""
    installs = tuple(replace(i, manifest=ctx.resolve_image(i.url)) for i in plan.installs)
    return replace(plan, image_id=ctx.resolve_image(plan.image), installs=installs)


def _live_plans(uow: UnitOfWork, now: datetime) -> tuple[list[SliverPlan], list[LinkPlan]]:
    rows = [
        r
        for r in uow.aggregate.slivers.live(now)
        if r.allocation_state == AllocationState.PROVISIONED.value
    ]
    links = [
        LinkPlan(lk.id, lk.vni, lk.sliver_ids, lk.capacity_mbps)
        for lk in uow.aggregate.links.live(now)
    ]
    return [plan_from_row(r) for r in rows], links


def _documents(
    uow: UnitOfWork, ctx: AggregateContext, node_ids: Collection[str] | None, now: datetime
) -> dict[str, dict[str, Any]]:
    """The documents ``node_ids`` (None: every node) should have now, by node id."""
    nodes = uow.aggregate.nodes.list()
    slivers, links = _live_plans(uow, now)
    slivers = [_with_images(ctx, s) for s in slivers]
    hosts = {n.id: n.host_ip for n in nodes}
    docs = {}
    for node in nodes:
        if node_ids is not None and node.id not in node_ids:
            continue
        commands = [
            CommandPlan(c.id, c.node_id, c.sliver_id, c.argv, c.timeout)
            for c in uow.aggregate.commands.pending(node.id)
        ]
        docs[node.id] = desired_document(
            node, domain=ctx.domain, slivers=slivers, links=links, hosts=hosts, commands=commands
        )
    return docs


def refresh_desired(
    uow: UnitOfWork,
    ctx: AggregateContext,
    node_ids: Collection[str] | None,
    *,
    now: datetime | None = None,
) -> list[str]:
    """Rebuild the documents of ``node_ids`` (None: every node); return those that changed."""
    docs = _documents(uow, ctx, node_ids, now or utcnow())
    return [node_id for node_id, doc in docs.items() if _store(uow, node_id, doc)]


def current_desired(uow: UnitOfWork, ctx: AggregateContext, node: Node) -> DesiredRow | None:
    """The node's stored document if a rebuild would leave it as it is, else None (then
    :func:`desired_for` writes the new one). Only reads: fit for a read-only unit of work."""
    doc = _documents(uow, ctx, [node.id], utcnow()).get(node.id)
    row = uow.aggregate.desired.get(node.id)
    if doc is None or row is None:
        return None
    return row if next_generation(row.generation, row.digest, doc)[0] == row.generation else None


def _store(uow: UnitOfWork, node_id: str, doc: dict[str, Any]) -> bool:
    current = uow.aggregate.desired.get(node_id, lock=True)
    generation, digest = (current.generation, current.digest) if current else (0, None)
    new_generation, new_digest, full = next_generation(generation, digest, doc)
    if current is not None and new_generation == generation:
        return False
    applied = current.applied if current else 0
    uow.aggregate.desired.put(node_id, DesiredRow(new_generation, new_digest, full, applied))
    return True


def desired_for(uow: UnitOfWork, ctx: AggregateContext, node: Node) -> DesiredRow:
    """The node's current document, rebuilt first (expiry and deletions count as changes)."""
    changed = refresh_desired(uow, ctx, [node.id])
    row = uow.aggregate.desired.get(node.id)
    assert row is not None, "refresh_desired stores a document for every node"
    uow.commit()
    if changed:
        ctx.notify(changed)
    return row


REPORTED_OPERATIONAL: Mapping[str, OperationalState] = {
    "ready": OperationalState.READY,
    "configuring": OperationalState.CONFIGURING,
    "fetching": OperationalState.CONFIGURING,
    "stopped": OperationalState.NOTREADY,
    "failed": OperationalState.FAILED,
}


def _sliver_report(row: SliverRow, item: Mapping[str, Any]) -> SliverRow:
    state = str(item.get("state", ""))
    if state not in REPORTED_OPERATIONAL:
        raise InvalidInput(f"sliver {row.id}: unknown state {state!r}", field="slivers")
    ssh = item.get("ssh") or {}
    return replace(
        row,
        reported_state=state,
        operational_state=REPORTED_OPERATIONAL[state].value,
        error=item.get("error") or item.get("progress"),  # "fetching image 63%"
        control_ip=item.get("control_ip"),
        ssh_host=ssh.get("host"),
        ssh_port=ssh.get("port"),
    )


def _apply_sliver_reports(uow: UnitOfWork, node: Node, items: list[Any]) -> None:
    by_id = {i.get("sliver_id"): i for i in items if isinstance(i, dict)}
    for row in uow.aggregate.slivers.by_ids([str(k) for k in by_id if k]):
        if row.node_id == node.id:
            uow.aggregate.slivers.save(_sliver_report(row, by_id[row.id]))


def _apply_link_reports(uow: UnitOfWork, node: Node, items: list[Any]) -> None:
    by_id = {i.get("link_id"): i for i in items if isinstance(i, dict)}
    mine = {r.id for r in uow.aggregate.slivers.live(utcnow()) if r.node_id == node.id}
    for link in uow.aggregate.links.all():
        item = by_id.get(link.id)
        if item is not None and mine & set(link.sliver_ids):
            uow.aggregate.links.save(
                replace(link, state=item.get("state"), error=item.get("error"))
            )


def _node_report(uow: UnitOfWork, node: Node, actual: Mapping[str, Any]) -> Node:
    if "inventory" in actual:
        inventory = Inventory.from_json(actual["inventory"])
        node = replace(node, inventory=inventory, host_ip=inventory.host_ip or node.host_ip)
    applied = actual.get("generation_applied")
    current = uow.aggregate.desired.get(node.id)
    if current is not None and isinstance(applied, int):
        uow.aggregate.desired.put(node.id, replace(current, applied=applied))
        if applied >= current.generation:
            node = node.applied()
    return node


def record_report(
    uow: UnitOfWork, ctx: AggregateContext, node: Node, actual: Mapping[str, Any]
) -> None:
    """Take in an actual state document from ``node``'s agent."""
    if not isinstance(actual, Mapping):
        raise InvalidInput("the report must be a JSON object", field="body")
    fresh = uow.aggregate.nodes.find(node.id, lock=True)
    if fresh is None:
        raise NotFound(f"node {node.id} is gone", field="node")
    node = fresh
    updated = _node_report(uow, node, actual)
    uow.aggregate.nodes.save(updated)
    _apply_sliver_reports(uow, node, list(actual.get("slivers") or []))
    _apply_link_reports(uow, node, list(actual.get("links") or []))
    moved = (updated.boot_state, updated.host_ip) != (node.boot_state, node.host_ip)
    changed = refresh_desired(uow, ctx, None if moved else [node.id])
    if "inventory" in actual or updated.boot_state != node.boot_state:
        index_nodes(uow, [node.id])
    uow.commit()
    if changed:
        ctx.notify(changed)


def finish_command(
    uow: UnitOfWork,
    ctx: AggregateContext,
    node: Node,
    command_id: str,
    *,
    exit_code: int,
    stdout: str,
    stderr: str,
) -> None:
    """Record the result of one of ``node``'s commands; it then leaves the desired state."""
    command = uow.aggregate.commands.find(command_id)
    if command is None or command.node_id != node.id:
        raise NotFound(f"no command {command_id!r} for this node", field="command_id")
    if command.finished is None:
        uow.aggregate.commands.finish(
            command_id, when=utcnow(), exit_code=exit_code, stdout=stdout, stderr=stderr
        )
    changed = refresh_desired(uow, ctx, [node.id])
    uow.commit()
    ctx.notify([*changed, command_id])


def command_row(uow: UnitOfWork, command_id: str) -> CommandRow:
    command = uow.aggregate.commands.find(command_id)
    if command is None:
        raise NotFound(f"no command {command_id!r}", field="command_id")
    return command


def abandon_command(uow: UnitOfWork, ctx: AggregateContext, command_id: str) -> None:
    """Give up on a command nobody answered; it leaves its node's desired state."""
    command = uow.aggregate.commands.find(command_id)
    if command is None or command.finished is not None:
        return
    uow.aggregate.commands.finish(
        command_id, when=utcnow(), exit_code=None, stdout="", stderr="timed out"
    )
    changed = refresh_desired(uow, ctx, [command.node_id])
    uow.commit()
    ctx.notify(changed)
