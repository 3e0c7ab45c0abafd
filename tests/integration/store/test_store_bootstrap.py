"""Choosing the database, and making the first admin."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicelab.bootstrap import build_engine, init_admin
from slicelab.domain.errors import Conflict
from slicelab.services.tokens import authenticate
from slicelab.settings import Settings, resolve_database_url
from slicelab.store.uow import UnitOfWork


def test_database_precedence(tmp_path: Path) -> None:
    env = {"SLICELAB_DATABASE_URL": "postgresql+psycopg://db/x", "XDG_DATA_HOME": "/data"}
    assert resolve_database_url(tmp_path / "a.db", env=env) == f"sqlite:///{tmp_path}/a.db"
    assert resolve_database_url("sqlite:///other.db", env=env) == "sqlite:///other.db"
    assert resolve_database_url(None, env=env) == "postgresql+psycopg://db/x"
    assert resolve_database_url(None, env={"XDG_DATA_HOME": "/data"}) == \
        "sqlite:////data/slicelab/slicelab.db"
    assert resolve_database_url(None, env={}).endswith("/.local/share/slicelab/slicelab.db")


def test_init_admin_once_then_only_new_tokens(tmp_path: Path) -> None:
    db = tmp_path / "ch.db"
    first = init_admin(db, name="boss", email="boss@example.org")
    with pytest.raises(Conflict, match="admin exists already"):
        init_admin(db, name="boss")
    second = init_admin(db, name="boss", new_token=True)
    assert first != second
    engine = build_engine(Settings.load(db=db))
    try:
        with UnitOfWork(engine) as uow:
            for secret in (first, second):
                member = authenticate(uow, secret).member
                assert member is not None and member.is_admin and member.name == "boss"
    finally:
        engine.dispose()
