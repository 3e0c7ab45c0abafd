"""Settings of a slicelab clearinghouse process, from arguments and the environment.

The database is, in order of precedence: the ``db`` argument (a file path or a SQLAlchemy URL),
``$SLICELAB_DATABASE_URL``, then SQLite at ``$XDG_DATA_HOME/slicelab/slicelab.db``
(``~/.local/share/slicelab/slicelab.db`` when ``XDG_DATA_HOME`` is unset).

The lease sweep runs every ``sweep_interval`` seconds (0 turns it off);
``$SLICELAB_SWEEP_INTERVAL`` overrides it in :meth:`Settings.load`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slicelab.domain.errors import InvalidInput
from slicelab.domain.policy import ExpiryPolicy

__all__ = [
    "DATABASE_URL_ENV",
    "SWEEP_INTERVAL_ENV",
    "Settings",
    "default_database_path",
    "resolve_database_url",
    "sweep_interval_from",
]

DATABASE_URL_ENV = "SLICELAB_DATABASE_URL"
SWEEP_INTERVAL_ENV = "SLICELAB_SWEEP_INTERVAL"
DEFAULT_SWEEP_INTERVAL = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str
    authority: str = "slicelab"
    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    token_days: int = 90
    max_body_bytes: int = 1 << 20
    run_migrations: bool = True
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL  # seconds between lease sweeps; 0: none

    @classmethod
    def load(cls, *, db: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None, **options: object) -> Settings:
        """Settings from ``db`` and the environment; ``options`` override single fields."""
        env = os.environ if env is None else env
        url = resolve_database_url(db, env=env)
        interval = sweep_interval_from(env)
        if interval is not None and "sweep_interval" not in options:
            options["sweep_interval"] = interval
        return cls(database_url=url, **options)  # type: ignore[arg-type]


def sweep_interval_from(env: Mapping[str, str]) -> float | None:
    """``$SLICELAB_SWEEP_INTERVAL`` in seconds, or None when unset."""
    text = env.get(SWEEP_INTERVAL_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{SWEEP_INTERVAL_ENV} must be a number of seconds, not {text!r}",
                           field=SWEEP_INTERVAL_ENV) from None
    if value < 0:
        raise InvalidInput(f"{SWEEP_INTERVAL_ENV} may not be negative", field=SWEEP_INTERVAL_ENV)
    return value


def default_database_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "slicelab" / "slicelab.db"


def resolve_database_url(db: str | os.PathLike[str] | None, *, env: Mapping[str, str]) -> str:
    """A SQLAlchemy URL: ``db`` (path or URL) wins over the environment, then the default."""
    if db is not None:
        text = os.fspath(db)
        return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"
    if env.get(DATABASE_URL_ENV):
        return env[DATABASE_URL_ENV]
    return f"sqlite:///{default_database_path(env)}"
