"""The audit log: who changed what, when and from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .members import require_utc

__all__ = ["AuditEntry"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change: ``actor`` did ``operation`` to ``target`` at ``at`` from ``client_ip``."""

    actor: str
    operation: str
    target: str
    at: datetime
    client_ip: str | None = None
    detail: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        require_utc(self.at, field="at")
