"""Core objects to FastVM wire models, and FastVM wire input to core values."""

from __future__ import annotations

from hangar.core.capsules.machine_types import BASE_DISK_GB
from hangar.core.capsules.models import Capsule, CapsuleStatus, SnapshotStatus, Template
from hangar.core.capsules.service import ExecOutcome
from hangar.core.compute import firewall as fw
from hangar.faces.fastvm import schemas as f

# Core capsule statuses as FastVM names them; a destroyed VM is `stopped`.
_STATUS: dict[str, f.VMStatus] = {
    CapsuleStatus.PENDING: "provisioning",
    CapsuleStatus.STARTING: "provisioning",
    CapsuleStatus.RUNNING: "running",
    CapsuleStatus.PAUSED: "running",
    CapsuleStatus.STOPPED: "stopped",
    CapsuleStatus.MISSING: "error",
    CapsuleStatus.ERROR: "error",
}
CUSTOM_MACHINE = "custom"  # capsules another face started with free vCPU/memory numbers


def vm_name(c: Capsule) -> str:
    """The VM's name; capsules started without one are shown as `vm-<first 8 of the id>`."""
    return c.name or f"vm-{c.id[:8]}"


def policy(p: fw.FirewallPolicy) -> f.FirewallPolicyOut:
    """A core firewall policy on the wire."""
    return f.FirewallPolicyOut(
        mode=p.mode,
        ingress=[
            f.FirewallRuleOut(
                protocol=r.protocol,
                port_start=r.port_start,
                port_end=r.port_end,
                source_cidrs=list(r.source_cidrs) if r.source_cidrs is not None else None,
                description=r.description,
            )
            for r in p.ingress
        ],
    )


def stored_policy(text: str | None) -> f.FirewallPolicyOut:
    """A policy stored as JSON, or the default (`restricted`, no rules) when none is."""
    return policy(fw.from_json(text) if text else fw.DEFAULT_POLICY)


def rules(wire: list[f.FirewallRule] | None) -> tuple[fw.FirewallRule, ...] | None:
    """Wire rules as core rules (validated by the core)."""
    if wire is None:
        return None
    return tuple(
        fw.FirewallRule(
            protocol=r.protocol,
            port_start=r.port_start,
            port_end=r.port_end,
            source_cidrs=tuple(r.source_cidrs) if r.source_cidrs is not None else None,
            description=r.description,
        )
        for r in wire
    )


def core_policy(wire: f.FirewallPolicy | None) -> fw.FirewallPolicy | None:
    """A wire policy as a core one; `ingress` omitted means no rules."""
    if wire is None:
        return None
    return fw.FirewallPolicy(mode=wire.mode, ingress=rules(wire.ingress) or ())


def vm(c: Capsule) -> f.VMInstance:
    """A VMInstance."""
    return f.VMInstance(
        id=c.id,
        name=vm_name(c),
        org_id=c.team_id,
        machine_name=c.machine_type or CUSTOM_MACHINE,
        source_name=c.source_name or c.template,
        firewall=stored_policy(c.firewall),
        cpu=c.vcpus,
        memory_mib=c.memory_mb,
        # A capsule another face started without a disk size has no limit, and FastVM needs a
        # number (at least 10): the base stands in (README, FastVM). Others show what is recorded.
        disk_gib=c.disk_gb if c.disk_gb is not None else BASE_DISK_GB,
        public_ipv6=(c.ipv6 or None) if c.destroyed_at is None else None,  # released on delete
        status=_STATUS.get(c.status, "error"),
        created_at=c.created_at,
        deleted_at=c.destroyed_at,
    )


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def exec_response(out: ExecOutcome) -> f.ExecVMResponse:
    """An ExecVMResponse; output is UTF-8 with invalid bytes replaced (U+FFFD)."""
    return f.ExecVMResponse(
        exit_code=out.exit_code,
        stdout=_text(out.stdout),
        stderr=_text(out.stderr),
        timed_out=out.timed_out,
        stdout_truncated=out.stdout_truncated,
        stderr_truncated=out.stderr_truncated,
        duration_ms=max(out.duration_ms, 0),
    )


# Snapshots made before their source VM was recorded name no VM; the nil UUID stands in.
NO_VM = "00000000-0000-0000-0000-000000000000"
_SNAPSHOT_STATUS: dict[str, f.SnapshotStatus] = {
    SnapshotStatus.CREATING: "creating",
    SnapshotStatus.READY: "ready",
    SnapshotStatus.ERROR: "error",
}


def snapshot(t: Template) -> f.SnapshotObject:
    """A SnapshotObject."""
    return f.SnapshotObject(
        id=t.id,
        name=t.name,
        org_id=t.team_id,
        vm_id=t.source_capsule_id or NO_VM,
        firewall=stored_policy(t.firewall),
        status=_SNAPSHOT_STATUS.get(t.status, "error"),
        created_at=t.created_at,
    )
