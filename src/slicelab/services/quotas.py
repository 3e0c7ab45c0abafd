"""Project quotas and site limits: read by anyone signed in, set by admins and operators.

They are enforced at allocation and renewal (:mod:`slicelab.services.leases`, with the rules
of :mod:`slicelab.domain.quotas`).
"""

from __future__ import annotations

from slicelab.domain.errors import InvalidInput
from slicelab.domain.quotas import ProjectQuota
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.store.leases import SitePolicy
from slicelab.store.uow import UnitOfWork

__all__ = ["get_quota", "get_site_policy", "set_quota", "set_site_policy"]

OP = Operation


def _non_negative(values: dict[str, float | int | None]) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise InvalidInput(f"{name} may not be negative", field=name)


def get_quota(uow: UnitOfWork, caller: Caller, project: str) -> ProjectQuota:
    authorize(OP.QUOTA_READ, caller)
    uow.projects.get(project)
    return uow.leases.quotas.get(project)


def set_quota(uow: UnitOfWork, caller: Caller, project: str, quota: ProjectQuota) -> ProjectQuota:
    authorize(OP.QUOTA_SET, caller)
    _non_negative({"cores": quota.cores, "memory_mib": quota.memory_mib,
                   "slivers": quota.slivers, "concurrent_leases": quota.concurrent_leases})
    for name, span in (("longest_lease", quota.longest_lease), ("book_ahead", quota.book_ahead)):
        if span is not None and span.total_seconds() <= 0:
            raise InvalidInput(f"{name} must be positive", field=name)
    uow.leases.quotas.put(project, quota)
    uow.commit()
    return quota


def get_site_policy(uow: UnitOfWork, caller: Caller, site: str) -> SitePolicy:
    authorize(OP.LIMITS_READ, caller)
    return uow.leases.site_limits.get(site)


def set_site_policy(uow: UnitOfWork, caller: Caller, site: str,
                    policy: SitePolicy) -> SitePolicy:
    authorize(OP.LIMITS_SET, caller)
    limits = policy.limits
    _non_negative({"slivers_per_slice": limits.slivers_per_slice,
                   "cores_per_sliver": limits.cores_per_sliver,
                   "memory_mib_per_sliver": limits.memory_mib_per_sliver})
    uow.leases.site_limits.put(site, policy)
    uow.commit()
    return policy
