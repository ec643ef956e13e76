"""The `jail` runtime: bubblewrap namespaces + overlayfs + cgroups + an in-sandbox supervisor.

Per sandbox, `<state_root>/<id>/` holds `state.json`, the overlay's `upper/`, `work/` and
`merged/` (mounted in the host namespace so it outlives the agent), `run/` (the supervisor's
config and socket, root-only) and `console.log`. With `disk_mb`, `upper/` and `work/` live
on `disk/`, a loop-mounted ext4 image `disk.img` of that size (see `disk`). With a network,
the sandbox runs in its own named network namespace behind nftables (see `net`).

bwrap is started through `setsid --fork` after joining the sandbox's cgroups, so sandboxes
are never the agent's children and survive it; a restarted agent finds them again with
`recover()`. Under systemd, give the agent's unit
`KillMode=process` (or `Delegate=yes`) so stopping it does not kill its cgroup's leftovers.

Needs root: overlay mounts, cgroups and id ranges are host-wide (no rootless mode). Every
sandbox has a user namespace of its own, mapped to a host id range no other live sandbox and
no host account uses (see `userns`), and a seccomp filter (see `seccomp`). Memory
snapshots are not supported: CRIU does not work on this platform's kernels, so `snapshot`
captures the root filesystem only, and `pause` keeps memory by freezing processes in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from hangar.agent.runtimes import firewall as policies
from hangar.agent.runtimes.base import (
    ALL_CAPABILITIES,
    ExecResult,
    FileEntry,
    Firewall,
    InvalidState,
    PathError,
    Process,
    Pty,
    Runtime,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
    StartFailed,
    Usage,
)
from hangar.agent.runtimes.jail import fs, lifecycle, net, userns
from hangar.agent.runtimes.jail.cgroups import Cgroups, detect
from hangar.agent.runtimes.jail.sandbox import (
    SANDBOX_ID,
    Layout,
    Record,
    validate,
)
from hangar.agent.supervisor.client import SupervisorClient

DISK_SAMPLE_SECONDS = 10.0


class JailRuntime(Runtime):
    """Sandboxes as bubblewrap jails on this host; needs root, bwrap, overlayfs and cgroups."""

    name = "jail"
    capabilities = ALL_CAPABILITIES

    def __init__(
        self,
        state_root: Path,
        *,
        cgroups: Cgroups | None = None,
        bwrap: str = "bwrap",
        ready_timeout: float = 20.0,
        slots: userns.SlotAllocator | None = None,
    ) -> None:
        self.state_root = state_root
        self.slots = slots or userns.SlotAllocator()
        self.bwrap = bwrap
        self.ready_timeout = ready_timeout
        self._cgroups = cgroups
        self._records: dict[str, Record] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._disk: dict[str, tuple[float, int]] = {}

    # ------------------------------------------------------------ helpers

    @property
    def cgroups(self) -> Cgroups:
        """The host's cgroup driver, detected on first use."""
        if self._cgroups is None:
            self._cgroups = detect()
        return self._cgroups

    def layout(self, sandbox_id: str) -> Layout:
        """Where a sandbox's state lives on the host."""
        return Layout(self.state_root / sandbox_id)

    def cgroup_paths(self, sandbox_id: str) -> list[Path]:
        """The sandbox's cgroup directories (for inspection and tests)."""
        return self.cgroups.paths(sandbox_id)

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    def _record(self, sandbox_id: str) -> Record:
        """The sandbox's record, loading it from disk if this runtime has not seen it yet."""
        record = self._records.get(sandbox_id)
        if record is None and SANDBOX_ID.match(sandbox_id):
            with contextlib.suppress(OSError, ValueError, TypeError):
                record = Record.load(self.layout(sandbox_id).state)
        if record is None:
            raise SandboxNotFound(f"no sandbox {sandbox_id}")
        self._records[sandbox_id] = record
        return record

    def _alive(self, record: Record) -> bool:
        """Whether the sandbox's init is the very process we started."""
        return (
            record.init_pid is not None
            and fs.process_start_time(record.init_pid) == record.init_start
        )

    def _state(self, record: Record) -> SandboxState:
        if not self._alive(record):
            return SandboxState.STOPPED
        try:
            frozen = self.cgroups.frozen(record.sandbox_id)
        except OSError:
            return SandboxState.STOPPED
        return SandboxState.PAUSED if frozen else SandboxState.RUNNING

    def _info(self, record: Record) -> SandboxInfo:
        state = self._state(record)
        return SandboxInfo(record.sandbox_id, state, record.init_pid, ipv6=record.ipv6)

    def net_names(self, sandbox_id: str) -> net.Names:
        """The netns and host veth names of a networked sandbox (for inspection and tests)."""
        return net.names_for(self.state_root, sandbox_id)

    def _client(self, sandbox_id: str) -> SupervisorClient:
        """A client for a running sandbox; InvalidState when it is paused or stopped."""
        record = self._record(sandbox_id)
        state = self._state(record)
        if state is not SandboxState.RUNNING:
            raise InvalidState(f"sandbox {sandbox_id} is {state}")
        return SupervisorClient(self.layout(sandbox_id).socket)

    @staticmethod
    def _path(path: str) -> str:
        """Paths must be absolute and NUL-free; they are resolved inside the sandbox."""
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise PathError(f"path must be absolute and contain no NUL: {path!r}")
        return path

    # ------------------------------------------------------------ lifecycle

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Mount the overlay, make cgroups, start bwrap + supervisor and wait until it answers."""
        try:
            validate(spec)
        except ValueError as exc:
            raise StartFailed(str(exc)) from None
        if os.geteuid() != 0:
            raise StartFailed("the jail runtime needs root (overlay mounts and cgroups)")
        if shutil.which(self.bwrap) is None:
            raise StartFailed(f"{self.bwrap} not found: install bubblewrap")
        if spec.network is not None:
            policies.check(spec.network.firewall)  # a bad policy is the caller's error
        if missing := lifecycle.missing_tools(spec):
            raise StartFailed(f"missing host tools: {', '.join(missing)}")
        async with self._lock(spec.sandbox_id):
            layout = self.layout(spec.sandbox_id)
            if spec.sandbox_id in self._records or layout.root.exists():
                raise StartFailed(f"sandbox {spec.sandbox_id} already exists")
            record = Record.from_spec(spec, self.cgroups.version)
            try:
                await asyncio.to_thread(self._start, record, layout)
                await self._wait_ready(record, layout)
            except BaseException as exc:
                tail = layout.console_tail()
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._teardown, spec.sandbox_id)
                if not isinstance(exc, Exception):
                    raise
                detail = f"; console: {tail}" if tail and tail not in str(exc) else ""
                raise StartFailed(f"sandbox {spec.sandbox_id}: {exc}{detail}") from exc
            self._records[spec.sandbox_id] = record
            return self._info(record)

    def _start(self, record: Record, layout: Layout) -> None:
        """Blocking part of create: directories, disk, overlay, network, cgroups, bwrap."""
        names = self.net_names(record.sandbox_id) if record.ipv6 else None
        lifecycle.start(record, layout, self.cgroups, self.bwrap, names, self.slots)

    async def _wait_ready(self, record: Record, layout: Layout) -> None:
        """Ping the supervisor until it answers; fail fast if the sandbox's init died."""
        await lifecycle.wait_ready(lambda: self._alive(record), layout, self.ready_timeout)

    def _teardown(self, sandbox_id: str) -> None:
        """Kill, unmount, remove network, cgroups and the state dir; safe on partial state."""
        layout = self.layout(sandbox_id)
        names = self.net_names(sandbox_id)  # what a start that died early would have made
        slot = None
        with contextlib.suppress(OSError, ValueError, TypeError):
            record = Record.load(layout.state)
            if record.netns:
                names = net.Names(record.netns, record.host_veth)
            if record.uid_slot is not None:
                slot = self.slots.slot(record.uid_slot)
            if record.init_pid and self._alive(record):  # even if its cgroup went missing
                os.kill(record.init_pid, signal.SIGKILL)
        lifecycle.teardown(sandbox_id, layout, self.cgroups, names, slot, self.slots)

    async def recover(self) -> list[SandboxInfo]:
        """Re-adopt live sandboxes from their state dirs; clean up the dead ones."""
        found: list[SandboxInfo] = []
        if not self.state_root.is_dir():
            return found
        for entry in sorted(self.state_root.iterdir()):
            if not entry.is_dir() or not SANDBOX_ID.match(entry.name):
                continue
            async with self._lock(entry.name):
                record = await asyncio.to_thread(self._live_record, entry.name)
                if record is None:
                    self._records.pop(entry.name, None)
                    await asyncio.to_thread(self._teardown, entry.name)
                    continue
                self._records[entry.name] = record
                found.append(self._info(record))
        live = {r.uid_slot for r in self._records.values() if r.uid_slot is not None}
        await asyncio.to_thread(self._release_orphan_slots, live)
        return found

    def _release_orphan_slots(self, live: set[int]) -> None:
        """Free id ranges a crash left taken (allocated, but no live sandbox records them)."""
        for slot in self.slots.owned_by(self.state_root):
            if slot.index in live:
                continue
            with contextlib.suppress(OSError):
                fs.unmount(slot.root)
                fs.unmount(slot.io)
                self.slots.release(slot)

    def _live_record(self, sandbox_id: str) -> Record | None:
        """The record of a sandbox whose init still runs on its mounted root, else None."""
        layout = self.layout(sandbox_id)
        try:
            record = Record.load(layout.state)
        except (OSError, ValueError, TypeError):
            return None
        if not (self._alive(record) and os.path.ismount(layout.merged)):
            return None
        if record.netns and record.init_pid:  # e.g. /run was cleaned under a live sandbox
            with contextlib.suppress(OSError):
                net.repin(net.Names(record.netns, record.host_veth), record.init_pid)
        return record

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """Current state of one sandbox."""
        return self._info(self._record(sandbox_id))

    async def destroy(self, sandbox_id: str) -> None:
        """Kill everything and remove its state; idempotent."""
        if not SANDBOX_ID.match(sandbox_id):
            return
        async with self._lock(sandbox_id):
            known = sandbox_id in self._records or self.layout(sandbox_id).root.exists()
            if known or self.cgroups.exists(sandbox_id):
                await asyncio.to_thread(self._teardown, sandbox_id)
            self._records.pop(sandbox_id, None)
            self._disk.pop(sandbox_id, None)
        self._locks.pop(sandbox_id, None)

    async def pause(self, sandbox_id: str) -> None:
        """Freeze every process through the freezer cgroup and wait until it is frozen."""
        async with self._lock(sandbox_id):
            state = self._state(self._record(sandbox_id))
            if state is SandboxState.STOPPED:
                raise InvalidState(f"sandbox {sandbox_id} is stopped")
            if state is SandboxState.RUNNING:
                await asyncio.to_thread(self.cgroups.freeze, sandbox_id)

    async def resume(self, sandbox_id: str) -> None:
        """Thaw a paused sandbox."""
        async with self._lock(sandbox_id):
            state = self._state(self._record(sandbox_id))
            if state is SandboxState.STOPPED:
                raise InvalidState(f"sandbox {sandbox_id} is stopped")
            await asyncio.to_thread(self.cgroups.set_frozen, sandbox_id, False)

    async def snapshot(self, sandbox_id: str, dest: Path) -> int:
        """Copy the merged root filesystem (frozen meanwhile) to `dest`; returns its bytes."""
        async with self._lock(sandbox_id):
            record = self._record(sandbox_id)
            state = self._state(record)
            if state is SandboxState.STOPPED:
                raise InvalidState(f"sandbox {sandbox_id} is stopped")
            if state is SandboxState.RUNNING:
                await asyncio.to_thread(self.cgroups.freeze, sandbox_id)
            try:
                await asyncio.to_thread(fs.copy_tree, self.layout(sandbox_id).merged, dest)
            finally:
                if state is SandboxState.RUNNING:
                    await asyncio.to_thread(self.cgroups.set_frozen, sandbox_id, False)
            if record.uid_slot is not None:  # back to in-sandbox owners: no host ids kept
                await asyncio.to_thread(
                    userns.shift_owners, dest, self.slots.slot(record.uid_slot).base
                )
        return await asyncio.to_thread(fs.allocated_bytes, dest)

    async def set_firewall(self, sandbox_id: str, firewall: Firewall) -> None:
        """Replace a networked sandbox's nftables table in one transaction; persist it."""
        policies.check(firewall)
        async with self._lock(sandbox_id):
            record = self._record(sandbox_id)
            if not record.netns:
                raise InvalidState(f"sandbox {sandbox_id} has no network")
            names = net.Names(record.netns, record.host_veth)
            try:
                await asyncio.to_thread(net.apply_firewall, names, firewall)
            except OSError as exc:
                raise InvalidState(f"sandbox {sandbox_id}: {exc}") from exc
            record.firewall = asdict(firewall)
            await asyncio.to_thread(record.save, self.layout(sandbox_id).state)

    async def _disk_bytes(self, sandbox_id: str) -> int:
        # Walking the upper layer is the costliest part of a sample; disk use changes slowly,
        # so it is measured at most every DISK_SAMPLE_SECONDS per sandbox.
        now = time.monotonic()
        cached = self._disk.get(sandbox_id)
        if cached is not None and now - cached[0] < DISK_SAMPLE_SECONDS:
            return cached[1]
        size = await asyncio.to_thread(fs.allocated_bytes, self.layout(sandbox_id).upper)
        self._disk[sandbox_id] = (now, size)
        return size

    async def usage(self, sandbox_id: str) -> Usage:
        """CPU and memory from the cgroup, disk from the overlay's upper layer."""
        self._record(sandbox_id)
        cg = self.cgroups
        try:
            disk = await self._disk_bytes(sandbox_id)
            return Usage(cg.cpu_ns(sandbox_id), cg.mem_bytes(sandbox_id), disk)
        except OSError as exc:
            raise InvalidState(f"sandbox {sandbox_id} has no usage to report: {exc}") from exc

    # ------------------------------------------------------------ processes and files

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
        """Run to completion as the sandbox user; the group is killed at `timeout`."""
        client = self._client(sandbox_id)
        return await client.exec(argv, env=env, cwd=cwd, timeout=timeout, output_limit=output_limit)

    async def spawn(
        self,
        sandbox_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Process:
        """Start a streamed process (killed when its Process's connection closes)."""
        return await self._client(sandbox_id).spawn(argv, env=env, cwd=cwd)

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
        client = self._client(sandbox_id)
        return await client.open_pty(argv, cols=cols, rows=rows, env=env, cwd=cwd)

    async def read_file(self, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        """Stream a file's bytes in chunks."""
        client = self._client(sandbox_id)
        async for chunk in client.read_file(self._path(path)):
            yield chunk

    async def write_file(
        self, sandbox_id: str, path: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> int:
        """Write a file from chunks, creating parents; TooLarge (and no file) past max_bytes."""
        client = self._client(sandbox_id)
        return await client.write_file(self._path(path), chunks, max_bytes=max_bytes)

    async def list_dir(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        """Entries under `path`, `depth` levels deep."""
        return await self._client(sandbox_id).list_dir(self._path(path), depth)

    async def make_dir(self, sandbox_id: str, path: str) -> FileEntry:
        """mkdir -p."""
        return await self._client(sandbox_id).make_dir(self._path(path))

    async def remove(self, sandbox_id: str, path: str) -> None:
        """Remove a file or a directory tree."""
        await self._client(sandbox_id).remove(self._path(path))
