"""Leases over REST: list a slice's leases with each sliver's expiry, renew them, and the
quotas and site limits that bound them; plus the server's lease sweep.

The sweep runs every :attr:`slicelab.settings.Settings.sweep_interval` seconds (default 30; 0
turns it off; ``$SLICELAB_SWEEP_INTERVAL`` overrides it) in a thread started with the app and
stopped with it (:func:`install_sweeper`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slicelab.domain.inventory import SiteLimits
from slicelab.domain.quotas import ProjectQuota
from slicelab.domain.roles import Operation
from slicelab.services import quotas as quota_service
from slicelab.services.leases import Renewal, parse_duration, renew_lease
from slicelab.services.sweep import Sweeper
from slicelab.services.topology_apply import slice_for
from slicelab.settings import Settings
from slicelab.store.leases import SitePolicy

from ..agent.models import SiteName
from ..agent.state import AggregateState
from ..deps import CallerDep, ReadCallerDep, ReadUowDep, UowDep
from .allocation import LeaseOut
from .models import ProjectName, SliceName

__all__ = ["QuotaIO", "RenewIn", "SiteLimitsIO", "install_sweeper",
           "router"]

router = APIRouter(tags=["leases"])
ProjectPath = Annotated[ProjectName, Path()]
SlicePath = Annotated[SliceName, Path()]
SiteParam = Annotated[SiteName, Path()]
Span = Annotated[str, Field(max_length=32, examples=["2h", "7d"])]
OP = Operation


class SliverLeaseOut(BaseModel):
    client_id: str
    sliver_id: str
    node_id: str
    allocation_state: str
    operational_state: str
    expires: datetime


class SliceLeaseOut(LeaseOut):
    slivers: list[SliverLeaseOut]


class RenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lease_id: str | None = Field(default=None, max_length=40)
    by: Span | None = None
    until: datetime | None = None
    max: bool = False

    @model_validator(mode="after")
    def _one(self) -> RenewIn:
        if sum((self.by is not None, self.until is not None, self.max)) != 1:
            raise ValueError("give exactly one of by, until or max: true")
        return self


class RenewedOut(BaseModel):
    lease_id: str
    start: datetime
    end: datetime
    requested: str


@router.get("/projects/{project}/slices/{name}/leases", response_model=list[SliceLeaseOut],
            summary="The slice's active leases, each sliver with its expiry")
def leases(project: ProjectPath, name: SlicePath, uow: ReadUowDep,
           caller: ReadCallerDep) -> list[SliceLeaseOut]:
    item = slice_for(uow, caller, OP.LEASE_LIST, project, name)
    assert item.id is not None
    rows = {r.id: r for r in uow.aggregate.slivers.of_slice(item.id)}
    out = []
    for lease in uow.leases.leases.of_slice(item.id):
        slivers = [SliverLeaseOut(client_id=r.client_id, sliver_id=r.id, node_id=r.node_id,
                                  allocation_state=r.allocation_state,
                                  operational_state=r.operational_state, expires=lease.window.end)
                   for b in uow.leases.leases.bookings_of([lease.id])
                   if b.sliver and (r := rows.get(b.sliver)) is not None]
        out.append(SliceLeaseOut(**LeaseOut.of(lease).model_dump(), slivers=slivers))
    return out


@router.post("/projects/{project}/slices/{name}/renew-lease", response_model=list[RenewedOut],
             summary="Renew the slice's leases (or one): by a duration, until a time, or max")
def renew(project: ProjectPath, name: SlicePath, body: RenewIn, uow: UowDep,
          caller: CallerDep) -> list[RenewedOut]:
    item = slice_for(uow, caller, OP.LEASE_RENEW, project, name)
    assert item.id is not None
    ids = [body.lease_id] if body.lease_id else [x.id for x in uow.leases.leases.of_slice(item.id)]
    renewal = Renewal(by=parse_duration(body.by, field="by") if body.by else None,
                      until=body.until, to_max=body.max)
    asked = body.by or (body.until.isoformat() if body.until else "max")
    return [RenewedOut(lease_id=i, start=w.start, end=w.end, requested=asked)
            for i in ids for w in [renew_lease(uow, item, i, renewal)]]


def _span(text: str | None, field: str) -> timedelta | None:
    return None if text is None else parse_duration(text, field=field)


class QuotaIO(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cores: float | None = Field(default=None, ge=0)
    memory_mib: int | None = Field(default=None, ge=0)
    slivers: int | None = Field(default=None, ge=0)
    concurrent_leases: int | None = Field(default=None, ge=0)
    longest_lease: Span | None = None
    book_ahead: Span | None = None

    def quota(self) -> ProjectQuota:
        return ProjectQuota(self.cores, self.memory_mib, self.slivers, self.concurrent_leases,
                            _span(self.longest_lease, "longest_lease"),
                            _span(self.book_ahead, "book_ahead"))

    @classmethod
    def of(cls, q: ProjectQuota) -> QuotaIO:
        return cls(cores=q.cores, memory_mib=q.memory_mib, slivers=q.slivers,
                   concurrent_leases=q.concurrent_leases,
                   longest_lease=_text(q.longest_lease), book_ahead=_text(q.book_ahead))


def _text(span: timedelta | None) -> str | None:
    return None if span is None else f"{int(span.total_seconds())}s"


@router.get("/projects/{project}/quota", response_model=QuotaIO,
            summary="The project's quota (null: no limit)")
def get_quota(project: ProjectPath, uow: ReadUowDep, caller: ReadCallerDep) -> QuotaIO:
    return QuotaIO.of(quota_service.get_quota(uow, caller, project))


@router.put("/projects/{project}/quota", response_model=QuotaIO,
            summary="Set the project's quota (admins and operators)")
def put_quota(project: ProjectPath, body: QuotaIO, uow: UowDep, caller: CallerDep) -> QuotaIO:
    return QuotaIO.of(quota_service.set_quota(uow, caller, project, body.quota()))


class SiteLimitsIO(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slivers_per_slice: int | None = Field(default=None, ge=0)
    cores_per_sliver: float | None = Field(default=None, ge=0)
    memory_mib_per_sliver: int | None = Field(default=None, ge=0)
    longest_lease: Span | None = None
    book_ahead: Span | None = None
    one_sliver_per_slice_per_node: bool = False

    def policy(self) -> SitePolicy:
        limits = SiteLimits(self.slivers_per_slice, self.cores_per_sliver,
                            self.memory_mib_per_sliver, _span(self.longest_lease, "longest_lease"),
                            _span(self.book_ahead, "book_ahead"))
        return SitePolicy(limits, self.one_sliver_per_slice_per_node)

    @classmethod
    def of(cls, p: SitePolicy) -> SiteLimitsIO:
        lim = p.limits
        return cls(slivers_per_slice=lim.slivers_per_slice, cores_per_sliver=lim.cores_per_sliver,
                   memory_mib_per_sliver=lim.memory_mib_per_sliver,
                   longest_lease=_text(lim.longest_lease), book_ahead=_text(lim.book_ahead),
                   one_sliver_per_slice_per_node=p.one_sliver_per_slice_per_node)


@router.get("/sites/{site}/limits", response_model=SiteLimitsIO,
            summary="The site's limits on every slice (null: no limit)")
def get_limits(site: SiteParam, uow: ReadUowDep, caller: ReadCallerDep) -> SiteLimitsIO:
    return SiteLimitsIO.of(quota_service.get_site_policy(uow, caller, site))


@router.put("/sites/{site}/limits", response_model=SiteLimitsIO,
            summary="Set the site's limits (admins and operators)")
def put_limits(site: SiteParam, body: SiteLimitsIO, uow: UowDep,
               caller: CallerDep) -> SiteLimitsIO:
    return SiteLimitsIO.of(quota_service.set_site_policy(uow, caller, site, body.policy()))


def install_sweeper(app: FastAPI, *, interval: float | None = None) -> None:
    """Run the lease sweep while ``app`` runs (needs the aggregate state installed first),
    with the image store's collection when the app has one (``app.state.image_service``);
    ``interval`` defaults to the app's ``settings.sweep_interval``."""
    if interval is None:
        settings: Settings = app.state.settings
        interval = settings.sweep_interval
    if interval <= 0:
        return
    holder: list[Sweeper] = []

    def start() -> None:
        state: AggregateState = app.state.aggregate
        holder.append(Sweeper(state.uow_factory, state.ctx, interval=interval,
                              images=getattr(app.state, "image_service", None)))
        holder[-1].start()

    def stop() -> None:
        while holder:
            holder.pop().stop()

    app.router.on_startup.append(start)
    app.router.on_shutdown.append(stop)


