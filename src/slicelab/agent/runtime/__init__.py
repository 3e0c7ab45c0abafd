"""The sliver runtime: containers, their cgroups and root filesystems, behind NodeRuntime.

``from slicelab.agent.runtime import NodeRuntime`` (imported lazily, so that the network
modules can use :mod:`slicelab.agent.runtime.errors` without an import cycle).
"""

from __future__ import annotations

from typing import Any

__all__ = ["NodeRuntime"]


def __getattr__(name: str) -> Any:
    if name == "NodeRuntime":
        from slicelab.agent.runtime.node import NodeRuntime

        return NodeRuntime
    raise AttributeError(name)
