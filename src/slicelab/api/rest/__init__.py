"""The REST API routers, all mounted under ``/api/v1`` by :func:`slicelab.api.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter

from . import audit, health, keys, members, projects, slices, tokens

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (health.router, members.router, keys.router, tokens.router,
                                  projects.router, slices.router, audit.router)
