"""`/v1/org/quotas`: the organization's limits and what it uses of them."""

from __future__ import annotations

from fastapi import APIRouter

from hangar.core.quotas.rules import QuotaValues
from hangar.core.quotas.service import QuotaService
from hangar.faces.fastvm import schemas as f
from hangar.faces.fastvm.deps import OrgDep
from hangar.web.deps import PlatformDep, SessionDep

router = APIRouter(prefix="/v1/org", tags=["Organization"])


def _values(v: QuotaValues) -> f.OrgQuotaValues:
    return f.OrgQuotaValues(
        vcpu=v.vcpu, memory_mib=v.memory_mib, disk_gib=v.disk_gib, snapshot_count=v.snapshot_count
    )


@router.get("/quotas", response_model=f.OrgQuotaUsage)
async def org_quotas(org: OrgDep, platform: PlatformDep, session: SessionDep) -> f.OrgQuotaUsage:
    """Limits on vCPUs, memory, disk and snapshots, with current usage."""
    report = await QuotaService(session, platform.settings.quotas).report(org)
    return f.OrgQuotaUsage(org_id=org, limits=_values(report.limits), usage=_values(report.usage))
