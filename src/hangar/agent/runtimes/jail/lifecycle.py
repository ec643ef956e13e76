"""A jail's start, readiness wait and teardown, each step in the order the kernel needs."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from hangar.agent.runtimes.base import RuntimeError_, SandboxSpec, StartFailed
from hangar.agent.runtimes.jail import disk, fs, net, procfs, seccomp, userns
from hangar.agent.runtimes.jail.cgroups import Cgroups, Limits
from hangar.agent.runtimes.jail.sandbox import (
    RUN_TMPFS_BYTES,
    Layout,
    Record,
    bwrap_argv,
    launch,
    write_config,
    write_readonly,
)
from hangar.agent.runtimes.jail.userns import Slot, SlotAllocator
from hangar.agent.supervisor import ARCHIVE_NAME, archive
from hangar.agent.supervisor.client import SupervisorClient, SupervisorUnavailable

HOST_TOOLS = ("setpriv", "unshare", "mount")  # util-linux: every jail needs them


def missing_tools(spec: SandboxSpec) -> list[str]:
    """Host commands this spec needs that are not installed."""
    needed = list(HOST_TOOLS)
    needed += ["ip", "nft", "nsenter"] if spec.network is not None else []
    needed += ["mkfs.ext4", "losetup"] if spec.disk_mb else []
    return [tool for tool in needed if shutil.which(tool) is None]


def start(
    record: Record,
    layout: Layout,
    cgroups: Cgroups,
    bwrap: str,
    names: net.Names | None,
    slots: SlotAllocator,
) -> None:
    """Id range, disk, overlay, supervisor files, network + firewall, cgroups, then bwrap."""
    layout.root.mkdir(parents=True, mode=0o700)
    layout.merged.mkdir()
    layout.run.mkdir(mode=0o700)
    layout.lower.mkdir()
    if names is not None:
        record.netns, record.host_veth = names.netns, names.host_veth
    slot = slots.allocate(str(layout.root))
    record.uid_slot = slot.index
    record.save(layout.state)  # first, so a crash below is still cleaned up by recover
    if record.disk_mb:
        disk.create(layout.image, layout.disk, record.disk_mb)
    layout.upper.mkdir()
    layout.work.mkdir()
    # The overlay's root directory takes the upper layer's owner: the range's root, so `/`
    # is root's inside (a host-root-owned one would show as `nobody`).
    os.chown(layout.upper, slot.base, slot.base)
    holder, userns_fd = userns.make_userns(slot.base)
    try:
        _mount_root(record, layout, userns_fd)
        _prepare_run(record, layout, slot)
        _expose(layout, slot)
        if names is not None:
            firewall = record.policy()
            assert firewall is not None
            net.setup(names, record.ipv6, firewall)  # before any of its processes exists
        cgroups.create(record.sandbox_id, Limits(record.vcpus, record.memory_mb, record.pids_max))
        seccomp_fd = seccomp.to_fd(seccomp.program(nested_userns=record.nested_userns))
        try:
            argv = partial(
                bwrap_argv,
                bwrap,
                slot,
                record.hostname,
                userns_fd=userns_fd,
                seccomp_fd=seccomp_fd,
                own_netns=names is not None,
                devices=record.devices,
            )
            record.init_pid = launch(
                argv,
                layout,
                cgroups.join_files(record.sandbox_id),
                netns=names.netns_path if names is not None else None,
                pass_fds=(userns_fd, seccomp_fd),
            )
        finally:
            os.close(seccomp_fd)
    finally:
        os.close(userns_fd)
        userns.end_holder(holder)  # the sandbox's processes hold the namespace from here
    record.init_start = fs.process_start_time(record.init_pid)
    record.save(layout.state)


def _mount_root(record: Record, layout: Layout, userns_fd: int) -> None:
    """The template, idmapped into the sandbox's range, under an overlay of its own layer.

    The overlay's options name its layers relative to the state directory, so the sandbox's
    `/proc/self/mountinfo` shows no host path. The idmapped bind is only needed while the
    overlay is mounted (the overlay keeps its own reference), so it is detached at once.
    """
    userns.idmapped_bind(Path(record.rootfs), layout.lower, userns_fd)
    try:
        fs.mount_overlay_at(
            layout.root,
            lower=layout.lower,
            upper=layout.upper,
            work=layout.work,
            merged=layout.merged,
        )
    finally:
        fs.unmount(layout.lower)


def _prepare_run(record: Record, layout: Layout, slot: Slot) -> None:
    """The supervisor's tmpfs: its config (the sandbox's root may read it) and its files."""
    fs.mount_tmpfs(layout.run, size=RUN_TMPFS_BYTES, mode=0o700, owner=slot.base)
    write_config(layout, record.env, owner=slot.base)
    write_readonly(
        layout,
        {
            ARCHIVE_NAME: archive(),
            "cpuinfo": procfs.cpuinfo(record.vcpus),
            "meminfo": procfs.meminfo(record.memory_mb),
        },
    )


def _expose(layout: Layout, slot: Slot) -> None:
    """Bind the root and the tmpfs into the slot's directory, the one place bwrap can reach."""
    os.chown(slot.dir, slot.base, slot.base)  # 0700: the sandbox's root, and host root
    for source, target in ((layout.merged, slot.root), (layout.run, slot.io)):
        target.mkdir(exist_ok=True)
        fs.bind(source, target)


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


def teardown(
    sandbox_id: str,
    layout: Layout,
    cgroups: Cgroups,
    names: net.Names,
    slot: Slot | None,
    slots: SlotAllocator,
) -> None:
    """Kill what is left; remove network, mounts, loop device, cgroups, id range, state dir."""
    cgroups.kill_all(sandbox_id)
    # Every step runs even if an earlier one failed, so one stuck part leaks nothing else.
    failures: list[Exception] = []
    exposed = (partial(fs.unmount, slot.root), partial(fs.unmount, slot.io)) if slot else ()
    for step in (
        *exposed,
        partial(net.teardown, names),
        partial(fs.unmount, layout.merged),
        partial(fs.unmount, layout.run),
        partial(fs.unmount, layout.lower),
        partial(disk.remove, layout.image, layout.disk),
        partial(cgroups.remove, sandbox_id),
    ):
        try:
            step()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    for mount in (layout.merged, layout.run, layout.lower, layout.disk):
        if fs.is_mounted(mount):  # never recurse into a live filesystem
            raise RuntimeError_(f"{mount} is still mounted")
    if slot is not None:
        # Last: the range is free for another sandbox only once nothing of this one is left.
        slots.release(slot)
    if layout.root.exists():
        shutil.rmtree(layout.root)
