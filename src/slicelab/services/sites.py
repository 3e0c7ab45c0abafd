"""Sites and enrollment tokens; who may run the aggregate's operations.

An enrollment token is one-time and expiring; only its SHA-256 is stored. The permission table
for the aggregate's operations lives here and is checked with the clearinghouse's roles.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from slicelab.domain.errors import AuthenticationFailed, Conflict, PermissionDenied
from slicelab.domain.names import NODE_NAME, check_name
from slicelab.domain.nodes import Site, site_urn
from slicelab.domain.roles import Caller, Role, Scope, Target, roles_of
from slicelab.store.uow import UnitOfWork

from .audit import utcnow

__all__ = [
    "AGGREGATE_PERMISSIONS",
    "ENROLLMENT_TTL",
    "AggregateOperation",
    "authorize_aggregate",
    "create_enrollment",
    "create_site",
    "hash_token",
    "list_sites",
]

ENROLLMENT_TTL = timedelta(hours=1)


class AggregateOperation(StrEnum):
    SITE_CREATE = "site.create"
    SITE_LIST = "site.list"
    NODE_ENROLL = "node.enroll"
    NODE_LIST = "node.list"
    NODE_READ = "node.read"
    NODE_SET_STATE = "node.set_state"
    IMAGE_BUILD = "image.build"
    IMAGE_LIST = "image.list"
    SLICE_APPLY = "slice.apply"
    SLICE_STATUS = "slice.status"
    SLIVER_EXEC = "sliver.exec"


R, OP = Role, AggregateOperation
_STAFF = frozenset({R.ADMIN, R.OPERATOR})
_IN_PROJECT = frozenset({R.ADMIN, R.PI, R.MEMBER})

AGGREGATE_PERMISSIONS: Mapping[AggregateOperation, tuple[frozenset[Role], Scope]] = {
    OP.SITE_CREATE: (_STAFF, Scope.PLATFORM),
    OP.SITE_LIST: (frozenset({R.MEMBER}), Scope.PLATFORM),
    OP.NODE_ENROLL: (_STAFF, Scope.PLATFORM),
    OP.NODE_LIST: (frozenset({R.MEMBER}), Scope.PLATFORM),
    OP.NODE_READ: (frozenset({R.MEMBER}), Scope.PLATFORM),
    OP.NODE_SET_STATE: (_STAFF, Scope.PLATFORM),
    OP.IMAGE_BUILD: (_STAFF, Scope.PLATFORM),
    OP.IMAGE_LIST: (frozenset({R.MEMBER}), Scope.PLATFORM),
    OP.SLICE_APPLY: (_IN_PROJECT, Scope.PROJECT),
    OP.SLICE_STATUS: (_IN_PROJECT | {R.OPERATOR}, Scope.PROJECT),
    OP.SLIVER_EXEC: (_IN_PROJECT, Scope.PROJECT),
}


def authorize_aggregate(operation: AggregateOperation, caller: Caller,
                        target: Target | None = None) -> None:
    """Raise unless ``caller`` holds a role the table admits for ``operation``."""
    admitted, scope = AGGREGATE_PERMISSIONS[operation]
    project = target.project if target else None
    if admitted & roles_of(caller, scope, project):
        return
    if caller.member is None:
        raise AuthenticationFailed("no credentials: send 'Authorization: Bearer <token>'",
                                   field="Authorization")
    where = f" in project {project.name!r}" if project else ""
    raise PermissionDenied(f"{operation.value}: {caller.name!r} is not allowed{where}; "
                           f"admits {', '.join(sorted(admitted))}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_site(uow: UnitOfWork, caller: Caller, *, name: str, authority: str) -> Site:
    authorize_aggregate(OP.SITE_CREATE, caller)
    site = Site(name=name, urn=site_urn(authority, name), created=utcnow())
    site = uow.aggregate.sites.add(site)
    uow.commit()
    return site


def list_sites(uow: UnitOfWork, caller: Caller) -> list[Site]:
    authorize_aggregate(OP.SITE_LIST, caller)
    return uow.aggregate.sites.list()


def create_enrollment(uow: UnitOfWork, caller: Caller, site: str, *,
                      node_name: str | None = None,
                      ttl: timedelta = ENROLLMENT_TTL) -> tuple[str, datetime]:
    """A fresh one-time token for a node of ``site``; returns it with its expiry."""
    authorize_aggregate(OP.NODE_ENROLL, caller)
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
