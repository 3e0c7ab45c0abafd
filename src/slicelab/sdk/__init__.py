"""The slicelab Python SDK: :class:`Client` and the objects its methods return."""

from slicelab.domain.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    SlicelabError,
    Unavailable,
)

from .client import Client
from .models import (
    ApiKey,
    ApiToken,
    JoinResult,
    Member,
    NewMember,
    Project,
    ProjectMember,
    Slice,
    SliceMember,
)
from .slices import SliceHandle

__all__ = [
    "ApiKey",
    "ApiToken",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "InvalidInput",
    "JoinResult",
    "Member",
    "NewMember",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Project",
    "ProjectMember",
    "Slice",
    "SliceHandle",
    "SliceMember",
    "SlicelabError",
    "Unavailable",
]
