"""Resources: what is free per site and node, the advertisement, and RSpec validation.

* ``GET /resources?from=&until=&site=`` — per site and node: capacity, free over the window,
  boot state, health (JSON);
* ``GET /advertisement`` — the GENI v3 advertisement RSpec when the client accepts
  ``application/xml`` (or ``application/rspec+xml``), its JSON form otherwise;
* ``POST /rspec/validate`` — the body is an RSpec document; the answer is the report of
  :func:`slicelab.rspec.validate_bytes` (200 whether valid or not; ``ok`` says which).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import InvalidInput
from slicelab.domain.resources import Resources
from slicelab.domain.roles import Operation, authorize
from slicelab.rspec import build_advertisement, validate_bytes
from slicelab.rspec.document import MAX_RSPEC_BYTES
from slicelab.services import inventory as service
from slicelab.services.audit import utcnow

from ..deps import CallerDep, ReadCallerDep, ReadUowDep, SettingsDep

__all__ = ["XML_TYPES", "router"]

router = APIRouter(tags=["resources"])
XML_TYPES = ("application/xml", "application/rspec+xml", "text/xml")


class SizesOut(BaseModel):
    cores: float
    memory_mib: int
    disk_gib: int
    devices: dict[str, int] = {}

    @classmethod
    def of(cls, res: Resources) -> SizesOut:
        return cls(cores=res.cpu_milli / 1000, memory_mib=res.memory_mib, disk_gib=res.disk_gib,
                   devices=dict(res.devices))


class NodeResourcesOut(BaseModel):
    name: str
    id: str
    urn: str
    boot_state: str
    health: str
    last_seen: datetime | None
    available: bool
    capacity: SizesOut
    free: SizesOut
    uplink_mbps: int | None = None

    @classmethod
    def of(cls, n: service.NodeResources) -> NodeResourcesOut:
        return cls(name=n.name, id=n.id, urn=n.urn, boot_state=n.boot_state,
                   health=n.health.value, last_seen=n.last_seen, available=n.available,
                   capacity=SizesOut.of(n.capacity), free=SizesOut.of(n.free),
                   uplink_mbps=n.uplink_mbps)


class SiteResourcesOut(BaseModel):
    name: str
    node_count: int
    up: int
    capacity: SizesOut
    free: SizesOut
    nodes: list[NodeResourcesOut]


class ResourcesOut(BaseModel):
    start: datetime
    end: datetime
    sites: list[SiteResourcesOut]


class ProblemOut(BaseModel):
    message: str
    line: int | None = None


class ValidationOut(BaseModel):
    source: str
    kind: str
    ok: bool
    summary: str
    errors: list[ProblemOut]
    notes: list[str]


def _site_out(site: service.SiteResources) -> SiteResourcesOut:
    return SiteResourcesOut(name=site.name, node_count=len(site.nodes), up=site.up,
                            capacity=SizesOut.of(site.capacity), free=SizesOut.of(site.free),
                            nodes=[NodeResourcesOut.of(n) for n in site.nodes])


@router.get("/resources", summary="What is free per site and node, now or over a window")
def resources(uow: ReadUowDep, caller: ReadCallerDep,
              start: Annotated[datetime | None, Query(alias="from",
                                                      description="window start (default now)")
                               ] = None,
              until: Annotated[datetime | None, Query(description="window end")] = None,
              site: Annotated[str | None, Query(max_length=32)] = None) -> ResourcesOut:
    for name, value in (("from", start), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2031-01-01T10:00:00Z)",
                               field=name)
    window, sites = service.resources_view(uow, caller, start=start, end=until, site=site)
    return ResourcesOut(start=window.start, end=window.end, sites=[_site_out(s) for s in sites])


def _wants_xml(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(t in accept for t in XML_TYPES)


@router.get("/advertisement", summary="The GENI v3 advertisement RSpec (XML) or its JSON",
            responses={200: {"content": {"application/xml": {}, "application/json": {}}}})
def advertisement(request: Request, uow: ReadUowDep, caller: ReadCallerDep,
                  settings: SettingsDep) -> Response:
    now = utcnow().replace(microsecond=0)
    inv = service.advertisement(uow, caller, authority=settings.authority, now=now)
    if _wants_xml(request):
        return Response(build_advertisement(inv, generated=now), media_type="application/xml")
    body: dict[str, Any] = {"generated": now.isoformat(), **service.advertisement_to_json(inv)}
    return JSONResponse(body)


@router.post("/rspec/validate", summary="Check an RSpec document without allocating",
             openapi_extra={"requestBody": {"content": {"application/xml": {}}}})
async def validate(request: Request, caller: CallerDep, settings: SettingsDep) -> ValidationOut:
    authorize(Operation.RESOURCES_READ, caller)
    data = await request.body()
    report = await run_in_threadpool(validate_bytes, data,
                                     offer=service.aggregate_offer(settings.authority),
                                     source="body", max_bytes=MAX_RSPEC_BYTES)
    return ValidationOut(source=report.source, kind=report.kind, ok=report.ok,
                         summary=report.summary, notes=list(report.notes),
                         errors=[ProblemOut(message=p.message, line=p.line)
                                 for p in report.errors])
