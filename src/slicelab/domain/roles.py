"""Who may do what: roles, the permission table, and the one place that enforces it.

Every operation, of the clearinghouse and of the aggregate alike, declares the roles it admits
(:data:`PERMISSIONS`). A caller's roles depend on
the *scope* the operation declares:

* ``PLATFORM`` scope: ``admin``/``operator`` from the member's platform roles, ``member`` for
  every signed-in member, ``pi`` for a member granted ``can_lead`` (may lead projects).
* ``PROJECT`` scope: ``admin``/``operator`` as above, ``pi`` and ``member`` only for the PIs and
  the members of the project the operation acts on.

``anonymous`` is every caller, signed in or not; ``node`` is a physical node's agent. An
operation may also admit a *relation* to the object: ``self`` (the member acted on is the
caller) or ``creator`` (the caller created the slice). :func:`authorize` is the only check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import AuthenticationFailed, PermissionDenied
from .members import Member
from .projects import Project, ProjectRole

__all__ = [
    "PERMISSIONS",
    "SLICE_READS",
    "Caller",
    "Operation",
    "Permission",
    "Relation",
    "Role",
    "Scope",
    "Target",
    "authorize",
    "roles_of",
]


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    PI = "pi"
    MEMBER = "member"
    NODE = "node"
    ANONYMOUS = "anonymous"


class Scope(StrEnum):
    PLATFORM = "platform"
    PROJECT = "project"


class Relation(StrEnum):
    SELF = "self"
    CREATOR = "creator"


class Operation(StrEnum):
    HEALTH = "health"
    WHOAMI = "whoami"
    MEMBER_CREATE = "member.create"
    MEMBER_LIST = "member.list"
    MEMBER_READ = "member.read"
    KEY_ADD = "key.add"
    KEY_LIST = "key.list"
    KEY_DELETE = "key.delete"
    TOKEN_ISSUE = "token.issue"
    TOKEN_LIST = "token.list"
    TOKEN_REVOKE = "token.revoke"
    PROJECT_CREATE = "project.create"
    PROJECT_LIST = "project.list"
    PROJECT_READ = "project.read"
    PROJECT_INVITE = "project.invite"
    PROJECT_JOIN = "project.join"
    PROJECT_APPROVE = "project.approve"
    SLICE_CREATE = "slice.create"
    SLICE_LIST = "slice.list"
    SLICE_READ = "slice.read"
    SLICE_RENEW = "slice.renew"
    SLICE_DELETE = "slice.delete"
    SLICE_ADD_MEMBER = "slice.add_member"
    AUDIT_READ = "audit.read"
    # the aggregate's operations
    SITE_CREATE = "site.create"
    SITE_LIST = "site.list"
    NODE_ENROLL = "node.enroll"
    NODE_LIST = "node.list"
    NODE_READ = "node.read"
    NODE_SET_STATE = "node.set_state"
    IMAGE_BUILD = "image.build"
    IMAGE_LIST = "image.list"
    RESOURCES_READ = "resources.read"
    QUOTA_READ = "quota.read"
    QUOTA_SET = "quota.set"
    LIMITS_READ = "limits.read"
    LIMITS_SET = "limits.set"
    SLICE_APPLY = "slice.apply"
    SLICE_ALLOCATE = "slice.allocate"
    SLICE_STATUS = "slice.status"
    SLIVER_OPERATE = "sliver.operate"
    SLIVER_EXEC = "sliver.exec"
    LEASE_LIST = "lease.list"
    LEASE_RENEW = "lease.renew"


@dataclass(frozen=True, slots=True)
class Permission:
    roles: frozenset[Role]
    scope: Scope = Scope.PLATFORM
    relations: frozenset[Relation] = field(default_factory=frozenset)


def _p(*roles: Role, scope: Scope = Scope.PLATFORM, relations: tuple[Relation, ...] = ()
       ) -> Permission:
    return Permission(frozenset(roles), scope, frozenset(relations))


R, PROJ = Role, Scope.PROJECT

PERMISSIONS: Mapping[Operation, Permission] = {
    Operation.HEALTH: _p(R.ANONYMOUS),
    Operation.WHOAMI: _p(R.MEMBER),
    Operation.MEMBER_CREATE: _p(R.ADMIN),
    Operation.MEMBER_LIST: _p(R.ADMIN, R.OPERATOR),
    Operation.MEMBER_READ: _p(R.ADMIN, R.OPERATOR, relations=(Relation.SELF,)),
    Operation.KEY_ADD: _p(R.MEMBER),
    Operation.KEY_LIST: _p(R.MEMBER),
    Operation.KEY_DELETE: _p(R.MEMBER),
    Operation.TOKEN_ISSUE: _p(R.MEMBER),
    Operation.TOKEN_LIST: _p(R.MEMBER),
    Operation.TOKEN_REVOKE: _p(R.MEMBER),
    Operation.PROJECT_CREATE: _p(R.ADMIN, R.PI),
    Operation.PROJECT_LIST: _p(R.MEMBER),
    Operation.PROJECT_READ: _p(R.ADMIN, R.OPERATOR, R.PI, R.MEMBER, scope=PROJ),
    Operation.PROJECT_INVITE: _p(R.ADMIN, R.PI, scope=PROJ),
    Operation.PROJECT_JOIN: _p(R.MEMBER),
    Operation.PROJECT_APPROVE: _p(R.ADMIN, R.PI, scope=PROJ),
    Operation.SLICE_CREATE: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLICE_LIST: _p(R.MEMBER),
    Operation.SLICE_READ: _p(R.ADMIN, R.OPERATOR, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLICE_RENEW: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLICE_DELETE: _p(R.ADMIN, R.PI, scope=PROJ, relations=(Relation.CREATOR,)),
    Operation.SLICE_ADD_MEMBER: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.AUDIT_READ: _p(R.ADMIN),
    # the aggregate: operators run sites and nodes; members read; slices act in their project
    Operation.SITE_CREATE: _p(R.ADMIN, R.OPERATOR),
    Operation.SITE_LIST: _p(R.MEMBER),
    Operation.NODE_ENROLL: _p(R.ADMIN, R.OPERATOR),
    Operation.NODE_LIST: _p(R.MEMBER),
    Operation.NODE_READ: _p(R.MEMBER),
    Operation.NODE_SET_STATE: _p(R.ADMIN, R.OPERATOR),
    Operation.IMAGE_BUILD: _p(R.ADMIN, R.OPERATOR),
    Operation.IMAGE_LIST: _p(R.MEMBER),
    Operation.RESOURCES_READ: _p(R.MEMBER),
    Operation.QUOTA_READ: _p(R.MEMBER),
    Operation.QUOTA_SET: _p(R.ADMIN, R.OPERATOR),
    Operation.LIMITS_READ: _p(R.MEMBER),
    Operation.LIMITS_SET: _p(R.ADMIN, R.OPERATOR),
    Operation.SLICE_APPLY: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLICE_ALLOCATE: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLICE_STATUS: _p(R.ADMIN, R.OPERATOR, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLIVER_OPERATE: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.SLIVER_EXEC: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
    Operation.LEASE_LIST: _p(R.ADMIN, R.OPERATOR, R.PI, R.MEMBER, scope=PROJ),
    Operation.LEASE_RENEW: _p(R.ADMIN, R.PI, R.MEMBER, scope=PROJ),
}

# Operations on a slice that only read it: any project member (or an operator) may; the rest
# need the caller to be a member of the slice itself, or a PI of its project, or an admin.
SLICE_READS: frozenset[Operation] = frozenset({Operation.SLICE_STATUS, Operation.LEASE_LIST})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a member (or ``None`` when anonymous), and from which address."""

    member: Member | None = None
    client_ip: str | None = None
    is_node: bool = False

    @property
    def name(self) -> str:
        return self.member.name if self.member else "anonymous"


@dataclass(frozen=True, slots=True)
class Target:
    """The object an operation acts on, as far as permissions care."""

    project: Project | None = None
    member: str | None = None
    creator: str | None = None


def roles_of(caller: Caller, scope: Scope, project: Project | None = None) -> frozenset[Role]:
    """The roles ``caller`` holds for an operation of ``scope`` (on ``project``)."""
    roles = {Role.ANONYMOUS}
    if caller.is_node:
        roles.add(Role.NODE)
    member = caller.member
    if member is None:
        return frozenset(roles)
    roles |= {Role(r.value) for r in member.roles}
    if scope is Scope.PLATFORM:
        roles.add(Role.MEMBER)
        if member.can_lead:
            roles.add(Role.PI)
    elif project is not None and (role := project.role_of(member.name)) is not None:
        roles.add(Role.MEMBER)
        if role is ProjectRole.PI:
            roles.add(Role.PI)
    return frozenset(roles)


def _relations(caller: Caller, target: Target) -> frozenset[Relation]:
    if caller.member is None:
        return frozenset()
    name = caller.member.name
    held = {Relation.SELF} if target.member == name else set()
    if target.creator == name:
        held.add(Relation.CREATOR)
    return frozenset(held)


def authorize(operation: Operation, caller: Caller, target: Target | None = None) -> None:
    """Raise unless the permission table lets ``caller`` do ``operation`` on ``target``."""
    rule = PERMISSIONS[operation]
    target = target or Target()
    if rule.roles & roles_of(caller, rule.scope, target.project):
        return
    if rule.relations & _relations(caller, target):
        return
    if caller.member is None and not caller.is_node:
        raise AuthenticationFailed(
            "no credentials: send 'Authorization: Bearer <token>'", field="Authorization")
    where = f" in project {target.project.name!r}" if target.project else ""
    admitted = ", ".join(sorted([*rule.roles, *rule.relations]))
    raise PermissionDenied(
        f"{operation.value}: {caller.name!r} is not allowed{where}; admits {admitted}")
