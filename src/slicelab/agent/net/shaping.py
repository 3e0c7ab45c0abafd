"""Token-bucket parameters for a link capacity (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TbfParams", "tbf_params"]


@dataclass(frozen=True)
class TbfParams:
    rate_bps: int
    burst_bytes: int
    latency_ms: int


def tbf_params(capacity_mbps: float, *, mtu: int = 1500) -> TbfParams:
    """A tbf for ``capacity_mbps``: a token bucket at the capacity (L2 bytes).

    The bucket holds ~10 ms of traffic (at least 16 MTUs) so TCP keeps the link busy; the
    queue holds 50 ms.
    """
    rate_bps = int(capacity_mbps * 1_000_000)
    burst = max(rate_bps // 8 // 100, 16 * mtu)
    return TbfParams(rate_bps=rate_bps, burst_bytes=burst, latency_ms=50)
