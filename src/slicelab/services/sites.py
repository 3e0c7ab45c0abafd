"""Sites and enrollment tokens.

An enrollment token is one-time and expiring; only its SHA-256 is stored. Who may run the
aggregate's operations is decided by :func:`slicelab.domain.roles.authorize` from the one
permission table there.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from slicelab.domain.errors import Conflict
from slicelab.domain.names import NODE_NAME, check_name
from slicelab.domain.nodes import Site, site_urn
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.identity.tokens import hash_token
from slicelab.store.uow import UnitOfWork

from .audit import utcnow

__all__ = [
    "ENROLLMENT_TTL",
    "create_enrollment",
    "create_site",
    "list_sites",
]

ENROLLMENT_TTL = timedelta(hours=1)




def create_site(uow: UnitOfWork, caller: Caller, *, name: str, authority: str) -> Site:
    authorize(Operation.SITE_CREATE, caller)
    site = Site(name=name, urn=site_urn(authority, name), created=utcnow())
    site = uow.aggregate.sites.add(site)
    uow.commit()
    return site


def list_sites(uow: UnitOfWork, caller: Caller) -> list[Site]:
    authorize(Operation.SITE_LIST, caller)
    return uow.aggregate.sites.list()


def create_enrollment(uow: UnitOfWork, caller: Caller, site: str, *,
                      node_name: str | None = None,
                      ttl: timedelta = ENROLLMENT_TTL) -> tuple[str, datetime]:
    """A fresh one-time token for a node of ``site``; returns it with its expiry."""
    authorize(Operation.NODE_ENROLL, caller)
    if node_name is not None:
        check_name(NODE_NAME, node_name, field="name")
        if uow.aggregate.nodes.name_taken(node_name):
            raise Conflict(f"node {node_name!r} exists already", field="name")
    token, now = secrets.token_urlsafe(32), utcnow()
    expires = now + ttl
    uow.aggregate.enrollments.add(site=uow.aggregate.sites.get(site).name,
                                  token_hash=hash_token(token), node_name=node_name,
                                  created=now, expires=expires)
    uow.commit()
    return token, expires
