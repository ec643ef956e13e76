"""Per-sandbox cgroups behind one small interface, for cgroup v1 and pure cgroup v2."""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CFS_PERIOD_US = 100_000
PARENT = "hangar"


class CgroupError(Exception):
    """A cgroup could not be created, configured or removed."""


@dataclass(frozen=True)
class Limits:
    """What a sandbox's cgroup enforces."""

    vcpus: int
    memory_mb: int
    pids_max: int


def _write(path: Path, value: str) -> None:
    """Write one cgroup control file (no truncation games: cgroupfs wants a single write)."""
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    """Read one cgroup control file."""
    return path.read_text().strip()


class Cgroups(abc.ABC):
    """Creates, limits, freezes and removes the cgroup(s) of sandboxes."""

    version: int

    def __init__(self, root: Path, parent: str = PARENT) -> None:
        self.root, self.parent = root, parent

    @abc.abstractmethod
    def paths(self, name: str) -> list[Path]:
        """Every cgroup directory of sandbox `name` (one per hierarchy)."""

    @abc.abstractmethod
    def create(self, name: str, limits: Limits) -> None:
        """Make the sandbox's cgroup(s) and apply its limits."""

    @abc.abstractmethod
    def set_frozen(self, name: str, frozen: bool) -> None:
        """Ask the kernel to freeze or thaw (does not wait)."""

    @abc.abstractmethod
    def frozen(self, name: str) -> bool:
        """Whether the cgroup is completely frozen right now."""

    @abc.abstractmethod
    def cpu_ns(self, name: str) -> int:
        """Cumulative CPU time of its processes."""

    @abc.abstractmethod
    def mem_bytes(self, name: str) -> int:
        """Memory currently charged to it."""

    @abc.abstractmethod
    def procs_file(self, name: str) -> Path:
        """A cgroup.procs file listing every process of the sandbox."""

    def join_files(self, name: str) -> list[Path]:
        """The cgroup.procs files a process writes its pid to, to join the sandbox."""
        return [p / "cgroup.procs" for p in self.paths(name)]

    def exists(self, name: str) -> bool:
        """Whether any of its cgroup directories is still there."""
        return any(p.is_dir() for p in self.paths(name))

    def pids(self, name: str) -> list[int]:
        """Host pids of every process in the sandbox."""
        try:
            return [int(line) for line in _read(self.procs_file(name)).split()]
        except FileNotFoundError:
            return []

    def freeze(self, name: str, timeout: float = 10.0) -> None:
        """Freeze and wait until every process is actually frozen."""
        self.set_frozen(name, True)
        deadline = time.monotonic() + timeout
        while not self.frozen(name):
            if time.monotonic() > deadline:
                self.set_frozen(name, False)
                raise CgroupError(f"cgroup {name} did not freeze within {timeout}s")
            time.sleep(0.01)

    def kill_all(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL every process (thawing first: frozen tasks cannot die) and wait for it."""
        if not self.exists(name):
            return
        with contextlib.suppress(OSError):
            self.set_frozen(name, False)
        deadline = time.monotonic() + timeout
        while pids := self.pids(name):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {pids} of {name} survived SIGKILL")
            time.sleep(0.01)

    def remove(self, name: str, timeout: float = 5.0) -> None:
        """Remove its cgroup directories (retrying while the last tasks finish exiting)."""
        for path in self.paths(name):
            deadline = time.monotonic() + timeout
            while path.is_dir():
                try:
                    path.rmdir()
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove {path}: {exc}") from exc
                    time.sleep(0.02)


class CgroupV1(Cgroups):
    """One directory per controller hierarchy (cpu, cpuacct, memory, pids, freezer)."""

    version = 1
    CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer")

    def _dir(self, controller: str) -> Path:
        """Mount point of a controller, whether mounted alone or co-mounted (cpu,cpuacct)."""
        path = self.root / controller
        if path.is_dir():
            return path
        for candidate in self.root.iterdir():
            if controller in candidate.name.split(","):
                return candidate
        raise CgroupError(f"cgroup v1 controller {controller} is not mounted under {self.root}")

    def _path(self, controller: str, name: str) -> Path:
        """The sandbox's directory in one hierarchy."""
        return self._dir(controller) / self.parent / name

    def paths(self, name: str) -> list[Path]:
        """One directory per distinct hierarchy (co-mounted controllers share one)."""
        seen: dict[Path, Path] = {}
        for controller in self.CONTROLLERS:
            path = self._path(controller, name)
            seen.setdefault(path.parent.resolve() / name, path)
        return list(seen.values())

    def create(self, name: str, limits: Limits) -> None:
        """Make one cgroup per hierarchy and write the limits."""
        for path in self.paths(name):
            path.mkdir(parents=True)
        cpu = self._path("cpu", name)
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(limits.vcpus * CFS_PERIOD_US))
        mem = self._path("memory", name)
        limit = str(limits.memory_mb * 1024 * 1024)
        _write(mem / "memory.limit_in_bytes", limit)
        if (mem / "memory.memsw.limit_in_bytes").exists():  # swap must not dodge the limit
            _write(mem / "memory.memsw.limit_in_bytes", limit)
        _write(self._path("pids", name) / "pids.max", str(limits.pids_max))

    def set_frozen(self, name: str, frozen: bool) -> None:
        """freezer.state FROZEN/THAWED."""
        _write(self._path("freezer", name) / "freezer.state", "FROZEN" if frozen else "THAWED")

    def frozen(self, name: str) -> bool:
        """FREEZING is not frozen yet."""
        return _read(self._path("freezer", name) / "freezer.state") == "FROZEN"

    def cpu_ns(self, name: str) -> int:
        """cpuacct.usage is already in nanoseconds."""
        return int(_read(self._path("cpuacct", name) / "cpuacct.usage"))

    def mem_bytes(self, name: str) -> int:
        """memory.usage_in_bytes."""
        return int(_read(self._path("memory", name) / "memory.usage_in_bytes"))

    def procs_file(self, name: str) -> Path:
        """The freezer hierarchy is as good as any: every process is in all of them."""
        return self._path("freezer", name) / "cgroup.procs"


class CgroupV2(Cgroups):
    """One directory in the unified hierarchy; controllers enabled via subtree_control."""

    version = 2
    CONTROLLERS = ("cpu", "memory", "pids")

    def paths(self, name: str) -> list[Path]:
        """A single directory."""
        return [self.root / self.parent / name]

    def _enable(self, directory: Path) -> None:
        """Delegate our controllers to the children of `directory`."""
        available = _read(directory / "cgroup.controllers").split()
        missing = [c for c in self.CONTROLLERS if c not in available]
        if missing:
            raise CgroupError(f"cgroup v2 controllers {missing} unavailable in {directory}")
        enabled = _read(directory / "cgroup.subtree_control").split()
        wanted = [f"+{c}" for c in self.CONTROLLERS if c not in enabled]
        if wanted:
            _write(directory / "cgroup.subtree_control", " ".join(wanted))

    def create(self, name: str, limits: Limits) -> None:
        """Make hangar/<name> with cpu.max, memory.max (no swap) and pids.max."""
        parent = self.root / self.parent
        self._enable(self.root)
        parent.mkdir(exist_ok=True)
        self._enable(parent)
        path = parent / name
        path.mkdir()
        _write(path / "cpu.max", f"{limits.vcpus * CFS_PERIOD_US} {CFS_PERIOD_US}")
        _write(path / "memory.max", str(limits.memory_mb * 1024 * 1024))
        if (path / "memory.swap.max").exists():
            _write(path / "memory.swap.max", "0")
        _write(path / "pids.max", str(limits.pids_max))

    def set_frozen(self, name: str, frozen: bool) -> None:
        """cgroup.freeze 1/0."""
        _write(self.paths(name)[0] / "cgroup.freeze", "1" if frozen else "0")

    def frozen(self, name: str) -> bool:
        """cgroup.events says `frozen 1` once every task has stopped."""
        events = _read(self.paths(name)[0] / "cgroup.events").splitlines()
        return "frozen 1" in events

    def cpu_ns(self, name: str) -> int:
        """cpu.stat usage_usec, in nanoseconds."""
        for line in _read(self.paths(name)[0] / "cpu.stat").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) * 1000
        return 0

    def mem_bytes(self, name: str) -> int:
        """memory.current."""
        return int(_read(self.paths(name)[0] / "memory.current"))

    def procs_file(self, name: str) -> Path:
        """cgroup.procs of the sandbox's directory."""
        return self.paths(name)[0] / "cgroup.procs"

    def kill_all(self, name: str, timeout: float = 10.0) -> None:
        """cgroup.kill when the kernel has it (5.14+), else signal each pid."""
        kill = self.paths(name)[0] / "cgroup.kill"
        if kill.exists():
            _write(kill, "1")
        super().kill_all(name, timeout)


def detect(root: Path = Path("/sys/fs/cgroup"), parent: str = PARENT) -> Cgroups:
    """Pure v2 when the unified hierarchy is mounted at `root`, else v1 (hybrid included)."""
    if (root / "cgroup.controllers").exists():
        return CgroupV2(root, parent)
    v1 = CgroupV1(root, parent)
    try:
        for controller in CgroupV1.CONTROLLERS:
            v1._dir(controller)
    except (CgroupError, OSError) as exc:
        raise CgroupError(f"no usable cgroup hierarchy under {root}: {exc}") from exc
    return v1
