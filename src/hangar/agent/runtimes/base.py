"""The runtime interface every isolation backend implements.

A runtime manages sandboxes on one host. It knows nothing of teams, templates' names or
the control plane: the agent hands it a fully resolved `SandboxSpec` and asks it to act.
All paths given to file operations are absolute paths *inside* the sandbox.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class RuntimeError_(Exception):  # noqa: N801 - reads as "runtime error", not the builtin
    """Base class for runtime failures; `code` is stable and machine-readable."""

    code = "runtime_error"


class SandboxNotFound(RuntimeError_):
    """The runtime has no sandbox with that id."""

    code = "sandbox_not_found"


class InvalidState(RuntimeError_):
    """The sandbox is not in a state that allows the operation (e.g. exec while paused)."""

    code = "invalid_state"


class PathNotFound(RuntimeError_):
    """A file operation named a path that does not exist inside the sandbox."""

    code = "path_not_found"


class PathError(RuntimeError_):
    """A file operation failed inside the sandbox (not a directory, permission, exists...)."""

    code = "path_error"


class TooLarge(RuntimeError_):
    """A file write exceeded the size limit it was given."""

    code = "too_large"


class InvalidRequest(RuntimeError_):
    """The caller asked for something malformed (a bad firewall rule, an address...)."""

    code = "invalid_request"


class StartFailed(RuntimeError_):
    """The sandbox could not be started; the runtime has already cleaned up what it made."""

    code = "start_failed"


class SandboxState(enum.StrEnum):
    """What the runtime observes about a sandbox."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"  # its init died; the agent reports it and destroys it


@dataclass(frozen=True)
class PortRule:
    """Allow inbound IPv6 traffic to `port_start..port_end` from any of `source_cidrs`."""

    protocol: str  # "tcp" | "udp"
    port_start: int
    port_end: int
    source_cidrs: tuple[str, ...] = ("::/0",)


@dataclass(frozen=True)
class Firewall:
    """Inbound policy: `open` allows all; `restricted` only `ingress` and essential ICMPv6."""

    mode: str = "restricted"  # "open" | "restricted"
    ingress: tuple[PortRule, ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    """A routed IPv6 address (chosen by the agent) behind an inbound firewall."""

    ipv6: str
    firewall: Firewall = field(default_factory=Firewall)


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a runtime needs to start one sandbox."""

    sandbox_id: str
    rootfs: Path  # read-only root filesystem of the template (lower layer)
    vcpus: int
    memory_mb: int
    pids_max: int = 1024
    egress: bool = False
    hostname: str = "capsule"
    env: Mapping[str, str] = field(default_factory=dict)
    disk_mb: int | None = None  # size of the writable layer; None: bounded by the host only
    network: NetworkConfig | None = None  # None: loopback only
    nested_userns: bool = False  # allow user namespaces inside (a template's opt-in)
    # Host device nodes the sandbox gets (its GPUs' and their driver's), and no others.
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox as the runtime sees it now."""

    sandbox_id: str
    state: SandboxState
    init_pid: int | None = None
    guest_ip: str = ""
    ipv6: str = ""  # its routed address when it was created with a NetworkConfig


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a run-to-completion command."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass(frozen=True)
class ProcessEvent:
    """One event from a streamed process: kind is 'stdout', 'stderr' or 'exit'."""

    kind: str
    data: bytes = b""
    exit_code: int | None = None


class FileType(enum.StrEnum):
    """Kinds of directory entries reported to clients."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True)
class FileEntry:
    """One directory entry (lstat-based: symlinks are reported, not followed)."""

    name: str
    path: str
    type: FileType
    size: int
    mode: int  # st_mode & 0o7777
    permissions: str  # e.g. "-rwxr-xr-x"
    owner: str
    group: str
    modified_at: int  # unix seconds
    symlink_target: str | None = None


@dataclass(frozen=True)
class Usage:
    """Cumulative and instantaneous resource usage of one sandbox."""

    cpu_ns: int  # cumulative CPU time of all its processes
    mem_bytes: int  # current memory charged to it
    disk_bytes: int  # bytes allocated by its writable layer


class Process(abc.ABC):
    """A streamed process inside a sandbox (pipes, no terminal)."""

    pid: int

    @abc.abstractmethod
    def events(self) -> AsyncIterator[ProcessEvent]:
        """Output as it arrives, ending with exactly one 'exit' event."""

    @abc.abstractmethod
    async def write_stdin(self, data: bytes) -> None:
        """Feed the process's stdin."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """Kill the process (and its process group); idempotent."""


class Pty(abc.ABC):
    """A process attached to a pseudo-terminal inside a sandbox."""

    pid: int

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Next chunk of terminal output; b"" once the terminal is closed."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send keystrokes."""

    @abc.abstractmethod
    async def resize(self, cols: int, rows: int) -> None:
        """Change the terminal size (delivers SIGWINCH)."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """Kill the process; idempotent."""

    @abc.abstractmethod
    async def wait(self) -> int:
        """Exit code once the process has ended."""


ALL_CAPABILITIES = frozenset(
    {"lifecycle", "exec", "pty", "files", "pause", "snapshots", "firewall", "devices"}
)


class Lifecycle(abc.ABC):
    """Starting, finding and ending sandboxes (`lifecycle`)."""

    @abc.abstractmethod
    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Start a sandbox; on failure clean up everything and raise StartFailed."""

    @abc.abstractmethod
    async def recover(self) -> list[SandboxInfo]:
        """Sandboxes that survived an agent restart, rebuilt from the runtime's state on disk."""

    @abc.abstractmethod
    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """Current state of one sandbox."""

    @abc.abstractmethod
    async def destroy(self, sandbox_id: str) -> None:
        """Kill everything and remove its writable state; idempotent."""

    @abc.abstractmethod
    async def usage(self, sandbox_id: str) -> Usage:
        """Resource usage now."""


class Execution(abc.ABC):
    """Processes in a running sandbox: to completion, streamed, on a terminal (`exec`, `pty`)."""

    @abc.abstractmethod
    async def exec(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
        output_limit: int = 16 * 1024 * 1024,
    ) -> ExecResult:
        """Run to completion; the process group is killed when `timeout` passes."""

    @abc.abstractmethod
    async def spawn(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Process:
        """Start a streamed process."""

    @abc.abstractmethod
    async def open_pty(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Pty:
        """Start a process on a new pseudo-terminal."""


class Files(abc.ABC):
    """Files of a running sandbox (`files`)."""

    @abc.abstractmethod
    def read_file(self, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        """Stream a file's bytes in chunks (never the whole file in memory)."""

    @abc.abstractmethod
    async def write_file(
        self, sandbox_id: str, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> int:
        """Write a file from chunks, creating parents; TooLarge (and no file) past max_bytes."""

    @abc.abstractmethod
    async def list_dir(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        """Entries under `path`, recursing `depth` levels (0 and 1 both mean children only)."""

    @abc.abstractmethod
    async def make_dir(self, sandbox_id: str, path: str) -> FileEntry:
        """Create a directory and its parents; returns its entry."""

    @abc.abstractmethod
    async def remove(self, sandbox_id: str, path: str) -> None:
        """Remove a file or a directory tree."""


class Suspension(abc.ABC):
    """Freezing and thawing a sandbox with its memory (`pause`)."""

    @abc.abstractmethod
    async def pause(self, sandbox_id: str) -> None:
        """Freeze every process; memory and processes are kept."""

    @abc.abstractmethod
    async def resume(self, sandbox_id: str) -> None:
        """Thaw a paused sandbox."""


class Snapshots(abc.ABC):
    """A sandbox's filesystem as a new template (`snapshots`)."""

    @abc.abstractmethod
    async def snapshot(self, sandbox_id: str, dest: Path) -> int:
        """Write the sandbox's full root filesystem to `dest` (a new template); returns bytes."""


class Firewalls(abc.ABC):
    """The inbound policy of a networked sandbox (`firewall`)."""

    @abc.abstractmethod
    async def set_firewall(self, sandbox_id: str, firewall: Firewall) -> None:
        """Atomically replace a networked sandbox's inbound policy (InvalidState if none)."""


class Runtime(Lifecycle, Execution, Files, Suspension, Snapshots, Firewalls):
    """Creates, drives and destroys sandboxes on this host: every capability's interface.

    A runtime that cannot do one of them still implements its interface (refusing with
    InvalidRequest) and leaves it out of `capabilities`, which the agent reports.
    """

    name: str
    # What this runtime really does, reported in the agent's info: `devices` only where
    # host device nodes (GPUs) can be given to a sandbox.
    capabilities: frozenset[str] = ALL_CAPABILITIES - {"devices"}
