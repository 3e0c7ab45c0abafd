"""Request and response bodies of the aggregate's routes (operators, slices, node channel)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from slicelab.domain.names import NODE_NAME, SITE_NAME
from slicelab.domain.nodes import Node, Site
from slicelab.services.topology_apply import SliverStatus

__all__ = [
    "CommandResultIn", "EnrollIn", "EnrollOut", "EnrollmentIn", "EnrollmentOut", "ExecIn",
    "ExecOut", "NodeName", "NodeOut", "NodeStateIn", "SiteIn", "SiteName", "SiteOut",
    "SliceStatusOut", "SliverOut",
]

SiteName = Annotated[str, Field(min_length=1, max_length=SITE_NAME.max_length,
                                pattern=SITE_NAME.pattern.pattern)]
NodeName = Annotated[str, Field(min_length=1, max_length=NODE_NAME.max_length,
                                pattern=NODE_NAME.pattern.pattern)]
Text = Annotated[str, Field(max_length=1 << 20)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteIn(_In):
    name: SiteName


class SiteOut(BaseModel):
    name: str
    urn: str
    created: datetime

    @classmethod
    def of(cls, site: Site) -> SiteOut:
        return cls(name=site.name, urn=str(site.urn), created=site.created)


class EnrollmentIn(_In):
    name: NodeName | None = None
    ttl_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


class EnrollmentOut(BaseModel):
    token: str
    expires: datetime
    site: str
    name: str | None = None


class NodeOut(BaseModel):
    id: str
    name: str
    site: str
    urn: str
    boot_state: str
    host_ip: str | None
    last_seen: datetime | None
    auth_failures: int
    inventory: dict[str, Any]

    @classmethod
    def of(cls, node: Node) -> NodeOut:
        return cls(id=node.id, name=node.name, site=node.site, urn=str(node.urn),
                   boot_state=node.boot_state.value, host_ip=node.host_ip,
                   last_seen=node.last_seen, auth_failures=node.auth_failures,
                   inventory=node.inventory.to_json())


class NodeStateIn(_In):
    state: str = Field(max_length=16)


class SliverOut(BaseModel):
    client_id: str
    sliver_id: str
    urn: str
    node: str
    hostname: str
    allocation_state: str
    operational_state: str
    state: str | None
    error: str | None
    addresses: list[str]
    ssh: dict[str, Any] | None
    ssh_command: str | None
    expires: datetime | None = None

    @classmethod
    def of(cls, s: SliverStatus) -> SliverOut:
        ssh = {"host": s.ssh_host, "port": s.ssh_port} if s.ssh_command else None
        return cls(client_id=s.client_id, sliver_id=s.sliver_id, urn=s.urn, node=s.node,
                   hostname=s.hostname, allocation_state=s.allocation_state,
                   operational_state=s.operational_state, state=s.state, error=s.error,
                   addresses=list(s.addresses), ssh=ssh, ssh_command=s.ssh_command,
                   expires=datetime.fromisoformat(s.expires) if s.expires else None)


class SliceStatusOut(BaseModel):
    project: str
    slice: str
    slivers: list[SliverOut]


class ExecIn(_In):
    argv: list[Annotated[str, Field(max_length=4096)]] = Field(min_length=1, max_length=256)
    timeout: float = Field(default=30, gt=0, le=600)


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str


class EnrollIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    hostname: str = Field(min_length=1, max_length=253)
    inventory: dict[str, Any] = Field(default_factory=dict)


class EnrollOut(BaseModel):
    node_id: str
    node_name: str
    node_urn: str
    node_key: str


class CommandResultIn(BaseModel):
    exit_code: int
    stdout: Text = ""
    stderr: Text = ""
