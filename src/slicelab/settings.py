"""Settings of a slicelab clearinghouse process, from arguments and the environment.

The database is, in order of precedence: the ``db`` argument (a file path or a SQLAlchemy URL),
``$SLICELAB_DATABASE_URL``, then SQLite at ``$XDG_DATA_HOME/slicelab/slicelab.db``
(``~/.local/share/slicelab/slicelab.db`` when ``XDG_DATA_HOME`` is unset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slicelab.domain.policy import ExpiryPolicy

__all__ = ["DATABASE_URL_ENV", "Settings", "default_database_path", "resolve_database_url"]

DATABASE_URL_ENV = "SLICELAB_DATABASE_URL"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str
    authority: str = "slicelab"
    expiry: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    token_days: int = 90
    max_body_bytes: int = 1 << 20
    run_migrations: bool = True

    @classmethod
    def load(cls, *, db: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None, **options: object) -> Settings:
        """Settings from ``db`` and the environment; ``options`` override single fields."""
        url = resolve_database_url(db, env=os.environ if env is None else env)
        return cls(database_url=url, **options)  # type: ignore[arg-type]


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
