"""Wire models of agent protocol v1 (JSON over HTTP, streams over WebSocket)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SandboxStatus = Literal["running", "paused", "stopped"]


class GpuInfo(BaseModel):
    """One GPU of the agent's host, as its driver reports it."""

    uuid: str
    index: int = Field(ge=0)
    model: str
    memory_mib: int = Field(ge=0)
    vendor: Literal["nvidia"] = "nvidia"
    # The device nodes a sandbox given this GPU gets, besides the driver's shared ones.
    device_nodes: list[str] = Field(default_factory=list)


class MissingProgram(BaseModel):
    """A host program the agent's runtime needs and cannot find on its PATH."""

    program: str
    package: str
    install_hint: str


class TemplateBuild(BaseModel):
    """A base template being built on the agent's host now."""

    template: str
    started_at: float  # unix seconds
    step: str  # "debootstrap" (minutes) or "copy" (from the shared cache, seconds)


def describe_missing(programs: list[MissingProgram]) -> str:
    """One line naming missing programs and the command that installs them all."""
    names = ", ".join(p.program for p in programs)
    packages = " ".join(dict.fromkeys(p.package for p in programs))
    return f"missing host programs: {names}; install them with: apt-get install {packages}"


class AgentInfo(BaseModel):
    """What an agent says about itself and its host."""

    protocol: str
    agent_version: str
    runtime: str
    arch: str
    cpu_cores: int
    memory_mb: int
    disk_gb: int
    # What its runtime can do (`lifecycle`, `exec`, `pty`, `files`, `snapshots`, `firewall`,
    # `pause`); a control plane asks only for what is listed.
    capabilities: list[str] = Field(default_factory=list)
    gpus: list[GpuInfo] = Field(default_factory=list)
    # Why `gpus` is empty when it is (no driver, NVML failed), for operators; None when found.
    gpu_reason: str | None = None
    # False while programs the runtime needs are missing: the agent refuses creates (503).
    # Defaults keep older agents, which never say, healthy.
    healthy: bool = True
    missing: list[MissingProgram] = Field(default_factory=list)
    building: list[TemplateBuild] = Field(default_factory=list)


class FirewallRule(BaseModel):
    """Allow inbound IPv6 traffic to a port range from some source prefixes."""

    protocol: Literal["tcp", "udp"]
    port_start: int = Field(ge=1, le=65535)
    port_end: int = Field(ge=1, le=65535)
    source_cidrs: list[str] = Field(default_factory=lambda: ["::/0"])


class FirewallPolicy(BaseModel):
    """Inbound IPv6 policy: `open` allows everything; `restricted` only `ingress` (+ ICMPv6)."""

    mode: Literal["open", "restricted"] = "restricted"
    ingress: list[FirewallRule] = Field(default_factory=list)


class NetworkSpec(BaseModel):
    """Give a sandbox its own routed IPv6 address, reachable from the host, behind a firewall."""

    firewall: FirewallPolicy = Field(default_factory=FirewallPolicy)


class CreateSandbox(BaseModel):
    """Start a sandbox from a template present on the agent's host."""

    sandbox_id: str
    template: str
    vcpus: int = Field(ge=1)
    memory_mb: int = Field(ge=16)
    egress: bool = False
    # Size of the writable layer; writes past it fail inside the sandbox. None: no limit.
    disk_mb: int | None = Field(default=None, ge=64)
    # None: loopback-only networking (no address outside the sandbox).
    network: NetworkSpec | None = None
    # UUIDs of the host GPUs to give it (from the agent's info); their device nodes only.
    gpus: list[str] = Field(default_factory=list, max_length=64)


class Sandbox(BaseModel):
    """A sandbox as the agent knows it."""

    sandbox_id: str
    template: str
    status: SandboxStatus
    vcpus: int
    memory_mb: int
    guest_ip: str = ""
    host_ip: str = ""
    started_at: float  # unix seconds
    ipv6: str = ""  # its routed address when it was created with a NetworkSpec
    disk_mb: int | None = None
    firewall: FirewallPolicy | None = None


class ExecRequest(BaseModel):
    """Run a command to completion."""

    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class ExecResult(BaseModel):
    """A finished command; output is base64 so arbitrary bytes survive JSON."""

    exit_code: int
    stdout_b64: str
    stderr_b64: str
    timed_out: bool
    duration_ms: int
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class PathRequest(BaseModel):
    """A path inside a sandbox."""

    path: str


class ListRequest(BaseModel):
    """List a directory."""

    path: str
    depth: int = Field(default=1, ge=0, le=32)


class FileEntry(BaseModel):
    """One directory entry."""

    name: str
    path: str
    type: Literal["file", "directory", "symlink"]
    size: int
    mode: int
    permissions: str
    owner: str
    group: str
    modified_at: int
    symlink_target: str | None = None


class WriteResult(BaseModel):
    """Bytes written by a file upload."""

    size: int


class SnapshotRequest(BaseModel):
    """Save a sandbox's filesystem as a new template on this host."""

    template: str


class Template(BaseModel):
    """A template on the agent's host."""

    name: str
    type: Literal["base", "snapshot"]
    size_bytes: int
    created_at: float


class MetricPoint(BaseModel):
    """One sample (or average) of a sandbox's usage."""

    timestamp_unix: int
    cpu_pct: float
    mem_bytes: int
    disk_bytes: int


class Metrics(BaseModel):
    """A tier of a sandbox's metrics ring buffer."""

    sandbox_id: str
    tier: Literal["10m", "2h", "24h"]
    points: list[MetricPoint]


class ErrorBody(BaseModel):
    """Every agent error: a stable code and a human message."""

    code: str
    message: str
