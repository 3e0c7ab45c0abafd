"""The agent's own files under its state directory, each written atomically.

    <state_dir>/node.key        the node key, base64, mode 0600
    <state_dir>/node.json       node id, name and URN from enrollment
    <state_dir>/desired.json    the last desired state document received
    <state_dir>/progress.json   what the agent has done that the kernel does not show:
                                restart_seq applied per sliver, commands run and their
                                results not yet acknowledged by the server

Every write goes to a temporary file in the same directory, is fsynced, renamed over the
target and the directory fsynced, so a ``kill -9`` leaves the old or the new file, whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicelab.domain.errors import InvalidInput
from slicelab.identity.nodekey import decode_key, encode_key

__all__ = ["AgentFiles", "NodeIdentity", "Progress", "atomic_write"]


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node is at its aggregate, and the key it signs with."""

    node_id: str
    node_name: str
    node_urn: str
    key: bytes = field(repr=False)


@dataclass
class Progress:
    """Agent bookkeeping that must survive a crash (see the module docstring).

    ``commands`` maps a command id to its result, or to None while it runs: a command
    found running after a restart is not run again (at most once) but reported failed.
    """

    restart_seq: dict[str, int] = field(default_factory=dict)
    commands: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)


class AgentFiles:
    """Reads and writes the files of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)

    @property
    def images(self) -> Path:
        return self.root / "images"

    def identity(self) -> NodeIdentity | None:
        key_file, info_file = self.root / "node.key", self.root / "node.json"
        if not (key_file.exists() and info_file.exists()):
            return None
        info = json.loads(info_file.read_text(encoding="utf-8"))
        key = decode_key(key_file.read_text(encoding="ascii"))
        return NodeIdentity(info["node_id"], info["node_name"], info["node_urn"], key)

    def save_identity(self, identity: NodeIdentity) -> None:
        atomic_write(self.root / "node.key", encode_key(identity.key).encode(), mode=0o600)
        info = {"node_id": identity.node_id, "node_name": identity.node_name,
                "node_urn": identity.node_urn}
        atomic_write(self.root / "node.json", _dump(info))

    def desired(self) -> dict[str, Any] | None:
        return _load(self.root / "desired.json")

    def save_desired(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc.get("generation"), int):
            raise InvalidInput("desired state has no integer generation", field="generation")
        atomic_write(self.root / "desired.json", _dump(doc))

    def progress(self) -> Progress:
        data = _load(self.root / "progress.json") or {}
        return Progress(restart_seq=dict(data.get("restart_seq", {})),
                        commands=dict(data.get("commands", {})),
                        posted=list(data.get("posted", [])))

    def save_progress(self, progress: Progress) -> None:
        data = {"restart_seq": progress.restart_seq, "commands": progress.commands,
                "posted": progress.posted}
        atomic_write(self.root / "progress.json", _dump(data))


def _dump(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None
