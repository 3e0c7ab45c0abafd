"""The slice expiry policy: how long a slice lives unless renewed, and how far it may be renewed.

By default a new slice expires after :attr:`ExpiryPolicy.default_days` and may be renewed to at
most :attr:`ExpiryPolicy.max_days` from now. Every function returns the expiry it grants and
raises :class:`PolicyViolation` naming the limit when asked for more, or for a time in the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import InvalidInput, PolicyViolation
from .members import require_utc

__all__ = ["ExpiryPolicy"]


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    default_days: float = 7
    max_days: float = 185

    def __post_init__(self) -> None:
        if not 0 < self.default_days <= self.max_days:
            raise InvalidInput("the default slice lifetime must be positive and at most the "
                               "maximum", field="default_days")

    def maximum(self, now: datetime) -> datetime:
        return require_utc(now, field="now") + timedelta(days=self.max_days)

    def initial(self, now: datetime, *, expires: datetime | None = None,
                days: float | None = None) -> datetime:
        """The expiry of a new slice: ``expires``, or ``days`` from now, or the default."""
        if expires is not None and days is not None:
            raise InvalidInput("give either expires or days, not both", field="expires")
        if expires is not None:
            return self.check(expires, now, field="expires")
        return self.check(now + self._days(days, self.default_days), now, field="days")

    def renew(self, current: datetime, now: datetime, *, days: float | None = None,
              until: datetime | None = None, to_max: bool = False) -> datetime:
        """The expiry granted by a renewal: ``days`` past the current expiry, ``until``, or max."""
        asked = sum(x is not None and x is not False for x in (days, until, to_max))
        if asked != 1:
            raise InvalidInput("renew with exactly one of days, until or max", field="days")
        if to_max:
            return self.maximum(now)
        if until is not None:
            return self.check(until, now, field="until")
        base = max(current, now)
        return self.check(base + self._days(days, 0), now, field="days")

    def check(self, expires: datetime, now: datetime, *, field: str) -> datetime:
        """Return ``expires`` if it lies in ``(now, now + max_days]``; raise naming the limit."""
        require_utc(expires, field=field)
        if expires <= now:
            raise PolicyViolation(f"{field}: expiry {expires.isoformat()} is in the past",
                                  field=field)
        limit = self.maximum(now)
        if expires > limit:
            raise PolicyViolation(
                f"{field}: expiry {expires.isoformat()} is past the maximum of "
                f"{self.max_days:g} days from now ({limit.isoformat()})", field=field)
        return expires

    @staticmethod
    def _days(days: float | None, default: float) -> timedelta:
        value = default if days is None else days
        if value <= 0:
            raise PolicyViolation(f"days must be positive, got {value:g}", field="days")
        return timedelta(days=value)
