"""The one module that builds adapters: the engine, the unit-of-work factory and the app.

It also makes the first administrator: :func:`init_admin`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import Engine

from slicelab.domain.errors import Conflict
from slicelab.domain.members import Member, PlatformRole
from slicelab.services.tokens import issue
from slicelab.settings import Settings
from slicelab.store.engine import make_engine
from slicelab.store.migrate import upgrade
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, unit_of_work_factory

__all__ = ["build_app", "build_engine", "build_uow_factory", "init_admin"]


def build_engine(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``, migrated to the newest schema if asked."""
    engine = make_engine(settings.database_url)
    if settings.run_migrations:
        upgrade(engine)
    return engine


def build_uow_factory(settings: Settings) -> UnitOfWorkFactory:
    return unit_of_work_factory(build_engine(settings))


def build_app(settings: Settings | None = None) -> FastAPI:
    from slicelab.api.app import create_app

    settings = settings or Settings.load()
    return create_app(settings, uow_factory=build_uow_factory(settings))


def init_admin(db: str | os.PathLike[str] | None = None, name: str = "admin",
               email: str = "admin@localhost.localdomain", *, new_token: bool = False,
               settings: Settings | None = None) -> str:
    """Make the first admin and return an API token for it.

    Refuses (:class:`Conflict`) if an admin exists already, unless ``new_token`` is set: then
    the existing admin ``name`` gets a new token.
    """
    settings = settings or Settings.load(db=db)
    engine = build_engine(settings)
    try:
        with UnitOfWork(engine) as uow:
            secret = _admin_token(uow, name, email, new_token=new_token, days=settings.token_days)
            uow.commit()
            return secret
    finally:
        engine.dispose()


def _admin_token(uow: UnitOfWork, name: str, email: str, *, new_token: bool, days: int) -> str:
    admins = uow.members.admins()
    if admins and not new_token:
        raise Conflict(f"an admin exists already ({admins[0].name!r}); ask for a new token "
                       "for it instead", field="name")
    member = uow.members.find(name)
    if member is None or not member.is_admin:
        if member is not None:
            raise Conflict(f"member {name!r} exists and is not an admin", field="name")
        member = uow.members.add(Member(name=name, email=email, created=datetime.now(UTC),
                                        can_lead=True, roles=frozenset({PlatformRole.ADMIN})))
    _token, secret = issue(uow, member, name="admin", days=days)
    return secret
