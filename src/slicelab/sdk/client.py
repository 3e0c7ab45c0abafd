"""The slicelab Python SDK: one typed method per REST call.

    from slicelab.sdk import Client

    with Client("http://127.0.0.1:8470", token) as sl:
        print(sl.whoami().name)
        sl.create_project("wireless", description="Mesh experiments")
        s = sl.create_slice("wireless/mesh1", days=7)
        sl.renew_slice(s.ref, maximum=True)

Every error the server reports is raised as the matching exception of
:mod:`slicelab.domain.errors` with the server's detail; an unreachable server raises
:class:`~slicelab.domain.errors.Unavailable` naming the URL. Lists are fetched page by page
behind the scenes and returned whole.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from slicelab.domain.errors import InvalidInput
from slicelab.domain.names import MEMBER_NAME, PROJECT_NAME, check_name, split_slice_ref

from .connection import DEFAULT_TIMEOUT, Connection
from .models import (
    ApiKey,
    ApiToken,
    JoinResult,
    Member,
    NewMember,
    Project,
    Slice,
)
from .nodes import AggregateMethods
from .slices import SliceHandle

__all__ = ["Client"]


def _seg(value: str) -> str:
    """One path segment, escaped."""
    return quote(value, safe="")


def _slice_path(ref: str) -> str:
    project, name = split_slice_ref(ref)
    return f"/projects/{_seg(project)}/slices/{_seg(name)}"


def _project_path(name: str) -> str:
    return f"/projects/{_seg(check_name(PROJECT_NAME, name, field='project'))}"


class Client(AggregateMethods):
    """A connection to one slicelab server as one member (by API token)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._conn = Connection(url, token, transport=transport, timeout=timeout)

    @property
    def url(self) -> str:
        return self._conn.url

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- server and identity -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The server's health report (needs no token)."""
        body = self._conn.call("GET", "/health")
        return body if isinstance(body, dict) else {"status": body}

    def whoami(self) -> Member:
        return self._conn.get(Member, "/whoami")

    # -- members --------------------------------------------------------------------------

    def create_member(
        self, name: str, *, email: str, can_lead: bool = False, roles: tuple[str, ...] = ()
    ) -> NewMember:
        """Make a member (admins only); the result carries their first API token."""
        check_name(MEMBER_NAME, name)
        body = {"name": name, "email": email, "can_lead": can_lead, "roles": list(roles)}
        return self._conn.post(NewMember, "/members", json=body)

    def members(self) -> list[Member]:
        return list(self._conn.pages(Member, "/members"))

    def member(self, name: str) -> Member:
        return self._conn.get(Member, f"/members/{_seg(name)}")

    # -- SSH keys -------------------------------------------------------------------------

    def add_key(self, key: str, *, name: str | None = None) -> ApiKey:
        """Register an SSH public key (one line of ``authorized_keys``)."""
        body: dict[str, Any] = {"key": key.strip()}
        if name:
            body["name"] = name
        return self._conn.post(ApiKey, "/keys", json=body)

    def keys(self) -> list[ApiKey]:
        return list(self._conn.pages(ApiKey, "/keys"))

    def delete_key(self, key_id: str) -> None:
        self._conn.delete(f"/keys/{_seg(key_id)}")

    # -- API tokens -----------------------------------------------------------------------

    def create_token(self, name: str, *, expires_in_days: int | None = None) -> ApiToken:
        """A new token for the caller; its secret is in ``.token``, shown only this once."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._conn.post(ApiToken, "/tokens", json=body)

    def tokens(self) -> list[ApiToken]:
        return list(self._conn.pages(ApiToken, "/tokens"))

    def revoke_token(self, token_id: str) -> None:
        self._conn.delete(f"/tokens/{_seg(token_id)}")

    # -- projects -------------------------------------------------------------------------

    def create_project(self, name: str, *, description: str = "") -> Project:
        check_name(PROJECT_NAME, name)
        body = {"name": name, "description": description}
        return self._conn.post(Project, "/projects", json=body)

    def projects(self) -> list[Project]:
        return list(self._conn.pages(Project, "/projects"))

    def project(self, name: str) -> Project:
        return self._conn.get(Project, _project_path(name))

    def invite(self, project: str, member: str) -> None:
        """Invite ``member`` into ``project`` (its PI only); they then ``join``."""
        self._conn.call("POST", f"{_project_path(project)}/invitations", json={"member": member})

    def join(self, project: str) -> JoinResult:
        """Join (when invited) or ask to join (then a PI approves)."""
        return self._conn.post(JoinResult, f"{_project_path(project)}/join")

    def approve(self, project: str, member: str) -> None:
        self._conn.call("POST", f"{_project_path(project)}/requests/{_seg(member)}/approve",
                        json={})

    # -- slices ---------------------------------------------------------------------------

    def create_slice(
        self, ref: str, *, days: int | None = None, expires: datetime | None = None
    ) -> Slice:
        """Make slice ``project/name``; it lasts ``days`` or until ``expires``."""
        project, name = split_slice_ref(ref)
        body = {"name": name, **_lifetime(days=days, until=expires, key="expires")}
        return self._conn.post(Slice, f"{_project_path(project)}/slices", json=body)

    def slices(self, *, project: str | None = None) -> list[Slice]:
        return list(self._conn.pages(Slice, "/slices", params={"project": project}))

    def get_slice(self, ref: str) -> Slice:
        return self._conn.get(Slice, _slice_path(ref))

    def renew_slice(
        self,
        ref: str,
        *,
        days: int | None = None,
        until: datetime | None = None,
        maximum: bool = False,
    ) -> Slice:
        """Extend a slice by ``days``, to ``until``, or as far as policy allows (``maximum``)."""
        chosen = sum(x is not None for x in (days, until)) + int(maximum)
        if chosen != 1:
            raise InvalidInput("renew by exactly one of days, until or maximum", field="renew")
        body = {"max": True} if maximum else _lifetime(days=days, until=until, key="until")
        return self._conn.post(Slice, f"{_slice_path(ref)}/renew", json=body)

    def delete_slice(self, ref: str) -> None:
        self._conn.delete(_slice_path(ref))

    def add_slice_member(self, ref: str, member: str) -> None:
        self._conn.call("POST", f"{_slice_path(ref)}/members", json={"member": member})

    def slice(self, ref: str) -> SliceHandle:
        """A handle on slice ``project/name`` to work with it (no request is sent yet)."""
        split_slice_ref(ref)
        return SliceHandle(self, ref)


def _lifetime(*, days: int | None, until: datetime | None, key: str) -> dict[str, Any]:
    if days is not None and until is not None:
        raise InvalidInput("give either a number of days or an end time, not both", field="days")
    if days is not None:
        if days < 1:
            raise InvalidInput(f"days must be at least 1, got {days}", field="days")
        return {"days": days}
    if until is not None:
        if until.tzinfo is None:
            raise InvalidInput("an end time needs a time zone (e.g. 2030-01-01T00:00Z)", field=key)
        return {key: until.isoformat()}
    return {}
