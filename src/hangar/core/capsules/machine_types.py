"""FastVM-style machine types: named vCPU and memory sizes every face can offer."""

from __future__ import annotations

from dataclasses import dataclass

from hangar.core.errors import InvalidInput

# Every machine starts with this much writable disk; a larger size may be asked for.
BASE_DISK_GB = 10


@dataclass(frozen=True)
class MachineType:
    """A named size: vCPUs and memory in MiB."""

    name: str
    vcpus: int
    memory_mb: int


MACHINE_TYPES: dict[str, MachineType] = {
    t.name: t
    for t in (
        MachineType("c1m2", 1, 2048),
        MachineType("c2m4", 2, 4096),
        MachineType("c4m8", 4, 8192),
        MachineType("c8m16", 8, 16384),
    )
}


def machine_type(name: str) -> MachineType:
    """The machine type called `name`, else InvalidInput."""
    found = MACHINE_TYPES.get(name)
    if found is None:
        raise InvalidInput(
            f"unknown machine type {name!r}; expected one of {', '.join(MACHINE_TYPES)}"
        )
    return found
