"""The FastAPI application factory.

``create_app(settings)`` mounts every router of :data:`slicelab.api.rest.ROUTERS` under
``/api/v1`` with the problem+json error handlers and the body limit. Later APIs (the agent
channel, the GENI AM API) add their routers here, each under its own prefix.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from slicelab import __version__
from slicelab.services.booking import stop_engines
from slicelab.settings import Settings
from slicelab.store.uow import UnitOfWorkFactory

from .agent.state import install_aggregate
from .problems import PROBLEM_RESPONSES, BodyLimit, install_problem_handlers
from .rest import ROUTERS
from .rest import allocation as _allocation_routes
from .rest import leases as _lease_routes
from .rest import resources as _resources_routes

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def create_app(settings: Settings, *, uow_factory: UnitOfWorkFactory | None = None) -> FastAPI:
    """The clearinghouse REST API. Without ``uow_factory``, one is built from ``settings``."""
    if uow_factory is None:
        from slicelab.bootstrap import build_uow_factory  # the one place adapters are built

        uow_factory = build_uow_factory(settings)
    app = FastAPI(title="slicelab clearinghouse", version=__version__,
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs",
                  redoc_url=None)
    app.state.settings = settings
    app.state.uow_factory = uow_factory
    api = APIRouter(prefix=API_PREFIX, responses=PROBLEM_RESPONSES)
    for router in ROUTERS:
        api.include_router(router)
    install_aggregate(app, settings, uow_factory, api=api)
    api.include_router(_resources_routes.router)
    api.include_router(_allocation_routes.router)
    api.include_router(_lease_routes.router)
    _lease_routes.install_sweeper(app)
    _install_allocation_engine(app, uow_factory)
    app.include_router(api)
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _install_allocation_engine(app: FastAPI, uow_factory: UnitOfWorkFactory) -> None:
    """Stop this process's allocation engine for the app's database with the app (it starts
    on the first allocation)."""
    bind = getattr(uow_factory, "engine", None)
    if bind is not None:
        app.router.on_shutdown.append(lambda: stop_engines(bind))
