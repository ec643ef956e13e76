"""What a sandbox reads in `/proc/cpuinfo` and `/proc/meminfo`: its own size, not the host's.

bubblewrap binds these generated files read-only over the sandbox's procfs entries. They are
written once at start: `meminfo` shows the memory limit as total and as free (the kernel keeps
no per-cgroup meminfo; the live figure is the cgroup's, reported by the agent's usage).
"""

from __future__ import annotations

from pathlib import Path


def cpuinfo(vcpus: int, host: Path = Path("/proc/cpuinfo")) -> str:
    """`vcpus` processor blocks taken from the host's (cycled if it has fewer), renumbered."""
    try:
        blocks = [b for b in host.read_text().split("\n\n") if b.strip()]
    except OSError:
        blocks = []
    if not blocks:
        blocks = ["processor\t: 0"]
    out = []
    for n in range(vcpus):
        lines = blocks[n % len(blocks)].splitlines()
        fixed = [
            f"processor\t: {n}" if line.startswith("processor") else line
            for line in lines
            if not line.startswith(("physical id", "core id", "apicid", "initial apicid"))
        ]
        out.append("\n".join(fixed))
    return "\n\n".join(out) + "\n\n"


def meminfo(memory_mb: int) -> str:
    """The fields tools read (free, psutil, top), sized to the sandbox's memory limit."""
    total = memory_mb * 1024
    fields = {
        "MemTotal": total,
        "MemFree": total,
        "MemAvailable": total,
        "Buffers": 0,
        "Cached": 0,
        "SwapCached": 0,
        "Active": 0,
        "Inactive": 0,
        "SwapTotal": 0,
        "SwapFree": 0,
        "Dirty": 0,
        "Shmem": 0,
        "Slab": 0,
        "SReclaimable": 0,
        "SUnreclaim": 0,
    }
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in fields.items())
