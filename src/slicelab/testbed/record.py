"""The testbed's state file: every object it makes, written down before it is made.

``<base_dir>/testbed.json`` lists objects in order of creation. :meth:`TestbedRecord.step`
appends the intent and saves (atomically) *before* the body makes the object, and saves
again with the object's ids (ifindex, pid and process start time) after, so that
``testbed down`` finds everything by id even after a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from slicelab.agent.state import atomic_write

__all__ = ["DEFAULT_BASE", "Item", "Kind", "TestbedRecord"]

DEFAULT_BASE = Path(os.environ.get("SLICELAB_TESTBED_DIR", "/var/lib/slicelab/testbed"))

Kind = Literal["netns", "bridge", "veth", "server", "agent"]


@dataclass
class Item:
    """One object: ``name`` says what it is; ``data`` holds its ids once it exists."""

    kind: Kind
    name: str
    data: dict[str, Any] = field(default_factory=dict)


class TestbedRecord:
    """The objects of one testbed and its settings (server URL, subnet, hosts)."""

    __test__ = False

    def __init__(self, path: Path, *, info: dict[str, Any] | None = None,
                 items: list[Item] | None = None) -> None:
        self.path = path
        self.info: dict[str, Any] = info or {}
        self.items: list[Item] = items or []

    @classmethod
    def load(cls, path: Path) -> TestbedRecord | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [Item(i["kind"], i["name"], i.get("data", {})) for i in data["items"]]
        return cls(path, info=data.get("info", {}), items=items)

    def save(self) -> None:
        data = {"info": self.info, "items": [asdict(i) for i in self.items]}
        atomic_write(self.path, (json.dumps(data, indent=1) + "\n").encode())

    @contextmanager
    def step(self, kind: Kind, name: str, **data: Any) -> Iterator[Item]:
        item = Item(kind, name, dict(data))
        self.items.append(item)
        self.save()
        yield item
        self.save()

    def forget(self, item: Item) -> None:
        self.items.remove(item)
        self.save()

    def of_kind(self, kind: Kind) -> list[Item]:
        return [i for i in self.items if i.kind == kind]
