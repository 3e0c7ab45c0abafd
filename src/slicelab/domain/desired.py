"""Each node's desired state document, built from the slivers, links and commands of all
live slices (the node channel protocol's ``GET /agent/v1/desired``).

The document without its generation is hashed; a node's generation goes up exactly when that
hash changes, so agents see a new generation for every real change and only then.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidName, InvalidTopology
from .names import NODE_NAME, check_name
from .nodes import Node

__all__ = [
    "CommandPlan",
    "InstallPlan",
    "LinkPlan",
    "SliverInterface",
    "SliverPlan",
    "desired_document",
    "document_digest",
    "next_generation",
    "sliver_hostname",
]


@dataclass(frozen=True, slots=True)
class SliverInterface:
    link_id: str
    ifname: str
    ipv4: str | None
    mac: str
    capacity_mbps: int | None = None


@dataclass(frozen=True, slots=True)
class InstallPlan:
    """A file installed into a sliver at ``path``: ``url`` names a registered file, whose
    manifest id the aggregate fills in (``manifest``) when it builds the document."""

    url: str
    path: str
    manifest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "path": self.path, "manifest": self.manifest}


@dataclass(frozen=True, slots=True)
class SliverPlan:
    """One sliver as the aggregate wants it, on node ``node_id``."""

    sliver_id: str
    node_id: str
    urn: str
    slice_urn: str
    project: str
    slice: str
    client_id: str
    hostname: str
    image: str
    cores: float
    memory_mib: int
    disk_gib: int
    first_port: int
    port_count: int
    pids_max: int = 512
    run: str = "started"
    restart_seq: int = 0
    ssh_keys: tuple[str, ...] = ()
    manifest: str = ""
    interfaces: tuple[SliverInterface, ...] = ()
    expires: str | None = None  # the end of the sliver's lease (ISO 8601); the agent stops it
    image_id: str | None = None  # the manifest id ``image`` stands for (filled in per document)
    installs: tuple[InstallPlan, ...] = ()

    def to_json(self) -> dict[str, Any]:
        lease: dict[str, Any] = {"expires": self.expires} if self.expires is not None else {}
        if self.image_id is not None:
            lease["image_id"] = self.image_id
        if self.installs:
            lease["install"] = [i.to_json() for i in self.installs]
        return {**lease,
            "sliver_id": self.sliver_id, "urn": self.urn, "slice_urn": self.slice_urn,
            "project": self.project, "slice": self.slice, "client_id": self.client_id,
            "hostname": self.hostname, "image": self.image, "cores": self.cores,
            "memory_mib": self.memory_mib, "pids_max": self.pids_max, "disk_gib": self.disk_gib,
            "run": self.run, "restart_seq": self.restart_seq, "ssh_keys": list(self.ssh_keys),
            "manifest": self.manifest,
            "control": {"first_port": self.first_port, "count": self.port_count},
            "interfaces": [
                {"link_id": i.link_id, "ifname": i.ifname, "ipv4": i.ipv4, "mac": i.mac,
                 "capacity_mbps": i.capacity_mbps} for i in self.interfaces],
        }


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """A virtual link joining ``sliver_ids`` (on any nodes) with VXLAN id ``vni``."""

    link_id: str
    vni: int
    sliver_ids: tuple[str, ...]
    capacity_mbps: int | None = None


@dataclass(frozen=True, slots=True)
class CommandPlan:
    """A pending command for an agent (today only ``exec`` in a sliver)."""

    id: str
    node_id: str
    sliver_id: str
    argv: tuple[str, ...]
    timeout: float
    type: str = "exec"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "sliver_id": self.sliver_id,
                "argv": list(self.argv), "timeout": self.timeout}


def sliver_hostname(client_id: str, slice_name: str, project: str, domain: str) -> str:
    """``<node>.<slice>.<project>.<domain>``; the node's client_id must be a DNS label."""
    try:
        check_name(NODE_NAME, client_id, field="client_id")
    except InvalidName as exc:
        raise InvalidTopology(f"node client_id {client_id!r} must be a DNS label: {exc}",
                              field="nodes") from None
    return f"{client_id}.{slice_name}.{project}.{domain}"


def _link_json(link: LinkPlan, node_id: str, where: Mapping[str, str],
               hosts: Mapping[str, str | None]) -> dict[str, Any]:
    local = [s for s in link.sliver_ids if where.get(s) == node_id]
    remote_nodes = {where[s] for s in link.sliver_ids if s in where and where[s] != node_id}
    own = hosts.get(node_id)
    remote = sorted({h for n in remote_nodes if (h := hosts.get(n)) and h != own})
    return {"link_id": link.link_id, "vni": link.vni, "capacity_mbps": link.capacity_mbps,
            "local_slivers": local, "remote_hosts": remote}


def desired_document(node: Node, *, domain: str, slivers: Sequence[SliverPlan],
                     links: Sequence[LinkPlan], hosts: Mapping[str, str | None],
                     commands: Sequence[CommandPlan] = ()) -> dict[str, Any]:
    """The document for ``node`` without ``generation``.

    ``slivers`` and ``links`` may be those of every live slice; ``hosts`` maps node ids to the
    address other hosts reach them on (for VXLAN).
    """
    where = {s.sliver_id: s.node_id for s in slivers}
    mine = sorted((s for s in slivers if s.node_id == node.id), key=lambda s: s.sliver_id)
    local_links = [lk for lk in links if any(where.get(s) == node.id for s in lk.sliver_ids)]
    return {
        "boot_state": node.boot_state.value,
        "node": {"id": node.id, "name": node.name, "urn": str(node.urn), "domain": domain},
        "slivers": [s.to_json() for s in mine],
        "links": [_link_json(lk, node.id, where, hosts)
                  for lk in sorted(local_links, key=lambda lk: lk.link_id)],
        "commands": [c.to_json() for c in commands if c.node_id == node.id],
    }


def document_digest(document: Mapping[str, Any]) -> str:
    """A stable hash of a document, ignoring its ``generation``."""
    body = {k: v for k, v in document.items() if k != "generation"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def next_generation(generation: int, digest: str | None,
                    document: Mapping[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """``(generation, digest, document-with-generation)``: the generation goes up on change."""
    new_digest = document_digest(document)
    if new_digest != digest:
        generation += 1
    return generation, new_digest, {"generation": generation, **document}
