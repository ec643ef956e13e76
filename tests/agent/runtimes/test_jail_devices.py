"""A sandbox given GPUs sees exactly their device nodes in its /dev, and no other host node.

No GPU is lent here, so host character devices outside bubblewrap's minimal /dev stand in
for GPU nodes: what is tested is that the runtime binds exactly the nodes it is given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar.agent.runtimes.jail import JailRuntime

from .conftest import MakeSandbox

CANDIDATES = ["/dev/fuse", "/dev/kvm", "/dev/loop-control", "/dev/net/tun"]


def host_nodes() -> list[str]:
    present = [node for node in CANDIDATES if Path(node).exists()]
    if len(present) < 2:
        pytest.skip("needs two host device nodes outside bubblewrap's /dev")
    return present


async def visible(runtime: JailRuntime, sid: str, nodes: list[str]) -> list[str]:
    out = []
    for node in nodes:
        if (await runtime.exec(sid, ["test", "-e", node])).exit_code == 0:
            out.append(node)
    return out


async def test_a_sandbox_gets_exactly_its_device_nodes(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    nodes = host_nodes()
    given, withheld = nodes[:1], nodes[1:]
    sid = await make_sandbox(devices=(*given, "/dev/nvidia-not-here"))
    assert await visible(runtime, sid, nodes) == given
    assert (await runtime.exec(sid, ["test", "-e", "/dev/nvidia-not-here"])).exit_code != 0
    assert withheld


async def test_a_sandbox_without_devices_gets_none(
    runtime: JailRuntime, make_sandbox: MakeSandbox
) -> None:
    nodes = host_nodes()
    sid = await make_sandbox()
    assert await visible(runtime, sid, nodes) == []
