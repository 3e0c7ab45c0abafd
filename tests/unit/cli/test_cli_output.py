"""Human-readable times and the configuration file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slicelab.cli import output, session
from slicelab.domain.errors import AuthenticationFailed, InvalidInput

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=6, hours=5), "in 6 days"),
        (timedelta(days=1), "in 1 day"),
        (timedelta(days=3, seconds=-2), "in 3 days"),
        (timedelta(days=2, hours=11), "in 2 days"),
        (timedelta(hours=-3, minutes=-10), "3 hours ago"),
        (timedelta(minutes=2), "in 2 minutes"),
        (timedelta(seconds=20), "now"),
        (timedelta(days=400), "in 1 year"),
        (timedelta(days=-65), "2 months ago"),
    ],
)
def test_relative(delta: timedelta, text: str) -> None:
    assert output.relative(NOW + delta, now=NOW) == text


def test_when_shows_utc_and_relative() -> None:
    local = datetime(2030, 1, 7, 14, 30, tzinfo=UTC).astimezone()
    assert output.when(local, now=NOW) == "2030-01-07 14:30 UTC (in 6 days)"
    assert output.when(None) == "-"


def test_login_round_trip_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(session.ENV_URL, raising=False)
    monkeypatch.delenv(session.ENV_TOKEN, raising=False)
    assert session.load_login() == session.Login(url=None, token=None)
    path = session.save_login(session.Login(url="http://a:1", token="t"))
    assert path == tmp_path / "slicelab" / "config.json"
    assert session.load_login() == session.Login(url="http://a:1", token="t")
    monkeypatch.setenv(session.ENV_URL, "http://b:2")
    assert session.load_login() == session.Login(url="http://b:2", token="t")


def test_default_config_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert session.config_file() == tmp_path / ".config" / "slicelab" / "config.json"


def test_broken_config_file_says_what_to_do(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "slicelab").mkdir()
    (tmp_path / "slicelab" / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="run 'slicelab login' again"):
        session.load_login()


def test_connect_without_login_fails() -> None:
    with pytest.raises(AuthenticationFailed, match="not logged in"):
        session.connect(session.Login(url="http://a:1", token=None))
