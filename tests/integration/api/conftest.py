"""Fixtures for the REST API tests: the app on each database, a client, an admin token."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from slicelab.api.app import create_app
from slicelab.cli import session
from slicelab.domain.members import Member, PlatformRole
from slicelab.services.tokens import issue
from slicelab.settings import Settings
from slicelab.store.tables import metadata
from slicelab.store.uow import UnitOfWorkFactory

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def make_admin(uow_factory: UnitOfWorkFactory, name: str = "root") -> str:
    """Store an admin member directly and return a token for it."""
    with uow_factory() as uow:
        member = uow.members.add(
            Member(
                name=name,
                email=f"{name}@example.org",
                created=datetime.now(UTC),
                can_lead=True,
                roles=frozenset({PlatformRole.ADMIN}),
            )
        )
        _token, secret = issue(uow, member, name="test", days=1)
        uow.commit()
    return secret


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows each table holds: compare before and after a refused request."""
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in metadata.tables.items()
        }


API = "/api/v1"
TEST_URL = "http://testserver"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """Small helpers over a test client: ``api.member("alice")`` returns its auth headers."""

    def __init__(self, client: TestClient, admin: dict[str, str], engine: Engine) -> None:
        self.client, self.admin, self.engine = client, admin, engine

    def member(self, name: str, **extra: object) -> dict[str, str]:
        r = self.client.post(
            f"{API}/members",
            headers=self.admin,
            json={"name": name, "email": f"{name}@example.org", **extra},
        )
        assert r.status_code == 201, r.text
        assert r.json()["member"]["name"] == name
        return bearer(r.json()["token"])

    def counts(self) -> dict[str, int]:
        return row_counts(self.engine)


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="sqlite://", authority="test.slicelab", run_migrations=False)


@pytest.fixture
def app(
    uow_factory: UnitOfWorkFactory,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FastAPI:
    """The app, keeping its data (images, chunks) under the test's own directory."""
    monkeypatch.setenv("SLICELAB_DATA_DIR", str(tmp_path / "data"))
    return create_app(settings, uow_factory=uow_factory)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin(uow_factory: UnitOfWorkFactory) -> dict[str, str]:
    """Authorization headers of an admin."""
    return {"Authorization": f"Bearer {make_admin(uow_factory)}"}


@pytest.fixture
def api(client: TestClient, admin: dict[str, str], engine: Engine) -> Api:
    return Api(client, admin, engine)


@pytest.fixture
def cli_login(
    client: TestClient, admin: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The command line signed in as the admin, its requests sent to the test app."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv(session.ENV_URL, TEST_URL)
    monkeypatch.setenv(session.ENV_TOKEN, admin["Authorization"].removeprefix("Bearer "))
    with session.use_transport(client._transport):
        yield
