"""The machine spec: one value object saying what any face asks a host to run."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from hangar.core.compute.firewall import FirewallPolicy, validated
from hangar.core.errors import InvalidInput
from hangar.core.hosts import rules as host_rules

# GPU model names as NVML reports them ("NVIDIA H200") or a catalog's short form ("h200").
_GPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
MAX_GPUS_PER_MACHINE = 16  # the most PCIe devices one host sensibly exposes to a machine


class SourceKind(enum.StrEnum):
    """Where a machine's root filesystem comes from."""

    TEMPLATE = "template"  # a base template the host agent builds (`minimal`)
    IMAGE = "image"  # a catalog image a face maps onto a template (Warpdrive's images)
    SNAPSHOT = "snapshot"  # a team's snapshot, by id


@dataclass(frozen=True)
class GpuRequest:
    """`count` GPUs of one model."""

    model: str
    count: int = 1

    def __post_init__(self) -> None:
        if not _GPU_MODEL.fullmatch(self.model):
            raise InvalidInput(f"GPU model {self.model[:64]!r} is not a model name")
        if isinstance(self.count, bool) or not 1 <= self.count <= MAX_GPUS_PER_MACHINE:
            raise InvalidInput(f"GPU count must be 1 to {MAX_GPUS_PER_MACHINE}")


@dataclass(frozen=True)
class Resources:
    """Size of a machine: vCPUs, memory, writable disk (None: the default) and GPUs."""

    vcpus: int
    memory_mib: int
    disk_gib: int | None = None
    gpus: tuple[GpuRequest, ...] = ()

    def __post_init__(self) -> None:
        for name, value in (("vcpus", self.vcpus), ("memory_mib", self.memory_mib)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer")
        if self.disk_gib is not None and (isinstance(self.disk_gib, bool) or self.disk_gib < 1):
            raise InvalidInput("disk_gib must be a positive integer")
        models = [g.model.casefold() for g in self.gpus]
        if len(set(models)) != len(models):
            raise InvalidInput("each GPU model may be asked for once")
        if self.gpu_count > MAX_GPUS_PER_MACHINE:
            raise InvalidInput(f"a machine has at most {MAX_GPUS_PER_MACHINE} GPUs")

    @property
    def gpu_count(self) -> int:
        """GPUs of every model together."""
        return sum(g.count for g in self.gpus)

    def gpus_by_model(self) -> dict[str, int]:
        """GPU counts keyed by model, as the reservation ledger counts them."""
        return {g.model: g.count for g in self.gpus}


@dataclass(frozen=True)
class Source:
    """What the root filesystem is made from."""

    kind: SourceKind
    name: str

    def __post_init__(self) -> None:
        if not _SOURCE_NAME.fullmatch(self.name):
            raise InvalidInput(f"source name {self.name[:128]!r} is not valid")


@dataclass(frozen=True)
class Network:
    """Loopback only when disabled; else an IPv6 address behind `firewall`."""

    enabled: bool = False
    firewall: FirewallPolicy | None = None

    def __post_init__(self) -> None:
        if self.firewall is not None and not self.enabled:
            raise InvalidInput("a firewall needs networking enabled")
        if self.firewall is not None:
            validated(self.firewall)  # an InvalidInput names what is wrong

    @property
    def policy(self) -> FirewallPolicy | None:
        """The policy in force: the default (restricted, no rules) when networked without one."""
        return (self.firewall or FirewallPolicy()) if self.enabled else None


@dataclass(frozen=True)
class MachineSpec:
    """Everything needed to place and start one machine; `region` None means anywhere."""

    resources: Resources
    source: Source
    network: Network = field(default_factory=Network)
    region: str | None = None

    def __post_init__(self) -> None:
        if self.region is not None:
            host_rules.region(self.region)
