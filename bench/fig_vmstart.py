"""Figure 9: FastVM VM start to first exec, and a firewall change, beside plain capsules.

`POST /fastvm/v1/vms` of a c1m2 with the default firewall (`restricted`, no rules) gives the
sandbox a routed IPv6 network namespace (netns, veth pair, addresses, host route, nftables
table) and a 10 GiB ext4 disk image loop-mounted under its overlay. Baseline: a Wrenn capsule
of the same size (1 vCPU, 2048 MB) on the same stack, which has none of that, create to first
exec, interleaved sample by sample. The difference is the cost of networking + disk limit.

Firewall: `PUT /fastvm/v1/vms/{id}/firewall` (alternating two policies, so each is a real
nft transaction in the VM's namespace) beside a no-op `PATCH /fastvm/v1/vms/{id}` of its name
(the same route machinery and commit, no agent call). `extra` splits it: the agent's own PUT
on its socket, and a bare `nft -f` of the same ruleset in a namespace of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.fig_start import COMMAND
from bench.rawhttp import RawResponse
from bench.stack import BenchError, Stack
from bench.stats import Figure, ms, p50
from hangar.agent.runtimes.base import Firewall, PortRule
from hangar.agent.runtimes.jail import disk, net
from hangar.faces.wrenn import ids

VMS = "/fastvm/v1/vms"
NAME = {"name": "bench-firewall"}
DISK_MB = 10 * 1024  # FastVM's default diskGiB
POLICIES = (
    {"mode": "restricted", "ingress": [{"protocol": "tcp", "portStart": 8000}]},
    {
        "mode": "restricted",
        "ingress": [
            {"protocol": "tcp", "portStart": 8000},
            {"protocol": "udp", "portStart": 9000, "portEnd": 9100, "sourceCidrs": ["fd00::/8"]},
        ],
    },
)
AGENT_POLICIES = (
    {"mode": "restricted", "ingress": [{"protocol": "tcp", "port_start": 8000, "port_end": 8000}]},
    {
        "mode": "restricted",
        "ingress": [
            {"protocol": "tcp", "port_start": 8000, "port_end": 8000},
            {"protocol": "udp", "port_start": 9000, "port_end": 9100, "source_cidrs": ["fd00::/8"]},
        ],
    },
)
RULESETS = (
    Firewall(ingress=(PortRule("tcp", 8000, 8000),)),
    Firewall(ingress=(PortRule("tcp", 8000, 8000), PortRule("udp", 9000, 9100, ("fd00::/8",)))),
)


def _ok(resp: RawResponse, status: int, what: str) -> Any:
    Stack.check(resp, status, what)
    return resp.json() if resp.content else None


async def _vm_start(stack: Stack, name: str) -> tuple[str, float, float]:
    """Create a VM and exec in it until that succeeds; (id, create s, first exec s)."""
    started = time.perf_counter()
    resp = await stack.raw.post(VMS, {"machineType": "c1m2", "name": name})
    if resp.status_code not in (201, 202):
        Stack.check(resp, 201, "create VM")
    vm_id: str = resp.json()["id"]
    stack.capsules.add(ids.encode(ids.CAPSULE, vm_id))  # Wrenn's id of it, for cleanup
    while resp.json()["status"] != "running":  # 202: queued; not expected on this stack
        await asyncio.sleep(0.005)
        resp = await stack.raw.get(f"{VMS}/{vm_id}")
        if _ok(resp, 200, "get VM")["status"] == "error":
            raise BenchError(f"VM {vm_id} failed to start")
    created = time.perf_counter()
    body = {"command": list(COMMAND), "timeoutSec": 30}
    while True:
        resp = await stack.raw.post(f"{VMS}/{vm_id}/exec", body)
        if resp.status_code == 200 and resp.json()["exitCode"] == 0:
            break
        if resp.status_code != 409:
            raise BenchError(f"exec in VM: {resp.status_code} {resp.text[:300]}")
        await asyncio.sleep(0.005)
    assert resp.json()["stdout"] == "hello\n", resp.json()
    return vm_id, created - started, time.perf_counter() - created


async def _vm_delete(stack: Stack, vm_id: str) -> float:
    started = time.perf_counter()
    _ok(await stack.raw.request("DELETE", f"{VMS}/{vm_id}"), 200, "delete VM")
    took = time.perf_counter() - started
    stack.capsules.discard(ids.encode(ids.CAPSULE, vm_id))
    return took


async def _capsule_start(stack: Stack) -> tuple[str, float, float]:
    started = time.perf_counter()
    capsule = await stack.create(memory_mb=2048, raw=True)
    created = time.perf_counter()
    await stack.exec(capsule, *COMMAND, raw=True)
    return capsule, created - started, time.perf_counter() - created


async def _capsule_delete(stack: Stack, capsule: str) -> float:
    started = time.perf_counter()
    resp = await stack.raw.request("DELETE", f"/wrenn/v1/capsules/{capsule}")
    took = time.perf_counter() - started
    Stack.check(resp, 204, "delete capsule")
    stack.capsules.discard(capsule)
    return took


def _disk_step(root: str) -> float:
    """The agent's disk step alone: sparse image, mkfs.ext4, loop mount; then removed."""
    image, mountpoint = Path(root) / "disk.img", Path(root) / "disk"
    started = time.perf_counter()
    try:
        disk.create(image, mountpoint, DISK_MB)
        return time.perf_counter() - started
    finally:
        disk.remove(image, mountpoint)
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


async def _starts(stack: Stack, samples: int) -> dict[str, list[float]]:
    keys = ("vm", "vm_create", "vm_exec", "vm_delete", "cap", "cap_create", "cap_exec")
    t: dict[str, list[float]] = {k: [] for k in (*keys, "cap_delete", "disk")}
    scratch = stack.root / "bench-disk"
    scratch.mkdir(exist_ok=True)
    for i in range(samples + 1):  # the first round warms up
        vm_id, vm_create, vm_exec = await _vm_start(stack, f"bench-start-{i}")
        vm_delete = await _vm_delete(stack, vm_id)
        capsule, cap_create, cap_exec = await _capsule_start(stack)
        cap_delete = await _capsule_delete(stack, capsule)
        disk_s = await asyncio.to_thread(_disk_step, str(scratch))
        if i == 0:
            continue
        values: tuple[float, ...] = (vm_create + vm_exec, vm_create, vm_exec, vm_delete)
        values += (cap_create + cap_exec, cap_create, cap_exec)
        for key, value in zip(keys, values, strict=True):
            t[key].append(value)
        t["cap_delete"].append(cap_delete)
        t["disk"].append(disk_s)
    return t


async def _nft(netns: str, ruleset: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/run/netns/{netns}", "nft", "-f", "-",
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate(ruleset.encode())
    if proc.returncode != 0:
        raise BenchError(f"nft: {err.decode()[-300:]}")


async def _firewall(stack: Stack, samples: int) -> dict[str, list[float]]:
    vm_id, _, _ = await _vm_start(stack, NAME["name"])
    netns = f"hangar-bench-{uuid.uuid4().hex[:8]}"

    async def drop_netns() -> None:
        if await asyncio.to_thread(os.path.exists, f"/run/netns/{netns}"):
            await asyncio.to_thread(
                subprocess.run, ["ip", "netns", "del", netns], capture_output=True, check=False
            )

    stack.on_close.append(drop_netns)
    t: dict[str, list[float]] = {"put": [], "patch": [], "agent_put": [], "nft": []}
    try:
        made = await asyncio.to_thread(
            subprocess.run, ["ip", "netns", "add", netns], capture_output=True, check=False
        )
        if made.returncode != 0:
            raise BenchError(f"ip netns add: {made.stderr.decode()[-300:]}")
        rulesets = [net.ruleset(f) for f in RULESETS]
        agent_path = f"/v1/sandboxes/{vm_id}/firewall"
        for i in range(samples + 3):  # three rounds warm up
            k = i % 2
            steps: dict[str, Callable[[], Awaitable[RawResponse]]] = {
                "put": partial(stack.raw.request, "PUT", f"{VMS}/{vm_id}/firewall", POLICIES[k]),
                "patch": partial(stack.raw.request, "PATCH", f"{VMS}/{vm_id}", NAME),
                "agent_put": partial(stack.raw_agent.request, "PUT", agent_path, AGENT_POLICIES[k]),
            }
            for name, step in steps.items():
                started = time.perf_counter()
                _ok(await step(), 200, name)
                if i >= 3:
                    t[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            await _nft(netns, rulesets[k])
            if i >= 3:
                t["nft"].append(time.perf_counter() - started)
    finally:
        await drop_netns()
        await _vm_delete(stack, vm_id)
    return t


async def measure(stack: Stack, samples: int, fw_samples: int) -> list[Figure]:
    """Interleave VM and capsule starts, then firewall PUTs and no-op PATCHes."""
    s = await _starts(stack, samples)
    f = await _firewall(stack, fw_samples)
    return [
        Figure.latency(
            "vm_start_to_first_exec",
            s["vm"],
            s["cap"],
            baseline="Wrenn capsule create -> first exec, 1 vCPU / 2048 MB, no network, no disk",
            limits=(
                "on top of a capsule start, in series before bwrap: a 10 GiB sparse image + "
                "mkfs.ext4 + loop mount (~12 ms), three `ip` processes (netns, veth pair and "
                "addresses, the /128 route), an `nft list` of the host guard table (~2 ms; "
                "rewritten only when missing or changed) and one `nft -f` creating the "
                "sandbox's table without deleting anything (~3 ms)"
            ),
            extra={
                "vm_create_p50_ms": ms(p50(s["vm_create"])),
                "vm_first_exec_p50_ms": ms(p50(s["vm_exec"])),
                "capsule_create_p50_ms": ms(p50(s["cap_create"])),
                "capsule_first_exec_p50_ms": ms(p50(s["cap_exec"])),
                "disk_step_alone_p50_ms": ms(p50(s["disk"])),
                "vm_delete_p50_ms": ms(p50(s["vm_delete"])),
                "capsule_delete_p50_ms": ms(p50(s["cap_delete"])),
                "command": " ".join(COMMAND),
            },
        ),
        Figure.latency(
            "vm_firewall_put",
            f["put"],
            f["patch"],
            baseline="no-op PATCH /fastvm/v1/vms/{id} of its name (same face, commit, no agent)",
            limits=(
                "one `nsenter ... nft -f -` process that replaces the table atomically: the "
                "batch deletes the old table, and a batch that deletes objects costs ~12 ms "
                "more in the kernel's commit than one that only adds (bare_nft_p50_ms); "
                "then the control plane's agent call and firewall row write + commit"
            ),
            extra={
                "agent_put_p50_ms": ms(p50(f["agent_put"])),
                "bare_nft_p50_ms": ms(p50(f["nft"])),
                "policies": "alternating 1 and 2 ingress rules",
            },
        ),
    ]
