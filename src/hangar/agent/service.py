"""The agent's state: which sandboxes run here, their metrics and terminals.

The runtime's own state on disk is the truth; this table is rebuilt from it (plus a small
record per sandbox) whenever the agent starts, so restarting the agent loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from hangar import __version__
from hangar.agent import hosttools
from hangar.agent.gpus import SHARED_NODES, Inventory
from hangar.agent.hosttools import Requirement
from hangar.agent.metrics import SAMPLE_SECONDS, SandboxMetrics
from hangar.agent.network import DEFAULT_PREFIX, AddressPool, to_firewall
from hangar.agent.ptys import PtyRegistry
from hangar.agent.runtimes.base import (
    InvalidRequest,
    InvalidState,
    NetworkConfig,
    Runtime,
    RuntimeError_,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
)
from hangar.agent.templates_port import Templates
from hangar.agent.workloads import Workloads
from hangar.agentproto import VERSION
from hangar.agentproto.models import (
    AgentInfo,
    CreateSandbox,
    FirewallPolicy,
    MetricPoint,
    MissingProgram,
    Sandbox,
    describe_missing,
)

log = structlog.get_logger("hangar.agent")


class TemplateMissing(RuntimeError_):
    """No template of that name on this host."""

    code = "template_not_found"


class HostUnhealthy(RuntimeError_):
    """Programs the runtime needs are missing from this host; the message names them."""

    code = "host_unhealthy"


class TemplateBuilding(RuntimeError_):
    """The template is being built here now; creates from it are refused until it is done."""

    code = "template_building"


class SandboxExists(RuntimeError_):
    """A sandbox with that id already runs here."""

    code = "sandbox_exists"


@dataclass
class _Record:
    sandbox_id: str
    template: str
    vcpus: int
    memory_mb: int
    started_at: float
    guest_ip: str = ""
    ipv6: str = ""
    disk_mb: int | None = None
    firewall: dict[str, Any] | None = None  # FirewallPolicy.model_dump() as last applied


class Agent(Workloads):
    """Owns the sandboxes of one host."""

    def __init__(
        self,
        runtime: Runtime,
        templates: Templates,
        state_dir: Path,
        *,
        ptys: PtyRegistry | None = None,
        metrics_interval: float = SAMPLE_SECONDS,
        ipv6_prefix: str = DEFAULT_PREFIX,
        gpus: Inventory | None = None,
        requirements: Sequence[Requirement] = (),
    ) -> None:
        self.runtime = runtime
        # Discovered once, at start: GPUs do not come and go while a driver is loaded.
        self.gpus = gpus or Inventory(reason="GPU discovery was not run")
        self.requirements = tuple(requirements)
        self.addresses = AddressPool(ipv6_prefix)
        self._claimed: set[str] = set()  # addresses of creates still in flight
        self.templates = templates
        self.ptys = ptys or PtyRegistry()
        self._records_dir = state_dir / "sandboxes"
        self._records_dir.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, _Record] = {}
        self._status: dict[str, SandboxState] = {}
        self._metrics: dict[str, SandboxMetrics] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._interval = metrics_interval
        self._tasks: list[asyncio.Task[None]] = []

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild the table from disk and start background work."""
        alive = {info.sandbox_id: info for info in await self.runtime.recover()}
        for path in self._records_dir.glob("*.json"):
            record = _Record(**json.loads(path.read_text()))
            info = alive.pop(record.sandbox_id, None)
            if info is None or info.state is SandboxState.STOPPED:
                path.unlink(missing_ok=True)
                if info is not None:
                    await self.runtime.destroy(record.sandbox_id)
                continue
            self._adopt(record, info.state)
        for orphan in alive:  # runtime state without a record: a create that never finished
            await self.runtime.destroy(orphan)
        log.info("agent.recovered", sandboxes=len(self._records))
        self._tasks = [
            asyncio.create_task(self._sample_forever(), name="agent:metrics"),
            asyncio.create_task(self._reap_forever(), name="agent:pty-reaper"),
        ]
        if absent := self.missing():
            # No warm build: without debootstrap or bwrap it can only fail, and cryptically.
            log.warning(
                "agent.unhealthy",
                missing=[p.program for p in absent],
                hint=describe_missing(absent),
            )
        else:
            self._tasks.append(
                asyncio.create_task(self._warm_default_template(), name="agent:warm-template")
            )

    async def stop(self) -> None:
        """Stop background work; sandboxes keep running."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def missing(self) -> list[MissingProgram]:
        """The runtime's host programs this host lacks now (a few stat calls)."""
        return hosttools.missing(self.requirements)

    def info(self) -> AgentInfo:
        """Host facts for registration and scheduling, and whether it can run sandboxes."""
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        absent = self.missing()
        return AgentInfo(
            protocol=VERSION,
            agent_version=__version__,
            runtime=self.runtime.name,
            arch=platform.machine(),
            cpu_cores=os.cpu_count() or 1,
            memory_mb=pages // (1024 * 1024),
            disk_gb=shutil.disk_usage(self._records_dir).total // 1024**3,
            capabilities=sorted(self.runtime.capabilities),
            gpus=self.gpus.gpus,
            gpu_reason=self.gpus.reason,
            healthy=not absent,
            missing=absent,
            building=self.templates.building(),
        )

    # sandboxes -----------------------------------------------------------------------------

    def _adopt(self, record: _Record, state: SandboxState) -> None:
        self._records[record.sandbox_id] = record
        self._status[record.sandbox_id] = state
        self._metrics[record.sandbox_id] = SandboxMetrics(record.vcpus)

    def _view(self, sandbox_id: str) -> Sandbox:
        record = self._records.get(sandbox_id)
        if record is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id} on this host")
        status = self._status[sandbox_id]
        return Sandbox(
            sandbox_id=sandbox_id,
            template=record.template,
            status=status.value,
            vcpus=record.vcpus,
            memory_mb=record.memory_mb,
            guest_ip=record.guest_ip,
            started_at=record.started_at,
            ipv6=record.ipv6,
            disk_mb=record.disk_mb,
            firewall=FirewallPolicy.model_validate(record.firewall) if record.firewall else None,
        )

    def _save(self, record: _Record) -> None:
        path = self._records_dir / f"{record.sandbox_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(path)

    def _has(self, template: str) -> bool:
        """Whether the template is complete here (a rebuild under way keeps the old one)."""
        return any(t.name == template for t in self.templates.list())

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        """Serialises lifecycle changes of one sandbox."""
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def sandboxes(self) -> list[Sandbox]:
        """Every sandbox on this host."""
        return [self._view(i) for i in self._records]

    def get(self, sandbox_id: str) -> Sandbox:
        """One sandbox."""
        return self._view(sandbox_id)

    def require_running(self, sandbox_id: str) -> None:
        """Raise unless the sandbox exists and runs."""
        self._view(sandbox_id)
        if self._status[sandbox_id] is not SandboxState.RUNNING:
            raise InvalidState(f"sandbox {sandbox_id} is {self._status[sandbox_id].value}")

    def _gpu_nodes(self, uuids: list[str]) -> tuple[str, ...]:
        """The device nodes of exactly these GPUs of this host, and their driver's."""
        if not uuids:
            return ()
        if "devices" not in self.runtime.capabilities:
            raise InvalidRequest(f"the {self.runtime.name} runtime cannot give sandboxes GPUs")
        known = {gpu.uuid: gpu for gpu in self.gpus.gpus}
        unknown = sorted(set(uuids) - set(known))
        if unknown:
            raise InvalidRequest(f"no such GPU on this host: {', '.join(unknown)}")
        nodes = [node for uuid in dict.fromkeys(uuids) for node in known[uuid].device_nodes]
        return (*nodes, *SHARED_NODES)

    async def create(self, request: CreateSandbox) -> Sandbox:
        """Start a sandbox from a template on this host."""
        if absent := self.missing():  # before a template build that could only fail
            raise HostUnhealthy(f"this host cannot run sandboxes: {describe_missing(absent)}")
        # Refused rather than waited for: a first build takes minutes, longer than a create
        # request should hang (the caller retries; the agent's info shows the build).
        for build in self.templates.building():
            if build.template == request.template and not self._has(request.template):
                since = max(int(time.time() - build.started_at), 0)
                raise TemplateBuilding(
                    f"template {build.template} is being built on this host "
                    f"({build.step}, started {since} s ago); try again shortly"
                )
        async with self.lock(request.sandbox_id):
            if request.sandbox_id in self._records:
                raise SandboxExists(f"sandbox {request.sandbox_id} already exists")
            devices = self._gpu_nodes(request.gpus)  # before any work is done
            network = None
            if request.network is not None:
                firewall = to_firewall(request.network.firewall)  # before any work is done
                used = {r.ipv6 for r in self._records.values()} | self._claimed
                network = NetworkConfig(self.addresses.allocate(used), firewall)
                self._claimed.add(network.ipv6)
            try:
                rootfs = await self.templates.ensure(request.template)
                spec = SandboxSpec(
                    sandbox_id=request.sandbox_id,
                    rootfs=rootfs,
                    vcpus=request.vcpus,
                    memory_mb=request.memory_mb,
                    egress=request.egress,
                    disk_mb=request.disk_mb,
                    network=network,
                    nested_userns=self.templates.allows_nested_userns(request.template),
                    devices=devices,
                )
                record = _Record(
                    request.sandbox_id,
                    request.template,
                    request.vcpus,
                    request.memory_mb,
                    time.time(),
                    ipv6=network.ipv6 if network else "",
                    disk_mb=request.disk_mb,
                    firewall=request.network.firewall.model_dump() if request.network else None,
                )
                info = await self.runtime.create(spec)
                record.guest_ip = info.guest_ip
                # Written after the runtime succeeded: a crash in between leaves an orphan
                # that the next start destroys, never a record pointing at nothing.
                self._save(record)
                self._adopt(record, info.state)
            finally:
                if network is not None:
                    self._claimed.discard(network.ipv6)
            log.info("sandbox.created", sandbox_id=request.sandbox_id, template=request.template)
            return self._view(request.sandbox_id)

    async def set_firewall(self, sandbox_id: str, policy: FirewallPolicy) -> Sandbox:
        """Replace a networked sandbox's inbound policy; it survives agent restarts."""
        async with self.lock(sandbox_id):
            self._view(sandbox_id)
            record = self._records[sandbox_id]
            if not record.ipv6:
                raise InvalidState(f"sandbox {sandbox_id} was created without a network")
            await self.runtime.set_firewall(sandbox_id, to_firewall(policy))
            record.firewall = policy.model_dump()
            self._save(record)
            return self._view(sandbox_id)

    async def destroy(self, sandbox_id: str) -> None:
        """Destroy a sandbox; idempotent."""
        async with self.lock(sandbox_id):
            await self.ptys.close_sandbox(sandbox_id)
            await self.runtime.destroy(sandbox_id)
            (self._records_dir / f"{sandbox_id}.json").unlink(missing_ok=True)
            self._records.pop(sandbox_id, None)
            self._status.pop(sandbox_id, None)
            self._metrics.pop(sandbox_id, None)
        self._locks.pop(sandbox_id, None)
        log.info("sandbox.destroyed", sandbox_id=sandbox_id)

    async def pause(self, sandbox_id: str) -> Sandbox:
        """Freeze a running sandbox."""
        async with self.lock(sandbox_id):
            self.require_running(sandbox_id)
            await self.runtime.pause(sandbox_id)
            self._status[sandbox_id] = SandboxState.PAUSED
            return self._view(sandbox_id)

    async def resume(self, sandbox_id: str) -> Sandbox:
        """Thaw a paused sandbox."""
        async with self.lock(sandbox_id):
            self._view(sandbox_id)
            if self._status[sandbox_id] is not SandboxState.PAUSED:
                raise InvalidState(f"sandbox {sandbox_id} is not paused")
            await self.runtime.resume(sandbox_id)
            self._status[sandbox_id] = SandboxState.RUNNING
            return self._view(sandbox_id)

    async def snapshot(self, sandbox_id: str, template: str) -> tuple[str, int]:
        """Save the sandbox's filesystem as a new template; returns (name, bytes)."""
        async with self.lock(sandbox_id):
            self._view(sandbox_id)
            dest = self.templates.snapshot_dest(template)
            size = await self.runtime.snapshot(sandbox_id, dest)
            self.templates.register_snapshot(template)
            return template, size

    def metrics(self, sandbox_id: str, tier: str) -> list[MetricPoint]:
        """One tier of a sandbox's ring buffer."""
        self._view(sandbox_id)
        return self._metrics[sandbox_id].tier(tier)

    # background ----------------------------------------------------------------------------

    async def sample_once(self) -> None:
        """Record one usage sample of every running sandbox; notice dead ones."""
        for sandbox_id in list(self._records):
            if self._status.get(sandbox_id) is not SandboxState.RUNNING:
                continue
            try:
                usage = await self.runtime.usage(sandbox_id)
            except SandboxNotFound:
                self._status[sandbox_id] = SandboxState.STOPPED
                continue
            except (RuntimeError_, OSError) as exc:
                log.warning("metrics.sample_failed", sandbox_id=sandbox_id, error=str(exc))
                continue
            metrics = self._metrics.get(sandbox_id)
            if metrics is not None:
                metrics.record(usage.cpu_ns, usage.mem_bytes, usage.disk_bytes)

    async def _sample_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception:
                log.exception("metrics.loop_failed")
            await asyncio.sleep(max(self._interval - (time.monotonic() - started), 0.05))

    async def _warm_default_template(self) -> None:
        # A fresh host builds `minimal` now rather than inside the first create request.
        try:
            await self.templates.ensure("minimal")
        except Exception:
            log.exception("template.warm_failed", template="minimal")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(5)
            await self.ptys.reap()
