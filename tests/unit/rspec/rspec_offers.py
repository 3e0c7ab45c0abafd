"""Offers and paths shared by the RSpec tests (imported by name; not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

from slicelab.rspec import ImageOffer, Offer

SHARED = Path(os.environ["SLICELAB_SHARED"], "rspec")
if not SHARED.exists():  # fall back to a copy next to the repository
    SHARED = Path(__file__).resolve().parents[4] / "shared" / "rspec"

AGG = "urn:publicid:IDN+pgeni.gpolab.bbn.com+authority+cm"
UBUNTU = ImageOffer("ubuntu-22.04", aliases=("UBUNTU1004-STD", "UBUNTU10-STD",
                                             "UBUNTU14-64-STD", "ubuntu-12.04"))


def lab_offer(*, exclusive: bool = True, aliases: tuple[str, ...] = ()) -> Offer:
    """Containers for every common sliver type name, whole nodes, one Ubuntu image."""
    base = Offer.containers(aggregate_urn=AGG, images=[UBUNTU, ImageOffer("debian-12")],
                            exclusive=exclusive)
    return Offer(aggregate_urn=AGG, sliver_types=base.sliver_types, images=base.images,
                 exclusive=exclusive, aliases=aliases)
