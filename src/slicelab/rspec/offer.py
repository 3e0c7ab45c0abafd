"""What this aggregate offers, as the request parser needs to know it.

An :class:`Offer` maps RSpec sliver type names (``default-vm``, ``emulab-xen``, ``m1.small``,
``raw-pc`` ...) to a kind of sliver slicelab can build (a container now, a VM later) with
default resources; lists the images by name, alias or URN; says whether exclusive whole nodes
are offered; and names this aggregate (its component manager URN and any aliases), so that
nodes bound to other aggregates can be recognised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from slicelab.domain.resources import Resources

__all__ = [
    "ForeignNodes",
    "ImageOffer",
    "Offer",
    "SliverKind",
    "SliverTypeOffer",
    "image_name_candidates",
]


class SliverKind(StrEnum):
    CONTAINER = "container"
    VM = "vm"


class ForeignNodes(StrEnum):
    """What to do with nodes bound to another aggregate's component manager."""

    IGNORE = "ignore"  # drop them (and links wholly among them) with a note
    REFUSE = "refuse"  # refuse the request naming the node


@dataclass(frozen=True, slots=True)
class SliverTypeOffer:
    """A sliver type name as RSpecs spell it, the kind it becomes, and its default size."""

    name: str
    kind: SliverKind = SliverKind.CONTAINER
    resources: Resources = field(default_factory=Resources)
    whole_node: bool = False  # raw-pc style: the sliver gets a physical node to itself


@dataclass(frozen=True, slots=True)
class ImageOffer:
    """An image by its canonical name, with other names and a URN it may be asked for by."""

    name: str
    aliases: tuple[str, ...] = ()
    urn: str | None = None

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class Offer:
    aggregate_urn: str
    sliver_types: tuple[SliverTypeOffer, ...] = ()
    images: tuple[ImageOffer, ...] = ()
    default_sliver_type: str = "default-vm"
    default_image: str | None = None
    exclusive: bool = False
    hardware_types: tuple[str, ...] = ()  # empty: any hardware_type is passed on to placement
    node_urns: tuple[str, ...] = ()  # empty: component_ids are checked later, by placement
    aliases: tuple[str, ...] = ()  # other component manager URNs that mean this aggregate
    foreign_nodes: ForeignNodes = ForeignNodes.IGNORE

    def is_ours(self, component_manager_id: str | None) -> bool:
        if component_manager_id is None:
            return True
        ours = {_norm_urn(u) for u in (self.aggregate_urn, *self.aliases)}
        return _norm_urn(component_manager_id) in ours

    def sliver_type(self, name: str) -> SliverTypeOffer | None:
        for offered in self.sliver_types:
            if offered.name.lower() == name.strip().lower():
                return offered
        return None

    def image(self, name: str) -> ImageOffer | None:
        """The offered image ``name`` means: exact name, URN, or the URN's last component."""
        for candidate in image_name_candidates(name):
            for image in self.images:
                if _image_matches(image, candidate):
                    return image
        return None

    def sliver_type_names(self) -> str:
        return ", ".join(t.name for t in self.sliver_types) or "(none)"

    def image_names(self) -> str:
        return ", ".join(i.name for i in self.images) or "(none)"

    @classmethod
    def containers(cls, *, aggregate_urn: str, images: Iterable[ImageOffer] = (),
                   default_image: str | None = None, exclusive: bool = False,
                   resources: Resources | None = None) -> Offer:
        """The usual container offer: the common VM sliver type names become containers."""
        size = resources or Resources.of(cores=1, memory_mib=1024, disk_gib=10)
        names = ("default-vm", "container", "emulab-xen", "emulab-openvz", "xen-vm",
                 "docker", "m1.small", "m1.smaller", "m1.medium", "m1.large")
        types = [SliverTypeOffer(n, SliverKind.CONTAINER, size) for n in names]
        if exclusive:
            types += [SliverTypeOffer(n, SliverKind.CONTAINER, size, whole_node=True)
                      for n in ("raw-pc", "raw")]
        return cls(aggregate_urn=aggregate_urn, sliver_types=tuple(types), images=tuple(images),
                   default_image=default_image, exclusive=exclusive)


_SPLIT = re.compile(r"[:/]+")


def image_name_candidates(name: str) -> list[str]:
    """``name`` itself, a URN's name part, and its last component (``UBUNTU10-STD``)."""
    text = name.strip()
    found = [text]
    if text.lower().startswith("urn:publicid:idn+") and text.count("+") >= 3:
        found.append(text.split("+", 3)[3])
    parts = [p for p in _SPLIT.split(found[-1]) if p]
    if len(parts) > 1 and parts[-1].isdigit():
        parts = parts[:-1]  # "emulab-ops/UBUNTU18-64-STD:0" names version 0
    if parts:
        found.append(parts[-1])
    return list(dict.fromkeys(found))


def _image_matches(image: ImageOffer, candidate: str) -> bool:
    if image.urn is not None and _norm_urn(image.urn) == _norm_urn(candidate):
        return True
    return candidate.lower() in {n.lower() for n in image.names()}


def _norm_urn(urn: str) -> str:
    return urn.strip().lower()
