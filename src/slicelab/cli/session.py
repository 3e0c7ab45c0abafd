"""Where the command line finds its server and token, and the SDK client it builds from them.

``slicelab login`` saves ``{url, token}`` to ``$XDG_CONFIG_HOME/slicelab/config.json``
(default ``~/.config/slicelab/config.json``), readable by its owner only. The environment
variables ``SLICELAB_URL`` and ``SLICELAB_TOKEN`` override what the file says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from slicelab.domain.errors import AuthenticationFailed, InvalidInput
from slicelab.sdk import Client

__all__ = [
    "ENV_TOKEN",
    "ENV_URL",
    "Login",
    "config_file",
    "connect",
    "load_login",
    "save_login",
    "use_transport",
]

ENV_URL = "SLICELAB_URL"
ENV_TOKEN = "SLICELAB_TOKEN"
_transport: httpx.BaseTransport | None = None


@dataclass(frozen=True, slots=True)
class Login:
    url: str | None
    token: str | None


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "slicelab" / "config.json"


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}; run 'slicelab login' again") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} is not a slicelab configuration; run 'slicelab login' again")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def load_login() -> Login:
    """The saved login, with the environment variables taking precedence."""
    saved = _read_file(config_file())
    url = os.environ.get(ENV_URL) or saved.get("url")
    token = os.environ.get(ENV_TOKEN) or saved.get("token")
    return Login(url=url, token=token)


def save_login(login: Login) -> Path:
    """Write ``login`` to the configuration file with mode 0600; return its path."""
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump({"url": login.url, "token": login.token}, out, indent=2)
        out.write("\n")
    return path


def connect(login: Login | None = None) -> Client:
    """An SDK client for ``login`` (default: the saved one); raises if there is none."""
    login = login or load_login()
    if not login.url or not login.token:
        raise AuthenticationFailed(
            "not logged in: run 'slicelab login --url URL --token TOKEN' "
            f"or set {ENV_URL} and {ENV_TOKEN}"
        )
    return Client(login.url, login.token, transport=_transport)


@contextmanager
def use_transport(transport: httpx.BaseTransport) -> Iterator[None]:
    """Send every request of the command line through ``transport`` (for tests)."""
    global _transport
    previous, _transport = _transport, transport
    try:
        yield
    finally:
        _transport = previous
