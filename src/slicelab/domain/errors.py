"""The one exception tree of slicelab.

Every error slicelab raises on purpose is a subclass of :class:`SlicelabError`.
Adapters translate them at the edges: the REST API to ``application/problem+json``
with the HTTP status named here, the GENI AM API to its result codes, and the CLI
to one line on stderr with a non-zero exit code.

    SlicelabError                      (500) something slicelab did not expect
    ├── InvalidInput                   (422) a value breaks a rule; names the field
    │   ├── InvalidURN                 (422) not a GENI URN, or breaks the name rules
    │   ├── InvalidName                (422) a project, slice or member name breaks the rules
    │   ├── InvalidKey                 (422) an SSH public key that is malformed or too weak
    │   ├── InvalidResources           (422) a negative or malformed resource vector
    │   ├── InvalidTopology            (422) a topology or RSpec that cannot be used
    │   └── PolicyViolation            (422) within the rules of form, outside those of policy
    ├── AuthenticationFailed           (401) no credentials, or wrong, expired or revoked ones
    ├── PermissionDenied               (403) authenticated, but not allowed to do this
    ├── NotFound                       (404) no such object (or not visible to the caller)
    ├── Conflict                       (409) the object exists already, or is in the way
    │   ├── IllegalTransition          (409) a state machine refused a move
    │   └── InsufficientResources      (409) nothing can satisfy the request; says why
    ├── PayloadTooLarge                (413) a body over the limit
    └── Unavailable                    (503) a dependency (database, node) is not reachable
        └── CommandTimedOut            (504) a node did not answer a relayed command in time
                                             (slicelab.api.agent.slices)

Packages outside the domain add leaves to this tree, never new roots; each documents its
own leaves at the top of its module:

    InvalidTopology   ← rspec.errors.InvalidRSpec ← UnsafeXML, NotOffered
    InsufficientResources ← domain.placement.PlacementFailed, images.errors.CacheFull
    AuthenticationFailed  ← identity.nodekey.NodeAuthenticationFailed
                            (why: forged, stale, replayed or unknown)
    SlicelabError     ← images.errors.IntegrityError, agent.runtime.errors.KernelError
    Unavailable       ← agent.runtime.errors.MissingPackage, api.agent.slices.CommandTimedOut

An error may carry structured *extension members* for APIs (:meth:`SlicelabError.extensions`,
for example a placement's ``diagnosis``); the REST API adds them to its problem document.

Raise errors, never return them; ``except Exception`` belongs only at process edges.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "IllegalTransition",
    "InsufficientResources",
    "InvalidInput",
    "InvalidKey",
    "InvalidName",
    "InvalidResources",
    "InvalidTopology",
    "InvalidURN",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyViolation",
    "SlicelabError",
    "Unavailable",
]


class SlicelabError(Exception):
    """Base of every error slicelab raises on purpose.

    ``field`` names the input the error is about (``"name"``, ``"body.keys[0]"``),
    when there is one, so that a client can point at it.
    """

    status: int = 500
    title: str = "Internal error"

    def __init_subclass__(cls, *, status: int | None = None, title: str | None = None) -> None:
        """``class NotFound(SlicelabError, status=404, title="Not found")`` sets both."""
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if title is not None:
            cls.title = title

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message

    def extensions(self) -> dict[str, object]:
        """Structured members for a problem document beside ``detail`` (JSON values)."""
        return {}


class InvalidInput(SlicelabError, status=422, title="Invalid input"): ...


class InvalidURN(InvalidInput, title="Invalid URN"): ...


class InvalidName(InvalidInput, title="Invalid name"): ...


class InvalidKey(InvalidInput, title="Invalid SSH key"): ...


class InvalidResources(InvalidInput, title="Invalid resources"): ...


class InvalidTopology(InvalidInput, title="Invalid topology"): ...


class PolicyViolation(InvalidInput, title="Policy violation"): ...


class AuthenticationFailed(SlicelabError, status=401, title="Authentication failed"): ...


class PermissionDenied(SlicelabError, status=403, title="Permission denied"): ...


class NotFound(SlicelabError, status=404, title="Not found"): ...


class Conflict(SlicelabError, status=409, title="Conflict"): ...


class IllegalTransition(Conflict, title="Illegal state transition"): ...


class InsufficientResources(Conflict, title="Insufficient resources"): ...


class PayloadTooLarge(SlicelabError, status=413, title="Payload too large"): ...


class Unavailable(SlicelabError, status=503, title="Service unavailable"): ...
