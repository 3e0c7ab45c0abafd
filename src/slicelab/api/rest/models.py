"""Request and response bodies of the REST API, with the constraints the OpenAPI shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from slicelab.domain.audit import AuditEntry
from slicelab.domain.members import ApiToken, Member, SSHKey
from slicelab.domain.names import MEMBER_NAME, PROJECT_NAME, SLICE_NAME
from slicelab.domain.projects import Project
from slicelab.domain.slices import Slice
from slicelab.store.base import Page

__all__ = [
    "AuditOut", "JoinOut", "KeyIn", "KeyOut", "MemberCreated", "MemberIn", "MemberName",
    "MemberOut", "PageOut", "ProjectIn", "ProjectName", "ProjectOut", "SliceIn", "SliceMemberIn",
    "SliceName", "SliceOut", "SliceRenewIn", "TokenCreated", "TokenIn", "TokenOut", "page_of",
]

T = TypeVar("T")
MemberName = Annotated[str, Field(min_length=1, max_length=MEMBER_NAME.max_length,
                                  pattern=MEMBER_NAME.pattern.pattern)]
ProjectName = Annotated[str, Field(min_length=1, max_length=PROJECT_NAME.max_length,
                                   pattern=PROJECT_NAME.pattern.pattern)]
SliceName = Annotated[str, Field(min_length=1, max_length=SLICE_NAME.max_length,
                                 pattern=SLICE_NAME.pattern.pattern)]
_ADDR = r"[^@\s\x00-\x1f]+"
EMAIL_PATTERN = rf"^{_ADDR}@{_ADDR}\.{_ADDR}$"
Label = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberIn(_In):
    name: MemberName
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    can_lead: bool = False
    roles: list[Literal["admin", "operator"]] = Field(default_factory=list, max_length=2)


class MemberOut(BaseModel):
    name: str
    email: str
    can_lead: bool
    roles: list[str]
    created: datetime

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(name=m.name, email=m.email, can_lead=m.can_lead,
                   roles=sorted(r.value for r in m.roles), created=m.created)


class MemberCreated(BaseModel):
    member: MemberOut
    token: str


class KeyIn(_In):
    key: str = Field(min_length=1, max_length=16_384, pattern=r"^[\x20-\x7e]+$")
    name: Label | None = None


class KeyOut(BaseModel):
    id: int
    name: str
    type: str
    fingerprint: str
    bits: int
    created: datetime

    @classmethod
    def of(cls, k: SSHKey) -> KeyOut:
        assert k.id is not None
        return cls(id=k.id, name=k.name, type=k.type, fingerprint=k.fingerprint, bits=k.bits,
                   created=k.created)


class TokenIn(_In):
    name: Label
    expires_in_days: int = Field(90, ge=1, le=365)


class TokenCreated(BaseModel):
    id: int
    name: str
    token: str
    expires: datetime


class TokenOut(BaseModel):
    id: int
    name: str
    created: datetime
    expires: datetime
    revoked: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        assert t.id is not None
        return cls(id=t.id, name=t.name, created=t.created, expires=t.expires, revoked=t.revoked)


class ProjectIn(_In):
    name: ProjectName
    description: str = Field("", max_length=1000, pattern=r"^[^\x00]*$")


class ProjectMemberOut(BaseModel):
    name: str
    role: Literal["pi", "member"]


class ProjectOut(BaseModel):
    name: str
    description: str
    created: datetime
    members: list[ProjectMemberOut]
    invitations: list[str] | None = Field(None, description="pending invitations (PI, admin)")
    requests: list[str] | None = Field(None, description="pending join requests (PI, admin)")

    @classmethod
    def of(cls, p: Project, *, privileged: bool) -> ProjectOut:
        members = [ProjectMemberOut(name=n, role=r.value) for n, r in sorted(p.memberships.items())]
        return cls(name=p.name, description=p.description, created=p.created, members=members,
                   invitations=sorted(p.invitations) if privileged else None,
                   requests=sorted(p.requests) if privileged else None)


class InvitationIn(_In):
    member: MemberName


class InvitationOut(BaseModel):
    project: str
    member: str
    status: Literal["invited", "joined"]


class JoinOut(BaseModel):
    status: Literal["joined", "requested"]


Days = Annotated[float, Field(gt=0, le=36_500, allow_inf_nan=False)]


class SliceIn(_In):
    name: SliceName
    expires: UtcTime | None = None
    days: Days | None = None


class SliceRenewIn(_In):
    days: Days | None = None
    until: UtcTime | None = None
    max: bool = False

    @model_validator(mode="after")
    def _one(self) -> SliceRenewIn:
        if sum((self.days is not None, self.until is not None, self.max)) != 1:
            raise ValueError("give exactly one of days, until or max: true")
        return self


class SliceMemberIn(_In):
    member: MemberName


class SliceOut(BaseModel):
    project: str
    name: str
    urn: str
    created: datetime
    expires: datetime
    creator: str
    members: list[str]

    @classmethod
    def of(cls, s: Slice) -> SliceOut:
        return cls(project=s.project, name=s.name, urn=str(s.urn), created=s.created,
                   expires=s.expires, creator=s.creator, members=sorted(s.members))


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    operation: str
    object: str
    client_ip: str | None
    detail: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        assert e.id is not None
        return cls(id=e.id, at=e.at, actor=e.actor, operation=e.operation, object=e.target,
                   client_ip=e.client_ip, detail=e.detail)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page_of(page: Page[object], items: list[T]) -> PageOut[T]:
    return PageOut[T](items=items, total=page.total, limit=page.limit, offset=page.offset)
