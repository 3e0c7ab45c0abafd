"""The inventory snapshot's look-ups."""

from __future__ import annotations

from slicelab.domain.inventory import Host, Inventory, Site
from slicelab.domain.resources import Resources


def test_sites_not_listed_get_the_default_policy_every_time() -> None:
    inv = Inventory([Host("h1", "pc1", "s1", Resources(1000, 1024))],
                    [Site("s2", one_sliver_per_slice_per_node=True)])
    assert inv.site("s1") == Site("s1")
    assert inv.site("s1") is inv.site("s1")  # kept, not made again per look-up
    assert inv.site("s2").one_sliver_per_slice_per_node
    assert list(inv.sites) == ["s2"]  # asking does not list a site
