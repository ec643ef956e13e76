"""Quota arithmetic, shared by every face."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hangar.core.errors import Forbidden

# How each resource is named in refusals.
_LABELS = {
    "vcpu": "vCPUs",
    "memory_mib": "memory (MiB)",
    "disk_gib": "disk (GiB)",
    "snapshot_count": "snapshots",
}


@dataclass(frozen=True)
class QuotaValues:
    """An amount of each limited resource."""

    vcpu: int = 0
    memory_mib: int = 0
    disk_gib: int = 0
    snapshot_count: int = 0


@dataclass(frozen=True)
class QuotaReport:
    """A team's limits and what it uses now."""

    limits: QuotaValues
    usage: QuotaValues


class QuotaExceeded(Forbidden):
    """A request would take a team past one of its limits."""

    code = "quota_exceeded"


def excess(limits: QuotaValues, usage: QuotaValues, requested: QuotaValues) -> str | None:
    """Why `requested` on top of `usage` breaks `limits` (first resource found), else None."""
    for f in fields(QuotaValues):
        asked = getattr(requested, f.name)
        if asked <= 0:
            continue
        limit, used = getattr(limits, f.name), getattr(usage, f.name)
        if used + asked > limit:
            remaining = max(limit - used, 0)
            return (
                f"quota exceeded for {_LABELS[f.name]}: requested {asked}, "
                f"{remaining} of {limit} remaining"
            )
    return None
