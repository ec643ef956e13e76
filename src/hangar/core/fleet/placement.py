"""The placement rule: which host a new capsule goes to. Pure: no database, no agents."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hangar.core.errors import Unavailable
from hangar.core.hosts.models import HostStatus, HostType


@dataclass(frozen=True, slots=True)
class Capacity:
    """How much of a host's size capsules may reserve."""

    cpu_overcommit: float = 8.0
    memory_overcommit: float = 1.5
    reserve_vcpus: float = 0.0
    reserve_memory_mb: int = 512


@dataclass(frozen=True, slots=True)
class Candidate:
    """A host as placement sees it: its row, whether its agent is connected, what is used."""

    host_id: str
    type: str
    team_id: str | None
    status: str
    connected: bool
    cpu_cores: int | None
    memory_mb: int | None
    used_vcpus: int = 0
    used_memory_mb: int = 0
    # What its agent says the host lacks to run sandboxes ("" when healthy or unknown).
    missing: str = ""

    def free(self, capacity: Capacity) -> tuple[float, float]:
        """(vCPUs, MB) still free; unknown sizes count as zero."""
        cpus = (self.cpu_cores or 0) * capacity.cpu_overcommit - capacity.reserve_vcpus
        memory = (self.memory_mb or 0) * capacity.memory_overcommit - capacity.reserve_memory_mb
        return cpus - self.used_vcpus, memory - self.used_memory_mb

    def total(self, capacity: Capacity) -> tuple[float, float]:
        """(vCPUs, MB) capsules may reserve on this host in all."""
        free_cpus, free_memory = self.free(capacity)
        return free_cpus + self.used_vcpus, free_memory + self.used_memory_mb


@dataclass(frozen=True, slots=True)
class Request:
    """A capsule to place, and for whom."""

    team_id: str
    vcpus: int
    memory_mb: int
    byoc_only: bool = False  # the team is pinned to its own BYOC hosts


def allowed(c: Candidate, team_id: str) -> bool:
    """Regular hosts take every team; a BYOC host only its own team."""
    if c.type == HostType.BYOC:
        return c.team_id is not None and c.team_id == team_id
    return c.type == HostType.REGULAR


def reachable(c: Candidate) -> bool:
    """Online (not pending, draining, offline or unreachable) with its agent connected."""
    return c.status == HostStatus.ONLINE and c.connected


def accepting(c: Candidate) -> bool:
    """Reachable, and its agent has every program its runtime needs."""
    return reachable(c) and not c.missing


def unhealthy(candidates: list[Candidate], r: Request) -> Unavailable | None:
    """Why no host may take the capsule when the reachable ones lack programs, else None."""
    sick = [c for c in candidates if allowed(c, r.team_id) and reachable(c) and c.missing]
    if r.byoc_only:
        sick = [c for c in sick if c.type == HostType.BYOC]
    if not sick:
        return None
    why = "; ".join(f"host {c.host_id}: {c.missing}" for c in sick[:3])
    return Unavailable(f"no host can run capsules now ({why})", code="host_unhealthy")


def fits(c: Candidate, r: Request, capacity: Capacity) -> bool:
    """Whether the capsule's reservation fits in what the host has free."""
    free_cpus, free_memory = c.free(capacity)
    return r.vcpus <= free_cpus and r.memory_mb <= free_memory


def load(c: Candidate, r: Request, capacity: Capacity) -> tuple[float, float, str]:
    """Sort key, smaller is better: the larger share of the host used after placing."""
    free_cpus, free_memory = c.free(capacity)
    total_cpus, total_memory = c.total(capacity)
    used = max(
        1 - (free_cpus - r.vcpus) / total_cpus if total_cpus > 0 else 1.0,
        1 - (free_memory - r.memory_mb) / total_memory if total_memory > 0 else 1.0,
    )
    # Ties go to the host with more free memory, then a stable order by id.
    return used, -free_memory, c.host_id


def choose(candidates: Iterable[Candidate], r: Request, capacity: Capacity) -> Candidate:
    """The least-loaded host that may take the capsule; `Unavailable` says why there is none.

    The team's own BYOC hosts are preferred; a team pinned to them never uses regular hosts.
    Codes: `host_unavailable` when no host may take it at all, `host_unhealthy` when the only
    ones that might lack programs they need, `no_capacity` when some may but none has room.
    """
    candidates = list(candidates)
    usable = [c for c in candidates if allowed(c, r.team_id) and accepting(c)]
    own = [c for c in usable if c.type == HostType.BYOC]
    shared = [] if r.byoc_only else [c for c in usable if c.type == HostType.REGULAR]
    if not own and not shared:
        if (sick := unhealthy(candidates, r)) is not None:
            raise sick
        what = "none of the team's BYOC hosts is" if r.byoc_only else "no host is"
        raise Unavailable(f"{what} online to run capsules", code="host_unavailable")
    for tier in (own, shared):
        roomy = [c for c in tier if fits(c, r, capacity)]
        if roomy:
            return min(roomy, key=lambda c: load(c, r, capacity))
    raise Unavailable(
        f"no host has {r.vcpus} vCPU(s) and {r.memory_mb} MB free for this capsule",
        code="no_capacity",
    )


def check_host(c: Candidate | None, r: Request, capacity: Capacity) -> Candidate:
    """A capsule that must run on one host (its snapshot lives there): may it, now?"""
    if c is None or not allowed(c, r.team_id):
        raise Unavailable("the host of this template is gone", code="host_unavailable")
    if reachable(c) and c.missing:
        raise Unavailable(
            f"the host of this template cannot run capsules now: {c.missing}",
            code="host_unhealthy",
        )
    if not accepting(c):
        state = c.status if c.status != HostStatus.ONLINE else "not connected"
        raise Unavailable(
            f"the host of this template is {state}; try again later", code="host_unavailable"
        )
    if not fits(c, r, capacity):
        raise Unavailable(
            f"the host of this template has no room for {r.vcpus} vCPU(s) and {r.memory_mb} MB now",
            code="no_capacity",
        )
    return c
