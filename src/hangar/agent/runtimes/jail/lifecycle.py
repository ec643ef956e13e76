"""A jail's start, readiness wait and teardown, each step in the order the kernel needs."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from hangar.agent.runtimes.base import RuntimeError_, SandboxSpec, StartFailed
from hangar.agent.runtimes.jail import disk, fs, net
from hangar.agent.runtimes.jail.cgroups import Cgroups, Limits
from hangar.agent.runtimes.jail.sandbox import Layout, Record, bwrap_argv, launch, write_config
from hangar.agent.supervisor.client import SupervisorClient, SupervisorUnavailable


def missing_tools(spec: SandboxSpec) -> list[str]:
    """Host commands this spec needs that are not installed."""
    needed = ["ip", "nft", "nsenter"] if spec.network is not None else []
    needed += ["mkfs.ext4", "losetup", "mount"] if spec.disk_mb else []
    return [tool for tool in needed if shutil.which(tool) is None]


def start(
    record: Record, layout: Layout, cgroups: Cgroups, bwrap: str, names: net.Names | None
) -> None:
    """Directories, size-limited disk, overlay, network + firewall, cgroups, then bwrap."""
    layout.root.mkdir(parents=True, mode=0o700)
    layout.merged.mkdir()
    layout.run.mkdir(mode=0o700)
    if names is not None:
        record.netns, record.host_veth = names.netns, names.host_veth
    record.save(layout.state)  # first, so a crash below is still cleaned up by recover
    if record.disk_mb:
        disk.create(layout.image, layout.disk, record.disk_mb)
    layout.upper.mkdir()
    layout.work.mkdir()
    fs.mount_overlay(Path(record.rootfs), layout.upper, layout.work, layout.merged)
    if names is not None:
        firewall = record.policy()
        assert firewall is not None
        net.setup(names, record.ipv6, firewall)  # before any of its processes exists
    cgroups.create(record.sandbox_id, Limits(record.vcpus, record.memory_mb, record.pids_max))
    write_config(layout, record.env)
    argv = partial(bwrap_argv, bwrap, layout, record.hostname, own_netns=names is not None)
    record.init_pid = launch(
        argv,
        layout,
        cgroups.join_files(record.sandbox_id),
        netns=names.netns_path if names is not None else None,
    )
    record.init_start = fs.process_start_time(record.init_pid)
    record.save(layout.state)


async def wait_ready(alive: Callable[[], bool], layout: Layout, timeout: float) -> None:
    """Ping the supervisor until it answers; fail fast if the sandbox's init died."""
    client = SupervisorClient(layout.socket)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.001  # the supervisor is usually up within tens of ms: poll fast, then back off
    while True:
        if not alive():
            raise StartFailed("the sandbox's init exited during start")
        try:
            await client.ping()
            return
        except SupervisorUnavailable:
            if loop.time() > deadline:
                raise StartFailed("the supervisor did not come up in time") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)


def teardown(sandbox_id: str, layout: Layout, cgroups: Cgroups, names: net.Names) -> None:
    """Kill what is left, remove network, mounts, loop device, cgroups and the state dir."""
    cgroups.kill_all(sandbox_id)
    # Every step runs even if an earlier one failed, so one stuck part leaks nothing else.
    failures: list[Exception] = []
    for step in (
        partial(net.teardown, names),
        partial(fs.unmount, layout.merged),
        partial(disk.remove, layout.image, layout.disk),
        partial(cgroups.remove, sandbox_id),
    ):
        try:
            step()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    for mount in (layout.merged, layout.disk):  # never recurse into a live filesystem
        if os.path.ismount(mount):
            raise RuntimeError_(f"{mount} is still mounted")
    if layout.root.exists():
        shutil.rmtree(layout.root)
