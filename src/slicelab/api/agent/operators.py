"""Operators' routes: sites, enrollment tokens, nodes and their boot states.

Images are served by :mod:`slicelab.api.rest.images`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from slicelab.services import nodes as node_service
from slicelab.services import sites as site_service

from ..deps import CallerDep, SettingsDep, UowDep
from .models import (
    EnrollmentIn,
    EnrollmentOut,
    NodeName,
    NodeOut,
    NodeStateIn,
    SiteIn,
    SiteName,
    SiteOut,
)
from .state import AggregateState, aggregate_state

__all__ = ["router"]

router = APIRouter(tags=["aggregate"])
StateDep = Annotated[AggregateState, Depends(aggregate_state)]
SitePath = Annotated[SiteName, Path()]
NodePath = Annotated[NodeName, Path()]


@router.post("/sites", status_code=201, summary="Create a site (operators)")
def create_site(body: SiteIn, uow: UowDep, caller: CallerDep, settings: SettingsDep) -> SiteOut:
    site = site_service.create_site(uow, caller, name=body.name, authority=settings.authority)
    return SiteOut.of(site)


@router.get("/sites", summary="List the sites")
def list_sites(uow: UowDep, caller: CallerDep) -> list[SiteOut]:
    return [SiteOut.of(s) for s in site_service.list_sites(uow, caller)]


@router.post("/sites/{site}/enrollments", status_code=201,
             summary="A one-time, expiring token to enroll a node at a site (operators)")
def create_enrollment(site: SitePath, uow: UowDep, caller: CallerDep,
                      body: EnrollmentIn | None = None) -> EnrollmentOut:
    body = body or EnrollmentIn()
    token, expires = site_service.create_enrollment(
        uow, caller, site, node_name=body.name, ttl=timedelta(minutes=body.ttl_minutes))
    return EnrollmentOut(token=token, expires=expires, site=site, name=body.name)


@router.get("/nodes", summary="List the nodes")
def list_nodes(uow: UowDep, caller: CallerDep) -> list[NodeOut]:
    return [NodeOut.of(n) for n in node_service.list_nodes(uow, caller)]


@router.get("/nodes/{name}", summary="Read a node")
def get_node(name: NodePath, uow: UowDep, caller: CallerDep) -> NodeOut:
    return NodeOut.of(node_service.get_node(uow, caller, name))


@router.post("/nodes/{name}/state", summary="Move a node to a boot state (operators)")
def set_node_state(name: NodePath, body: NodeStateIn, uow: UowDep, caller: CallerDep,
                   state: StateDep) -> NodeOut:
    return NodeOut.of(node_service.set_node_state(uow, state.ctx, caller, name, state=body.state))
