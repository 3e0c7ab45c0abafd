"""Quotas and site limits: what applies, and the numbers in the message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.errors import PolicyViolation
from slicelab.domain.inventory import Host, Inventory, Site, SiteLimits
from slicelab.domain.placement import place
from slicelab.domain.quotas import Demand, Holdings, ProjectQuota, check, holdings
from slicelab.domain.resources import Resources
from slicelab.domain.topology import NodeRequest, Topology

NOW = datetime(2031, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
W = Window.of(NOW, 2 * H)


def demand(*cores: float, window: Window = W, site: str = "s1") -> Demand:
    return Demand("p", "p/s", window, tuple((site, Resources.of(cores=c, memory_mib=1024))
                                            for c in cores))


def test_cores_at_once() -> None:
    quota = ProjectQuota(cores=8)
    check(demand(2, 2), quota=quota, held=Holdings(cpu_milli=4000), now=NOW)
    with pytest.raises(PolicyViolation) as err:
        check(demand(4, 4), quota=quota, held=Holdings(cpu_milli=4000), now=NOW)
    assert str(err.value) == "project p may hold 8 cores at once; this request brings it to 12"
    assert err.value.field == "cores"


@pytest.mark.parametrize(("quota", "held", "message"), [
    (ProjectQuota(memory_mib=2048), Holdings(memory_mib=1024),
     "project p may hold 2048 MiB of memory at once; this request brings it to 3072"),
    (ProjectQuota(slivers=3), Holdings(slivers=2),
     "project p may hold 3 slivers at once; this request brings it to 4"),
    (ProjectQuota(concurrent_leases=2), Holdings(leases=2),
     "project p may hold 2 leases at once; this request brings it to 3"),
])
def test_amount_limits(quota: ProjectQuota, held: Holdings, message: str) -> None:
    with pytest.raises(PolicyViolation, match=message):
        check(demand(1, 1), quota=quota, held=held, now=NOW)


def test_longest_lease_and_book_ahead() -> None:
    quota = ProjectQuota(longest_lease=7 * D, book_ahead=14 * D)
    check(demand(1, window=Window.of(NOW + 14 * D, 7 * D)), quota=quota, held=Holdings(),
          now=NOW)
    with pytest.raises(PolicyViolation, match="at most 7 days; this one lasts 9 days"):
        check(demand(1, window=Window.of(NOW, 9 * D)), quota=quota, held=Holdings(), now=NOW)
    with pytest.raises(PolicyViolation,
                       match="book at most 14 days ahead; this lease starts in 20 days"):
        check(demand(1, window=Window.of(NOW + 20 * D, H)), quota=quota, held=Holdings(),
              now=NOW)


def test_site_limits() -> None:
    limits = {"s1": SiteLimits(slivers_per_slice=3, cores_per_sliver=4, longest_lease=4 * H,
                               book_ahead=D, memory_mib_per_sliver=512)}
    free = ProjectQuota()
    with pytest.raises(PolicyViolation,
                       match="site s1 allows 3 slivers per slice; this request brings "
                             "slice p/s to 4"):
        check(demand(1, 1), quota=free, held=Holdings(), now=NOW, sites=limits,
              slice_slivers_at_site={"s1": 2})
    with pytest.raises(PolicyViolation, match="at most 4 cores per sliver; one asks for 6"):
        check(demand(6), quota=free, held=Holdings(), now=NOW, sites=limits)
    with pytest.raises(PolicyViolation, match="leases of at most 4 hours; this one lasts 5 hours"):
        check(demand(1, window=Window.of(NOW, 5 * H)), quota=free, held=Holdings(), now=NOW,
              sites=limits)
    with pytest.raises(PolicyViolation, match="at most 1 day ahead; this lease starts in 2 days"):
        check(demand(1, window=Window.of(NOW + 2 * D, H)), quota=free, held=Holdings(),
              now=NOW, sites=limits)
    with pytest.raises(PolicyViolation, match="512 MiB per sliver; one asks for 1024"):
        check(demand(1), quota=free, held=Holdings(), now=NOW, sites=limits)
    check(demand(1, 1, site="s2"), quota=free, held=Holdings(), now=NOW, sites=limits)


def test_demand_of_a_placement_uses_site_limits_from_the_inventory() -> None:
    inv = Inventory([Host("h1", "pc1", "east", Resources.of(cores=16, memory_mib=1 << 16))],
                    [Site("east", limits=SiteLimits(slivers_per_slice=1))])
    topo = Topology(nodes=(NodeRequest("a", Resources.of(cores=1)),
                           NodeRequest("b", Resources.of(cores=1))))
    p = place(topo, inv, Calendar(inv), W, slice_id="p/s")
    d = Demand.of(p, project="p", inventory=inv)
    assert d.total.cpu_milli == 2000
    with pytest.raises(PolicyViolation, match="site east allows 1 slivers per slice"):
        check(d, quota=ProjectQuota(), held=Holdings(), now=NOW, sites=inv)


def test_holdings_is_the_peak_over_the_window() -> None:
    def b(lease: str, a: int, z: int, cores: int) -> Booking:
        return Booking(lease, "h1", "p/s", Window(NOW + a * H, NOW + z * H),
                       Resources.of(cores=cores, memory_mib=10))

    bookings = [b("l1", 0, 2, 2), b("l1", 0, 2, 1), b("l2", 2, 4, 4), b("l3", 1, 3, 1)]
    assert holdings(bookings, Window(NOW, NOW + 4 * H)) == Holdings(5000, 30, 3, 2)
    assert holdings(bookings, Window(NOW + 3 * H, NOW + 9 * H)) == Holdings(4000, 10, 1, 1)
    assert holdings([], W) == Holdings()


@given(st.lists(st.tuples(st.integers(0, 10), st.integers(1, 5), st.integers(1, 4),
                          st.integers(0, 3)), max_size=10),
       st.integers(0, 12), st.integers(1, 20))
def test_holdings_match_brute_force(spans: list[tuple[int, int, int, int]], first: int,
                                    hours: int) -> None:
    bs = [Booking(f"l{lease}", "h", "p/s", Window(NOW + a * H, NOW + (a + n) * H),
                  Resources.of(cores=c, memory_mib=7 * c + lease)) for a, n, c, lease in spans]
    got = holdings(bs, Window(NOW + first * H, NOW + (first + hours) * H))
    cpu = mem = slivers = leases = 0
    for hour in range(first, first + hours):
        live = [x for x in bs if x.window.start <= NOW + hour * H < x.window.end]
        cpu = max(cpu, sum(x.resources.cpu_milli for x in live))
        mem = max(mem, sum(x.resources.memory_mib for x in live))
        slivers = max(slivers, len(live))
        leases = max(leases, len({x.lease_id for x in live}))
    assert got == Holdings(cpu, mem, slivers, leases)
