"""FastVM's wire models, field for field as `fastvm-openapi.yaml` names them (camelCase)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

MachineType = Literal["c1m2", "c2m4", "c4m8", "c8m16"]
Mode = Literal["open", "restricted"]
VMStatus = Literal["provisioning", "running", "stopped", "deleting", "error"]
SnapshotStatus = Literal["creating", "ready", "error"]
Name = Annotated[str, Field(max_length=64)]
Port = Annotated[int, Field(ge=1, le=65535)]
# Bodies are validated from parsed JSON, where a UUID can only be a string: parse it from one.
Uuid = Annotated[uuid.UUID, Field(strict=False)]


class Wire(BaseModel):
    """Base of request bodies: JSON types as the spec says (no coercion), unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, alias_generator=to_camel)


class Out(BaseModel):
    """Base of responses, built by field name and sent with the spec's camelCase names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FirewallRule(Wire):
    """One ingress rule: a tcp/udp port range from IPv6 CIDRs (request)."""

    protocol: Literal["tcp", "udp"]
    port_start: Port
    port_end: Port | None = None
    source_cidrs: list[str] | None = None
    description: Annotated[str, Field(max_length=256)] | None = None


class FirewallPolicy(Wire):
    """A VM's whole IPv6 ingress policy (request; `ingress` omitted = no rules)."""

    mode: Mode
    ingress: list[FirewallRule] | None = None


class PatchVMFirewallRequest(Wire):
    """The fields of a VM's ingress policy to replace; absent ones are kept."""

    mode: Mode | None = None
    ingress: list[FirewallRule] | None = None


class CreateVMRequest(Wire):
    """A new VM: exactly one of a machine type or a snapshot to start from."""

    name: Name | None = None
    machine_type: MachineType | None = None
    snapshot_id: Uuid | None = None
    disk_gib: Annotated[int | None, Field(alias="diskGiB", ge=10)] = None
    firewall: FirewallPolicy | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CreateVMRequest:
        if (self.machine_type is None) == (self.snapshot_id is None):
            raise ValueError("exactly one of machineType and snapshotId is required")
        return self


class UpdateVMRequest(Wire):
    """A VM's new name."""

    name: Name


class UpdateSnapshotRequest(Wire):
    """A snapshot's new name."""

    name: Name


class CreateSnapshotRequest(Wire):
    """The VM to snapshot, and optionally the snapshot's name."""

    vm_id: Uuid
    name: Name | None = None


class ExecVMRequest(Wire):
    """A command (argv) to run to completion in a VM, with its timeout."""

    # Every field the contract lists (`command`, `timeoutSec`) is implemented, so nothing here
    # needs refusing; fields it does not list are ignored like on every FastVM body.

    command: Annotated[list[str], Field(min_length=1)]
    timeout_sec: Annotated[int, Field(ge=1)] | None = None


class FirewallRuleOut(Out):
    """One ingress rule as stored, normalised (portEnd and sourceCidrs filled in)."""

    protocol: str
    port_start: int
    port_end: int | None = None
    source_cidrs: list[str] | None = None
    description: str | None = None


class FirewallPolicyOut(Out):
    """A VM's or snapshot's ingress policy as stored."""

    mode: str
    ingress: list[FirewallRuleOut]


class VMInstance(Out):
    """A VM as the API shows it (a deleted one keeps `deletedAt`)."""

    id: str
    name: str
    org_id: str
    machine_name: str
    source_name: str | None = None
    firewall: FirewallPolicyOut | None = None
    cpu: int
    memory_mib: int = Field(alias="memoryMiB")
    disk_gib: int = Field(alias="diskGiB")
    public_ipv6: str | None = None
    status: VMStatus
    created_at: datetime
    deleted_at: datetime | None = None


class SnapshotObject(Out):
    """A snapshot of a VM's disk, with the firewall policy it carries."""

    id: str
    name: str
    org_id: str
    vm_id: str
    firewall: FirewallPolicyOut | None = None
    status: SnapshotStatus
    created_at: datetime


class DeleteResponse(Out):
    """The answer to a delete: what was deleted, and when."""

    id: str
    deleted: bool
    deleted_at: datetime | None = None


class ExecVMResponse(Out):
    """How a command ended and its (possibly truncated) output."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool
    duration_ms: int


class ConsoleTokenResponse(Out):
    """A single-use console token and the WebSocket path it opens."""

    token: str
    expires_in_sec: int
    websocket_path: str


class OrgQuotaValues(Out):
    """vCPUs, memory, disk and snapshot count: limits or usage."""

    vcpu: int
    memory_mib: int = Field(alias="memoryMiB")
    disk_gib: int = Field(alias="diskGiB")
    snapshot_count: int


class OrgQuotaUsage(Out):
    """An organization's limits and what it uses of them."""

    org_id: str
    limits: OrgQuotaValues
    usage: OrgQuotaValues
