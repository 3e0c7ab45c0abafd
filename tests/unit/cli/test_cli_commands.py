"""The command line against an in-memory API: output, JSON, config file, errors, exit codes."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_fake_api import FakeApi
from typer.testing import CliRunner

from slicelab.cli import session
from slicelab.cli.main import app

runner = CliRunner()


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(session.ENV_URL, raising=False)
    monkeypatch.delenv(session.ENV_TOKEN, raising=False)
    monkeypatch.delenv("SLICELAB_DEBUG", raising=False)
    fake = FakeApi()
    with session.use_transport(httpx.MockTransport(fake)):
        yield fake


@pytest.fixture
def logged_in(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    monkeypatch.setenv(session.ENV_URL, "http://slicelab.test")
    monkeypatch.setenv(session.ENV_TOKEN, "admintok")
    return api


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, *, expected: str, exit_code: int = 1) -> None:
    assert code == exit_code
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err
    assert "Traceback" not in err


def test_login_checks_the_token_and_saves_it_private(api: FakeApi, tmp_path: Path) -> None:
    code, out, err = run("login", "--url", "http://slicelab.test/", "--token", "admintok")
    assert code == 0, err
    assert "logged in to http://slicelab.test as admin" in out
    path = tmp_path / "config" / "slicelab" / "config.json"
    assert json.loads(path.read_text()) == {"url": "http://slicelab.test", "token": "admintok"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, out, _ = run("whoami", "--json")
    assert code == 0 and json.loads(out)["name"] == "admin"


def test_login_with_a_bad_token_saves_nothing(api: FakeApi, tmp_path: Path) -> None:
    code, out, err = run("login", "--url", "http://slicelab.test", "--token", "wrong")
    assert_one_line_error(code, err, expected="error: token unknown, expired or revoked")
    assert out == ""
    assert not (tmp_path / "config" / "slicelab" / "config.json").exists()


def test_environment_overrides_the_saved_login(api: FakeApi,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("login", "--url", "http://slicelab.test", "--token", "admintok")[0] == 0
    monkeypatch.setenv(session.ENV_TOKEN, "revoked")
    code, _, err = run("whoami")
    assert_one_line_error(code, err, expected="expired or revoked")


def test_not_logged_in_says_how_to(api: FakeApi) -> None:
    code, _, err = run("slice", "list")
    assert_one_line_error(code, err, expected="run 'slicelab login --url URL --token TOKEN'")


def test_whoami_table_for_people(logged_in: FakeApi) -> None:
    code, out, _ = run("whoami")
    assert code == 0
    assert "admin@localhost" in out and "can lead projects" in out


def test_slice_list_json_is_plain_json(logged_in: FakeApi) -> None:
    logged_in.add_slice("wireless", "mesh1")
    code, out, err = run("slice", "list", "--json")
    assert code == 0 and err == ""
    [item] = json.loads(out)
    assert item["project"] == "wireless" and item["expires"] == "2030-01-08T00:00:00Z"


def test_slice_show_and_table(logged_in: FakeApi) -> None:
    logged_in.add_slice("wireless", "mesh1")
    code, out, _ = run("slice", "show", "wireless/mesh1")
    assert code == 0
    assert "urn:publicid:IDN+slicelab:wireless+slice+mesh1" in out
    assert "2030-01-08 00:00 UTC" in out
    code, out, _ = run("slice", "list")
    assert "wireless/mesh1" in out


def test_renew_prints_what_was_granted(logged_in: FakeApi) -> None:
    logged_in.add_slice("wireless", "mesh1")
    code, out, err = run("slice", "renew", "wireless/mesh1", "--days", "3")
    assert code == 0, err
    assert "now expires 2030-01-11 00:00 UTC" in out and "3 days later than before" in out


def test_renew_past_the_limit_is_one_line(logged_in: FakeApi) -> None:
    logged_in.add_slice("wireless", "mesh1")
    code, _, err = run("slice", "renew", "wireless/mesh1", "--days", "400")
    assert_one_line_error(code, err, expected="error: days: at most 185 days from now allowed")


@pytest.mark.parametrize("args", [[], ["--days", "1", "--max"], ["--max", "--until", "2031-01-01"]])
def test_renew_needs_exactly_one_way(logged_in: FakeApi, args: list[str]) -> None:
    code, _, err = run("slice", "renew", "wireless/mesh1", *args)
    assert_one_line_error(code, err, expected="exactly one of --days, --until or --max",
                          exit_code=2)
    assert logged_in.requests == []


def test_bad_until_is_one_line(logged_in: FakeApi) -> None:
    code, _, err = run("slice", "renew", "wireless/mesh1", "--until", "next tuesday")
    assert_one_line_error(code, err, expected="not an ISO 8601 time")


def test_bad_slice_name_is_refused_before_any_request(logged_in: FakeApi) -> None:
    code, _, err = run("slice", "show", "wireless/Mesh_1")
    assert_one_line_error(code, err, expected="slice name 'Mesh_1' must be lowercase")
    assert logged_in.requests == []


def test_delete_without_yes_and_without_terminal_refuses(logged_in: FakeApi) -> None:
    logged_in.add_slice("wireless", "mesh1")
    code, _, err = run("slice", "delete", "wireless/mesh1")
    assert_one_line_error(code, err, expected="without --yes")
    assert "wireless/mesh1" in logged_in.slices
    code, out, _ = run("slice", "delete", "wireless/mesh1", "--yes")
    assert code == 0 and "deleted slice wireless/mesh1" in out
    assert logged_in.slices == {}


def test_key_add_from_file_and_stdin(logged_in: FakeApi, tmp_path: Path) -> None:
    key_file = tmp_path / "id.pub"
    key_file.write_text("ssh-ed25519 AAAAC3Nza me@laptop\n")
    code, out, err = run("key", "add", str(key_file), "--name", "laptop")
    assert code == 0, err
    assert "added ssh-ed25519 key 1" in out
    code, out, _ = run("key", "add", "-", input="ssh-ed25519 AAAAC3Nzb other\n")
    assert code == 0 and "key 2" in out
    code, out, _ = run("key", "list", "--json")
    assert [k["name"] for k in json.loads(out)] == ["laptop", None]


def test_key_add_errors(logged_in: FakeApi, tmp_path: Path) -> None:
    code, _, err = run("key", "add", str(tmp_path / "missing.pub"))
    assert_one_line_error(code, err, expected="cannot read key file")
    bad = tmp_path / "bad.pub"
    bad.write_text("hello\n")
    code, _, err = run("key", "add", str(bad))
    assert_one_line_error(code, err, expected="error: not an SSH public key")
    code, _, err = run("key", "add", "-", input="ssh-ed25519 AAAA a\nssh-ed25519 AAAB b\n")
    assert_one_line_error(code, err, expected="stdin has 2 non-empty lines")
    assert len(logged_in.keys) == 0


def test_server_error_keeps_its_detail(logged_in: FakeApi) -> None:
    code, _, err = run("member", "list")
    assert_one_line_error(code, err, expected="error: the database fell over")


def test_usage_errors_exit_2_with_one_line(logged_in: FakeApi) -> None:
    code, _, err = run("member", "add", "bob")
    assert_one_line_error(code, err, expected="Missing option '--email'", exit_code=2)
    assert "'slicelab member add --help'" in err
    code, _, err = run("frobnicate")
    assert_one_line_error(code, err, expected="No such command", exit_code=2)


def test_a_bug_prints_one_line_and_the_debug_hint(logged_in: FakeApi,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("slicelab.sdk.client.Client.whoami", broken)
    code, _, err = run("whoami")
    assert_one_line_error(code, err, expected="SLICELAB_DEBUG=1")
    monkeypatch.setenv("SLICELAB_DEBUG", "1")
    code, _, err = run("whoami")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_help_works_everywhere(api: FakeApi) -> None:
    for group in ["", "admin", "key", "token", "member", "project", "slice"]:
        code, out, _ = run(*([group] if group else []), "--help")
        assert code == 0 and "Usage" in out
