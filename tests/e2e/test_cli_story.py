"""The whole command-line story against the real server, in this process.

A real slicelab server (uvicorn, SQLite in a temporary directory) listens on a free port of
127.0.0.1 in a thread; the ``slicelab`` command runs through typer's CliRunner. Every failure
must be one ``error: ...`` line on stderr, without a traceback, and exit code 1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from typer.testing import CliRunner

from slicelab.bootstrap import build_app, build_engine, init_admin
from slicelab.cli.main import app
from slicelab.cli.server import listen
from slicelab.services.tokens import issue
from slicelab.settings import Settings
from slicelab.store.uow import UnitOfWork

runner = CliRunner()


@dataclass
class LiveServer:
    url: str
    settings: Settings
    admin_token: str
    home: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("cli-story")
    settings = Settings.load(db=home / "slicelab.db")
    token = init_admin(settings=settings)
    server = uvicorn.Server(uvicorn.Config(build_app(settings), log_level="warning"))
    sock = listen("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_started(server)
        yield LiveServer(f"http://127.0.0.1:{sock.getsockname()[1]}", settings, token, home)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_started(server: uvicorn.Server) -> None:
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("slicelab server did not start")
        time.sleep(0.02)


@pytest.fixture
def cli(live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SLICELAB_URL", "SLICELAB_TOKEN", "SLICELAB_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return Cli(live)


class Cli:
    """Runs ``slicelab`` as the saved login, or as another member's token."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live

    def run(self, *args: str, token: str | None = None, input: str | None = None,
            ok: bool = True) -> tuple[int, str, str]:
        env = {"SLICELAB_URL": self.live.url, "SLICELAB_TOKEN": token} if token else {}
        result = runner.invoke(app, list(args), env=env, input=input)
        if ok:
            assert result.exit_code == 0, result.stderr
        return result.exit_code, result.stdout, result.stderr

    def json(self, *args: str, token: str | None = None) -> object:
        return json.loads(self.run(*args, "--json", token=token)[1])

    def fails(self, *args: str, expected: str, token: str | None = None,
              input: str | None = None) -> str:
        code, out, err = self.run(*args, token=token, input=input, ok=False)
        assert code == 1, (out, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err and "Traceback" not in out
        assert expected in err, err
        return err

    def login_admin(self) -> None:
        self.run("login", "--url", self.live.url, "--token", self.live.admin_token)

    def new_member(self, name: str, *flags: str) -> str:
        _, out, _ = self.run("member", "add", name, "--email", f"{name}@example.org", *flags)
        return out.splitlines()[1].strip()


def _ed25519_pub() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() + " me@laptop\n"


def _rsa_pub(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() + "\n"


def test_the_whole_story(cli: Cli, tmp_path: Path) -> None:
    cli.login_admin()
    me = cli.json("whoami")
    assert isinstance(me, dict) and me["name"] == "admin" and "admin" in me["roles"]
    alice = cli.new_member("alice", "--pi")
    bob = cli.new_member("bob")
    members = cli.json("member", "list")
    assert isinstance(members, list)
    assert {m["name"]: m["can_lead"] for m in members}.items() >= {("alice", True), ("bob", False)}

    key_file = tmp_path / "id_ed25519.pub"
    key_file.write_text(_ed25519_pub())
    _, out, _ = cli.run("key", "add", str(key_file), "--name", "laptop", token=alice)
    assert "added ssh-ed25519 key" in out
    keys = cli.json("key", "list", token=alice)
    assert isinstance(keys, list) and [k["name"] for k in keys] == ["laptop"]

    cli.run("project", "create", "wireless", "--description", "Mesh experiments", token=alice)
    cli.run("project", "invite", "wireless", "bob", token=alice)
    _, out, _ = cli.run("project", "join", "wireless", token=bob)
    assert "joined project wireless" in out
    project = cli.json("project", "show", "wireless", token=alice)
    assert isinstance(project, dict)
    assert {(m["name"], m["role"]) for m in project["members"]} == {("alice", "pi"),
                                                                    ("bob", "member")}

    _, out, _ = cli.run("slice", "create", "wireless/mesh1", "--days", "3", token=bob)
    assert "created slice wireless/mesh1" in out and "in 3 days" in out
    _, out, _ = cli.run("slice", "renew", "wireless/mesh1", "--days", "2", token=bob)
    assert "2 days later than before" in out
    listed = cli.json("slice", "list", "--project", "wireless", token=alice)
    assert isinstance(listed, list) and [s["name"] for s in listed] == ["mesh1"]
    expires = datetime.fromisoformat(listed[0]["expires"])
    assert timedelta(days=4, hours=23) < expires - datetime.now(UTC) <= timedelta(days=5)
    _, out, _ = cli.run("slice", "show", "wireless/mesh1", token=alice)
    assert "urn:publicid:IDN+" in out and "wireless+slice+mesh1" in out
    _, out, _ = cli.run("slice", "delete", "wireless/mesh1", "--yes", token=alice)
    assert "deleted slice wireless/mesh1" in out
    assert cli.json("slice", "list", "--project", "wireless", token=alice) == []
    cli.fails("slice", "show", "wireless/mesh1", token=alice, expected="mesh1")


def test_join_by_request_and_approval(cli: Cli) -> None:
    cli.login_admin()
    carol, dave = cli.new_member("carol", "--pi"), cli.new_member("dave")
    cli.run("project", "create", "optics", token=carol)
    _, out, _ = cli.run("project", "join", "optics", token=dave)
    assert "asked to join optics" in out
    shown = cli.json("project", "show", "optics", token=carol)
    assert isinstance(shown, dict) and shown["requests"] == ["dave"]
    cli.run("project", "approve", "optics", "dave", token=carol)
    shown = cli.json("project", "show", "optics", token=carol)
    assert isinstance(shown, dict) and "dave" in [m["name"] for m in shown["members"]]


def test_tokens_create_list_revoke(cli: Cli) -> None:
    cli.login_admin()
    erin = cli.new_member("erin")
    made = cli.json("token", "create", "ci", "--days", "5", token=erin)
    assert isinstance(made, dict) and made["token"]
    cli.run("whoami", token=made["token"])
    names = [t["name"] for t in cli.json("token", "list", token=erin)]  # type: ignore[union-attr]
    assert "ci" in names
    cli.run("token", "revoke", str(made["id"]), token=erin)
    cli.fails("whoami", token=made["token"], expected="revoked")


def test_errors_are_one_clear_line(cli: Cli, live: LiveServer, tmp_path: Path) -> None:
    cli.login_admin()
    frank, gina = cli.new_member("frank", "--pi"), cli.new_member("gina")
    cli.run("project", "create", "radio", token=frank)
    cli.run("slice", "create", "radio/exp1", token=frank)

    cli.fails("slice", "create", "radio/Exp_1", token=frank, expected="slice name 'Exp_1'")
    cli.fails("slice", "renew", "radio/exp1", "--days", "400", token=frank,
              expected="maximum of 185 days")
    cli.fails("slice", "create", "radio/exp2", token=gina, expected="not allowed")
    cli.fails("project", "invite", "radio", "gina", token=gina, expected="not allowed")
    cli.run("project", "invite", "radio", "gina", token=frank)
    cli.run("project", "join", "radio", token=gina)
    cli.fails("project", "invite", "radio", "frank", token=gina, expected="not allowed")
    cli.fails("slice", "create", "radio/exp1", token=frank, expected="exists already")
    cli.fails("key", "add", "-", input="ssh-ed25519 not-base64!\n", token=gina,
              expected="base64")
    cli.fails("key", "add", "-", input=_rsa_pub(1024), token=gina, expected="1024 bits")
    cli.fails("whoami", token=_expired_token(live, "gina"), expected="expired")


def test_acting_outside_ones_rights_is_refused(cli: Cli) -> None:
    cli.login_admin()
    hank, ivy = cli.new_member("hank", "--pi"), cli.new_member("ivy")
    cli.run("project", "create", "sensors", token=hank)
    cli.fails("slice", "create", "sensors/s1", token=ivy, expected="not allowed")
    cli.fails("member", "add", "jack", "--email", "j@example.org", token=ivy,
              expected="not allowed")
    cli.fails("project", "create", "mine", token=ivy, expected="not allowed")


def test_server_down_names_the_url(cli: Cli) -> None:
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    cli.fails("login", "--url", f"http://127.0.0.1:{port}", "--token", "x",
              expected=f"cannot reach slicelab at http://127.0.0.1:{port}")


def _expired_token(live: LiveServer, member: str) -> str:
    engine = build_engine(live.settings)
    try:
        with UnitOfWork(engine) as uow:
            past = datetime.now(UTC) - timedelta(days=3)
            _, secret = issue(uow, uow.members.get(member), name="old", days=1, now=past)
            uow.commit()
    finally:
        engine.dispose()
    return secret
