"""The fast paths of the kernel layer: bulk removal, nft by handle, batched netlink."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.net import namespaces
from slicelab.agent.net.nat import Nft
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, LinkSpec, SliverSpec, SliverState

pytestmark = pytest.mark.privileged


def test_bulk_ensure_then_bulk_remove_then_rebuild(
        make_runtime: Callable[..., NodeRuntime], image: Path,
        sliver: Callable[..., SliverSpec]) -> None:
    runtime = make_runtime()
    runtime.ensure_link(LinkSpec(link_id="bl", vni=501, capacity_mbps=20))
    specs = [sliver(image, f"b{i}", port=26000 + 10 * i,
                    ifaces=(InterfaceSpec(link_id="bl", ifname="exp0",
                                          ipv4=f"10.56.0.{i}/24"),)) for i in (1, 2, 3)]
    built = runtime.ensure_slivers(specs)
    assert [s.state for s in built] == [SliverState.RUNNING] * 3
    assert [s.init_pid for s in runtime.ensure_slivers(specs)] == [s.init_pid for s in built]
    code, out, _ = runtime.exec("b1", ["ping", "-c", "1", "-W", "2", "10.56.0.3"], timeout=10)
    assert code == 0, out
    netns = [runtime.status(s.sliver_id).netns for s in specs]
    runtime.remove_slivers([s.sliver_id for s in specs])
    assert all(runtime.status(s.sliver_id).state is SliverState.ABSENT for s in specs)
    assert not any(namespaces.exists(str(n)) for n in netns)
    again = runtime.ensure_sliver(specs[0])  # same names again: nothing of the old is in the way
    assert again.state is SliverState.RUNNING and again.interfaces == ("exp0",)


def test_nft_table_that_exists_already_and_deletes_by_handle(
        make_runtime: Callable[..., NodeRuntime]) -> None:
    make_runtime()  # for the before/after check
    nft, table = Nft(), "slicelab_zbulk"
    try:
        first = nft.add_table(table)
        assert nft.add_table(table) == first  # a leftover table is adopted, not a KeyError
        rule = {"family": "ip", "table": table, "chain": "prerouting", "comment": "zc",
                "expr": [{"accept": None}]}
        handles = nft.add_rules([rule, rule])
        assert sorted(h for _, h in nft.rule_handles(table, "zc")) == sorted(handles)
        nft.delete_rules(table, [("prerouting", handles[0]), ("prerouting", 99999)])
        assert [h for _, h in nft.rule_handles(table, "zc")] == [handles[1]]
        nft.delete_rule(table, "prerouting", handles[0])  # gone already: fine
    finally:
        nft.delete_table(table, None)
    assert nft.list_table(table) is None
