"""Reading memory, CPU and process counts from /proc and the cgroup filesystem."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_PARENT = "hangar"  # the jail runtime's parent cgroup (runtimes/jail/cgroups.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def _status_kib(pid: int, key: str) -> int:
    """One `kB` field of /proc/<pid>/status (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    return _status_kib(pid, "VmRSS") * 1024


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int:
    """The parent pid (0 when gone)."""
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process."""
    try:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0.0


def all_pids() -> list[int]:
    """Every process on the host."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def in_sandbox(pid: int) -> bool:
    """Whether the process belongs to a jail sandbox's cgroup."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return f"/{SANDBOX_PARENT}/" in text


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` (children of children included)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        children.setdefault(parent_of(pid), []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_rss(pid: int) -> int:
    """RSS of a process plus its descendants that are not inside sandboxes."""
    return rss_bytes(pid) + sum(rss_bytes(c) for c in descendants(pid) if not in_sandbox(c))


def mem_available() -> int:
    """MemAvailable of the host."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def mem_total() -> int:
    """MemTotal of the host."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def pid_max() -> int:
    """The kernel's pid limit."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def _memory_dir(sandbox_id: str) -> Path:
    """The sandbox's memory cgroup: v1's memory hierarchy, or the unified one."""
    v1 = CGROUP_ROOT / "memory" / SANDBOX_PARENT / sandbox_id
    return v1 if v1.is_dir() else CGROUP_ROOT / SANDBOX_PARENT / sandbox_id


def sandbox_memory(sandbox_id: str) -> dict[str, int]:
    """Bytes charged to a sandbox's cgroup: total, anonymous and page cache."""
    path = _memory_dir(sandbox_id)
    out = {"charged": 0, "anon": 0, "file": 0}
    with contextlib.suppress(OSError, ValueError):
        current = path / "memory.current"
        usage = current if current.exists() else path / "memory.usage_in_bytes"
        out["charged"] = int(usage.read_text())
        for line in (path / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key in ("rss", "anon"):
                out["anon"] = int(value)
            elif key in ("cache", "file"):
                out["file"] = int(value)
    return out


def sandbox_pids(sandbox_id: str) -> list[int]:
    """Host pids of every process in a sandbox."""
    for path in (
        CGROUP_ROOT / "freezer" / SANDBOX_PARENT / sandbox_id / "cgroup.procs",
        CGROUP_ROOT / SANDBOX_PARENT / sandbox_id / "cgroup.procs",
    ):
        with contextlib.suppress(OSError, ValueError):
            return [int(x) for x in path.read_text().split()]
    return []


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    uname = os.uname()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_total() / 1024**3, 1),
        "kernel": uname.release,
        "cgroup": "v2" if (CGROUP_ROOT / "cgroup.controllers").exists() else "v1",
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
