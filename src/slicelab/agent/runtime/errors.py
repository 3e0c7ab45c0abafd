"""Errors of the node agent's kernel layer, in slicelab's one exception tree.

    SlicelabError
    ├── KernelError        (500) the kernel or a system tool refused an operation
    └── Unavailable
        └── MissingPackage (503) a system package the agent needs is not installed
"""

from __future__ import annotations

from slicelab.domain.errors import SlicelabError, Unavailable

__all__ = ["KernelError", "MissingPackage"]


class KernelError(SlicelabError):
    """A kernel operation (netlink, mount, cgroup, nft, namespaces) failed."""

    title = "Kernel operation failed"


class MissingPackage(Unavailable):
    """A system package is missing; the message names it and how to install it."""

    title = "Missing system package"

    def __init__(self, package: str, *, needed_for: str) -> None:
        super().__init__(
            f"the system package {package!r} is needed for {needed_for}; "
            f"install it with: apt-get install {package}"
        )
        self.package = package
