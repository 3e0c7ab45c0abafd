"""Everything the aggregate's routes share, made once per app: :func:`install_aggregate`."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy.engine import make_url

from slicelab.domain.errors import AuthenticationFailed
from slicelab.domain.roles import Caller
from slicelab.identity.nodekey import NonceCache
from slicelab.services.heartbeats import HeartbeatBatcher, SqlHeartbeatSink
from slicelab.services.images import image_resolver
from slicelab.services.nodes import NodeKeys
from slicelab.services.provisioning import AggregateContext, KeyBox
from slicelab.services.tokens import authenticate
from slicelab.settings import Settings
from slicelab.store.uow import UnitOfWorkFactory

from .images import ImageRegistry
from .notify import ChangeNotifier, Checked

__all__ = [
    "DATA_DIR_ENV",
    "AggregateState",
    "aggregate_state",
    "brief_caller",
    "data_dir",
    "install_aggregate",
    "make_state",
    "stop_heartbeats",
]

DATA_DIR_ENV = "SLICELAB_DATA_DIR"
AGENT_PREFIX = "/agent/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateState:
    ctx: AggregateContext
    notifier: ChangeNotifier
    nonces: NonceCache
    images: ImageRegistry
    uow_factory: UnitOfWorkFactory
    public_url: str | None = None
    keys: NodeKeys = field(default_factory=NodeKeys)
    checked: Checked = field(default_factory=Checked)


def data_dir(settings: Settings) -> Path:
    """``$SLICELAB_DATA_DIR``, else the SQLite database's directory, else the XDG data dir."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).expanduser().resolve().parent
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "slicelab"


def make_state(
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    *,
    root: Path | None = None,
    domain: str = "slicelab.test",
) -> AggregateState:
    """The aggregate's shared state; its heartbeat batcher is started here and stopped with
    the app (:func:`install_aggregate`)."""
    root = root or data_dir(settings)
    notifier, keys = ChangeNotifier(), NodeKeys()
    heartbeats = HeartbeatBatcher(SqlHeartbeatSink(uow_factory))
    heartbeats.start()

    def notify(node_ids: Collection[str]) -> None:
        keys.forget(node_ids)  # a node whose state changed is read again at its next request
        notifier.notify(node_ids)

    ctx = AggregateContext(
        authority=settings.authority,
        domain=domain,
        keybox=KeyBox.from_file(root / "aggregate.secret"),
        notify=notify,
        resolve_image=image_resolver(root / "imagestore"),
        heartbeats=heartbeats,
    )
    return AggregateState(
        ctx=ctx,
        notifier=notifier,
        nonces=NonceCache(),
        images=ImageRegistry(root / "images"),
        uow_factory=uow_factory,
        keys=keys,
    )


def stop_heartbeats(state: AggregateState) -> None:
    """Stop the heartbeat batcher and write what it still holds."""
    if state.ctx.heartbeats is not None:
        state.ctx.heartbeats.stop()


def aggregate_state(request: Request) -> AggregateState:
    state: AggregateState = request.app.state.aggregate
    return state


def brief_caller(request: Request) -> Caller:
    """The caller, from a unit of work closed at once: for routes that wait a long time
    (holding a transaction open would block every writer on SQLite)."""
    client_ip = request.client.host if request.client else None
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if not scheme:
        return Caller(client_ip=client_ip)
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed(
            "the Authorization header must be 'Bearer <token>'", field="Authorization"
        )
    with aggregate_state(request).uow_factory() as uow:
        return authenticate(uow, secret.strip(), client_ip=client_ip)


def install_aggregate(
    app: FastAPI,
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    *,
    api: APIRouter,
    state: AggregateState | None = None,
) -> None:
    """Add the operator and slice routes to ``api`` and mount the node channel."""
    from slicelab.api.rest.images import install_images

    from . import channel, operators, slices

    app.state.aggregate = state or make_state(settings, uow_factory)
    app.router.on_shutdown.append(lambda: stop_heartbeats(app.state.aggregate))
    install_images(app, api=api)  # first: its /images routes replace the tar-image ones
    for router in (operators.router, slices.router):
        api.include_router(router)
    app.include_router(channel.router, prefix=AGENT_PREFIX)
